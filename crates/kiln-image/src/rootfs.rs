//! `rootfs:` bases: a root filesystem, as a folder or a tar file (plain or
//! gzip), turned into the entries of one layer exactly as it is: permission
//! bits with setuid, setgid and sticky, numeric owners, hard links as hard
//! links, symlinks verbatim, device nodes and fifos. Only mtimes are
//! normalised (to the epoch, by the layer writer), so the same tree in two
//! folders, or unpacked at two times, gives the same layer.
//!
//! A folder is walked in place ([`rootfs_folder_entries`]); a tar file is
//! read once, hashed on the way, its regular files staged into a folder the
//! caller owns ([`rootfs_tar_entries`]), and each of its entries checked by the same
//! rule as base layers (no absolute names, no `..`, no hard link out of the
//! tree, nothing beneath a symlink of the archive).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::cancel::CancelReader;
use crate::digest::HashReader;
use crate::entry::FileMetadata;
use crate::tree_stamp::TreeStamp;
use crate::{Cancel, CopySpec, Digest, EntryKind, ImageError, LayerEntry, LayerPolicy};

/// The entries of the root filesystem in the folder `root`: everything
/// below it with its own metadata, hard links found across the whole tree.
/// The root folder itself is not an entry (the image's `/` belongs to the
/// runtime).
pub fn rootfs_folder_entries(root: &Path) -> Result<Vec<LayerEntry>, ImageError> {
    rootfs_folder_walk(root).map(|walk| walk.entries)
}

/// What a walk of a `rootfs:` folder gives (see [`rootfs_folder_walk`]).
#[derive(Debug)]
pub struct FolderWalk {
    /// The entries, as [`rootfs_folder_entries`] gives them.
    pub entries: Vec<LayerEntry>,
    /// The metadata the walk read for each regular file, by host path.
    pub files: FileMetadata,
    /// The folder's stamp as this walk saw it: the same as
    /// [`rootfs_folder_stamp`](crate::rootfs_folder_stamp) gives for the
    /// same tree, so that a key made from these entries can be remembered
    /// under it.
    pub stamp: TreeStamp,
}

/// [`rootfs_folder_entries`], with the metadata the walk read for each
/// regular file, by host path (each entry is stat-ed once, and whoever
/// hashes the files next, the stat cache, can take it from there), and the
/// folder's [`TreeStamp`].
pub fn rootfs_folder_walk(root: &Path) -> Result<FolderWalk, ImageError> {
    let meta = std::fs::metadata(root).map_err(|e| invalid(root, &e.to_string()))?;
    if !meta.is_dir() {
        return Err(invalid(root, "it is not a folder"));
    }
    let spec = CopySpec {
        src: "./".into(),
        dest: "/".into(),
        mode: None,
        uid: 0,
        gid: 0,
        exclude: Vec::new(),
        preserve: true,
    };
    let started = crate::tree_stamp::now_ns();
    let mut files = FileMetadata::new();
    let mut entries = crate::entry::plan_copy_noting(root, &spec, &mut files)?;
    let stamp = crate::tree_stamp::stamp_of_entries(&entries, &files, started);
    crate::entry::link_hard_links_noted(&mut entries, &files)?;
    Ok(FolderWalk {
        entries,
        files,
        stamp,
    })
}

/// Read the root filesystem in the tar file `tar` (plain or gzip, told
/// apart by its first bytes), staging each regular file's content under
/// `staging` (an empty folder the caller removes once the layer is
/// written), and return its entries. A hostile entry is
/// [`ImageError::InvalidRootfs`] naming it.
///
/// The file is read once: every byte of it is hashed on the way, and
/// unless the digest is `expected` (what the layer's cache key was made
/// from) the result is [`ImageError::SourceChanged`] naming the file, so a
/// tar rewritten between hashing and unpacking never becomes a layer under
/// the other content's key. The read stops within a buffer once `cancel`
/// is cancelled ([`ImageError::Cancelled`]).
pub fn rootfs_tar_entries(
    tar: &Path,
    staging: &Path,
    expected: &Digest,
    cancel: &Cancel,
) -> Result<Vec<LayerEntry>, ImageError> {
    let file = File::open(tar).map_err(|e| invalid(tar, &e.to_string()))?;
    if file.metadata().map_err(ImageError::io(tar))?.is_dir() {
        return Err(invalid(tar, "it is a folder, not a tar file"));
    }
    let hashed = HashReader::new(CancelReader::new(file, cancel.clone()));
    let mut reader = BufReader::with_capacity(1 << 17, hashed);
    let read = read_whole(tar, &mut reader, staging);
    match read {
        Ok(entries) if reader.into_inner().finish() == *expected => Ok(entries),
        Ok(_) => Err(ImageError::SourceChanged {
            path: tar.to_path_buf(),
        }),
        // A tar rewritten while it is read often breaks the reader before
        // its end is hashed: hash it again to tell a change from a bad tar.
        Err(_) if cancel.is_cancelled() => Err(ImageError::Cancelled),
        Err(_) if !file_matches(tar, expected) => Err(ImageError::SourceChanged {
            path: tar.to_path_buf(),
        }),
        Err(e) => Err(e),
    }
}

/// The entries of the tar in `reader` (gzip or plain), then every byte
/// left after its end read too, so that what hashes `reader` sees the
/// whole file.
fn read_whole<R: BufRead>(
    tar: &Path,
    reader: &mut R,
    staging: &Path,
) -> Result<Vec<LayerEntry>, ImageError> {
    let gzip = reader
        .fill_buf()
        .map_err(ImageError::io(tar))?
        .starts_with(&[0x1f, 0x8b]);
    let entries = if gzip {
        read_tar(tar, MultiGzDecoder::new(&mut *reader), staging)?
    } else {
        read_tar(tar, &mut *reader, staging)?
    };
    std::io::copy(reader, &mut std::io::sink()).map_err(ImageError::io(tar))?;
    Ok(entries)
}

/// Whether the file at `path` hashes to `expected` now.
fn file_matches(path: &Path, expected: &Digest) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut hashed = HashReader::new(file);
    std::io::copy(&mut hashed, &mut std::io::sink()).is_ok() && hashed.finish() == *expected
}

fn invalid(path: &Path, reason: &str) -> ImageError {
    ImageError::InvalidRootfs {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

fn read_tar<R: Read>(tar: &Path, reader: R, staging: &Path) -> Result<Vec<LayerEntry>, ImageError> {
    let not_tar = |e: std::io::Error| invalid(tar, &format!("it is not a readable tar file: {e}"));
    let mut archive = tar::Archive::new(reader);
    let mut symlinks = BTreeSet::new();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, entry) in archive.entries().map_err(not_tar)?.enumerate() {
        let mut entry = entry.map_err(not_tar)?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| invalid(tar, "an entry's name is not UTF-8"))?;
        let header = entry.header();
        let kind = header.entry_type();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        crate::layer_policy::check_entry(
            &name,
            kind,
            link.as_deref(),
            LayerPolicy::default(),
            &mut symlinks,
        )
        .map_err(|reason| invalid(tar, &format!("entry {name:?} is refused: {reason}")))?;
        let path = image_path(&name);
        if path == "/" {
            continue;
        }
        let mode = header.mode().map_err(not_tar)? & 0o7777;
        let uid = u32::try_from(header.uid().map_err(not_tar)?).unwrap_or(u32::MAX);
        let gid = u32::try_from(header.gid().map_err(not_tar)?).unwrap_or(u32::MAX);
        let device = || -> Result<(u32, u32), ImageError> {
            let major = header.device_major().map_err(not_tar)?.unwrap_or(0);
            let minor = header.device_minor().map_err(not_tar)?.unwrap_or(0);
            Ok((major, minor))
        };
        let kind = match kind {
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink {
                target: link.unwrap_or_default(),
            },
            EntryType::Link => EntryKind::HardLink {
                target: image_path(&link.unwrap_or_default()),
            },
            EntryType::Char => {
                let (major, minor) = device()?;
                EntryKind::CharDevice { major, minor }
            }
            EntryType::Block => {
                let (major, minor) = device()?;
                EntryKind::BlockDevice { major, minor }
            }
            EntryType::Fifo => EntryKind::Fifo,
            EntryType::Regular | EntryType::Continuous => {
                let source = staging.join(n.to_string());
                let mut staged = File::create(&source).map_err(ImageError::io(&source))?;
                std::io::copy(&mut entry, &mut staged).map_err(not_tar)?;
                EntryKind::File { source }
            }
            other => {
                return Err(invalid(
                    tar,
                    &format!(
                        "entry {name:?} is of tar type {other:?}, which a root filesystem cannot hold"
                    ),
                ));
            }
        };
        // A later entry of the same path replaces an earlier one, as tar -x does.
        if !seen.insert(path.clone()) {
            out.retain(|e: &LayerEntry| e.path != path);
        }
        out.push(LayerEntry {
            path,
            kind,
            mode,
            uid,
            gid,
        });
    }
    Ok(out)
}

/// `./usr/bin/` → `/usr/bin`; checked names only.
fn image_path(name: &str) -> String {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Whether `path` is a folder (else it is read as a tar file).
pub fn rootfs_is_folder(path: &Path) -> Result<bool, ImageError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) => Err(invalid(
            path,
            &format!("{e}: give a folder or a tar file (plain or gzip)"),
        )),
    }
}

/// Where the staged files of a tar rootfs go, inside `store`'s bookkeeping
/// folder (same file system as the blobs; removed on drop).
pub fn rootfs_staging(store: &crate::Store) -> Result<tempfile::TempDir, ImageError> {
    let dir: PathBuf = store.bookkeeping_dir();
    std::fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
    tempfile::TempDir::new_in(&dir).map_err(ImageError::io(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip tar of one file, with `tail` after the gzip stream (bytes a
    /// tar reader never needs, still part of the file's digest).
    fn gzip_tar(content: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, "etc/app.conf", content)
            .expect("append");
        let plain = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).expect("gzip");
        let mut bytes = gz.finish().expect("gzip");
        bytes.extend_from_slice(tail);
        bytes
    }

    #[test]
    fn a_tar_is_checked_against_the_digest_of_every_byte_of_its_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("rootfs.tar.gz");
        let bytes = gzip_tar(b"mode=old\n", &[0; 4096]);
        std::fs::write(&path, &bytes).expect("write");
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).expect("mkdir");
        let cancel = Cancel::new();

        let entries = rootfs_tar_entries(&path, &staging, &Digest::of(&bytes), &cancel)
            .expect("the digest of the whole file");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].path, "/etc/app.conf");

        // The digest the key was made from is another content's.
        let other = Digest::of(&gzip_tar(b"mode=new\n", &[0; 4096]));
        let err = rootfs_tar_entries(&path, &staging, &other, &cancel).expect_err("changed");
        assert!(matches!(err, ImageError::SourceChanged { .. }), "{err}");
        assert!(err.to_string().contains("rootfs.tar.gz"), "{err}");

        // The tail counts: the digest of the gzip stream alone is not it.
        let head = &bytes[..bytes.len() - 4096];
        let err =
            rootfs_tar_entries(&path, &staging, &Digest::of(head), &cancel).expect_err("tail");
        assert!(matches!(err, ImageError::SourceChanged { .. }), "{err}");

        cancel.cancel();
        let err = rootfs_tar_entries(&path, &staging, &Digest::of(&bytes), &cancel)
            .expect_err("cancelled");
        assert!(matches!(err, ImageError::Cancelled), "{err}");
    }

    #[test]
    fn archive_names_become_image_paths() {
        assert_eq!(image_path("./usr/bin/"), "/usr/bin");
        assert_eq!(image_path("etc/passwd"), "/etc/passwd");
        assert_eq!(image_path("./"), "/");
    }
}
