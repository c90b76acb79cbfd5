//! What the store holds, for `kiln images` and `kiln inspect` (which also
//! reads an image from a registry: [`crate::inspect_registry`]).

use std::collections::BTreeMap;

use kiln_image::{Digest, Store};
use kiln_promote::{channel, record};
use serde::Serialize;

use crate::KilnError;
use crate::reference;

/// The outcome of an image's latest test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestStatus {
    /// Every check passed.
    Passed,
    /// A check failed.
    Failed,
    /// Never tested.
    Untested,
}

/// One image of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// Image name.
    pub name: String,
    /// Manifest digest.
    pub digest: Digest,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Channels pointing at it.
    pub channels: Vec<String>,
    /// Config plus layers, compressed, in bytes.
    pub size: u64,
    /// Latest test run.
    pub test: TestStatus,
}

/// Every image the store names, sorted by name then digest.
pub fn images(store: &Store) -> Result<Vec<ImageSummary>, KilnError> {
    let mut by_image: BTreeMap<(String, Digest), (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut channels_of: BTreeMap<String, Vec<(String, Digest)>> = BTreeMap::new();
    for (ref_name, descriptor) in store.refs()? {
        let Some((name, tag)) = ref_name.split_once(':') else {
            continue;
        };
        if kiln_sign::attached::is_attachment_tag(tag) {
            // A signature or attestation manifest, not an image.
            continue;
        }
        let channels = match channels_of.get(name) {
            Some(c) => c,
            None => channels_of
                .entry(name.to_owned())
                .or_insert(channel::all(store, name)?),
        };
        let is_channel = channels.iter().any(|(c, _)| c == tag);
        let entry = by_image
            .entry((name.to_owned(), descriptor.digest.clone()))
            .or_default();
        if is_channel {
            entry.1.push(tag.to_owned());
        } else {
            entry.0.push(tag.to_owned());
        }
    }
    let mut out = Vec::new();
    for ((name, digest), (tags, channels)) in by_image {
        let image = kiln_image::load_image(store, &digest)?;
        let config_size = image.manifest["config"]["size"].as_u64().unwrap_or(0);
        let size = config_size + image.layers.iter().map(|l| l.size).sum::<u64>();
        let test = match record::latest(store, &digest)? {
            Some(r) if r.passed => TestStatus::Passed,
            Some(_) => TestStatus::Failed,
            None => TestStatus::Untested,
        };
        out.push(ImageSummary {
            name,
            digest,
            tags,
            channels,
            size,
            test,
        });
    }
    Ok(out)
}

/// An image's manifest, config and layers: the stored bytes, and the same
/// parsed as oci-spec types.
///
/// Serialised (`kiln inspect`) as `name`, `digest`, and the stored
/// `manifest` and `config` documents with every field they hold, including
/// those oci-spec does not know (Docker's `Healthcheck`).
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Image name.
    pub name: String,
    /// Manifest digest.
    pub digest: Digest,
    /// The manifest, parsed from `manifest_bytes`.
    pub manifest: oci_spec::image::ImageManifest,
    /// The config (holds `history` and `rootfs`), parsed from `config_bytes`.
    pub config: oci_spec::image::ImageConfiguration,
    /// The manifest as stored: its sha256 is `digest`.
    pub manifest_bytes: Vec<u8>,
    /// The config as stored: its sha256 is the manifest's config digest.
    pub config_bytes: Vec<u8>,
    /// For a registry reference that named an image index: that index and
    /// the platform of the entry shown.
    pub index: Option<IndexEntry>,
}

/// The image index a registry reference named, and the entry of it that
/// [`crate::inspect_registry`] followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    /// The index's digest.
    pub digest: Digest,
    /// The followed entry's platform, `OS/ARCH[/VARIANT]`.
    pub platform: String,
}

impl Serialize for Inspection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let document = |bytes: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(bytes).map_err(S::Error::custom)
        };
        let mut out = s.serialize_struct("Inspection", 5)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("digest", &self.digest)?;
        if let Some(index) = &self.index {
            out.serialize_field("index", index)?;
        } else {
            out.skip_field("index")?;
        }
        out.serialize_field("manifest", &document(&self.manifest_bytes)?)?;
        out.serialize_field("config", &document(&self.config_bytes)?)?;
        out.end()
    }
}

/// Manifest, config, layers and history of the image `reference` names.
pub fn inspect(store: &Store, reference: &str) -> Result<Inspection, KilnError> {
    let resolved = reference::resolve(store, reference)?;
    let image = kiln_image::read_image(store, &resolved.digest)?;
    Ok(Inspection {
        name: resolved.name,
        digest: image.digest,
        manifest: image.manifest,
        config: image.config,
        manifest_bytes: image.manifest_bytes,
        config_bytes: image.config_bytes,
        index: None,
    })
}
