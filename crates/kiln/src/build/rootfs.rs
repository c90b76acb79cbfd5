//! Stage 1 for `rootfs:` bases: a root filesystem (folder or tar file)
//! becomes a one-layer base image in the store. Its layer is cached like a
//! file layer: the key is the tree's content and metadata (files by content
//! digest through the stat cache, so an unchanged tree is walked and
//! stat-ed, not read), or for a tar file the file's own digest. The base's
//! config is empty and its manifest depends only on the layer and the
//! epoch, so the same tree in two folders gives the same digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_cache::key::{InputRecord, KeyInput, LayerKey};
use kiln_cache::stat::StatCache;
use kiln_image::{BaseImage, ImageSpec, LayerRecord, RuntimeConfig, Store};
use serde_json::json;

use super::snapshot::input_records;
use crate::KilnError;

/// Import the root filesystem at `path` as a base image for `platform`
/// (what its config records). The build's stat cache `stat` is locked only
/// while it is used, not while the folder is walked: the file layers'
/// contents are read from it meanwhile.
pub(super) fn import(
    store: &Store,
    path: &Path,
    epoch: u64,
    platform: &kiln_image::Platform,
    stat: &super::SharedStat,
) -> Result<BaseImage, KilnError> {
    let folder = kiln_image::rootfs_is_folder(path)?;
    let mut staging = None;
    // A folder's files are checked on the bytes written against the digests
    // the key was made from (one read).
    let mut expected = BTreeMap::new();
    // A tar file is checked the same way, as a whole, while it is unpacked.
    let (key, source) = if folder {
        // An unchanged folder is known by one walk of its stats.
        if let Some(blob) = remembered(store, path, epoch)? {
            move_entries(store, path, &mut super::lock_stat(stat))?;
            return base_image(store, platform, epoch, blob);
        }
        // One stat per entry: the walk's, handed on to the stat cache.
        let walk = kiln_image::rootfs_folder_walk(path)?;
        // The folder's files have a stat cache of their own, so that the
        // shared one, which every build reads, stays small; entries earlier
        // versions kept in the shared one move over.
        let mut own = StatCache::load_for_folder(store, path);
        own.take_from(
            &mut super::lock_stat(stat),
            walk.files.keys().map(PathBuf::as_path),
        );
        if own.knows_none(walk.files.iter().map(|(p, m)| (p.as_path(), m))) {
            let base = written_first(store, path, epoch, platform, &mut own, walk)?;
            own.save()?;
            return Ok(base);
        }
        let (inputs, _) = input_records(&mut own, path, &walk.entries, &walk.files)?;
        own.save()?;
        expected = super::snapshot::file_digests(&inputs);
        let key = key(epoch, "folder", inputs)?;
        kiln_cache::stamps::remember(store, path, &walk.stamp, epoch, &key)?;
        (key, Source::Folder(walk.entries))
    } else {
        let digest = super::lock_stat(stat).digest(path)?;
        let record = InputRecord {
            path: "/".into(),
            kind: "tar".into(),
            mode: 0,
            uid: 0,
            gid: 0,
            digest: Some(digest.clone()),
            target: None,
        };
        (key(epoch, "tar", vec![record])?, Source::Tar(digest))
    };
    let blob = match kiln_cache::entry::lookup(store, &key)?.into_hit() {
        Some(blob) => blob,
        None => {
            let entries = match source {
                Source::Folder(entries) => entries,
                Source::Tar(digest) => {
                    let dir = kiln_image::rootfs_staging(store)?;
                    let entries =
                        kiln_image::rootfs_tar_entries(path, dir.path(), &digest, store.cancel())?;
                    staging = Some(dir);
                    entries
                }
            };
            let blob = kiln_image::write_layer_expecting(store, entries, epoch, &expected)?;
            kiln_cache::entry::record(store, &key, &blob)?;
            blob
        }
    };
    drop(staging);
    base_image(store, platform, epoch, blob)
}

/// The base of the folder at `path` whose walk is `walk`, when the stat
/// cache knows none of its files (a first build from it, an empty store): every file would be read twice, hashed for the key and then
/// written. Instead the layer is written first, each file hashed on the
/// bytes written (one read), and the key is made from those digests
/// after; a cache entry found then is taken (the same content gives the
/// same layer, the one written is left to gc), else the layer written is
/// recorded under the key. Keys are the same as the other way.
fn written_first(
    store: &Store,
    path: &Path,
    epoch: u64,
    platform: &kiln_image::Platform,
    stat: &mut StatCache,
    walk: kiln_image::FolderWalk,
) -> Result<BaseImage, KilnError> {
    let since = stat.clock();
    let (written, digests) = kiln_image::write_layer_hashing(store, walk.entries.clone(), epoch)?;
    for (source, digest) in &digests {
        if let Some(meta) = walk.files.get(source) {
            stat.record_noted(source, meta, digest.clone(), since);
        }
    }
    // Served from what was just recorded, except a file modified within
    // the stat cache's racy window, which is hashed again: the key must
    // name what the layer holds, so one that changed since is refused, as
    // the layer writer refuses a file that changed after it was hashed.
    let (inputs, _) = input_records(stat, path, &walk.entries, &walk.files)?;
    for (entry, input) in walk.entries.iter().zip(&inputs) {
        if let kiln_image::EntryKind::File { source } = &entry.kind {
            if digests.get(source) != input.digest.as_ref() {
                return Err(kiln_image::ImageError::SourceChanged {
                    path: source.clone(),
                }
                .into());
            }
        }
    }
    let key = key(epoch, "folder", inputs)?;
    kiln_cache::stamps::remember(store, path, &walk.stamp, epoch, &key)?;
    let blob = match kiln_cache::entry::lookup(store, &key)?.into_hit() {
        Some(cached) => cached,
        None => {
            kiln_cache::entry::record(store, &key, &written)?;
            written
        }
    };
    base_image(store, platform, epoch, blob)
}

/// Move what the shared stat cache `stat` holds of the files below the
/// folder at `path` (where versions before the folder's own cache kept
/// them) into the folder's own, once: a build that finds its key from the
/// stamp never loads the folder's cache otherwise.
fn move_entries(store: &Store, path: &Path, stat: &mut StatCache) -> Result<(), KilnError> {
    let Ok(folder) = path.canonicalize() else {
        return Ok(());
    };
    if stat.holds_under(&folder) {
        let mut own = StatCache::load_for_folder(store, path);
        own.take_under(stat, &folder);
        own.save()?;
    }
    Ok(())
}

/// The layer remembered for the folder at `path`, when what it was
/// remembered under (see [`kiln_cache::stamps`]) is what the folder's stamp
/// is now and the layer is still in the store. Nothing is walked when
/// nothing is remembered (the first build from a folder).
fn remembered(
    store: &Store,
    path: &Path,
    epoch: u64,
) -> Result<Option<kiln_image::LayerBlob>, KilnError> {
    let Some(held) = kiln_cache::stamps::recall(store, path) else {
        return Ok(None);
    };
    let stamp = kiln_image::rootfs_folder_stamp(path)?;
    let Some(key) = held.key(&stamp, epoch) else {
        return Ok(None);
    };
    Ok(kiln_cache::entry::lookup(store, key)?.into_hit())
}

/// The one-layer base image of `blob`, assembled and read back.
fn base_image(
    store: &Store,
    platform: &kiln_image::Platform,
    epoch: u64,
    blob: kiln_image::LayerBlob,
) -> Result<BaseImage, KilnError> {
    let spec = ImageSpec {
        platform: platform.clone(),
        base: None,
        config: RuntimeConfig::default(),
        layers: vec![LayerRecord {
            blob,
            created_by: "kiln rootfs base".into(),
        }],
        created_epoch: epoch,
        annotations: BTreeMap::new(),
    };
    let image = kiln_image::assemble(store, &spec)?;
    Ok(kiln_image::load_image(store, &image.manifest.digest)?)
}

/// What a rootfs is read from: a folder's entries (its files' digests are
/// in the key), or a tar file's digest.
enum Source {
    Folder(Vec<kiln_image::LayerEntry>),
    Tar(kiln_image::Digest),
}

/// The rootfs layer's cache key: no parent, the epoch, what kind of source
/// it is, and its entries (or the tar file's digest).
fn key(epoch: u64, source: &str, inputs: Vec<InputRecord>) -> Result<LayerKey, KilnError> {
    Ok(LayerKey::of(&KeyInput {
        parent: "rootfs".into(),
        epoch,
        definition: json!({ "rootfs": source }),
        inputs,
    })?)
}
