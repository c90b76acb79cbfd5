//! DSSE envelopes (Dead Simple Signing Envelope), the form cosign attaches
//! attestations in: the payload base64, signed through the pre-authentication
//! encoding `DSSEv1 LEN(type) type LEN(body) body`, so that a signature over
//! one payload type can never be replayed as another.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::key::{PublicKey, SigningKey};

/// The payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the payload is.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Its signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Key hint; cosign leaves it empty.
    #[serde(default)]
    pub keyid: String,
    /// The DER signature over the pre-authentication encoding, base64.
    pub sig: String,
}

/// The bytes a DSSE signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// `payload` of `payload_type`, signed with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
        let signature = key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_owned(),
            payload: STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: STANDARD.encode(signature),
            }],
        }
    }

    /// The decoded payload, if it is base64.
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.payload).ok()
    }

    /// Whether one of the signatures verifies with `key`.
    pub fn verified_by(&self, key: &PublicKey) -> bool {
        let Some(payload) = self.payload_bytes() else {
            return false;
        };
        let signed = pae(&self.payload_type, &payload);
        self.signatures.iter().any(|s| {
            STANDARD
                .decode(&s.sig)
                .is_ok_and(|sig| key.verifies(&signed, &sig))
        })
    }

    /// The envelope as stored: serde's field order, no whitespace.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_specs_encoding() {
        // The DSSE specification's own example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn an_envelope_verifies_with_its_key_only_and_not_once_altered() {
        let key = SigningKey::generate().expect("random");
        let other = SigningKey::generate().expect("random");
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", &key);
        assert!(envelope.verified_by(&key.public_key()));
        assert!(!envelope.verified_by(&other.public_key()));
        let mut altered = envelope.clone();
        altered.payload = STANDARD.encode(b"{\"a\":2}");
        assert!(!altered.verified_by(&key.public_key()));
        let mut retyped = envelope;
        retyped.payload_type = "text/plain".into();
        assert!(!retyped.verified_by(&key.public_key()));
    }
}
