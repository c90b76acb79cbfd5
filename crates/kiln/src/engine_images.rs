//! What the container engine already holds, so that nothing it holds is
//! sent to it or read out of it again: images are found by id (the digest
//! of their config), layers the engine has are left out of what is loaded,
//! and a `docker-daemon:` base is imported once per engine image id.
//!
//! The bookkeeping lives beside the store (`<store>/kiln/engine/`). It is a
//! hint, never the truth: every entry is checked against the engine (one
//! inspect) before it is used, and an engine that dropped an image is not
//! an error, it is loaded again.
//!
//! The engine is shared by every kiln process and every store, so the
//! names kiln gives images there live under a namespace of the store
//! ([`engine_namespace`]): `kiln gc` of a store removes what that store's
//! runs left and nothing else. Images cannot carry a label without another
//! digest, so the namespace is in the name. A name given for one run (a
//! test, a run layer) is unique to that run ([`run_name`]) and removed by
//! it: two runs using one image each remove only their own name, and the
//! image goes with the last.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_engine::{Engine, EngineError};
use kiln_image::{BaseImage, Digest, Store};

use crate::KilnError;
use crate::chunk_reader::ChunkReader;

/// How many chunks of a `docker save` (tens of KiB each) may wait for the
/// import: enough to keep both sides busy, bounded in memory.
const SAVE_CHUNKS_IN_FLIGHT: usize = 64;

/// The prefix of every image name this store's builds and tests give in
/// the engine: `kiln.local/` and 12 hex digits of the digest of the store's
/// absolute path. `kiln gc` of the store removes the names under it.
pub fn engine_namespace(store: &Store) -> String {
    let root = std::fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
    let id = Digest::of(root.as_os_str().as_bytes());
    format!("kiln.local/{}", &id.hex()[..12])
}

/// A name no other run gives: `NAMESPACE/REPO:HEX16-UNIQUE`, where HEX16
/// starts `hex` (the image's digest) and UNIQUE is this process and a
/// count. The run that gives it removes it.
pub(crate) fn run_name(store: &Store, repo: &str, hex: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let hex = hex.get(..16).unwrap_or(hex);
    format!(
        "{}/{repo}:{hex}-{:x}-{count:x}{nanos:x}",
        engine_namespace(store),
        std::process::id()
    )
}

/// Where the bookkeeping of `store` lives.
fn engine_dir(store: &Store) -> PathBuf {
    store.bookkeeping_dir().join("engine")
}

/// The file that records the layers of the image whose config is `config`.
fn image_record(store: &Store, config: &Digest) -> PathBuf {
    engine_dir(store).join("images").join(config.hex())
}

/// The file that records which stored base an engine image id became.
fn base_record(store: &Store, engine_id: &Digest) -> PathBuf {
    engine_dir(store).join("bases").join(engine_id.hex())
}

fn io(path: PathBuf) -> impl FnOnce(std::io::Error) -> KilnError {
    move |source| KilnError::Io { path, source }
}

/// The digest of the config of the stored image `image`: the id the engine
/// gives it once loaded.
fn config_digest(image: &BaseImage) -> Result<Digest, KilnError> {
    image
        .manifest
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(|d| d.as_str())
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| KilnError::InvalidReference {
            reference: image.manifest_digest.to_string(),
            reason: "its manifest has no valid config digest".into(),
        })
}

/// Remember that the engine was given the image whose config is `config`
/// with the layers `diff_ids` (one per line).
fn record_image(store: &Store, config: &Digest, diff_ids: &[Digest]) -> Result<(), KilnError> {
    let text: String = diff_ids.iter().map(|d| format!("{d}\n")).collect();
    kiln_image::write_atomic(&image_record(store, config), text.as_bytes())?;
    Ok(())
}

/// How many of the first layers of `diff_ids` the engine holds, by the
/// images recorded as given to it that it still holds; 0 when none.
async fn held_layers(
    store: &Store,
    engine: &dyn Engine,
    diff_ids: &[Digest],
) -> Result<usize, KilnError> {
    let dir = engine_dir(store).join("images");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut candidates: Vec<(usize, String)> = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let layers: Vec<&str> = text.lines().collect();
        let prefix = !layers.is_empty()
            && layers.len() <= diff_ids.len()
            && layers.iter().zip(diff_ids).all(|(a, b)| *a == b.as_str());
        if prefix {
            let name = entry.file_name().to_string_lossy().into_owned();
            candidates.push((layers.len(), format!("sha256:{name}")));
        }
    }
    // The longest prefix first; the first the engine still holds wins.
    candidates.sort_by(|a, b| b.cmp(a));
    for (len, id) in candidates {
        if engine.image_id(&id).await?.is_some() {
            return Ok(len);
        }
    }
    Ok(0)
}

/// Copy the stored image `digest` into the engine, tagged `tag`, sending
/// only the layers the engine does not hold already (a held image costs a
/// load of a few kilobytes that only names it). If the engine dropped a
/// layer it was thought to hold, the whole image is sent.
pub async fn load_into_engine(
    store: &Store,
    engine: &dyn Engine,
    digest: &Digest,
    tag: String,
) -> Result<String, KilnError> {
    let (image, config, names) = lookup(store, engine, digest).await?;
    load(store, engine, &image, &config, names.is_some(), tag).await
}

/// The name to boot the stored image `digest` by, given for this run:
/// `name` (a name of this run's own, under [`engine_namespace`]) on the
/// image the engine holds already (nothing is sent), else `name` after
/// loading it as [`load_into_engine`] does. An image the engine holds by id only is booted by its id and not
/// named, since removing its last name would remove it. The caller removes
/// `name` when done; the image goes with it unless something else names it.
pub async fn ensure_in_engine(
    store: &Store,
    engine: &dyn Engine,
    digest: &Digest,
    name: String,
) -> Result<String, KilnError> {
    match lookup(store, engine, digest).await? {
        (_, config, Some(names)) if names.is_empty() => Ok(config.to_string()),
        (image, config, Some(_)) => match engine.tag_image(config.as_str(), &name).await {
            Ok(()) => Ok(name),
            // Removed in between: loaded again, as any image not held.
            Err(EngineError::NotFound { .. }) => {
                load(store, engine, &image, &config, false, name).await
            }
            Err(e) => Err(e.into()),
        },
        (image, config, None) => load(store, engine, &image, &config, false, name).await,
    }
}

/// The stored image `digest`, its config digest, and the names the engine
/// gives it if the engine holds it.
async fn lookup(
    store: &Store,
    engine: &dyn Engine,
    digest: &Digest,
) -> Result<(BaseImage, Digest, Option<Vec<String>>), KilnError> {
    let image = kiln_image::load_image(store, digest)?;
    let config = config_digest(&image)?;
    let names = engine.image_names(config.as_str()).await?;
    Ok((image, config, names))
}

/// Load `image` (config `config`) as `tag`; `held`: the engine holds the
/// whole image already.
async fn load(
    store: &Store,
    engine: &dyn Engine,
    image: &BaseImage,
    config: &Digest,
    held: bool,
    tag: String,
) -> Result<String, KilnError> {
    let digest = &image.manifest_digest;
    let held = if held {
        image.diff_ids.len()
    } else {
        held_layers(store, engine, &image.diff_ids).await?
    };
    match send(store, engine, digest, &tag, held).await {
        Err(KilnError::Engine(EngineError::LoadFailed { .. })) if held > 0 => {
            send(store, engine, digest, &tag, 0).await?;
        }
        other => other?,
    }
    record_image(store, config, &image.diff_ids)?;
    Ok(tag)
}

/// Make the engine hold `base` as an image of its own, named
/// `NAMESPACE/base:HEX16` (kiln's engine-side build cache, kept after the
/// build and removed by `kiln gc`), so that images built on it send only
/// their own layers, now and in later builds. A base the engine holds
/// under another store's cache name gets this store's name too, so that
/// the other store's gc does not take it from this one's builds; one the
/// engine holds under other names (a `docker-daemon:` base) is left as it
/// is. The name the engine knows it by: this store's name when it has it,
/// else its id (one inspect when it was held already).
pub(crate) async fn hold_base(
    store: &Store,
    engine: &dyn Engine,
    base: &BaseImage,
) -> Result<String, KilnError> {
    let config = config_digest(base)?;
    let name = format!("{}/base:{}", engine_namespace(store), &config.hex()[..16]);
    match engine.image_names(config.as_str()).await? {
        Some(names) => {
            let others_cache =
                !names.is_empty() && names.iter().all(|n| n.starts_with("kiln.local/"));
            let mut known_as = config.to_string();
            if names.contains(&name) {
                known_as = name;
            } else if others_cache {
                match engine.tag_image(config.as_str(), &name).await {
                    Ok(()) => known_as = name,
                    // Removed in between: loaded again.
                    Err(EngineError::NotFound { .. }) => {
                        return load_into_engine(store, engine, &base.manifest_digest, name).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            record_image(store, &config, &base.diff_ids)?;
            Ok(known_as)
        }
        None => load_into_engine(store, engine, &base.manifest_digest, name).await,
    }
}

/// Remove every image name under this store's [`engine_namespace`], and
/// the kiln containers created from them, from the engine; the names
/// removed. The caller holds the store's sweep, so no build or test of
/// this store runs: whatever is named there is a leftover or the build
/// cache. Images only lose this store's names: one that another store or
/// the user names too stays, and so does one a container still uses.
pub(crate) async fn remove_leftovers(
    store: &Store,
    engine: &dyn Engine,
) -> Result<Vec<String>, KilnError> {
    let prefix = format!("{}/", engine_namespace(store));
    let names = engine.names_with_prefix(&prefix).await?;
    for name in &names {
        engine.remove_managed_containers_of(name).await?;
        engine.remove_image(name).await?;
    }
    Ok(names)
}

/// Write the docker-loadable archive of `digest` without its first `held`
/// layer blobs, and load it.
async fn send(
    store: &Store,
    engine: &dyn Engine,
    digest: &Digest,
    tag: &str,
    held: usize,
) -> Result<(), KilnError> {
    // The archive is written to a temporary file by a blocking task and
    // streamed to the engine from there: memory stays bounded whatever the
    // image size.
    let tmp = tempfile::NamedTempFile::new_in(store.bookkeeping_dir())
        .or_else(|_| tempfile::NamedTempFile::new())
        .map_err(io(store.bookkeeping_dir()))?;
    let file = tmp.reopen().map_err(io(tmp.path().to_owned()))?;
    let (writer_store, writer_digest, tags) = (store.clone(), digest.clone(), vec![tag.to_owned()]);
    crate::blocking::run(move || {
        kiln_image::write_docker_loadable_holding(
            &writer_store,
            &writer_digest,
            &tags,
            held,
            // Stops within a buffer once the run is cancelled.
            kiln_image::cancel::CancelWriter::new(
                std::io::BufWriter::new(file),
                writer_store.cancel().clone(),
            ),
        )
    })
    .await?;
    let reader = tokio::fs::File::open(tmp.path())
        .await
        .map_err(io(tmp.path().to_owned()))?;
    engine.load_image(Box::new(reader)).await?;
    Ok(())
}

/// The base a `docker-daemon:` reference names, in `store`: one inspect
/// when the engine's image id was imported before (and its blobs are still
/// stored), else `docker save` of that id and an import, recorded by id. A
/// tag moved to another image in the engine has another id: it is imported
/// anew, never served stale.
pub(crate) async fn daemon_base(
    store: &Store,
    engine: &dyn Engine,
    reference: &str,
    base: &str,
) -> Result<BaseImage, KilnError> {
    match find_daemon_base(store, engine, reference, base).await? {
        DaemonBase::Stored(image) => Ok(image),
        DaemonBase::NotStored(id) => import_daemon_base(store, engine, &id, base).await,
    }
}

/// What [`find_daemon_base`] found of a `docker-daemon:` base.
pub(crate) enum DaemonBase {
    /// The engine's image id was imported before, and its blobs are stored.
    Stored(BaseImage),
    /// The engine's image id (the digest of its config), not stored yet:
    /// [`import_daemon_base`] imports it.
    NotStored(Digest),
}

/// The engine's image id for `reference` (one inspect), and the stored base
/// it became if it was imported before. `base` is the recipe's base, for
/// errors.
pub(crate) async fn find_daemon_base(
    store: &Store,
    engine: &dyn Engine,
    reference: &str,
    base: &str,
) -> Result<DaemonBase, KilnError> {
    let id = engine
        .image_id(reference)
        .await?
        .ok_or_else(|| not_held(base))?;
    let id: Digest =
        id.parse().map_err(
            |e: kiln_image::DigestParseError| KilnError::InvalidReference {
                reference: base.to_owned(),
                reason: format!("the engine gave the image id {id:?}: {e}"),
            },
        )?;
    let stored = std::fs::read_to_string(base_record(store, &id))
        .ok()
        .and_then(|text| text.trim().parse::<Digest>().ok())
        .and_then(|manifest| kiln_image::load_image(store, &manifest).ok())
        .filter(|image| image.layers.iter().all(|l| store.has_blob(&l.digest)));
    Ok(match stored {
        Some(image) => DaemonBase::Stored(image),
        None => DaemonBase::NotStored(id),
    })
}

/// The error for a `docker-daemon:` base the engine does not hold.
fn not_held(base: &str) -> KilnError {
    KilnError::InvalidReference {
        reference: base.to_owned(),
        reason: "the container engine holds no such image".into(),
    }
}

/// Import the engine's image `id` (`base` in the recipe) into `store` and
/// record it by id. When the engine keeps it on this host, its layers are
/// read where they lie ([`import_from_disk`]); else, or when that fails,
/// it is saved ([`import_saved`]). Either way the same base, byte for byte.
pub(crate) async fn import_daemon_base(
    store: &Store,
    engine: &dyn Engine,
    id: &Digest,
    base: &str,
) -> Result<BaseImage, KilnError> {
    let image = match import_from_disk(store, engine, id, base).await? {
        Some(image) => image,
        None => import_saved(store, engine, id, base).await?,
    };
    let record = base_record(store, id);
    kiln_image::write_atomic(&record, format!("{}\n", image.manifest_digest).as_bytes())?;
    // The engine holds this image: what is built on it need not send it.
    record_image(store, &config_digest(&image)?, &image.diff_ids)?;
    Ok(image)
}

/// The engine's image `id` imported from where the engine keeps it on this
/// host ([`Engine::image_on_disk`]): its config file and each layer's tar
/// rebuilt from its files and tar-split record, as the engine rebuilds it
/// for a save, but without the engine first writing the whole save to a
/// folder of its own (0.8-0.9 s of a 200 MB base here, docs/benchmarks.md).
/// `None` when the engine does not say where it is, or when what it said
/// does not give the image whose id is `id` (the engine changed it while it
/// was read, or lays it out as this kiln does not know): the image is then
/// saved. What was stored by then is unnamed, for gc.
async fn import_from_disk(
    store: &Store,
    engine: &dyn Engine,
    id: &Digest,
    base: &str,
) -> Result<Option<BaseImage>, KilnError> {
    let on_disk = match engine.image_on_disk(id.as_str()).await {
        Ok(Some(on_disk)) if on_disk.id == id.as_str() => on_disk,
        Ok(_) => return Ok(None),
        Err(EngineError::NotFound { .. }) => return Err(not_held(base)),
        Err(e) => return Err(e.into()),
    };
    let owned = store.clone();
    let source = PathBuf::from(format!("{base} ({id}, read where the engine keeps it)"));
    let layers: Vec<(PathBuf, PathBuf)> = on_disk
        .layers
        .into_iter()
        .map(|l| (l.files, l.tar_split))
        .collect();
    let config = on_disk.config;
    let imported = crate::blocking::run(move || {
        kiln_image::import_engine_layers(&owned, &config, &layers, &source)
    })
    .await;
    match imported {
        Ok(image) if config_digest(&image)? == *id => Ok(Some(image)),
        Ok(_) => Ok(None),
        Err(_) if store.cancel().is_cancelled() => Err(KilnError::Cancelled),
        Err(_) => Ok(None),
    }
}

/// The engine's image `id` imported from `docker save` by id (the tag may
/// move meanwhile), streamed straight into the import as it arrives: one
/// pass, no temporary file (the same checks as any docker-archive: layers
/// byte for byte). The engine's failure is the cause when both fail; a
/// failed or cancelled import stops the save; nothing names the image
/// unless both finish.
async fn import_saved(
    store: &Store,
    engine: &dyn Engine,
    id: &Digest,
    base: &str,
) -> Result<BaseImage, KilnError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<kiln_engine::Bytes>(SAVE_CHUNKS_IN_FLIGHT);
    let (import_store, source) = (store.clone(), PathBuf::from(format!("docker save {id}")));
    let import = crate::blocking::run(move || {
        kiln_image::import_docker_save(&import_store, ChunkReader::new(rx), &source)
    });
    let save = async {
        let saved = engine.save_image(id.as_str(), tx.clone()).await;
        if saved.is_ok() {
            // The end marker: the reader takes the stream as whole.
            let _ = tx.send(kiln_engine::Bytes::new()).await;
        }
        drop(tx);
        saved
    };
    let (saved, imported) = tokio::join!(save, import);
    saved.map_err(|e| match e {
        EngineError::NotFound { .. } => not_held(base),
        other => other.into(),
    })?;
    imported
}

/// The engine id `image` has once loaded: the digest of its config.
pub(crate) fn engine_id(image: &BaseImage) -> Result<Digest, KilnError> {
    config_digest(image)
}
