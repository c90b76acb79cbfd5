//! A stored image as the ecosystem's OCI types (oci-spec), for embedders
//! that expect them. The stored bytes stay the source of truth: the typed
//! values are parsed from them and never written back, since oci-spec drops
//! fields it does not know (Docker's `Healthcheck`) and serialises its maps
//! in no fixed order (field-notes.md).

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::{Digest, ImageError, Store};

/// An image of the store: its manifest and config as stored, byte for byte,
/// and parsed as oci-spec types.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The manifest's digest: the image's digest.
    pub digest: Digest,
    /// The manifest's bytes, as stored (their sha256 is `digest`).
    pub manifest_bytes: Vec<u8>,
    /// The config's bytes, as stored.
    pub config_bytes: Vec<u8>,
    /// The manifest, parsed.
    pub manifest: ImageManifest,
    /// The config, parsed (fields oci-spec does not know are only in
    /// `config_bytes`).
    pub config: ImageConfiguration,
}

/// Read the image whose manifest is `digest` from `store`: both blobs are
/// verified against their digests, then parsed.
pub fn read_image(store: &Store, digest: &Digest) -> Result<StoredImage, ImageError> {
    let manifest_bytes = store.read_blob(digest)?;
    let config_digest = config_digest(digest, &parse_manifest(digest, &manifest_bytes)?)?;
    let config_bytes = store.read_blob(&config_digest)?;
    StoredImage::parse(digest.clone(), manifest_bytes, config_bytes)
}

impl StoredImage {
    /// The image whose manifest `manifest_bytes` has the digest `digest`,
    /// from its manifest and config bytes, already verified (read from the
    /// store, or from a registry by [`crate::Remote::describe`]): both
    /// parsed.
    pub fn parse(
        digest: Digest,
        manifest_bytes: Vec<u8>,
        config_bytes: Vec<u8>,
    ) -> Result<StoredImage, ImageError> {
        let manifest = parse_manifest(&digest, &manifest_bytes)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| ImageError::InvalidDocument {
                what: "config",
                digest: Digest::of(&config_bytes),
                reason: e.to_string(),
            })?;
        Ok(StoredImage {
            digest,
            manifest_bytes,
            config_bytes,
            manifest,
            config,
        })
    }
}

fn parse_manifest(digest: &Digest, bytes: &[u8]) -> Result<ImageManifest, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidDocument {
        what: "manifest",
        digest: digest.clone(),
        reason: e.to_string(),
    })
}

/// The config digest `manifest` (whose digest is `digest`) names.
fn config_digest(digest: &Digest, manifest: &ImageManifest) -> Result<Digest, ImageError> {
    manifest
        .config()
        .digest()
        .to_string()
        .parse()
        .map_err(|e: crate::DigestParseError| ImageError::InvalidDocument {
            what: "manifest",
            digest: digest.clone(),
            reason: format!("config: {e}"),
        })
}
