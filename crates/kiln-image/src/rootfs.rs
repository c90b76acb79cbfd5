//! `rootfs:` bases: a root filesystem, as a folder or a tar file (plain or
//! gzip), turned into the entries of one layer exactly as it is: permission
//! bits with setuid, setgid and sticky, numeric owners, hard links as hard
//! links, symlinks verbatim, device nodes and fifos. Only mtimes are
//! normalised (to the epoch, by the layer writer), so the same tree in two
//! folders, or unpacked at two times, gives the same layer.
//!
//! A folder is walked in place ([`rootfs_folder_entries`]); a tar file is
//! read once, its regular files staged into a folder the caller owns
//! ([`rootfs_tar_entries`]), and each of its entries checked by the same
//! rule as base layers (no absolute names, no `..`, no hard link out of the
//! tree, nothing beneath a symlink of the archive).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::{CopySpec, EntryKind, ImageError, LayerEntry, LayerPolicy};

/// The entries of the root filesystem in the folder `root`: everything
/// below it with its own metadata, hard links found across the whole tree.
/// The root folder itself is not an entry (the image's `/` belongs to the
/// runtime).
pub fn rootfs_folder_entries(root: &Path) -> Result<Vec<LayerEntry>, ImageError> {
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
    let mut entries = crate::plan_copy(root, &spec)?;
    crate::link_hard_links(&mut entries)?;
    Ok(entries)
}

/// Read the root filesystem in the tar file `tar` (plain or gzip, told
/// apart by its first bytes), staging each regular file's content under
/// `staging` (an empty folder the caller removes once the layer is
/// written), and return its entries. A hostile entry is
/// [`ImageError::InvalidRootfs`] naming it.
pub fn rootfs_tar_entries(tar: &Path, staging: &Path) -> Result<Vec<LayerEntry>, ImageError> {
    let file = File::open(tar).map_err(|e| invalid(tar, &e.to_string()))?;
    if file.metadata().map_err(ImageError::io(tar))?.is_dir() {
        return Err(invalid(tar, "it is a folder, not a tar file"));
    }
    let mut reader = BufReader::with_capacity(1 << 17, file);
    let gzip = reader
        .fill_buf()
        .map_err(ImageError::io(tar))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        read_tar(tar, MultiGzDecoder::new(reader), staging)
    } else {
        read_tar(tar, reader, staging)
    }
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

    #[test]
    fn archive_names_become_image_paths() {
        assert_eq!(image_path("./usr/bin/"), "/usr/bin");
        assert_eq!(image_path("etc/passwd"), "/etc/passwd");
        assert_eq!(image_path("./"), "/");
    }
}
