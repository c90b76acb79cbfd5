//! Layer cache keys and what they are made of.

use kiln_image::{Digest, to_canonical_json};
use serde::{Deserialize, Serialize};

use crate::CacheError;

/// Bumped whenever the layer format changes, so that old entries miss.
/// 2: layers are gzipped in fixed 1 MiB blocks by `kiln_gzip`.
pub const FORMAT: u32 = 2;

/// One entry of a layer, as it will be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// In-image path.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// Permission bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Content digest, for files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<Digest>,
    /// Link target, for symlinks.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
}

/// Everything a layer's bytes depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInput {
    /// The parent layer's key, the base's manifest digest, or `scratch`.
    pub parent: String,
    /// mtime of every entry.
    pub epoch: u64,
    /// The layer's canonical definition from the recipe (never a secret
    /// value; a secret's name at most).
    pub definition: serde_json::Value,
    /// The entries, sorted by path.
    pub inputs: Vec<InputRecord>,
}

/// A layer's cache key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayerKey(pub Digest);

impl LayerKey {
    /// The key of `input`: sha256 over its canonical JSON and [`FORMAT`].
    pub fn of(input: &KeyInput) -> Result<LayerKey, CacheError> {
        let mut sorted = input.clone();
        sorted.inputs.sort_by(|a, b| a.path.cmp(&b.path));
        let doc = serde_json::json!({ "format": FORMAT, "layer": sorted });
        let bytes = to_canonical_json(&doc)?;
        Ok(LayerKey(Digest::of(&bytes)))
    }
}

impl std::fmt::Display for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
