//! Signing keys in cosign's formats, so that keys move freely between kiln
//! and cosign: the private key is an "ENCRYPTED SIGSTORE PRIVATE KEY" PEM
//! (a PKCS#8 ECDSA P-256 key sealed by [`crate::sealed`]), the public key a
//! PKIX "PUBLIC KEY" PEM.
//!
//! Signatures are ECDSA P-256 over SHA-256, DER-encoded, as cosign makes and
//! checks them. p256 derives the nonce from the key and the message
//! (RFC 6979), so signing the same payload twice gives the same bytes: a
//! repeated `kiln sign` adds nothing rather than a second copy.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use crate::SignError;
use crate::sealed;

/// The PEM label cosign 2.x writes for private keys.
pub const PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label cosign 1.x wrote; still read.
const OLD_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// id-ecPublicKey: the algorithm of every EC key, whatever its curve.
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
/// prime256v1, the one curve cosign's keys use.
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// An ECDSA P-256 private key. Its secret never prints.
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key().to_pem())
            .finish_non_exhaustive()
    }
}

/// An ECDSA P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// A new key pair written as cosign writes it.
#[derive(Debug)]
pub struct KeyFiles {
    /// `PREFIX.key`.
    pub private_key: PathBuf,
    /// `PREFIX.pub`.
    pub public_key: PathBuf,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, SignError> {
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(bytes.as_mut()).map_err(|e| SignError::Random {
                reason: e.to_string(),
            })?;
            // A scalar of zero or beyond the group order is refused; the
            // chance is below 2^-32, so trying again is the whole remedy.
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(bytes.as_ref()) {
                return Ok(SigningKey { key });
            }
        }
    }

    /// Read an encrypted private key (cosign's PEM) from `pem_text`, with
    /// `password` (empty allowed). `origin` names the key in errors.
    pub fn from_encrypted_pem(
        pem_text: &[u8],
        password: &[u8],
        origin: &Path,
    ) -> Result<SigningKey, SignError> {
        let malformed = |reason: String| SignError::MalformedKey {
            path: origin.to_path_buf(),
            reason,
        };
        let (label, sealed_json) = pem::decode_vec(trim_pem(pem_text))
            .map_err(|e| malformed(format!("not a PEM private key: {e}")))?;
        if label != PRIVATE_KEY_LABEL && label != OLD_PRIVATE_KEY_LABEL {
            return Err(malformed(format!(
                "a PEM \"{label}\", expected \"{PRIVATE_KEY_LABEL}\" (make one with `kiln keygen` or `cosign generate-key-pair`)"
            )));
        }
        let der = Zeroizing::new(sealed::open(&sealed_json, password, origin)?);
        check_private_key_curve(&der, origin)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der)
            .map_err(|e| malformed(format!("not a PKCS#8 ECDSA P-256 key: {e}")))?;
        Ok(SigningKey { key })
    }

    /// Read the private key at `path` with `password`.
    pub fn read(path: &Path, password: &[u8]) -> Result<SigningKey, SignError> {
        let text = Zeroizing::new(std::fs::read(path).map_err(SignError::io(path))?);
        SigningKey::from_encrypted_pem(&text, password, path)
    }

    /// The key as cosign's encrypted PEM, sealed with `password`.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, SignError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| SignError::MalformedKey {
                path: PathBuf::from("<new key>"),
                reason: format!("cannot encode as PKCS#8: {e}"),
            })?;
        let sealed_json = sealed::seal(der.as_bytes(), password)?;
        pem::encode_string(PRIVATE_KEY_LABEL, LineEnding::LF, &sealed_json).map_err(|e| {
            SignError::MalformedKey {
                path: PathBuf::from("<new key>"),
                reason: format!("cannot encode as PEM: {e}"),
            }
        })
    }

    /// Write `PREFIX.key` (sealed with `password`) and `PREFIX.pub`, as
    /// `cosign generate-key-pair --output-key-prefix PREFIX` does. Existing
    /// files are never overwritten.
    pub fn write_pair(&self, prefix: &Path, password: &[u8]) -> Result<KeyFiles, SignError> {
        let mut private_key = prefix.as_os_str().to_owned();
        private_key.push(".key");
        let mut public_key = prefix.as_os_str().to_owned();
        public_key.push(".pub");
        let files = KeyFiles {
            private_key: private_key.into(),
            public_key: public_key.into(),
        };
        for path in [&files.private_key, &files.public_key] {
            if path.exists() {
                return Err(SignError::KeyExists { path: path.clone() });
            }
        }
        write_new(
            &files.private_key,
            self.to_encrypted_pem(password)?.as_bytes(),
            0o600,
        )?;
        write_new(
            &files.public_key,
            self.public_key().to_pem().as_bytes(),
            0o644,
        )?;
        Ok(files)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// The DER signature of `payload` (ECDSA P-256, SHA-256).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let signature: Signature = self.key.sign(payload);
        signature.to_der().as_bytes().to_vec()
    }
}

impl PublicKey {
    /// Read a PKIX "PUBLIC KEY" PEM; `origin` names it in errors.
    pub fn from_pem(pem_text: &[u8], origin: &Path) -> Result<PublicKey, SignError> {
        let malformed = |reason: String| SignError::MalformedKey {
            path: origin.to_path_buf(),
            reason,
        };
        let (label, der) = pem::decode_vec(trim_pem(pem_text))
            .map_err(|e| malformed(format!("not a PEM public key: {e}")))?;
        if label != PUBLIC_KEY_LABEL {
            return Err(malformed(format!(
                "a PEM \"{label}\", expected \"{PUBLIC_KEY_LABEL}\" (give the .pub file, not the private key)"
            )));
        }
        let info = p256::pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| malformed(format!("not a PKIX public key: {e}")))?;
        check_curve(
            info.algorithm.oid.to_string(),
            info.algorithm.parameters_oid().ok().map(|o| o.to_string()),
            origin,
        )?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| malformed(format!("not an ECDSA P-256 public key: {e}")))?;
        Ok(PublicKey { key })
    }

    /// Read the public key at `path`.
    pub fn read(path: &Path) -> Result<PublicKey, SignError> {
        let text = std::fs::read(path).map_err(SignError::io(path))?;
        PublicKey::from_pem(&text, path)
    }

    /// The key as a PKIX "PUBLIC KEY" PEM.
    pub fn to_pem(&self) -> String {
        // Encoding a valid P-256 point cannot fail.
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Whether `signature` (DER, as cosign writes it) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        Signature::from_der(signature)
            .map(|s| self.key.verify(payload, &s).is_ok())
            .unwrap_or(false)
    }
}

/// PEM text with blank lines and spaces around it removed, as cosign's
/// parser tolerates.
fn trim_pem(text: &[u8]) -> &[u8] {
    text.trim_ascii()
}

fn check_private_key_curve(der: &[u8], origin: &Path) -> Result<(), SignError> {
    let info = p256::pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| SignError::MalformedKey {
        path: origin.to_path_buf(),
        reason: format!("the decrypted key is not PKCS#8: {e}"),
    })?;
    check_curve(
        info.algorithm.oid.to_string(),
        info.algorithm.parameters_oid().ok().map(|o| o.to_string()),
        origin,
    )
}

fn check_curve(algorithm: String, curve: Option<String>, origin: &Path) -> Result<(), SignError> {
    if algorithm != EC_PUBLIC_KEY_OID {
        let name = match algorithm.as_str() {
            "1.2.840.113549.1.1.1" => "an RSA key",
            "1.3.101.112" => "an Ed25519 key",
            _ => "not an EC key",
        };
        return Err(SignError::MalformedKey {
            path: origin.to_path_buf(),
            reason: format!(
                "{name} (algorithm {algorithm}); kiln and cosign sign with ECDSA P-256 keys"
            ),
        });
    }
    match curve {
        Some(c) if c == P256_OID => Ok(()),
        Some(curve) => Err(SignError::WrongCurve {
            path: origin.to_path_buf(),
            curve: curve_name(&curve),
        }),
        None => Err(SignError::MalformedKey {
            path: origin.to_path_buf(),
            reason: "the EC key names no curve".into(),
        }),
    }
}

fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.34" => "P-384 (1.3.132.0.34)".into(),
        "1.3.132.0.35" => "P-521 (1.3.132.0.35)".into(),
        "1.3.132.0.10" => "secp256k1 (1.3.132.0.10)".into(),
        other => other.into(),
    }
}

/// Create `path` (refusing an existing one) with `mode`, and write `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SignError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                SignError::KeyExists {
                    path: path.to_path_buf(),
                }
            } else {
                SignError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    file.write_all(bytes).map_err(SignError::io(path))?;
    file.sync_all().map_err(SignError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_encrypted_pem() {
        let key = SigningKey::generate().expect("random");
        let pem = key.to_encrypted_pem(b"hunter2").expect("seal");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = SigningKey::from_encrypted_pem(pem.as_bytes(), b"hunter2", Path::new("k.key"))
            .expect("open");
        assert_eq!(back.public_key(), key.public_key());
        let signature = back.sign(b"payload");
        assert!(key.public_key().verifies(b"payload", &signature));
        assert!(!key.public_key().verifies(b"payloaD", &signature));
    }

    #[test]
    fn a_wrong_password_names_the_key_file() {
        let key = SigningKey::generate().expect("random");
        let pem = key.to_encrypted_pem(b"").expect("seal");
        let err = SigningKey::from_encrypted_pem(pem.as_bytes(), b"x", Path::new("rel.key"))
            .expect_err("wrong password");
        assert!(matches!(err, SignError::WrongPassword { .. }), "{err}");
        assert!(err.to_string().starts_with("rel.key: "), "{err}");
        assert!(err.is_input());
    }

    #[test]
    fn garbage_and_public_keys_are_not_private_keys() {
        let err =
            SigningKey::from_encrypted_pem(b"hello", b"", Path::new("g.key")).expect_err("garbage");
        assert!(matches!(err, SignError::MalformedKey { .. }), "{err}");
        let public = SigningKey::generate()
            .expect("random")
            .public_key()
            .to_pem();
        let err = SigningKey::from_encrypted_pem(public.as_bytes(), b"", Path::new("p.pub"))
            .expect_err("public");
        assert!(
            err.to_string()
                .contains("expected \"ENCRYPTED SIGSTORE PRIVATE KEY\""),
            "{err}"
        );
    }

    #[test]
    fn a_p384_public_key_is_refused_as_another_curve() {
        // `openssl ecparam -name secp384r1 -genkey | openssl ec -pubout`.
        let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAErrmoQKCEmxv4JZ1K+p9ENjrictTLgEQl
64lx9EzknIDdhXitSsVURazxPNkuvD+bxhcfDz2MbbL8N7Zy6Ci2YwhYmduoC5y0
FMUNDrC3fKFmVBT/sOQpgfhzHNoXXLQu
-----END PUBLIC KEY-----
";
        let err = PublicKey::from_pem(p384.as_bytes(), Path::new("other.pub")).expect_err("p384");
        assert!(matches!(err, SignError::WrongCurve { .. }), "{err}");
        assert!(err.to_string().contains("P-384"), "{err}");
    }

    /// A P-384 private key as PKCS#8 DER, base64 (`openssl ecparam -name
    /// secp384r1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -outform DER`).
    const P384_PKCS8: &str = "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDBhtmtvTzv+PuV5aN92\
        5l5VPKmr+vw3OuUozgN7xpinvqVgWEfbbTf33X2X7pB5JaihZANiAARygoloGz2y\
        m6HDr6Xhzy64L/Wzbikw93YBOrHbSMNfvRSfyYKRV3F04kEF2Qc6RmncoDYZXPuX\
        sUL60N8vZUJE25OIDrTHasLyZs/AFLBYUsyqnor6Su+9vF8m62bKqoA=";

    #[test]
    fn an_encrypted_p384_private_key_is_refused_as_another_curve() {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(P384_PKCS8)
            .expect("base64");
        // Sealed exactly as cosign seals its keys: only the curve is wrong.
        let sealed = sealed::seal(&der, b"pw").expect("seal");
        let pem = pem::encode_string(PRIVATE_KEY_LABEL, LineEnding::LF, &sealed).expect("pem");
        let err = SigningKey::from_encrypted_pem(pem.as_bytes(), b"pw", Path::new("p384.key"))
            .expect_err("p384");
        assert!(matches!(err, SignError::WrongCurve { .. }), "{err}");
        assert!(
            err.to_string().contains("p384.key") && err.to_string().contains("P-384"),
            "{err}"
        );
        assert!(err.is_input(), "{err}");
    }
}
