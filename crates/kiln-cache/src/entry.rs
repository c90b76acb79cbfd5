//! Cache entries: a layer key → the blob it produced.
//!
//! An entry is written atomically, and only after its blob is in the store
//! (and flushed there); the entry itself is not flushed: one lost or torn
//! by a crash is a miss.
//! A hit is served only when the blob is there with the bytes it had: the
//! blob file's stat is remembered when the entry is written and, if it
//! changed since, the blob is hashed again before it is trusted.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use kiln_image::{Digest, LayerBlob, Store, write_atomic_unflushed};
use serde::{Deserialize, Serialize};

use crate::CacheError;
use crate::key::LayerKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BlobStat {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    digest: Digest,
    diff_id: Digest,
    size: u64,
    blob_stat: BlobStat,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The blob for this key, present and verified.
    Hit(LayerBlob),
    /// Build the layer.
    Miss(MissReason),
}

impl Lookup {
    /// The blob of a hit; `None` for a miss, whatever its reason.
    pub fn into_hit(self) -> Option<LayerBlob> {
        match self {
            Lookup::Hit(blob) => Some(blob),
            Lookup::Miss(_) => None,
        }
    }
}

/// Why a lookup missed, as far as the cache itself can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// No layer was ever built with this key.
    NoEntry,
    /// The key's blob is gone from the store.
    BlobMissing(Digest),
    /// The key's blob is there but its bytes are not the ones recorded.
    BlobCorrupt(Digest),
}

fn path(store: &Store, key: &LayerKey) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("cache")
        .join("layers")
        .join(format!("{}.json", key.0.hex()))
}

fn blob_stat(store: &Store, digest: &Digest) -> Option<BlobStat> {
    let meta = std::fs::metadata(store.blob_path(digest)).ok()?;
    Some(BlobStat {
        size: meta.size(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ino: meta.ino(),
    })
}

fn blob_is_intact(store: &Store, digest: &Digest) -> Result<bool, CacheError> {
    Ok(crate::stat::hash_file(&store.blob_path(digest))? == *digest)
}

/// Look `key` up. Never a hit for a blob that is missing or changed.
pub fn lookup(store: &Store, key: &LayerKey) -> Result<Lookup, CacheError> {
    let file = path(store, key);
    let entry: Entry = match std::fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(entry) => entry,
            // Entries are written atomically: an unreadable one was not
            // written by kiln. Rebuilding is always right.
            Err(_) => return Ok(Lookup::Miss(MissReason::NoEntry)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Lookup::Miss(MissReason::NoEntry));
        }
        Err(source) => return Err(CacheError::Io { path: file, source }),
    };
    let Some(now) = blob_stat(store, &entry.digest) else {
        return Ok(Lookup::Miss(MissReason::BlobMissing(entry.digest)));
    };
    if now != entry.blob_stat {
        if now.size != entry.size || !blob_is_intact(store, &entry.digest)? {
            return Ok(Lookup::Miss(MissReason::BlobCorrupt(entry.digest)));
        }
        // Same bytes, new stat (copied, touched): remember the new stat.
        write_entry(
            &file,
            &Entry {
                blob_stat: now,
                ..entry.clone()
            },
        )?;
    }
    Ok(Lookup::Hit(LayerBlob {
        digest: entry.digest,
        diff_id: entry.diff_id,
        size: entry.size,
    }))
}

fn write_entry(file: &std::path::Path, entry: &Entry) -> Result<(), CacheError> {
    let bytes = serde_json::to_vec_pretty(entry).map_err(|source| CacheError::Corrupt {
        path: file.to_owned(),
        source,
    })?;
    // Not flushed to disk (its blob is, before it): an entry lost or torn
    // by a crash is a miss, and the layer is built again.
    write_atomic_unflushed(file, &bytes)?;
    Ok(())
}

/// Remember that `key` produced `blob`. Call it only once the blob is in
/// the store; a blob that is not there is refused.
pub fn record(store: &Store, key: &LayerKey, blob: &LayerBlob) -> Result<(), CacheError> {
    let Some(stat) = blob_stat(store, &blob.digest) else {
        return Err(CacheError::Store(kiln_image::ImageError::MissingBlob {
            digest: blob.digest.clone(),
            path: store.blob_path(&blob.digest),
        }));
    };
    write_entry(
        &path(store, key),
        &Entry {
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
            blob_stat: stat,
        },
    )
}

/// One cache entry file as found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The entry's file.
    pub path: PathBuf,
    /// The layer blob it names, or `None` when the file is not an entry
    /// kiln wrote (unreadable, torn by hand).
    pub blob: Option<Digest>,
}

/// Every cache entry in the store, sorted by file. The blobs they name are
/// roots of gc: a cached layer stays until its entry goes.
pub fn stored(store: &Store) -> Result<Vec<StoredEntry>, CacheError> {
    let files = store.bookkeeping_files("cache/layers")?;
    Ok(files
        .into_iter()
        .map(|path| {
            let blob = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
                .map(|e| e.digest);
            StoredEntry { path, blob }
        })
        .collect())
}

/// Remove the cache entry at `path` (one [`stored`] listed); whether it
/// was there. A missing entry only costs a rebuild of its layer.
pub fn remove(path: &std::path::Path) -> Result<bool, CacheError> {
    Ok(kiln_image::remove_if_present(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a crash can leave of an entry that was not flushed: nothing, an
    /// empty file, zeros, or the start of it. Each is a miss, never an
    /// error and never a hit.
    #[test]
    fn an_entry_lost_or_torn_by_a_crash_is_a_miss() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path()).expect("store");
        let blob = kiln_image::write_layer(&store, Vec::new(), 0).expect("layer");
        let key = LayerKey(Digest::of(b"key"));
        record(&store, &key, &blob).expect("record");
        assert_eq!(
            lookup(&store, &key).expect("lookup"),
            Lookup::Hit(blob.clone())
        );
        let file = path(&store, &key);
        let whole = std::fs::read(&file).expect("entry");
        let torn: [Option<Vec<u8>>; 4] = [
            None,
            Some(Vec::new()),
            Some(vec![0; whole.len()]),
            Some(whole[..whole.len() / 2].to_vec()),
        ];
        for left in torn {
            match &left {
                None => std::fs::remove_file(&file).expect("rm"),
                Some(bytes) => std::fs::write(&file, bytes).expect("write"),
            }
            assert_eq!(
                lookup(&store, &key).expect("lookup"),
                Lookup::Miss(MissReason::NoEntry),
                "{left:?}"
            );
        }
    }
}
