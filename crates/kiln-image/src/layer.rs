//! Writing a layer: entries → tar → gzip → blob, in one streaming pass, with
//! every byte fixed by the entries and the epoch alone.
//!
//! The tar format is fixed here and nowhere else: GNU headers built field by
//! field (path without the leading `/`, folders with a trailing `/`, mode
//! with setuid/setgid/sticky, numeric uid/gid, empty user and group names,
//! mtime = epoch, nothing else), GNU long-name and long-link records for
//! names over 100 bytes, no xattrs, no sparse files, symlinks never
//! followed, hard links as tar hard links to the first path of their group,
//! device nodes and fifos with their numbers, and the two zero blocks that
//! end an archive.
//! The gzip stream comes from `kiln_gzip`: level 1 (zlib-rs), fixed 1 MiB
//! blocks compressed on every core and joined into one member with mtime 0,
//! no file name and OS byte 255, so its bytes are the same on every
//! platform and for any thread count.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use kiln_gzip::{GzipOptions, ParallelGzEncoder};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use crate::digest::HashWriter;
use crate::entry::check_image_path;
use crate::{Digest, EntryKind, ImageError, LayerEntry, Store};

/// A layer blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the gzip blob, as manifests list it.
    pub digest: Digest,
    /// Digest of the uncompressed tar, as the config's `rootfs.diff_ids`
    /// lists it.
    pub diff_id: Digest,
    /// Size of the gzip blob in bytes.
    pub size: u64,
}

/// The gzip level: 1 is three times as fast as 6 here for a few percent of
/// size (see docs/field-notes.md), and part of the format: changing it changes
/// every digest.
const GZIP_LEVEL: u32 = 1;
/// Bytes of tar per independently compressed gzip block: part of the format
/// too (the thread count is not).
const GZIP_BLOCK: usize = 1 << 20;
const BLOCK: usize = 512;
/// Bytes of a file read at a time.
const COPY_BUFFER: usize = 1 << 16;
const NAME_FIELD: usize = 100;

/// Write `entries` as one gzip-compressed layer into `store`, with every
/// entry's mtime set to `epoch`.
///
/// Entries are sorted by path (byte order). The same path given twice is
/// [`ImageError::DuplicatePath`], unless both are identical folders (two
/// folder copies into one destination both name it). A file whose size
/// changes while it is read is [`ImageError::SourceChanged`] (see
/// [`write_layer_expecting`] for content). A folder entry
/// for `/` itself is left out: the image's root belongs to the runtime.
///
/// Tar, digest of the tar, gzip and digest of the gzip are computed in one
/// pass into a temporary file in the store, so memory stays bounded whatever
/// the layer's size; the blob appears under its digest only when complete.
pub fn write_layer(
    store: &Store,
    entries: Vec<LayerEntry>,
    epoch: u64,
) -> Result<LayerBlob, ImageError> {
    write_layer_expecting(store, entries, epoch, &BTreeMap::new())
}

/// [`write_layer`], checking each file whose in-image path is in
/// `expected` against the digest its cache key was computed from, on the
/// very bytes written into the layer: a file whose content changed between
/// hashing and writing is [`ImageError::SourceChanged`], so a cache key
/// never names other content than its layer holds.
pub fn write_layer_expecting(
    store: &Store,
    entries: Vec<LayerEntry>,
    epoch: u64,
    expected: &BTreeMap<String, Digest>,
) -> Result<LayerBlob, ImageError> {
    let hooks = FileHooks {
        expected: Some(expected),
        ..FileHooks::default()
    };
    write_layer_inner(store, entries, epoch, cores(), hooks)
}

/// [`write_layer`], hashing each regular file on the very bytes written
/// into the layer (one read): the layer, and the sha256 of each file's
/// content by its host path. For a caller that needs the files' digests
/// too and knows none yet (a `rootfs:` tree on a cold stat cache), instead
/// of hashing every file before writing it.
pub fn write_layer_hashing(
    store: &Store,
    entries: Vec<LayerEntry>,
    epoch: u64,
) -> Result<(LayerBlob, BTreeMap<PathBuf, Digest>), ImageError> {
    let mut digests = BTreeMap::new();
    let hooks = FileHooks {
        digests: Some(&mut digests),
        ..FileHooks::default()
    };
    let blob = write_layer_inner(store, entries, epoch, cores(), hooks)?;
    Ok((blob, digests))
}

/// [`write_layer`], handing each regular file's host path to `release` as
/// soon as its bytes are in the layer's stream, while the rest is still
/// being written: a caller that owns the files and has no further use for
/// them (a run layer's container folder) can free them meanwhile, off the
/// critical path. Each file is handed once, in the order written; a file
/// stored as a hard link to another is not handed at all. If the write
/// fails, the files handed so far are still the caller's to dispose of.
pub fn write_layer_releasing(
    store: &Store,
    entries: Vec<LayerEntry>,
    epoch: u64,
    release: &mut dyn FnMut(&Path),
) -> Result<LayerBlob, ImageError> {
    let hooks = FileHooks {
        release: Some(release),
        ..FileHooks::default()
    };
    write_layer_inner(store, entries, epoch, cores(), hooks)
}

/// How many threads compress: one per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// [`write_layer`] compressing on `threads` threads instead of one per core.
///
/// The bytes do not depend on `threads`; this exists so tests can show it.
#[doc(hidden)]
pub fn write_layer_with_threads(
    store: &Store,
    entries: Vec<LayerEntry>,
    epoch: u64,
    threads: usize,
) -> Result<LayerBlob, ImageError> {
    write_layer_inner(store, entries, epoch, threads, FileHooks::default())
}

/// What a layer write does with each regular file besides copying it in;
/// each is asked for by one of the public `write_layer*` functions.
#[derive(Default)]
struct FileHooks<'h> {
    /// The digest each file's content must have, by in-image path (see
    /// [`write_layer_expecting`]).
    expected: Option<&'h BTreeMap<String, Digest>>,
    /// Told of each file once its bytes are written (see
    /// [`write_layer_releasing`]).
    release: Option<&'h mut dyn FnMut(&Path)>,
    /// Given each file's content digest, by host path (see
    /// [`write_layer_hashing`]).
    digests: Option<&'h mut BTreeMap<PathBuf, Digest>>,
}

/// [`write_layer`] on `threads` gzip threads, doing what `hooks` ask with
/// each regular file.
fn write_layer_inner(
    store: &Store,
    mut entries: Vec<LayerEntry>,
    epoch: u64,
    threads: usize,
    hooks: FileHooks<'_>,
) -> Result<LayerBlob, ImageError> {
    for e in &entries {
        check_image_path(&e.path).map_err(|reason| ImageError::InvalidEntryPath {
            path: e.path.clone(),
            reason,
        })?;
        let bad_target = matches!(
            &e.kind,
            EntryKind::Symlink { target } if target.is_empty() || target.contains('\0')
        );
        if bad_target {
            return Err(ImageError::InvalidEntryPath {
                path: e.path.clone(),
                reason: "a symlink target must be non-empty and free of NUL bytes".into(),
            });
        }
        if e.path == "/" && e.kind != EntryKind::Dir {
            return Err(ImageError::InvalidEntryPath {
                path: e.path.clone(),
                reason: "only a folder can be at /".into(),
            });
        }
    }
    entries.retain(|e| e.path != "/");
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    entries.dedup_by(|later, earlier| later == earlier && later.kind == EntryKind::Dir);
    if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(ImageError::DuplicatePath {
            path: w[1].path.clone(),
        });
    }
    order_hard_links(&mut entries)?;

    // Bounded across the process: see crate::writers.
    let _permit = crate::writers::Permit::acquire(store.cancel())?;
    let staged = store.stage()?;
    let staged_path = staged.path().to_path_buf();
    let file_out = HashWriter::new(BufWriter::with_capacity(1 << 17, staged.file()));
    let gz = ParallelGzEncoder::new(
        file_out,
        GzipOptions {
            level: GZIP_LEVEL,
            block_size: GZIP_BLOCK,
            threads,
        },
    );
    let mut tar = TarWriter {
        out: HashWriter::new(gz),
        staged: &staged_path,
        epoch,
        cancel: store.cancel(),
        hooks,
        buf: vec![0u8; COPY_BUFFER],
    };
    for e in &entries {
        tar.entry(e)?;
    }
    let (gz, diff_id, _) = tar.finish()?;
    let file_out = gz.finish().map_err(ImageError::io(&staged_path))?;
    let (mut buffered, digest, size) = file_out.finish();
    buffered.flush().map_err(ImageError::io(&staged_path))?;
    drop(buffered);
    staged.commit(store, &digest)?;
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
    })
}

/// Tar resolves a hard link to an entry written before it: make the first
/// path of each group (entries are sorted) the file, and every other member
/// a link to that path. A link whose target is not a file of this layer is
/// [`ImageError::InvalidEntryPath`].
fn order_hard_links(entries: &mut [LayerEntry]) -> Result<(), ImageError> {
    let index: std::collections::HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    // Each group, keyed by the index of its file entry.
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, e) in entries.iter().enumerate() {
        let EntryKind::HardLink { target } = &e.kind else {
            continue;
        };
        let file = index
            .get(target)
            .copied()
            .filter(|&t| matches!(entries[t].kind, EntryKind::File { .. }))
            .ok_or_else(|| ImageError::InvalidEntryPath {
                path: e.path.clone(),
                reason: format!("a hard link to {target:?}, which is not a file of this layer"),
            })?;
        groups.entry(file).or_default().push(i);
    }
    for (file, links) in groups {
        let first = links.iter().copied().fold(file, usize::min);
        if first == file {
            continue;
        }
        let first_path = entries[first].path.clone();
        let kind = std::mem::replace(
            &mut entries[file].kind,
            EntryKind::HardLink {
                target: first_path.clone(),
            },
        );
        entries[first].kind = kind;
        for &l in &links {
            if l != first {
                entries[l].kind = EntryKind::HardLink {
                    target: first_path.clone(),
                };
            }
        }
    }
    Ok(())
}

/// A tar stream being written, hashed as it goes.
struct TarWriter<'a, 'r, W: Write> {
    out: HashWriter<W>,
    staged: &'a Path,
    epoch: u64,
    /// Checked between buffers of a file: a large file stops within one.
    cancel: &'a crate::Cancel,
    /// What to do with each regular file besides copying it in.
    hooks: FileHooks<'r>,
    /// Where file content passes through, reused for every file.
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<'_, '_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.out
            .write_all(bytes)
            .map_err(ImageError::io(self.staged))
    }

    fn pad(&mut self) -> Result<(), ImageError> {
        let rest = (self.out.count() % BLOCK as u64) as usize;
        if rest != 0 {
            self.write(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn entry(&mut self, e: &LayerEntry) -> Result<(), ImageError> {
        // The leading '/' goes; folders get the trailing '/' that tar
        // readers expect.
        let mut name = e.path[1..].to_owned();
        match &e.kind {
            EntryKind::Dir => {
                name.push('/');
                let header = self.header(&name, None, EntryType::Directory, 0, e)?;
                self.write(header.as_bytes())
            }
            EntryKind::Symlink { target } => {
                let header = self.header(&name, Some(target), EntryType::Symlink, 0, e)?;
                self.write(header.as_bytes())
            }
            EntryKind::File { source } => {
                let expected = self.hooks.expected.and_then(|by_path| by_path.get(&e.path));
                self.file(&name, source, e, expected)
            }
            EntryKind::HardLink { target } => {
                let link = target.strip_prefix('/').unwrap_or(target);
                let header = self.header(&name, Some(link), EntryType::Link, 0, e)?;
                self.write(header.as_bytes())
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                let kind = if matches!(e.kind, EntryKind::CharDevice { .. }) {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                let mut header = self.header(&name, None, kind, 0, e)?;
                header
                    .set_device_major(*major)
                    .and_then(|()| header.set_device_minor(*minor))
                    .map_err(ImageError::io(self.staged))?;
                header.set_cksum();
                self.write(header.as_bytes())
            }
            EntryKind::Fifo => {
                let header = self.header(&name, None, EntryType::Fifo, 0, e)?;
                self.write(header.as_bytes())
            }
        }
    }

    /// Copy the file at `source` in as `name`; when `expected` is given,
    /// the bytes copied must hash to it.
    fn file(
        &mut self,
        name: &str,
        source: &Path,
        e: &LayerEntry,
        expected: Option<&Digest>,
    ) -> Result<(), ImageError> {
        let mut file = File::open(source).map_err(ImageError::io(source))?;
        let meta = file.metadata().map_err(ImageError::io(source))?;
        if !meta.is_file() {
            return Err(ImageError::UnsupportedFileType {
                path: source.to_path_buf(),
            });
        }
        let size = meta.len();
        let header = self.header(name, None, EntryType::Regular, size, e)?;
        self.write(header.as_bytes())?;
        let mut buf = std::mem::take(&mut self.buf);
        let copied = self.copy(&mut file, &mut buf, source, size, expected);
        self.buf = buf;
        copied?;
        // Closed first: whoever frees the file must not leave the last
        // reference (and the freeing) to this thread.
        drop(file);
        if let Some(release) = self.hooks.release.as_mut() {
            release(source);
        }
        self.pad()
    }

    /// Copy the `size` bytes of `file` (at `source`) through `buf`; when
    /// `expected` is given, they must hash to it.
    fn copy(
        &mut self,
        file: &mut File,
        buf: &mut [u8],
        source: &Path,
        size: u64,
        expected: Option<&Digest>,
    ) -> Result<(), ImageError> {
        let mut left = size;
        let mut content = (expected.is_some() || self.hooks.digests.is_some()).then(Sha256::new);
        while left > 0 {
            self.cancel.check()?;
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(ImageError::SourceChanged {
                        path: source.to_path_buf(),
                    });
                }
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(ImageError::Io {
                        path: source.to_path_buf(),
                        source: err,
                    });
                }
            };
            if let Some(content) = &mut content {
                content.update(&buf[..n]);
            }
            self.write(&buf[..n])?;
            left -= n as u64;
        }
        // A file that grew would be cut short silently: check it ended.
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(ImageError::SourceChanged {
                    path: source.to_path_buf(),
                });
            }
            Err(err) => {
                return Err(ImageError::Io {
                    path: source.to_path_buf(),
                    source: err,
                });
            }
        }
        if let Some(content) = content {
            let digest = Digest::from_hasher(content);
            if expected.is_some_and(|expected| *expected != digest) {
                return Err(ImageError::SourceChanged {
                    path: source.to_path_buf(),
                });
            }
            if let Some(digests) = self.hooks.digests.as_mut() {
                digests.insert(source.to_path_buf(), digest);
            }
        }
        Ok(())
    }

    /// The header of one entry, preceded (written here) by GNU long-name
    /// and long-link records when the name or target does not fit.
    fn header(
        &mut self,
        name: &str,
        link: Option<&str>,
        kind: EntryType,
        size: u64,
        e: &LayerEntry,
    ) -> Result<Header, ImageError> {
        if name.len() > NAME_FIELD {
            self.long_record(EntryType::GNULongName, name)?;
        }
        if let Some(target) = link.filter(|t| t.len() > NAME_FIELD) {
            self.long_record(EntryType::GNULongLink, target)?;
        }
        let mut header = Header::new_gnu();
        set_field(&mut header, Field::Name, name);
        if let Some(target) = link {
            set_field(&mut header, Field::Link, target);
        }
        header.set_entry_type(kind);
        header.set_mode(e.mode & 0o7777);
        header.set_uid(u64::from(e.uid));
        header.set_gid(u64::from(e.gid));
        header.set_size(size);
        header.set_mtime(self.epoch);
        header.set_cksum();
        Ok(header)
    }

    /// A `././@LongLink` record carrying a name too long for the header, as
    /// GNU tar writes it.
    fn long_record(&mut self, kind: EntryType, value: &str) -> Result<(), ImageError> {
        let mut header = Header::new_gnu();
        set_field(&mut header, Field::Name, "././@LongLink");
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(value.len() as u64 + 1);
        header.set_cksum();
        self.write(header.as_bytes())?;
        self.write(value.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn finish(mut self) -> Result<(W, Digest, u64), ImageError> {
        self.write(&[0u8; 2 * BLOCK])?;
        Ok(self.out.finish())
    }
}

enum Field {
    Name,
    Link,
}

/// Put the first 100 bytes of `value` in a name field. Longer values went
/// into a long-name record first; readers take the name from there.
fn set_field(header: &mut Header, field: Field, value: &str) {
    let old = header.as_old_mut();
    let slot = match field {
        Field::Name => &mut old.name,
        Field::Link => &mut old.linkname,
    };
    let bytes = value.as_bytes();
    let n = bytes.len().min(slot.len());
    slot[..n].copy_from_slice(&bytes[..n]);
}

/// The diff_id of the gzip layer `layer` in `store`: the digest of its
/// uncompressed tar. The blob is verified against its digest on the way
/// ([`ImageError::CorruptBlob`]); one that is not gzip is
/// [`ImageError::InvalidLayer`]. For layers that arrive with a diff_id
/// someone else computed (a shared cache), to check it.
pub fn layer_diff_id(store: &Store, layer: &crate::Descriptor) -> Result<Digest, ImageError> {
    let path = store.blob_path(&layer.digest);
    let reader = crate::digest::VerifyingReader::new(
        store.open_blob(&layer.digest)?,
        layer.digest.clone(),
        layer.size,
    );
    let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(reader));
    let mut out = HashWriter::new(std::io::sink());
    std::io::copy(&mut decoder, &mut out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData && e.to_string().contains("digest") {
            ImageError::CorruptBlob {
                digest: layer.digest.clone(),
                path,
            }
        } else {
            ImageError::InvalidLayer {
                layer: layer.digest.clone(),
                reason: e.to_string(),
            }
        }
    })?;
    let (_, digest, _) = out.finish();
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cancel;
    use kiln_testkit::{bytes_read, once_read};

    /// Bytes this process has read through read(2) so far (`rchar`): how a
    /// test sees how far a long step got, without a clock.
    fn file_entry(path: &str, source: &Path) -> LayerEntry {
        LayerEntry {
            path: path.to_owned(),
            kind: EntryKind::File {
                source: source.to_path_buf(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    /// Files in the store's blob folder, temporary ones included.
    fn blob_files(store: &Store) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(store.root().join("blobs/sha256"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_layer_cancelled_mid_file_stops_long_before_the_end_and_leaves_no_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        // 64 GiB, sparse: reading it through tar and gzip takes minutes.
        let huge = tmp.path().join("huge");
        let size: u64 = 64 << 30;
        File::create(&huge)
            .and_then(|f| f.set_len(size))
            .expect("a sparse file");
        let cancel = Cancel::new();
        let store = Store::open(tmp.path().join("store"))
            .expect("store")
            .with_cancel(&cancel);
        let before = bytes_read();
        // Cancel once the writer has read 64 MiB of the file.
        let watcher = once_read(64 << 20, {
            let cancel = cancel.clone();
            move || cancel.cancel()
        });
        let result = write_layer(&store, vec![file_entry("/huge", &huge)], 0);
        let read = bytes_read() - before;
        watcher.join().expect("watcher");
        assert!(
            matches!(result, Err(ImageError::Cancelled)),
            "not cancelled: {result:?}"
        );
        assert!(
            read < size / 16,
            "read {read} bytes of {size} before stopping"
        );
        let left = blob_files(&store);
        assert!(left.is_empty(), "left in the store: {left:?}");
    }

    #[test]
    fn a_file_whose_content_differs_from_its_hash_is_refused_by_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        let source = tmp.path().join("input.txt");
        std::fs::write(&source, b"hashed\n").expect("write");
        let hashed = Digest::of(b"hashed\n");
        let store = Store::open(tmp.path().join("store")).expect("store");
        let expected = BTreeMap::from([("/input.txt".to_owned(), hashed)]);
        // Unchanged: written.
        let entries = vec![file_entry("/input.txt", &source)];
        let blob = write_layer_expecting(&store, entries.clone(), 0, &expected);
        assert!(blob.is_ok(), "{blob:?}");
        // The same size, other content, after hashing: refused, no blob.
        std::fs::write(&source, b"change\n").expect("write");
        let before = blob_files(&store);
        let refused = write_layer_expecting(&store, entries, 0, &expected);
        assert!(
            matches!(&refused, Err(ImageError::SourceChanged { path }) if *path == source),
            "{refused:?}"
        );
        assert_eq!(blob_files(&store), before);
    }
}
