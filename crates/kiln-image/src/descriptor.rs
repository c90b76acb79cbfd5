//! OCI content descriptors and the media types kiln reads and writes.
//!
//! kiln has its own small [`Descriptor`] rather than oci-spec's: it must keep
//! fields it does not know (a base's `urls`, `data`, `artifactType`) so that
//! base layer descriptors are carried into child manifests unchanged, and it
//! must serialise through [`crate::to_canonical_json`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// `application/vnd.oci.image.manifest.v1+json`
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`: the layers kiln writes.
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar`
pub const MEDIA_TYPE_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's schema 2 manifest.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image config.
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's gzip layer.
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The annotation that names an image in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A reference to a blob: its media type, digest and size, as in manifests
/// and index.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations, such as the ref name in index.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Fields kiln does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with no annotations, platform or other fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: None,
            platform: None,
            extra: BTreeMap::new(),
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    /// Whether its ref name ends in one of cosign's attachment tags
    /// (`sha256-HEX.sig`, `.att`, `.sbom`), which name no image of their
    /// own but the signature, attestations or SBOM of another.
    pub fn names_attachment(&self) -> bool {
        self.ref_name()
            .map(|r| r.rsplit(':').next().unwrap_or(r))
            .is_some_and(is_attachment_tag)
    }

    /// A copy with the ref name annotation set to `name`.
    pub fn with_ref_name(&self, name: &str) -> Self {
        let mut d = self.clone();
        d.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        d
    }
}

/// The platform an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Fields kiln does not know (`os.version`, `os.features`), kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Platform {
    /// The platform of the machine kiln runs on, in OCI's spelling
    /// (`x86_64` is `amd64`, `aarch64` is `arm64`).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_owned(),
            os: std::env::consts::OS.to_owned(),
            variant: variant.map(str::to_owned),
            extra: BTreeMap::new(),
        }
    }
}

/// `os/architecture[/variant]`.
impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image index (`index.json` of a layout, or a multi-platform index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Index {
    pub(crate) fn new(manifests: Vec<Descriptor>) -> Self {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.to_owned()),
            manifests,
            extra: BTreeMap::new(),
        }
    }
}

/// Whether kiln reads `media_type` as a single-image manifest.
pub(crate) fn is_manifest(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// Whether kiln reads `media_type` as an index of manifests.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// Whether kiln accepts `media_type` for a base layer: gzip or plain tar,
/// the only kinds Docker 20.10 can load and run.
pub(crate) fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        MEDIA_TYPE_OCI_LAYER_GZIP
            | MEDIA_TYPE_OCI_LAYER_TAR
            | MEDIA_TYPE_DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Whether `tag` is one of cosign's attachment tags (`sha256-HEX.sig`,
/// `.att`, `.sbom`), which name no image of their own.
pub fn is_attachment_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    match rest.split_once('.') {
        Some((hex, "sig" | "att" | "sbom")) => {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields() -> Result<(), Box<dyn std::error::Error>> {
        let text = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"urls":["https://x"]}"#;
        let d: Descriptor = serde_json::from_str(text)?;
        assert_eq!(d.extra.len(), 1);
        let sorted = r#"{"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":0,"urls":["https://x"]}"#;
        assert_eq!(String::from_utf8(crate::to_canonical_json(&d)?)?, sorted);
        Ok(())
    }
}
