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
//! stat cache); anything else is not remembered, and a key made for
//! another layer format (`key::FORMAT`) is not used. The file is replaced
//! atomically and not flushed: losing it, or reading one that does not
//! parse, costs one full walk, never a wrong key.

use std::path::{Path, PathBuf};

use kiln_image::{Digest, Store, TreeStamp, write_atomic_unflushed_if_changed};
use serde::{Deserialize, Serialize};

use crate::CacheError;
use crate::key::{FORMAT, LayerKey};

/// What is remembered of one folder: the key of its last settled walk.
#[derive(Debug, Serialize, Deserialize)]
pub struct Remembered {
    /// The layer format ([`FORMAT`]) the key was made for: a key of another
    /// format may still have an entry, of layers in that format.
    format: u32,
    stamp: Digest,
    epoch: u64,
    key: LayerKey,
}

impl Remembered {
    /// The remembered key, if it was made at `epoch`, for this layer
    /// format, from a walk that saw the folder as `stamp` says.
    pub fn key(&self, stamp: &TreeStamp, epoch: u64) -> Option<&LayerKey> {
        let same = self.format == FORMAT && self.stamp == stamp.digest && self.epoch == epoch;
        same.then_some(&self.key)
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
        format: FORMAT,
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
    folder_file(store, folder, "json")
}

/// The name of `folder`'s files in `kiln/cache/stamps`: the sha256 of its
/// path, in hex.
pub(crate) fn folder_name(folder: &Path) -> String {
    Digest::of(folder.as_os_str().as_encoded_bytes())
        .hex()
        .to_owned()
}

/// `folder`'s file with `extension` in `store`'s `kiln/cache/stamps`: its
/// remembered key (`json`) or its own stat cache (`stat.bin`).
pub(crate) fn folder_file(store: &Store, folder: &Path, extension: &str) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("cache")
        .join("stamps")
        .join(format!("{}.{extension}", folder_name(folder)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(byte: u8, settled: bool) -> TreeStamp {
        TreeStamp {
            digest: Digest::of(&[byte]),
            settled,
        }
    }

    #[test]
    fn a_key_is_recalled_only_under_its_stamp_epoch_and_format() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let folder = tmp.path().join("root");
        let key = LayerKey(Digest::of(b"key"));
        assert!(recall(&store, &folder).is_none(), "nothing yet");

        remember(&store, &folder, &stamp(1, false), 7, &key).expect("remember");
        assert!(recall(&store, &folder).is_none(), "an unsettled stamp");

        remember(&store, &folder, &stamp(1, true), 7, &key).expect("remember");
        let held = recall(&store, &folder).expect("remembered");
        assert_eq!(held.key(&stamp(1, true), 7), Some(&key));
        assert_eq!(
            held.key(&stamp(1, false), 7),
            Some(&key),
            "the stamp decides"
        );
        assert_eq!(held.key(&stamp(2, true), 7), None, "another stamp");
        assert_eq!(held.key(&stamp(1, true), 8), None, "another epoch");
        assert!(
            recall(&store, &tmp.path().join("other")).is_none(),
            "another folder"
        );

        let path = file(&store, &folder);
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        old["format"] = serde_json::json!(FORMAT - 1);
        std::fs::write(&path, old.to_string()).expect("write");
        let held = recall(&store, &folder).expect("parses");
        assert_eq!(held.key(&stamp(1, true), 7), None, "another layer format");

        std::fs::write(&path, b"{\"stamp\":").expect("write");
        assert!(recall(&store, &folder).is_none(), "a torn file");
    }
}
