//! The stat cache: (path, size, mtime, ctime, inode, device) → content
//! digest, like git's index, so that a rebuild does not hash unchanged
//! inputs again.
//!
//! An entry is trusted only when every stat field matches and the file was
//! last modified well before it was hashed. A file written in the same
//! instant it was hashed ("racily clean") could change again without its
//! mtime moving, so it is hashed anew until it has been still for a while.
//!
//! The cache is one file in the store (`kiln/cache/stat.bin`, in the
//! compact form of the private `stat_file` module), read once when loaded.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_image::{Cancel, Digest, Store, write_atomic_unflushed};
use sha2::{Digest as _, Sha256};

use crate::CacheError;

/// How long a file must have been unmodified when it was hashed for the
/// hash to be trusted later, in nanoseconds.
const RACY_NS: i128 = 2_000_000_000;

/// What the cache compares: a change to any of them means the content may
/// have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) ino: u64,
    pub(crate) dev: u64,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stat {
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// One file's digest and the stat it was hashed at.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) stat: Stat,
    pub(crate) hashed_at_ns: i128,
    pub(crate) digest: Digest,
}

impl Entry {
    /// Whether this entry vouches for a file that now has `stat`.
    fn serves(&self, stat: &Stat) -> bool {
        self.stat == *stat && self.hashed_at_ns - stat.mtime_ns > RACY_NS
    }
}

/// When the files whose digests [`StatCache::record_noted`] remembers
/// started being read ([`StatCache::clock`]).
#[derive(Debug, Clone, Copy)]
pub struct HashedSince(i128);

/// Content digests of input files, remembered by stat.
#[derive(Debug)]
pub struct StatCache {
    file: PathBuf,
    /// By path as bytes: ordered by `memcmp`, where a `PathBuf` key compares
    /// component by component (a tenth of a warm `rootfs:` build's time).
    entries: BTreeMap<OsString, Entry>,
    /// The cache file as it was loaded, kept open: while it is, its inode
    /// cannot be reused, so the same inode at the path when saving means no
    /// other build replaced the file meanwhile.
    loaded: Option<File>,
    dirty: bool,
    hashed: u64,
    /// The store handle's token: hashing stops within a MiB once cancelled.
    cancel: Cancel,
    /// The store, for the section that merges concurrent saves.
    store: Store,
    /// The name of that section: one per cache file.
    section: String,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

impl StatCache {
    /// Load the store's stat cache. A missing or unreadable file is an empty
    /// cache: it only ever saves hashing, so starting over is never wrong.
    pub fn load(store: &Store) -> StatCache {
        StatCache::load_file(store, cache_file(store), "stat-cache".into())
    }

    /// Load the stat cache of the `rootfs:` folder at `folder`: its files
    /// are kept apart from the shared cache, which every build loads whole
    /// and writes back whole when one file changed (a Debian root's 6,800
    /// entries were 650 KB of it, 3-4 ms of each warm build). It is only
    /// read when the folder's remembered key does not serve (see
    /// [`crate::stamps`]).
    pub fn load_for_folder(store: &Store, folder: &Path) -> StatCache {
        let file = crate::stamps::folder_file(store, folder, "stat.bin");
        let section = format!("stat-cache-{}", crate::stamps::folder_name(folder));
        StatCache::load_file(store, file, section)
    }

    fn load_file(store: &Store, file: PathBuf, section: String) -> StatCache {
        let (entries, loaded) = read_entries(&file);
        StatCache {
            entries,
            loaded,
            file,
            dirty: false,
            hashed: 0,
            cancel: store.cancel().clone(),
            store: store.clone(),
            section,
        }
    }

    /// Whether this cache holds an entry of a file below `folder` (a path
    /// as the walk gives them, canonical).
    pub fn holds_under(&self, folder: &Path) -> bool {
        let low = under(folder);
        self.entries
            .range(low.clone()..)
            .next()
            .is_some_and(|(path, _)| path.as_bytes().starts_with(low.as_bytes()))
    }

    /// Move every entry `other` holds below `folder` into this cache (see
    /// [`take_from`](Self::take_from)).
    pub fn take_under(&mut self, other: &mut StatCache, folder: &Path) {
        let low = under(folder);
        let paths: Vec<PathBuf> = other
            .entries
            .range(low.clone()..)
            .take_while(|(path, _)| path.as_bytes().starts_with(low.as_bytes()))
            .map(|(path, _)| PathBuf::from(path))
            .collect();
        self.take_from(other, paths.iter().map(PathBuf::as_path));
    }

    /// Move the entries of `paths` that `other` holds into this cache (a
    /// `rootfs:` folder's files, from the shared cache where earlier
    /// versions kept them): both are then saved without hashing anything
    /// again.
    pub fn take_from<'a>(
        &mut self,
        other: &mut StatCache,
        paths: impl IntoIterator<Item = &'a Path>,
    ) {
        for path in paths {
            if let Some(entry) = other.entries.remove(path.as_os_str()) {
                other.dirty = true;
                let newer = self
                    .entries
                    .get(path.as_os_str())
                    .is_none_or(|mine| mine.hashed_at_ns <= entry.hashed_at_ns);
                if newer {
                    self.entries.insert(path.as_os_str().to_owned(), entry);
                    self.dirty = true;
                }
            }
        }
    }

    /// The sha256 of the file at `path` (followed if a symlink), from the
    /// cache when its stat is unchanged, else by hashing it.
    pub fn digest(&mut self, path: &Path) -> Result<Digest, CacheError> {
        let meta = std::fs::metadata(path).map_err(|source| CacheError::Io {
            path: path.to_owned(),
            source,
        })?;
        self.digest_noted(path, &meta)
    }

    /// [`digest`](Self::digest) of a regular file whose metadata the caller
    /// has just read (a walk's, as [`kiln_image::rootfs_folder_walk`] notes
    /// it): the file is not stat-ed again.
    pub fn digest_noted(&mut self, path: &Path, meta: &Metadata) -> Result<Digest, CacheError> {
        let stat = Stat::of(meta);
        if let Some(entry) = self
            .entries
            .get(path.as_os_str())
            .filter(|e| e.serves(&stat))
        {
            return Ok(entry.digest.clone());
        }
        let hashed_at_ns = now_ns();
        let digest = hash_file_until(path, &self.cancel)?;
        self.hashed += 1;
        self.entries.insert(
            path.as_os_str().to_owned(),
            Entry {
                stat,
                hashed_at_ns,
                digest: digest.clone(),
            },
        );
        self.dirty = true;
        Ok(digest)
    }

    /// Hash, on every core, the files among `paths` whose digest the cache
    /// cannot serve, so that the [`digest`](Self::digest) calls that follow
    /// are served from memory. A cold build otherwise hashes its inputs one
    /// by one on one core before compressing can start.
    ///
    /// Errors are left for `digest` to report, on the path it was asked
    /// for; a file modified within the racy window is hashed again there.
    pub fn prefetch<'a>(&mut self, paths: impl IntoIterator<Item = &'a Path>) {
        self.prefetch_noted(paths.into_iter().map(|p| (p, None)));
    }

    /// [`prefetch`](Self::prefetch), each path with its metadata when the
    /// caller has just read it (see [`digest_noted`](Self::digest_noted)),
    /// so that only the files it does not know are stat-ed.
    pub fn prefetch_noted<'a>(
        &mut self,
        files: impl IntoIterator<Item = (&'a Path, Option<&'a Metadata>)>,
    ) {
        let todo: Vec<(&Path, Stat)> = files
            .into_iter()
            .filter_map(|(path, meta)| {
                let stat = match meta {
                    Some(meta) => Stat::of(meta),
                    None => Stat::of(&std::fs::metadata(path).ok()?),
                };
                let known = self
                    .entries
                    .get(path.as_os_str())
                    .is_some_and(|e| e.serves(&stat));
                (!known).then_some((path, stat))
            })
            .collect();
        if todo.is_empty() {
            return;
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(todo.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let hashed: Vec<Vec<(usize, i128, Digest)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((path, _)) = todo.get(i) else {
                                break done;
                            };
                            if self.cancel.is_cancelled() {
                                break done;
                            }
                            let hashed_at_ns = now_ns();
                            if let Ok(digest) = hash_file_until(path, &self.cancel) {
                                done.push((i, hashed_at_ns, digest));
                            }
                        }
                    })
                })
                .collect();
            // A worker that panicked only leaves its files to `digest`.
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        for (i, hashed_at_ns, digest) in hashed.into_iter().flatten() {
            let (path, stat) = &todo[i];
            // The file must not have changed while it was hashed.
            let still = std::fs::metadata(path).is_ok_and(|m| Stat::of(&m) == *stat);
            if !still {
                continue;
            }
            self.hashed += 1;
            self.dirty = true;
            self.entries.insert(
                path.as_os_str().to_owned(),
                Entry {
                    stat: stat.clone(),
                    hashed_at_ns,
                    digest,
                },
            );
        }
    }

    /// Whether the cache holds nothing for any of `files` (regular files,
    /// each with the metadata a walk just read) as they are now, vouched
    /// for or not (an entry hashed within the racy window counts: it is
    /// hashed again, not the whole tree): a first build from a tree, or an
    /// empty store.
    pub fn knows_none<'a>(
        &self,
        mut files: impl Iterator<Item = (&'a Path, &'a Metadata)>,
    ) -> bool {
        files.all(|(path, meta)| {
            let stat = Stat::of(meta);
            !self
                .entries
                .get(path.as_os_str())
                .is_some_and(|e| e.stat == stat)
        })
    }

    /// The moment from which files hashed elsewhere (by a layer writer, on
    /// the bytes it writes) are read: taken before the first is opened, and
    /// given to [`record_noted`](Self::record_noted) with their digests.
    pub fn clock(&self) -> HashedSince {
        HashedSince(now_ns())
    }

    /// Remember `digest` as the content of the regular file at `path`,
    /// whose metadata `meta` a walk read before the file was read (from
    /// `since` on) and hashed by the caller: what
    /// [`digest_noted`](Self::digest_noted) would have remembered had it
    /// hashed the file itself, the racy window included.
    pub fn record_noted(
        &mut self,
        path: &Path,
        meta: &Metadata,
        digest: Digest,
        since: HashedSince,
    ) {
        self.hashed += 1;
        self.dirty = true;
        self.entries.insert(
            path.as_os_str().to_owned(),
            Entry {
                stat: Stat::of(meta),
                hashed_at_ns: since.0,
                digest,
            },
        );
    }

    /// How many files were hashed (not served from the cache) so far.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// Write the cache back if it changed.
    pub fn save(&self) -> Result<(), CacheError> {
        if !self.dirty {
            return Ok(());
        }
        // Builds beside this one loaded the same file and hashed their own
        // inputs: under the store's section for this file, merge with what
        // is on disk now if another build replaced it since this one loaded
        // it, so that no build overwrites another's entries. Of two entries
        // for one path, the one hashed last wins.
        let _section = self.store.section(&self.section)?;
        let bytes = if self.replaced_since_load() {
            let (mut merged, _) = read_entries(&self.file);
            for (path, entry) in &self.entries {
                let newer = merged
                    .get(path)
                    .is_none_or(|theirs| theirs.hashed_at_ns <= entry.hashed_at_ns);
                if newer {
                    merged.insert(path.clone(), entry.clone());
                }
            }
            crate::stat_file::encode(&merged)
        } else {
            crate::stat_file::encode(&self.entries)
        };
        // Not flushed to disk: a crash may lose it or leave it torn, which
        // the checksum turns into an empty cache (hashing again, never a
        // wrong digest). Always new bytes: whatever made it dirty changed
        // at least one entry's hashing time.
        write_atomic_unflushed(&self.file, &bytes)?;
        // The JSON form of earlier versions, now unused.
        kiln_image::remove_if_present(&self.file.with_file_name("stat.json"))?;
        Ok(())
    }

    /// Whether the file at the cache's path is another than the one this
    /// cache loaded (or there is one now and there was none).
    fn replaced_since_load(&self) -> bool {
        let id = |m: Metadata| (m.dev(), m.ino());
        let now = std::fs::metadata(&self.file).ok().map(id);
        let then = self.loaded.as_ref().and_then(|f| f.metadata().ok()).map(id);
        now != then
    }
}

/// `folder`'s path with a `/` after it: every path below it starts so.
fn under(folder: &Path) -> OsString {
    let mut low = folder.as_os_str().to_owned();
    low.push("/");
    low
}

/// Where `store` keeps its stat cache.
fn cache_file(store: &Store) -> PathBuf {
    store.bookkeeping_dir().join("cache").join("stat.bin")
}

/// The entries saved at `file` (none when it is missing or does not check
/// out), and the file itself, open, when there is one.
fn read_entries(file: &Path) -> (BTreeMap<OsString, Entry>, Option<File>) {
    let Ok(mut opened) = File::open(file) else {
        return (BTreeMap::new(), None);
    };
    let mut bytes = Vec::new();
    let entries = opened
        .read_to_end(&mut bytes)
        .ok()
        .and_then(|_| crate::stat_file::decode(&bytes))
        .unwrap_or_default();
    (entries, Some(opened))
}

/// The sha256 of a file's content, streamed.
pub fn hash_file(path: &Path) -> Result<Digest, CacheError> {
    hash_file_until(path, &Cancel::new())
}

/// [`hash_file`], stopping with [`ImageError::Cancelled`](kiln_image::ImageError::Cancelled)
/// once `cancel` is cancelled.
fn hash_file_until(path: &Path, cancel: &Cancel) -> Result<Digest, CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        cancel.check()?;
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Digest::from_hasher(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_builds_saving_at_once_keep_each_others_entries() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let file = |name: &str| {
            let path = tmp.path().join(name);
            std::fs::write(&path, name).expect("write");
            path
        };
        // Both load before either saves, as two concurrent builds do: once
        // with no cache file yet, once with one an earlier build saved.
        for earlier in [false, true] {
            let (a, b, c) = (
                file(&format!("a{earlier}")),
                file(&format!("b{earlier}")),
                file(&format!("c{earlier}")),
            );
            if earlier {
                let mut before = StatCache::load(&store);
                before.digest(&c).expect("digest c");
                before.save().expect("save");
            }
            let mut first = StatCache::load(&store);
            let mut second = StatCache::load(&store);
            first.digest(&a).expect("digest a");
            second.digest(&b).expect("digest b");
            first.save().expect("save first");
            second.save().expect("save second");
            let (saved, _) = read_entries(&cache_file(&store));
            assert!(
                saved.contains_key(a.as_os_str()),
                "the first build's entry was lost"
            );
            assert!(
                saved.contains_key(b.as_os_str()),
                "the second build's entry was lost"
            );
            assert_eq!(
                saved.contains_key(c.as_os_str()),
                earlier,
                "the earlier build's entry"
            );
        }
    }

    #[test]
    fn a_folders_entries_move_to_its_own_cache_and_stay_served() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        let file = |name: &str| {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, name).expect("write");
            let f = std::fs::File::options().write(true).open(&path);
            f.and_then(|f| f.set_modified(old)).expect("mtime");
            path
        };
        let inside = [file("r/a"), file("r/b/c")];
        let outside = [file("rx/d"), file("s")];
        let mut shared = StatCache::load(&store);
        for path in inside.iter().chain(&outside) {
            shared.digest(path).expect("digest");
        }
        shared.save().expect("save");

        let folder = tmp.path().join("r");
        let mut shared = StatCache::load(&store);
        assert!(shared.holds_under(&folder));
        let mut own = StatCache::load_for_folder(&store, &folder);
        own.take_under(&mut shared, &folder);
        assert!(!shared.holds_under(&folder), "moved, not copied");
        assert!(shared.holds_under(&tmp.path().join("rx")), "r/ is not rx/");
        own.save().expect("save");
        shared.save().expect("save");

        let mut own = StatCache::load_for_folder(&store, &folder);
        for (path, name) in inside.iter().zip(["r/a", "r/b/c"]) {
            assert_eq!(
                own.digest(path).expect("digest"),
                Digest::of(name.as_bytes())
            );
        }
        assert_eq!(own.hashed(), 0, "served from the folder's own cache");
        let shared = StatCache::load(&store);
        assert!(!shared.holds_under(&folder));
        assert!(shared.holds_under(&tmp.path().join("rx")));
    }

    #[test]
    fn unchanged_files_are_not_hashed_again_and_changed_ones_are() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let file = tmp.path().join("input");
        std::fs::write(&file, "one").expect("write");
        // Old enough not to be racily clean.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .expect("open")
            .set_modified(old)
            .expect("mtime");

        let mut cache = StatCache::load(&store);
        assert_eq!(cache.digest(&file).expect("digest"), Digest::of(b"one"));
        cache.save().expect("save");
        let mut cache = StatCache::load(&store);
        assert_eq!(cache.digest(&file).expect("digest"), Digest::of(b"one"));
        assert_eq!(cache.hashed(), 0, "served from the stat cache");

        std::fs::write(&file, "two").expect("write");
        assert_eq!(cache.digest(&file).expect("digest"), Digest::of(b"two"));
        assert_eq!(cache.hashed(), 1);
    }

    #[test]
    fn prefetched_digests_are_served_without_hashing_again() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        let mut files = Vec::new();
        for i in 0..9 {
            let file = tmp.path().join(format!("input{i}"));
            std::fs::write(&file, format!("content {i}")).expect("write");
            std::fs::File::options()
                .write(true)
                .open(&file)
                .expect("open")
                .set_modified(old)
                .expect("mtime");
            files.push(file);
        }
        let missing = tmp.path().join("missing");
        let mut cache = StatCache::load(&store);
        cache.prefetch(
            files
                .iter()
                .map(PathBuf::as_path)
                .chain([missing.as_path()]),
        );
        assert_eq!(cache.hashed(), 9);
        for (i, file) in files.iter().enumerate() {
            assert_eq!(
                cache.digest(file).expect("digest"),
                Digest::of(format!("content {i}").as_bytes())
            );
        }
        assert_eq!(cache.hashed(), 9, "every digest came from the prefetch");
        assert!(cache.digest(&missing).is_err(), "errors are left to digest");
        cache.prefetch(files.iter().map(PathBuf::as_path));
        assert_eq!(cache.hashed(), 9, "known files are not hashed again");
    }

    #[test]
    fn a_racily_clean_file_is_hashed_again() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let file = tmp.path().join("input");
        std::fs::write(&file, "same").expect("write");
        let mut cache = StatCache::load(&store);
        cache.digest(&file).expect("digest");
        // Modified just now: its stat could stay the same through another
        // write, so it is not trusted yet.
        cache.digest(&file).expect("digest");
        assert_eq!(cache.hashed(), 2);
    }

    #[test]
    fn a_corrupt_cache_file_is_an_empty_cache() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let file = cache_file(&store);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, "{broken").expect("write");
        let input = tmp.path().join("input");
        std::fs::write(&input, "x").expect("write");
        assert_eq!(
            StatCache::load(&store).digest(&input).expect("digest"),
            Digest::of(b"x")
        );
    }
}
