//! kiln's store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) that skopeo and umoci read as it is, plus a `kiln/`
//! folder beside it for the bookkeeping of other crates.
//!
//! Every write is atomic (temp file in the target's folder, fsync, rename,
//! fsync the folder); a blob appears under its digest only once its bytes
//! were hashed and found to match. Updates of index.json hold an exclusive
//! lock on the store's folder, so concurrent builds do not lose each other's
//! refs. Blobs are removed only by the holder of the [`Sweep`] (see
//! [`crate::lock`] for the whole locking scheme).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::descriptor::{Index, is_index};
use crate::digest::HashWriter;
use crate::durable::{commit, commit_file, staging_file, write_atomic, write_atomic_if_changed};
use crate::lock::Sweep;
use crate::{Cancel, Descriptor, Digest, ImageError, to_canonical_json};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout on disk that kiln reads and writes.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Checked before every write of a blob: see [`Store::with_cancel`].
    cancel: Cancel,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The blobs removed, sorted.
    pub removed: Vec<Digest>,
    /// Their total size in bytes.
    pub freed_bytes: u64,
    /// How many blobs are kept.
    pub kept: usize,
}

/// What garbage collection keeps besides everything index.json reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    /// Manifests (or indexes) kept with everything they reach: the digests
    /// of channel histories, test records.
    pub manifests: BTreeSet<Digest>,
    /// Single blobs kept: layers named by cache entries.
    pub blobs: BTreeSet<Digest>,
}

/// One file of `blobs/sha256/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlobFile {
    /// A blob, named by its digest (not yet verified).
    Blob(Digest),
    /// A temporary file of a write in progress or interrupted.
    Temporary(PathBuf),
    /// Anything else: not kiln's.
    Stray(PathBuf),
}

/// What [`Store::verify_blob`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Present, and its bytes hash to its name.
    Whole,
    /// Present, with other bytes.
    Corrupt,
    /// Not there.
    Missing,
}

/// A blob being written into the store: bytes go to a hidden temporary
/// file in `blobs/sha256/`; [`Staged::commit`] renames it into place.
pub(crate) struct Staged {
    tmp: tempfile::NamedTempFile,
    cancel: Cancel,
}

/// Writes into a [`Staged`] blob; each write first checks the store
/// handle's token, so a cancelled write stops within one buffer.
pub(crate) type StagedWriter<'a> = crate::cancel::CancelWriter<&'a File>;

impl Staged {
    /// The file to write to.
    pub(crate) fn file(&self) -> StagedWriter<'_> {
        StagedWriter::new(self.tmp.as_file(), self.cancel.clone())
    }

    /// Its path, for errors.
    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Move the finished content into place as blob `digest`.
    pub(crate) fn commit(self, store: &Store, digest: &Digest) -> Result<(), ImageError> {
        commit(self.tmp, &store.blob_path(digest))
    }

    /// [`Staged::commit`] without flushing the blobs folder: the caller
    /// flushes it once after several blobs, before anything names them.
    fn commit_unflushed_folder(self, store: &Store, digest: &Digest) -> Result<(), ImageError> {
        commit_file(self.tmp, &store.blob_path(digest))
    }
}

impl Store {
    /// Open the store at `root`, creating the layout if the folder is
    /// missing or empty. A folder that holds other things and is not an OCI
    /// image layout is refused, so that kiln never writes into the wrong
    /// folder.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(ImageError::io(&root))?;
        let store = Store {
            root,
            cancel: Cancel::default(),
        };
        let layout_file = store.root.join("oci-layout");
        match std::fs::read(&layout_file) {
            Ok(bytes) => check_layout_file(&layout_file, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Temporary files of another process creating the same
                // store right now do not make the folder foreign.
                let foreign = std::fs::read_dir(&store.root)
                    .map_err(ImageError::io(&store.root))?
                    .filter_map(Result::ok)
                    .any(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"));
                if foreign {
                    return Err(ImageError::InvalidLayout {
                        path: store.root.clone(),
                        reason: "the folder is not empty and has no oci-layout file; give kiln an empty or new folder".into(),
                    });
                }
                write_atomic(&layout_file, OCI_LAYOUT)?;
            }
            Err(source) => {
                return Err(ImageError::Io {
                    path: layout_file,
                    source,
                });
            }
        }
        let blobs = store.blobs_dir();
        std::fs::create_dir_all(&blobs).map_err(ImageError::io(&blobs))?;
        let index = store.index_path();
        if !index.exists() {
            let _lock = store.lock()?;
            if !index.exists() {
                store.write_index(&Index::new(Vec::new()))?;
            }
        }
        Ok(store)
    }

    /// This store with `cancel` as its token: blobs written through the
    /// handle returned stop with [`ImageError::Cancelled`] once it is
    /// cancelled, their temporary files removed; other handles of the same
    /// store are not affected.
    #[must_use]
    pub fn with_cancel(&self, cancel: &Cancel) -> Store {
        Store {
            root: self.root.clone(),
            cancel: cancel.clone(),
        }
    }

    /// The token this handle's work checks (a token never cancelled unless
    /// set with [`Store::with_cancel`]).
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/kiln`: where other crates keep test records, channel history
    /// and caches. It is not created here.
    pub fn bookkeeping_dir(&self) -> PathBuf {
        self.root.join("kiln")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Where blob `d` lives (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Whether blob `d` is in the store. Blobs only appear once verified, so
    /// one that is there was whole when written.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Store `bytes` and return their digest. A stored copy that no longer
    /// matches its digest is replaced.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if self.put_blob_file(bytes, &digest)? {
            crate::durable::sync_dir(&self.blobs_dir())?;
        }
        Ok(digest)
    }

    /// [`Store::put_blob`] for each of `blobs`, in order (each is stored
    /// under [`Digest::of`] its bytes). Each appears whole or not at all, as
    /// alone; the blobs folder is flushed once for all of them (each flush
    /// costs a fraction of a millisecond, more on a busy disk).
    pub fn put_blobs(&self, blobs: &[&[u8]]) -> Result<(), ImageError> {
        let mut written = false;
        for bytes in blobs {
            written |= self.put_blob_file(bytes, &Digest::of(bytes))?;
        }
        if written {
            crate::durable::sync_dir(&self.blobs_dir())?;
        }
        Ok(())
    }

    /// Store `bytes`, whose digest is `digest`, unless a whole copy is
    /// there; whether it was written. The blobs folder is not flushed.
    fn put_blob_file(&self, bytes: &[u8], digest: &Digest) -> Result<bool, ImageError> {
        if self.read_blob(digest).is_ok() {
            return Ok(false);
        }
        let staged = self.stage()?;
        let mut w = staged.file();
        w.write_all(bytes).map_err(ImageError::io(staged.path()))?;
        staged.commit_unflushed_folder(self, digest)?;
        Ok(true)
    }

    /// Store what `reader` yields, streamed, and return its digest and size.
    /// With `expected`, content that hashes to anything else is refused
    /// before it appears in the store.
    pub fn put_blob_from(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), ImageError> {
        self.put_blob_from_source(reader, expected, Path::new("<stream>"))
    }

    /// [`Store::put_blob_from`], naming `source` in errors.
    pub(crate) fn put_blob_from_source(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
        source: &Path,
    ) -> Result<(Digest, u64), ImageError> {
        let staged = self.stage()?;
        let mut out = HashWriter::new(BufWriter::with_capacity(1 << 17, staged.file()));
        let mut buf = vec![0u8; 1 << 17];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ImageError::Io {
                        path: source.to_path_buf(),
                        source: e,
                    });
                }
            };
            out.write_all(&buf[..n])
                .map_err(ImageError::io(staged.path()))?;
        }
        let (mut inner, digest, size) = out.finish();
        inner.flush().map_err(ImageError::io(staged.path()))?;
        drop(inner);
        if let Some(expected) = expected.filter(|e| **e != digest) {
            return Err(ImageError::DigestMismatch {
                source_path: source.to_path_buf(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        staged.commit(self, &digest)?;
        Ok((digest, size))
    }

    /// [`Store::put_blob_from_source`] with `check` reading the content as
    /// it is stored, in the same pass: it is given a reader of exactly the
    /// bytes being written, and may stop anywhere (the rest is stored all
    /// the same). What it returns comes back beside the digest and size. A
    /// failure to read `reader` or to write the blob is the error, whatever
    /// the check made of it.
    pub(crate) fn put_blob_checked<T>(
        &self,
        reader: impl Read,
        source: &Path,
        check: impl FnOnce(&mut dyn Read) -> T,
    ) -> Result<(Digest, u64, T), ImageError> {
        let staged = self.stage()?;
        let (digest, size, checked) = {
            let mut tee = Tee {
                inner: reader,
                out: HashWriter::new(BufWriter::with_capacity(1 << 17, staged.file())),
                failure: None,
                source,
                staged: staged.path(),
            };
            let checked = check(&mut tee);
            let rest = std::io::copy(&mut tee, &mut std::io::sink());
            let Tee { out, failure, .. } = tee;
            if let Some(failure) = failure {
                return Err(failure);
            }
            rest.map_err(ImageError::io(source))?;
            let (mut inner, digest, size) = out.finish();
            inner.flush().map_err(ImageError::io(staged.path()))?;
            (digest, size, checked)
        };
        staged.commit(self, &digest)?;
        Ok((digest, size, checked))
    }

    /// A temporary file for a blob being written.
    pub(crate) fn stage(&self) -> Result<Staged, ImageError> {
        self.cancel.check()?;
        Ok(Staged {
            tmp: staging_file(&self.blobs_dir())?,
            cancel: self.cancel.clone(),
        })
    }

    /// Read blob `d` whole, checking that its content hashes to `d`.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(d);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: d.clone(),
                    path,
                });
            }
            Err(source) => return Err(ImageError::Io { path, source }),
        };
        if Digest::of(&bytes) != *d {
            return Err(ImageError::CorruptBlob {
                digest: d.clone(),
                path,
            });
        }
        Ok(bytes)
    }

    /// Open blob `d` for streaming. The content is not checked here: hash
    /// what you read (the archive writers do) before trusting it.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ImageError> {
        let path = self.blob_path(d);
        File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::MissingBlob {
                    digest: d.clone(),
                    path,
                }
            } else {
                ImageError::Io { path, source: e }
            }
        })
    }

    /// The descriptor of manifest (or index) `d`: its media type read from
    /// the blob, its digest and size.
    pub fn manifest_descriptor(&self, d: &Digest) -> Result<Descriptor, ImageError> {
        let bytes = self.read_blob(d)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
                path: self.blob_path(d),
                source,
            })?;
        let media_type = match value.get("mediaType").and_then(|m| m.as_str()) {
            Some(m) => m.to_owned(),
            None if value.get("manifests").is_some() => {
                crate::descriptor::MEDIA_TYPE_OCI_INDEX.to_owned()
            }
            None => crate::descriptor::MEDIA_TYPE_OCI_MANIFEST.to_owned(),
        };
        Ok(Descriptor::new(media_type, d.clone(), bytes.len() as u64))
    }

    /// Point `ref_name` (`web:1.4.2`, `web:stable`) at `manifest` in
    /// index.json, replacing any entry with that name. index.json stays
    /// canonical JSON with entries sorted by ref name, and is rewritten
    /// atomically.
    pub fn set_ref(&self, ref_name: &str, manifest: &Descriptor) -> Result<(), ImageError> {
        check_ref_name(ref_name)?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index.manifests.retain(|d| d.ref_name() != Some(ref_name));
        index.manifests.push(manifest.with_ref_name(ref_name));
        self.write_index(&index)
    }

    /// Remove `ref_name` from index.json; whether it was there. The blobs
    /// stay until [`Store::gc`].
    pub fn remove_ref(&self, ref_name: &str) -> Result<bool, ImageError> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| d.ref_name() != Some(ref_name));
        if index.manifests.len() == before {
            return Ok(false);
        }
        self.write_index(&index)?;
        Ok(true)
    }

    /// Every named entry of index.json, sorted by ref name.
    pub fn refs(&self) -> Result<Vec<(String, Descriptor)>, ImageError> {
        let index = self.read_index()?;
        let mut refs: Vec<(String, Descriptor)> = index
            .manifests
            .into_iter()
            .filter_map(|d| Some((d.ref_name()?.to_owned(), d)))
            .collect();
        refs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(refs)
    }

    /// The manifest `ref_name` points at, if any.
    pub fn resolve(&self, ref_name: &str) -> Result<Option<Descriptor>, ImageError> {
        Ok(self
            .refs()?
            .into_iter()
            .find(|(r, _)| r == ref_name)
            .map(|(_, d)| d))
    }

    /// Every blob that index.json or `roots` reach: the entries of
    /// index.json and the manifests in `roots`, through indexes, manifests,
    /// configs and layers, plus the blobs in `roots`.
    pub fn reachable(&self, roots: &Roots) -> Result<BTreeSet<Digest>, ImageError> {
        let index = self.read_index()?;
        let mut reachable = BTreeSet::new();
        for d in &index.manifests {
            self.mark(d, &mut reachable, 0)?;
        }
        for root in roots.manifests.iter().filter(|d| self.has_blob(d)) {
            match self.manifest_descriptor(root) {
                Ok(descriptor) => self.mark(&descriptor, &mut reachable, 0)?,
                // A corrupt root keeps itself and nothing else: fsck says so.
                Err(ImageError::CorruptBlob { .. } | ImageError::Json { .. }) => {
                    reachable.insert(root.clone());
                }
                Err(e) => return Err(e),
            }
        }
        reachable.extend(roots.blobs.iter().cloned());
        Ok(reachable)
    }

    /// Remove every blob that neither index.json nor `roots` reach, and
    /// every temporary file of an interrupted write. Holding the [`Sweep`]
    /// means no build, test or promotion is running, so nothing unnamed is
    /// still wanted and every temporary file is a leftover.
    pub fn gc(&self, _sweep: &Sweep, roots: &Roots) -> Result<GcReport, ImageError> {
        let reachable = self.reachable(roots)?;
        let mut report = GcReport::default();
        for file in self.blob_files()? {
            let (path, digest) = match file {
                BlobFile::Blob(d) if reachable.contains(&d) => {
                    report.kept += 1;
                    continue;
                }
                BlobFile::Blob(d) => (self.blob_path(&d), Some(d)),
                BlobFile::Temporary(path) => (path, None),
                // Not kiln's and not a blob: fsck reports it, gc leaves it.
                BlobFile::Stray(_) => continue,
            };
            let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ImageError::Io { path, source }),
            }
            report.freed_bytes += size;
            if let Some(d) = digest {
                report.removed.push(d);
            }
        }
        report.removed.sort();
        crate::durable::sync_dir(&self.blobs_dir())?;
        Ok(report)
    }

    /// Remove the blobs in `digests` that neither index.json nor `roots`
    /// reach, and return those removed. For discarding what one build wrote
    /// and must not keep (an image that leaked a secret), without touching
    /// anything else in the store.
    pub fn remove_unreferenced(
        &self,
        sweep: &Sweep,
        digests: &[Digest],
        roots: &Roots,
    ) -> Result<Vec<Digest>, ImageError> {
        let reachable = self.reachable(roots)?;
        let mut removed = Vec::new();
        for d in digests.iter().filter(|d| !reachable.contains(*d)) {
            if self.remove_blob(sweep, d)? {
                removed.push(d.clone());
            }
        }
        Ok(removed)
    }

    /// Remove blob `d` whatever references it; whether it was there. For
    /// `kiln fsck --repair` (a corrupt blob) and gc; only the holder of the
    /// [`Sweep`] removes blobs.
    pub fn remove_blob(&self, _sweep: &Sweep, d: &Digest) -> Result<bool, ImageError> {
        crate::durable::remove_if_present(&self.blob_path(d))
    }

    /// The `.json` files directly in `kiln/SUB` (`tests`, `recipes`,
    /// `cache/layers`), sorted; none when the folder does not exist.
    pub fn bookkeeping_files(&self, sub: &str) -> Result<Vec<PathBuf>, ImageError> {
        let dir = self.bookkeeping_dir().join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ImageError::Io { path: dir, source }),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(ImageError::io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Every file in `blobs/sha256/`, sorted by name.
    pub fn blob_files(&self) -> Result<Vec<BlobFile>, ImageError> {
        let dir = self.blobs_dir();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(ImageError::io(&dir))? {
            let entry = entry.map_err(ImageError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            files.push(match format!("sha256:{name}").parse::<Digest>() {
                Ok(d) if is_file => BlobFile::Blob(d),
                _ if name.starts_with(".tmp") && is_file => BlobFile::Temporary(entry.path()),
                _ => BlobFile::Stray(entry.path()),
            });
        }
        files.sort();
        Ok(files)
    }

    /// Whether blob `d` is there and its bytes hash to `d`, read streamed.
    pub fn verify_blob(&self, d: &Digest) -> Result<BlobState, ImageError> {
        let mut file = match self.open_blob(d) {
            Ok(f) => f,
            Err(ImageError::MissingBlob { .. }) => return Ok(BlobState::Missing),
            Err(e) => return Err(e),
        };
        let path = self.blob_path(d);
        let mut hasher = HashWriter::new(std::io::sink());
        std::io::copy(&mut file, &mut hasher).map_err(ImageError::io(&path))?;
        let (_, actual, _) = hasher.finish();
        Ok(if actual == *d {
            BlobState::Whole
        } else {
            BlobState::Corrupt
        })
    }

    /// Add `d` and every blob it reaches (through indexes, manifests,
    /// configs and layers) to `reached`. A blob that is missing, corrupt or
    /// not JSON is added but not followed.
    pub fn reach(&self, d: &Descriptor, reached: &mut BTreeSet<Digest>) -> Result<(), ImageError> {
        self.mark(d, reached, 0)
    }

    /// Add `d` and everything it references to `reachable`.
    fn mark(
        &self,
        d: &Descriptor,
        reachable: &mut BTreeSet<Digest>,
        depth: u32,
    ) -> Result<(), ImageError> {
        if !reachable.insert(d.digest.clone()) || depth > 8 {
            return Ok(());
        }
        let bytes = match self.read_blob(&d.digest) {
            Ok(b) => b,
            // A ref to a missing or corrupt blob keeps nothing else alive;
            // gc must not fail because of it.
            Err(ImageError::MissingBlob { .. } | ImageError::CorruptBlob { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok(());
        };
        let children = |key: &str| -> Vec<Descriptor> {
            value
                .get(key)
                .and_then(|v| serde_json::from_value::<Vec<Descriptor>>(v.clone()).ok())
                .unwrap_or_default()
        };
        if is_index(&d.media_type) || value.get("manifests").is_some() {
            for child in children("manifests") {
                self.mark(&child, reachable, depth + 1)?;
            }
        } else {
            if let Some(config) = value
                .get("config")
                .and_then(|c| serde_json::from_value::<Descriptor>(c.clone()).ok())
            {
                reachable.insert(config.digest);
            }
            for layer in children("layers") {
                reachable.insert(layer.digest);
            }
        }
        Ok(())
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(ImageError::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json { path, source })
    }

    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        let mut index = index.clone();
        index.manifests.sort_by(|a, b| {
            (a.ref_name().unwrap_or(""), &a.digest).cmp(&(b.ref_name().unwrap_or(""), &b.digest))
        });
        // Pointing a tag where it already points (a rebuild that changed
        // nothing) leaves the file, and the disk, alone.
        write_atomic_if_changed(&self.index_path(), &to_canonical_json(&index)?)?;
        Ok(())
    }

    /// An exclusive lock on the store's folder, held until dropped. flock
    /// locks belong to the open file, so this also orders threads of one
    /// process.
    fn lock(&self) -> Result<File, ImageError> {
        let dir = File::open(&self.root).map_err(ImageError::io(&self.root))?;
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            ImageError::Io {
                path: self.root.clone(),
                source: e.into(),
            }
        })?;
        Ok(dir)
    }
}

fn check_layout_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let invalid = |reason: String| ImageError::InvalidLayout {
        path: path.to_path_buf(),
        reason,
    };
    let value: BTreeMap<String, serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("oci-layout is not JSON: {e}")))?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some("1.0.0") => Ok(()),
        other => Err(invalid(format!(
            "unsupported imageLayoutVersion {other:?}, expected \"1.0.0\""
        ))),
    }
}

/// Ref names go into index.json and on command lines: printable ASCII,
/// no spaces, not empty.
fn check_ref_name(name: &str) -> Result<(), ImageError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if !name.bytes().all(|b| b.is_ascii_graphic()) {
        Some("only printable ASCII without spaces is allowed")
    } else {
        None
    };
    match reason {
        Some(r) => Err(ImageError::InvalidRefName {
            name: name.to_owned(),
            reason: r.to_owned(),
        }),
        None => Ok(()),
    }
}

/// A reader that writes what it yields to `out` (a blob being staged), and
/// keeps the first failure to read or write as the error it is, for
/// [`Store::put_blob_checked`].
struct Tee<'a, R, W> {
    inner: R,
    out: W,
    failure: Option<ImageError>,
    source: &'a Path,
    staged: &'a Path,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.failure.is_some() {
            return Err(std::io::Error::other("the blob could not be stored"));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let reason = e.to_string();
                self.failure = Some(ImageError::io(self.source)(e));
                return Err(std::io::Error::other(reason));
            }
        };
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let reason = e.to_string();
            self.failure = Some(ImageError::io(self.staged)(e));
            return Err(std::io::Error::other(reason));
        }
        Ok(n)
    }
}
