//! Why a layer was rebuilt: the current layer compared with the same layer
//! of the image's last build (which input file, which key of the recipe,
//! which parent changed).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use kiln_image::{Store, write_atomic_unflushed_if_changed};
use serde::{Deserialize, Serialize};

use crate::CacheError;
use crate::entry::MissReason;
use crate::key::{InputRecord, KeyInput, LayerKey};

/// One layer as it was built: its key and what the key was made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSnapshot {
    /// The layer's name in the recipe.
    pub name: String,
    /// Its key.
    pub key: LayerKey,
    /// What the key was made of.
    pub input: KeyInput,
    /// For messages: in-image path → source path relative to the context.
    pub sources: BTreeMap<String, String>,
}

/// The layers of an image's last build, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBuild {
    /// The layers.
    pub layers: Vec<LayerSnapshot>,
}

fn path(store: &Store, image: &str) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("cache")
        .join("last")
        .join(format!("{image}.json"))
}

/// The last build of `image`, if any was recorded and is readable.
pub fn load_last(store: &Store, image: &str) -> LastBuild {
    std::fs::read(path(store, image))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Record `last` as `image`'s last build.
pub fn save_last(store: &Store, image: &str, last: &LastBuild) -> Result<(), CacheError> {
    let file = path(store, image);
    let bytes = serde_json::to_vec(last).map_err(|source| CacheError::Corrupt {
        path: file.clone(),
        source,
    })?;
    // The same build again records the same snapshots: nothing to write.
    // Not flushed to disk: it only explains the next build's misses, and
    // one lost or torn by a crash reads as no last build.
    write_atomic_unflushed_if_changed(&file, &bytes)?;
    Ok(())
}

/// One reason a layer was built rather than reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Why {
    /// `--no-cache`.
    NoCache,
    /// No earlier build of this layer to compare with.
    FirstBuild,
    /// The layer below changed (or the base).
    ParentChanged,
    /// The epoch (`SOURCE_DATE_EPOCH` or `[image] epoch`) changed.
    EpochChanged,
    /// A key of the layer's definition in the recipe changed.
    DefinitionChanged {
        /// Dotted paths of what changed, e.g. `files[0].exclude`.
        keys: Vec<String>,
    },
    /// An input file's content or metadata changed.
    InputChanged {
        /// In-image path.
        path: String,
        /// Source path relative to the context, when known.
        source: Option<String>,
        /// What about it changed: `content`, `mode`, `owner`, `kind`, `target`.
        what: Vec<&'static str>,
    },
    /// An entry is new (a file a glob now matches, say).
    InputAdded {
        /// In-image path.
        path: String,
        /// Source path relative to the context, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// An entry is gone.
    InputRemoved {
        /// In-image path.
        path: String,
    },
    /// Same inputs as before, but the cached blob is gone from the store.
    BlobMissing {
        /// The blob.
        digest: String,
    },
    /// Same inputs as before, but the cached blob's bytes changed.
    BlobCorrupt {
        /// The blob.
        digest: String,
    },
    /// Same inputs as the last build, yet no entry (the cache was cleared).
    NotCached,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NoCache => f.write_str("--no-cache"),
            Why::FirstBuild => f.write_str("first build of this layer"),
            Why::ParentChanged => f.write_str("the layer below (or the base) changed"),
            Why::EpochChanged => f.write_str("the epoch changed"),
            Why::DefinitionChanged { keys } => write!(f, "the recipe changed: {}", keys.join(", ")),
            Why::InputChanged { path, source, what } => {
                let from = source
                    .as_ref()
                    .map(|s| format!(" (from {s})"))
                    .unwrap_or_default();
                write!(f, "{path}{from} changed: {}", what.join(", "))
            }
            Why::InputAdded { path, source } => match source {
                Some(source) => write!(f, "{path} (from {source}) is new"),
                None => write!(f, "{path} is new"),
            },
            Why::InputRemoved { path } => write!(f, "{path} is gone"),
            Why::BlobMissing { digest } => {
                write!(f, "cached blob {digest} is missing from the store")
            }
            Why::BlobCorrupt { digest } => write!(f, "cached blob {digest} is corrupt"),
            Why::NotCached => f.write_str("not in the cache"),
        }
    }
}

/// Dotted paths where two JSON values differ.
fn differences(
    before: &serde_json::Value,
    now: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (before, now) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => differences(x, y, &here, out),
                    _ => out.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(if at.is_empty() {
            "(the layer)".to_owned()
        } else {
            at.to_owned()
        }),
    }
}

fn input_changes(before: &InputRecord, now: &InputRecord) -> Vec<&'static str> {
    let mut what = Vec::new();
    if before.kind != now.kind {
        what.push("kind");
    }
    if before.digest != now.digest {
        what.push("content");
    }
    if before.mode != now.mode {
        what.push("mode");
    }
    if (before.uid, before.gid) != (now.uid, now.gid) {
        what.push("owner");
    }
    if before.target != now.target {
        what.push("target");
    }
    what
}

/// Why `now` was not a hit, given the cache's own answer and the same layer
/// of the last build.
pub fn explain(
    previous: Option<&LayerSnapshot>,
    now: &LayerSnapshot,
    miss: &MissReason,
) -> Vec<Why> {
    let Some(before) = previous else {
        return vec![Why::FirstBuild];
    };
    if before.key == now.key {
        return vec![match miss {
            MissReason::BlobMissing(d) => Why::BlobMissing {
                digest: d.to_string(),
            },
            MissReason::BlobCorrupt(d) => Why::BlobCorrupt {
                digest: d.to_string(),
            },
            MissReason::NoEntry => Why::NotCached,
        }];
    }
    let mut why = Vec::new();
    if before.input.parent != now.input.parent {
        why.push(Why::ParentChanged);
    }
    if before.input.epoch != now.input.epoch {
        why.push(Why::EpochChanged);
    }
    let mut keys = Vec::new();
    differences(
        &before.input.definition,
        &now.input.definition,
        "",
        &mut keys,
    );
    if !keys.is_empty() {
        why.push(Why::DefinitionChanged { keys });
    }
    let old: BTreeMap<&str, &InputRecord> = before
        .input
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), i))
        .collect();
    let new: BTreeMap<&str, &InputRecord> = now
        .input
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), i))
        .collect();
    for (path, record) in &new {
        match old.get(path) {
            None => why.push(Why::InputAdded {
                path: (*path).to_owned(),
                source: now.sources.get(*path).cloned(),
            }),
            Some(was) => {
                let what = input_changes(was, record);
                if !what.is_empty() {
                    why.push(Why::InputChanged {
                        path: (*path).to_owned(),
                        source: now.sources.get(*path).cloned(),
                        what,
                    });
                }
            }
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        why.push(Why::InputRemoved {
            path: (*path).to_owned(),
        });
    }
    if why.is_empty() {
        // Only the key's format changed.
        why.push(Why::NotCached);
    }
    why
}
