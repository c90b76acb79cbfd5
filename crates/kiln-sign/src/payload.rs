//! cosign's simple signing payload: the JSON document a `.sig` layer holds
//! and the signature covers, naming the image by manifest digest.

use kiln_image::Digest;
use serde::{Deserialize, Serialize};

/// The `critical.type` every cosign image signature carries.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// A simple signing payload, as cosign writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    /// What the signature is about.
    pub critical: Critical,
    /// Free annotations (cosign's `-a KEY=VALUE`); kiln writes none.
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The part of a payload a verifier must check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    /// Where the image was meant to live.
    pub identity: Identity,
    /// The image, by digest.
    pub image: SignedImage,
    /// Always [`SIGNATURE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `HOST/REPO` (or kiln's image name for an image only in the store).
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedImage {
    /// The manifest digest signed.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// The payload for `digest`, meant to live at `docker_reference`.
    pub fn new(docker_reference: &str, digest: &Digest) -> SimpleSigning {
        SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: docker_reference.to_owned(),
                },
                image: SignedImage {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: SIGNATURE_TYPE.to_owned(),
            },
            optional: None,
        }
    }

    /// The bytes that are stored and signed: field order as cosign writes
    /// them, no whitespace.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain structs of strings always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether this payload signs `digest`.
    pub fn signs(&self, digest: &Digest) -> bool {
        self.critical.kind == SIGNATURE_TYPE
            && self.critical.image.docker_manifest_digest == digest.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let digest = Digest::of(b"x");
        let payload = SimpleSigning::new("127.0.0.1:5000/web", &digest);
        assert_eq!(
            String::from_utf8(payload.to_bytes()).expect("utf-8"),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/web\"}},\"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
        assert!(payload.signs(&digest));
        assert!(!payload.signs(&Digest::of(b"y")));
    }
}
