//! The encryption of cosign's private keys (go-securesystemslib's
//! `encrypted` package): a JSON document holding scrypt's parameters and
//! salt, the NaCl secretbox nonce, and the sealed bytes, each base64.
//!
//! Opening refuses scrypt parameters beyond cosign's own (N = 2^16, r = 8,
//! p = 1) by more than a small margin: a key file must not make kiln spend
//! gigabytes of memory before it even asks for the password.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SignError;

const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";
/// What cosign 2.5 writes (measured: `cosign generate-key-pair` here); older
/// cosign wrote 2^15, which opens too.
const SCRYPT_N: u64 = 65536;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// The largest scrypt cost accepted when opening: N * r * p * 128 bytes of
/// memory, here 256 MiB.
const MAX_SCRYPT_MEMORY: u64 = 256 << 20;

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

fn random<const N: usize>() -> Result<[u8; N], SignError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| SignError::Random {
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

fn derive(
    password: &[u8],
    salt: &[u8],
    params: &ScryptParams,
    origin: &Path,
) -> Result<Zeroizing<[u8; 32]>, SignError> {
    let malformed = |reason: String| SignError::MalformedKey {
        path: origin.to_path_buf(),
        reason,
    };
    if !params.n.is_power_of_two() || params.n < 2 {
        return Err(malformed(format!(
            "scrypt N = {} is not a power of two",
            params.n
        )));
    }
    let memory = params
        .n
        .saturating_mul(u64::from(params.r))
        .saturating_mul(u64::from(params.p))
        .saturating_mul(128);
    if memory > MAX_SCRYPT_MEMORY || params.r == 0 || params.p == 0 {
        return Err(malformed(format!(
            "scrypt parameters N = {}, r = {}, p = {} are outside what cosign writes",
            params.n, params.r, params.p
        )));
    }
    let log_n = params.n.trailing_zeros() as u8;
    let scrypt_params = scrypt::Params::new(log_n, params.r, params.p, 32)
        .map_err(|e| malformed(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &scrypt_params, key.as_mut())
        .map_err(|e| malformed(format!("scrypt: {e}")))?;
    Ok(key)
}

/// Seal `plaintext` with `password` as cosign does; the JSON document.
pub(crate) fn seal(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, SignError> {
    let params = ScryptParams {
        n: SCRYPT_N,
        r: SCRYPT_R,
        p: SCRYPT_P,
    };
    let salt = random::<32>()?;
    let nonce = random::<24>()?;
    let key = derive(password, &salt, &params, Path::new("<new key>"))?;
    let cipher = XSalsa20Poly1305::new(&Key::from(*key));
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), plaintext)
        .map_err(|_| SignError::MalformedKey {
            path: "<new key>".into(),
            reason: "secretbox refused to seal".into(),
        })?;
    let sealed = Sealed {
        kdf: Kdf {
            name: KDF_NAME.into(),
            params,
            salt: salt.to_vec(),
        },
        cipher: Cipher {
            name: CIPHER_NAME.into(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    Ok(serde_json::to_vec(&sealed)?)
}

/// Open a sealed document with `password`; `origin` names the key file.
pub(crate) fn open(document: &[u8], password: &[u8], origin: &Path) -> Result<Vec<u8>, SignError> {
    let malformed = |reason: String| SignError::MalformedKey {
        path: origin.to_path_buf(),
        reason,
    };
    let sealed: Sealed = serde_json::from_slice(document)
        .map_err(|e| malformed(format!("the encrypted key is not cosign's JSON: {e}")))?;
    if sealed.kdf.name != KDF_NAME {
        return Err(malformed(format!(
            "key derivation {:?}, expected {KDF_NAME:?}",
            sealed.kdf.name
        )));
    }
    if sealed.cipher.name != CIPHER_NAME {
        return Err(malformed(format!(
            "cipher {:?}, expected {CIPHER_NAME:?}",
            sealed.cipher.name
        )));
    }
    let nonce: [u8; 24] = sealed.cipher.nonce.as_slice().try_into().map_err(|_| {
        malformed(format!(
            "the secretbox nonce has {} bytes, expected 24",
            sealed.cipher.nonce.len()
        ))
    })?;
    let key = derive(password, &sealed.kdf.salt, &sealed.kdf.params, origin)?;
    let cipher = XSalsa20Poly1305::new(&Key::from(*key));
    cipher
        .decrypt(&Nonce::from(nonce), sealed.ciphertext.as_slice())
        .map_err(|_| SignError::WrongPassword {
            path: origin.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_with_the_password_only() {
        let doc = seal(b"secret", b"pw").expect("seal");
        let value: serde_json::Value = serde_json::from_slice(&doc).expect("json");
        assert_eq!(value["kdf"]["params"]["N"], 65536);
        assert_eq!(value["cipher"]["name"], "nacl/secretbox");
        assert_eq!(open(&doc, b"pw", Path::new("k")).expect("open"), b"secret");
        assert!(matches!(
            open(&doc, b"pW", Path::new("k")),
            Err(SignError::WrongPassword { .. })
        ));
    }

    #[test]
    fn huge_scrypt_costs_are_refused_before_deriving() {
        let doc = seal(b"secret", b"").expect("seal");
        let mut value: serde_json::Value = serde_json::from_slice(&doc).expect("json");
        value["kdf"]["params"]["N"] = serde_json::json!(1u64 << 40);
        let doc = serde_json::to_vec(&value).expect("json");
        let err = open(&doc, b"", Path::new("big.key")).expect_err("refused");
        assert!(
            err.to_string().contains("outside what cosign writes"),
            "{err}"
        );
    }
}
