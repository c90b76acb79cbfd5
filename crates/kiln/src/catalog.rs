//! What the store holds, for `kiln images` and `kiln inspect`.

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
    pub digest: String,
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
            digest: digest.to_string(),
            tags,
            channels,
            size,
            test,
        });
    }
    Ok(out)
}

/// An image's manifest, config and layers, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Image name.
    pub name: String,
    /// Manifest digest.
    pub digest: String,
    /// The manifest, as stored.
    pub manifest: serde_json::Value,
    /// The config (holds `history` and `rootfs`), as stored.
    pub config: serde_json::Value,
}

/// Manifest, config, layers and history of the image `reference` names.
pub fn inspect(store: &Store, reference: &str) -> Result<Inspection, KilnError> {
    let resolved = reference::resolve(store, reference)?;
    let image = kiln_image::load_image(store, &resolved.digest)?;
    Ok(Inspection {
        name: resolved.name,
        digest: resolved.digest.to_string(),
        manifest: image.manifest,
        config: image.config,
    })
}
