//! Keys of `rootfs:` folders remembered by their stamp, so that a warm
//! build of an unchanged root finds its layer key from one walk of stats
//! ([`kiln_image::rootfs_folder_stamp`]), without a record per entry, the
//! stat cache or the key's canonical JSON.
//!
//! One small file per folder (`kiln/cache/stamps/<sha256 of the path>.json`)
//! holds the stamp of the folder's last settled walk, the epoch and the key
//! that walk's own entries made. A stamp stands for its key only because
//! both came from the same walk ([`kiln_image::FolderWalk`]) and the stamp
//! was settled then (every file's stat vouches for its content, as in the
//! stat cache); anything else is not remembered. The file is replaced
//! atomically and not flushed: losing it, or reading one that does not
//! parse, costs one full walk, never a wrong key.

use std::path::{Path, PathBuf};

use kiln_image::{Digest, Store, TreeStamp, write_atomic_unflushed_if_changed};
use serde::{Deserialize, Serialize};

use crate::CacheError;
use crate::key::LayerKey;

/// What is remembered of one folder: the key of its last settled walk.
#[derive(Debug, Serialize, Deserialize)]
pub struct Remembered {
    stamp: Digest,
    epoch: u64,
    key: LayerKey,
}

impl Remembered {
    /// The remembered key, if it was made at `epoch` from a walk that saw
    /// the folder as `stamp` says.
    pub fn key(&self, stamp: &TreeStamp, epoch: u64) -> Option<&LayerKey> {
        (self.stamp == stamp.digest && self.epoch == epoch).then_some(&self.key)
    }
}

/// What is remembered of `folder`, if anything (a file that does not
/// parse is nothing).
pub fn recall(store: &Store, folder: &Path) -> Option<Remembered> {
    let bytes = std::fs::read(file(store, folder)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Remember `key` for `folder` under `stamp` and `epoch`, when the stamp
/// is settled (else nothing is written): both must come from one walk.
pub fn remember(
    store: &Store,
    folder: &Path,
    stamp: &TreeStamp,
    epoch: u64,
    key: &LayerKey,
) -> Result<(), CacheError> {
    if !stamp.settled {
        return Ok(());
    }
    let held = Remembered {
        stamp: stamp.digest.clone(),
        epoch,
        key: key.clone(),
    };
    let path = file(store, folder);
    let bytes = serde_json::to_vec(&held).map_err(|source| CacheError::Corrupt {
        path: path.clone(),
        source,
    })?;
    write_atomic_unflushed_if_changed(&path, &bytes)?;
    Ok(())
}

/// Where `store` remembers `folder`'s key.
fn file(store: &Store, folder: &Path) -> PathBuf {
    let name = Digest::of(folder.as_os_str().as_encoded_bytes());
    store
        .bookkeeping_dir()
        .join("cache")
        .join("stamps")
        .join(format!("{}.json", name.hex()))
}
