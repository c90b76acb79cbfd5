//! Signatures and attestations attached to an image as cosign attaches
//! them: an OCI manifest tagged `sha256-HEX.sig` (or `.att`) beside the
//! image, one layer per signature or envelope, appended, never replacing.
//!
//! In kiln's store the tag is the ref `NAME:sha256-HEX.sig` in index.json,
//! so that exporting or pushing the repository carries it, and a registry
//! holds it under the same tag cosign looks for.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiln_image::descriptor::{MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST};
use kiln_image::{Descriptor, Digest, Store, to_canonical_json};
use serde_json::{Value, json};

use crate::SignError;

/// The layer annotation holding a simple signing payload's signature
/// (base64 DER); empty on attestation layers, whose envelope holds it.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The media type of a simple signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The media type of a DSSE envelope layer.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The largest attached layer read (an SBOM of a big image is a few MiB).
const MAX_LAYER: u64 = 64 << 20;

/// Which of cosign's two attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attachment {
    /// `sha256-HEX.sig`: simple signing payloads.
    Signature,
    /// `sha256-HEX.att`: DSSE envelopes of in-toto statements.
    Attestation,
}

impl Attachment {
    /// The tag cosign gives this attachment of image `digest`.
    pub fn tag(self, digest: &Digest) -> String {
        let suffix = match self {
            Attachment::Signature => "sig",
            Attachment::Attestation => "att",
        };
        format!("sha256-{}.{suffix}", digest.hex())
    }

    fn what(self) -> &'static str {
        match self {
            Attachment::Signature => "signature manifest",
            Attachment::Attestation => "attestation manifest",
        }
    }
}

/// Whether `tag` is one of cosign's attachment tags (`sha256-HEX.sig`,
/// `.att`, `.sbom`), which name no image of their own.
pub use kiln_image::descriptor::is_attachment_tag;

/// One attached layer: its descriptor and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedLayer {
    /// The layer's descriptor, annotations included.
    pub descriptor: Descriptor,
    /// The payload (or envelope) bytes, verified against the digest.
    pub content: Vec<u8>,
}

impl AttachedLayer {
    /// The decoded `dev.cosignproject.cosign/signature` annotation.
    pub fn signature(&self) -> Option<Vec<u8>> {
        let text = self
            .descriptor
            .annotations
            .as_ref()?
            .get(SIGNATURE_ANNOTATION)?;
        STANDARD.decode(text).ok()
    }
}

/// A layer to attach.
#[derive(Debug, Clone)]
pub struct NewLayer {
    /// Its media type.
    pub media_type: String,
    /// Its bytes.
    pub content: Vec<u8>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The layers of the attachment manifest `manifest` in `store`, each read
/// and verified.
pub fn read_layers(
    store: &Store,
    manifest: &Digest,
    kind: Attachment,
) -> Result<Vec<AttachedLayer>, SignError> {
    let bytes = store.read_blob(manifest)?;
    referenced_blobs(manifest, &bytes, kind)?
        .into_iter()
        .skip(1)
        .map(|descriptor| {
            let content = store.read_blob(&descriptor.digest)?;
            Ok(AttachedLayer {
                descriptor,
                content,
            })
        })
        .collect()
}

/// The config and layers an attachment manifest (its `bytes`, digest
/// `manifest`) references, in that order: what a copy to or from a registry
/// must carry with it.
pub fn referenced_blobs(
    manifest: &Digest,
    bytes: &[u8],
    kind: Attachment,
) -> Result<Vec<Descriptor>, SignError> {
    let invalid = |reason: String| SignError::InvalidDocument {
        what: kind.what(),
        digest: manifest.clone(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let config: Descriptor = value
        .get("config")
        .map(|c| serde_json::from_value(c.clone()))
        .transpose()
        .map_err(|e| invalid(format!("its config: {e}")))?
        .ok_or_else(|| invalid("it has no config".into()))?;
    let layers: Vec<Descriptor> = value
        .get("layers")
        .map(|l| serde_json::from_value(l.clone()))
        .transpose()
        .map_err(|e| invalid(format!("its layers: {e}")))?
        .unwrap_or_default();
    if let Some(big) = layers.iter().find(|l| l.size > MAX_LAYER) {
        return Err(invalid(format!(
            "layer {} has {} bytes, more than kiln reads",
            big.digest, big.size
        )));
    }
    Ok(std::iter::once(config).chain(layers).collect())
}

/// Write into `store` the attachment manifest holding the layers of
/// `existing` (an attachment manifest already in the store) plus `new`,
/// unless an identical layer (same bytes, same annotations) is already
/// there. Returns the manifest's descriptor and whether a layer was added.
/// No ref is set: the caller names it.
pub fn append(
    store: &Store,
    existing: Option<&Digest>,
    kind: Attachment,
    new: NewLayer,
) -> Result<(Descriptor, bool), SignError> {
    let mut layers: Vec<Descriptor> = match existing {
        Some(d) => read_layers(store, d, kind)?
            .into_iter()
            .map(|l| l.descriptor)
            .collect(),
        None => Vec::new(),
    };
    let digest = store.put_blob(&new.content)?;
    let mut descriptor = Descriptor::new(new.media_type, digest, new.content.len() as u64);
    descriptor.annotations = Some(new.annotations);
    let added = !layers
        .iter()
        .any(|l| l.digest == descriptor.digest && l.annotations == descriptor.annotations);
    if added {
        layers.push(descriptor);
    } else if let Some(d) = existing {
        return Ok((store.manifest_descriptor(d)?, false));
    }
    Ok((write_manifest(store, &layers)?, added))
}

/// A layer of an attachment manifest that cannot count as a signature or
/// attestation of its image.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokenLayer {
    /// The layer's blob.
    pub digest: Digest,
    /// What is wrong with it.
    pub reason: String,
}

/// What [`examine`] found in an attachment manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Examined {
    /// The layers that are whole and well formed, in order.
    pub whole: Vec<Descriptor>,
    /// The others.
    pub broken: Vec<BrokenLayer>,
    /// Whether the manifest's config blob is missing or corrupt (it holds
    /// nothing but the layers' digests, so it can be written again).
    pub config_broken: bool,
}

/// Check every layer of the `kind` attachment manifest `manifest` of image
/// `subject` in `store`: its blob is there and whole, and it holds what
/// cosign writes (a simple signing payload naming `subject` with its
/// signature annotation, or a DSSE envelope of an in-toto statement about
/// `subject`). Signatures are not verified: that needs a key. An error
/// when the manifest itself cannot be read.
pub fn examine(
    store: &Store,
    manifest: &Digest,
    kind: Attachment,
    subject: &Digest,
) -> Result<Examined, SignError> {
    let bytes = store.read_blob(manifest)?;
    let mut blobs = referenced_blobs(manifest, &bytes, kind)?.into_iter();
    let config_broken = blobs
        .next()
        .is_some_and(|config| store.read_blob(&config.digest).is_err());
    let mut examined = Examined {
        whole: Vec::new(),
        broken: Vec::new(),
        config_broken,
    };
    for layer in blobs {
        let defect = match store.read_blob(&layer.digest) {
            Ok(content) => layer_defect(&layer, &content, kind, subject),
            Err(kiln_image::ImageError::MissingBlob { .. }) => Some("its blob is missing".into()),
            Err(kiln_image::ImageError::CorruptBlob { .. }) => Some("its blob is corrupt".into()),
            Err(e) => return Err(e.into()),
        };
        match defect {
            None => examined.whole.push(layer),
            Some(reason) => examined.broken.push(BrokenLayer {
                digest: layer.digest,
                reason,
            }),
        }
    }
    Ok(examined)
}

/// What is wrong with the `content` of attachment layer `layer`, if
/// anything.
fn layer_defect(
    layer: &Descriptor,
    content: &[u8],
    kind: Attachment,
    subject: &Digest,
) -> Option<String> {
    match kind {
        Attachment::Signature => {
            let payload = match serde_json::from_slice::<crate::payload::SimpleSigning>(content) {
                Ok(p) => p,
                Err(e) => return Some(format!("not a simple signing payload: {e}")),
            };
            if !payload.signs(subject) {
                return Some(format!(
                    "its payload signs {}, not {subject}",
                    payload.critical.image.docker_manifest_digest
                ));
            }
            let signed = AttachedLayer {
                descriptor: layer.clone(),
                content: Vec::new(),
            };
            signed
                .signature()
                .is_none()
                .then(|| format!("no base64 {SIGNATURE_ANNOTATION} annotation"))
        }
        Attachment::Attestation => {
            let envelope = match serde_json::from_slice::<crate::dsse::Envelope>(content) {
                Ok(e) => e,
                Err(e) => return Some(format!("not a DSSE envelope: {e}")),
            };
            let Some(payload) = envelope.payload_bytes() else {
                return Some("its DSSE payload is not base64".into());
            };
            match serde_json::from_slice::<crate::Statement>(&payload) {
                Err(e) => Some(format!("its DSSE payload is not an in-toto statement: {e}")),
                Ok(statement) if !statement.is_about(subject) => {
                    Some(format!("its statement is not about {subject}"))
                }
                Ok(_) => None,
            }
        }
    }
}

/// Write into `store` an attachment manifest holding just `layers`
/// (descriptors of blobs the store holds), with a new config: how a
/// manifest is mended once its broken layers are dropped. No ref is set.
pub fn with_layers(store: &Store, layers: &[Descriptor]) -> Result<Descriptor, SignError> {
    write_manifest(store, layers)
}

/// The config and manifest of an attachment, as cosign shapes them: a
/// config whose `rootfs.diff_ids` are the layers' digests (so that tools
/// which check one diff_id per layer accept it), with no time in it.
fn write_manifest(store: &Store, layers: &[Descriptor]) -> Result<Descriptor, SignError> {
    let config = json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": layers.iter().map(|_| json!({"created": "0001-01-01T00:00:00Z"})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
    });
    let config_bytes = to_canonical_json(&config)?;
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": Descriptor::new(MEDIA_TYPE_OCI_CONFIG, config_digest, config_bytes.len() as u64),
        "layers": layers,
    });
    let bytes = to_canonical_json(&manifest)?;
    let digest = store.put_blob(&bytes)?;
    Ok(Descriptor::new(
        MEDIA_TYPE_OCI_MANIFEST,
        digest,
        bytes.len() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_tags_are_recognised() {
        let d = Digest::of(b"x");
        assert!(is_attachment_tag(&Attachment::Signature.tag(&d)));
        assert!(is_attachment_tag(&Attachment::Attestation.tag(&d)));
        assert!(!is_attachment_tag("1.4.2"));
        assert!(!is_attachment_tag("sha256-abc.sig"));
    }

    #[test]
    fn layers_are_appended_once_and_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let layer = |content: &[u8], sig: &str| NewLayer {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            content: content.to_vec(),
            annotations: [(SIGNATURE_ANNOTATION.to_owned(), sig.to_owned())].into(),
        };
        let (first, added) =
            append(&store, None, Attachment::Signature, layer(b"p", "c2ln")).expect("append");
        assert!(added);
        let (same, added) = append(
            &store,
            Some(&first.digest),
            Attachment::Signature,
            layer(b"p", "c2ln"),
        )
        .expect("append");
        assert!(!added);
        assert_eq!(same.digest, first.digest);
        let (second, added) = append(
            &store,
            Some(&first.digest),
            Attachment::Signature,
            layer(b"p", "b3RoZXI="),
        )
        .expect("append");
        assert!(added);
        let layers = read_layers(&store, &second.digest, Attachment::Signature).expect("read");
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].signature(), Some(b"sig".to_vec()));
        assert_eq!(layers[1].signature(), Some(b"other".to_vec()));
        // One diff_id per layer, as tools that read it as an image expect.
        let manifest: Value =
            serde_json::from_slice(&store.read_blob(&second.digest).expect("manifest"))
                .expect("json");
        let config_digest: Digest = manifest["config"]["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("config digest");
        let config: Value =
            serde_json::from_slice(&store.read_blob(&config_digest).expect("config"))
                .expect("json");
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(2)
        );
    }
}
