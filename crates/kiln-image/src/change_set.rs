//! What a command changed in a container's filesystem, turned into the
//! entries of one layer: the changed paths' content taken from a tar of the
//! whole filesystem, deletions as OCI whiteouts. The entries then go
//! through [`write_layer`](crate::write_layer) like any other layer's, so
//! they are normalised the same way (sorted, epoch mtimes, numeric owners,
//! no xattrs).
//!
//! The changed paths are read either from that tar
//! ([`change_set_entries`]) or, much faster, from a folder that holds
//! exactly what changed, such as an overlay filesystem's upper folder
//! ([`change_set_entries_from_dir`]); both give the same entries.
//!
//! This module knows nothing of the container engine: it is handed the list
//! of changes and the tar or folder, as plain values and paths.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::entry::check_image_path;
use crate::{EntryKind, LayerEntry};

/// The prefix of an OCI whiteout: `.wh.NAME` beside a path deletes it.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// The mode of a whiteout entry. Docker's classic builder and containerd's
/// differ (BuildKit) both write whiteouts with mode 0, owner 0:0; kiln
/// does the same, so the bytes never depend on the deleted file.
pub const WHITEOUT_MODE: u32 = 0;

/// One path a container changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathChange {
    /// Absolute in-image path.
    pub path: String,
    /// What happened to it.
    pub kind: PathChangeKind,
}

/// What happened to a changed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathChangeKind {
    /// It is new.
    Added,
    /// It existed and changed.
    Modified,
    /// It was removed (a removed folder's content is not listed).
    Deleted,
}

/// Why a change set could not become layer entries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeSetError {
    /// Reading the export or writing a staged file failed.
    #[error("{}", path.display())]
    Io {
        /// The host file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The command left something a layer cannot hold.
    #[error("{path}: the command created a {kind}; a layer holds only files, folders and symlinks")]
    SpecialFile {
        /// The in-image path.
        path: String,
        /// `fifo`, `character device`, `block device` or `socket`.
        kind: &'static str,
    },
    /// A changed path that the filesystem export does not hold.
    #[error("{path}: listed as changed, but missing from the container's filesystem export")]
    NotExported {
        /// The in-image path.
        path: String,
    },
    /// The folder of changes cannot stand for the changed path: it is
    /// missing there, or overlay keeps its content or name elsewhere
    /// (metacopy, redirect). The caller reads the export instead.
    #[error("{path}: not readable from the folder of changes: {reason}")]
    NotInChangesDir {
        /// The in-image path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A path that cannot be an in-image path.
    #[error("{path:?}: not a usable path in a layer: {reason}")]
    InvalidPath {
        /// The path as found.
        path: String,
        /// Why.
        reason: String,
    },
}

impl ChangeSetError {
    /// Which kind of failure this is: every variant is the work failing
    /// (what the command left, or reading it), never the user's input.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        match self {
            ChangeSetError::Io { .. }
            | ChangeSetError::SpecialFile { .. }
            | ChangeSetError::NotExported { .. }
            | ChangeSetError::NotInChangesDir { .. }
            | ChangeSetError::InvalidPath { .. } => kiln_error_kind::ErrorKind::Work,
        }
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// An export's entry path as an in-image path: `./etc/` → `/etc`.
fn image_path(raw: &Path) -> Result<String, ChangeSetError> {
    let text = raw.to_str().ok_or_else(|| ChangeSetError::InvalidPath {
        path: raw.to_string_lossy().into_owned(),
        reason: "it is not UTF-8".into(),
    })?;
    let trimmed = text
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    Ok(format!("/{trimmed}"))
}

/// The entries of the layer that holds `changes`, reading the changed
/// paths' content from `export`, a tar of the container's whole filesystem
/// (as `docker export` writes it). Each regular file's content is staged as
/// a file in `staging`, which must outlive the call to
/// [`write_layer`](crate::write_layer).
///
/// - Added and modified files, folders and symlinks keep the export's mode
///   (with setuid, setgid and sticky) and numeric owner. A hard link
///   becomes a regular file with its target's content.
/// - A deleted path becomes a whiteout `.wh.NAME` in its folder: an empty
///   file of mode [`WHITEOUT_MODE`], owner 0:0. A folder that was removed
///   and created again needs no opaque marker: the engine lists every path
///   of the old folder that is gone, and each gets its own whiteout.
/// - Paths equal to or below one of `ignored` are left out, whatever
///   happened to them (the engine's own files, such as `/etc/hosts`).
/// - Fifos, sockets and device nodes are refused, naming the path.
///
/// The export is read sequentially, at most twice (the second time only
/// when a new hard link points at an unchanged file), so memory stays
/// bounded whatever its size.
pub fn change_set_entries(
    export: &Path,
    changes: &[PathChange],
    staging: &Path,
    ignored: &[&str],
) -> Result<Vec<LayerEntry>, ChangeSetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ChangeSetError::Io { path, source }
    };
    let (wanted, deleted) = classify(changes, ignored)?;

    let mut stager = Stager {
        dir: staging,
        count: 0,
    };
    let mut entries = Vec::with_capacity(wanted.len() + deleted.len());
    let mut staged: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Hard links whose target was not changed: (entry, target path).
    let mut pending: Vec<(LayerEntry, String)> = Vec::new();
    let mut found = BTreeSet::new();

    let file = File::open(export).map_err(io(export))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 17, file));
    for entry in archive.entries().map_err(io(export))? {
        let mut entry = entry.map_err(io(export))?;
        let path = image_path(&entry.path().map_err(io(export))?)?;
        if !wanted.contains(&path) {
            continue;
        }
        let header = entry.header();
        let mode = header.mode().map_err(io(export))? & 0o7777;
        let uid = u32::try_from(header.uid().map_err(io(export))?).unwrap_or(u32::MAX);
        let gid = u32::try_from(header.gid().map_err(io(export))?).unwrap_or(u32::MAX);
        let link = match header.link_name().map_err(io(export))? {
            Some(l) => Some(
                l.to_str()
                    .ok_or_else(|| ChangeSetError::InvalidPath {
                        path: path.clone(),
                        reason: "its link target is not UTF-8".into(),
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => {
                let source = stager.stage(&mut entry)?;
                staged.insert(path.clone(), source.clone());
                EntryKind::File { source }
            }
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink {
                target: link.unwrap_or_default(),
            },
            EntryType::Link => {
                let target = image_path(Path::new(&link.unwrap_or_default()))?;
                found.insert(path.clone());
                let e = LayerEntry {
                    path,
                    kind: EntryKind::Dir,
                    mode,
                    uid,
                    gid,
                };
                match staged.get(&target) {
                    Some(source) => entries.push(LayerEntry {
                        kind: EntryKind::File {
                            source: source.clone(),
                        },
                        ..e
                    }),
                    None => pending.push((e, target)),
                }
                continue;
            }
            EntryType::Fifo => return Err(special(path, "fifo")),
            EntryType::Char => return Err(special(path, "character device")),
            EntryType::Block => return Err(special(path, "block device")),
            _ => return Err(special(path, "special file")),
        };
        found.insert(path.clone());
        entries.push(LayerEntry {
            path,
            kind,
            mode,
            uid,
            gid,
        });
    }
    if let Some(missing) = wanted.iter().find(|p| !found.contains(*p)) {
        return Err(ChangeSetError::NotExported {
            path: missing.clone(),
        });
    }

    if !pending.is_empty() {
        // New hard links to files the command did not change: their
        // content is read in a second pass over the export.
        let targets: BTreeSet<&str> = pending.iter().map(|(_, t)| t.as_str()).collect();
        let file = File::open(export).map_err(io(export))?;
        let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 17, file));
        for entry in archive.entries().map_err(io(export))? {
            let mut entry = entry.map_err(io(export))?;
            let path = image_path(&entry.path().map_err(io(export))?)?;
            let regular = matches!(
                entry.header().entry_type(),
                EntryType::Regular | EntryType::Continuous
            );
            if regular && targets.contains(path.as_str()) && !staged.contains_key(&path) {
                let source = stager.stage(&mut entry)?;
                staged.insert(path, source);
            }
        }
        for (e, target) in pending {
            let source = staged
                .get(&target)
                .ok_or_else(|| ChangeSetError::NotExported {
                    path: target.clone(),
                })?
                .clone();
            entries.push(LayerEntry {
                kind: EntryKind::File { source },
                ..e
            });
        }
    }

    entries.extend(whiteouts(&deleted, staging)?);
    Ok(entries)
}

/// The changed paths a layer holds (added or modified) and the deleted
/// ones, each checked, without `/` and the `ignored` paths.
fn classify(
    changes: &[PathChange],
    ignored: &[&str],
) -> Result<(BTreeSet<String>, BTreeSet<String>), ChangeSetError> {
    let mut wanted = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for change in changes {
        check_image_path(&change.path).map_err(|reason| ChangeSetError::InvalidPath {
            path: change.path.clone(),
            reason,
        })?;
        if change.path == "/" || ignored.iter().any(|i| under(&change.path, i)) {
            continue;
        }
        match change.kind {
            PathChangeKind::Added | PathChangeKind::Modified => {
                wanted.insert(change.path.clone());
            }
            PathChangeKind::Deleted => {
                deleted.insert(change.path.clone());
            }
        }
    }
    Ok((wanted, deleted))
}

/// One whiteout entry per deleted path, all sharing one empty file staged
/// in `staging`.
fn whiteouts(
    deleted: &BTreeSet<String>,
    staging: &Path,
) -> Result<Vec<LayerEntry>, ChangeSetError> {
    let mut entries = Vec::with_capacity(deleted.len());
    if deleted.is_empty() {
        return Ok(entries);
    }
    let empty = staging.join("whiteout");
    File::create(&empty).map_err(|source| ChangeSetError::Io {
        path: empty.clone(),
        source,
    })?;
    for path in deleted {
        if let Some((parent, name)) = path.rsplit_once('/') {
            entries.push(LayerEntry {
                path: format!("{parent}/{WHITEOUT_PREFIX}{name}"),
                kind: EntryKind::File {
                    source: empty.clone(),
                },
                mode: WHITEOUT_MODE,
                uid: 0,
                gid: 0,
            });
        }
    }
    Ok(entries)
}

/// The entries of the layer that holds `changes`, as
/// [`change_set_entries`] gives them, but read from `dir`: a folder that
/// holds every added and modified path with its content, mode and numeric
/// owner (an overlay filesystem's upper folder). Only the changed paths
/// are read, never the rest of the filesystem, and files are not copied:
/// each file entry's source is the file in `dir`, which must stay as it is
/// until [`write_layer`](crate::write_layer) has read it. `staging` gets
/// only the empty file whiteouts share.
///
/// A path missing from `dir`, under a symlink there, or marked by overlay
/// as kept elsewhere (metacopy, redirect) is
/// [`ChangeSetError::NotInChangesDir`]: read the export instead. Hard
/// links become regular files, as in the export.
pub fn change_set_entries_from_dir(
    dir: &Path,
    changes: &[PathChange],
    staging: &Path,
    ignored: &[&str],
) -> Result<Vec<LayerEntry>, ChangeSetError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (wanted, deleted) = classify(changes, ignored)?;
    let not_there = |path: &str, reason: String| ChangeSetError::NotInChangesDir {
        path: path.to_owned(),
        reason,
    };
    let mut entries = Vec::with_capacity(wanted.len() + deleted.len());
    // Folders of `dir` known to be real folders (not symlinks).
    let mut real_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for path in &wanted {
        let host = dir.join(path.trim_start_matches('/'));
        // Every folder on the way must be a real folder in `dir`: a symlink
        // there would lead out of it.
        let mut ancestor = host.parent();
        while let Some(a) = ancestor.filter(|a| a.starts_with(dir) && *a != dir) {
            if real_dirs.contains(a) {
                break;
            }
            let meta = std::fs::symlink_metadata(a)
                .map_err(|e| not_there(path, format!("{}: {e}", a.display())))?;
            if !meta.file_type().is_dir() {
                return Err(not_there(path, format!("{} is not a folder", a.display())));
            }
            real_dirs.insert(a.to_path_buf());
            ancestor = a.parent();
        }
        let meta = std::fs::symlink_metadata(&host).map_err(|e| not_there(path, e.to_string()))?;
        let attrs = crate::overlay::xattr_names(&host)?;
        if let Some(attr) = crate::overlay::kept_elsewhere(&attrs) {
            return Err(not_there(
                path,
                format!("overlay keeps it elsewhere ({attr})"),
            ));
        }
        let file_type = meta.file_type();
        let kind = if file_type.is_file() {
            EntryKind::File {
                source: host.clone(),
            }
        } else if file_type.is_dir() {
            real_dirs.insert(host.clone());
            EntryKind::Dir
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&host).map_err(|source| ChangeSetError::Io {
                path: host.clone(),
                source,
            })?;
            EntryKind::Symlink {
                target: target
                    .to_str()
                    .ok_or_else(|| ChangeSetError::InvalidPath {
                        path: path.clone(),
                        reason: "its link target is not UTF-8".into(),
                    })?
                    .to_owned(),
            }
        } else if file_type.is_fifo() {
            return Err(special(path.clone(), "fifo"));
        } else if file_type.is_char_device() {
            return Err(special(path.clone(), "character device"));
        } else if file_type.is_block_device() {
            return Err(special(path.clone(), "block device"));
        } else {
            return Err(special(path.clone(), "special file"));
        };
        entries.push(LayerEntry {
            path: path.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    entries.extend(whiteouts(&deleted, staging)?);
    Ok(entries)
}

fn special(path: String, kind: &'static str) -> ChangeSetError {
    ChangeSetError::SpecialFile { path, kind }
}

/// Copies regular files' content out of the export into numbered files.
struct Stager<'a> {
    dir: &'a Path,
    count: u64,
}

impl Stager<'_> {
    fn stage(&mut self, content: &mut impl std::io::Read) -> Result<PathBuf, ChangeSetError> {
        self.count += 1;
        let path = self.dir.join(format!("f{}", self.count));
        let io = |source| ChangeSetError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::create(&path).map_err(io)?;
        std::io::copy(content, &mut file).map_err(io)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(size);
        h.set_cksum();
        h
    }

    /// A little filesystem export, as `docker export` writes one.
    fn export(dir: &Path) -> PathBuf {
        let path = dir.join("export.tar");
        let mut b = tar::Builder::new(File::create(&path).expect("create"));
        b.append(&header("bin/", EntryType::Directory, 0o755, 0), &[][..])
            .expect("dir");
        b.append(
            &header("bin/busybox", EntryType::Regular, 0o755, 3),
            &b"bb!"[..],
        )
        .expect("file");
        let mut link = header("bin/hl", EntryType::Link, 0o755, 0);
        link.set_link_name("bin/busybox").expect("link");
        link.set_cksum();
        b.append(&link, &[][..]).expect("hard link");
        let mut sym = header("bin/sh", EntryType::Symlink, 0o777, 0);
        sym.set_link_name("busybox").expect("link");
        sym.set_cksum();
        b.append(&sym, &[][..]).expect("symlink");
        b.append(&header("etc/", EntryType::Directory, 0o755, 0), &[][..])
            .expect("dir");
        b.append(&header("etc/hosts", EntryType::Regular, 0o644, 0), &[][..])
            .expect("hosts");
        b.append(
            &header("etc/motd", EntryType::Regular, 0o4640, 2),
            &b"hi"[..],
        )
        .expect("motd");
        b.append(&header("ff", EntryType::Fifo, 0o644, 0), &[][..])
            .expect("fifo");
        b.finish().expect("finish");
        path
    }

    fn change(path: &str, kind: PathChangeKind) -> PathChange {
        PathChange {
            path: path.into(),
            kind,
        }
    }

    /// What the command changed in [`export`]'s filesystem.
    fn fixture_changes() -> Vec<PathChange> {
        use PathChangeKind::*;
        vec![
            change("/bin", Modified),
            change("/bin/hl", Added),
            change("/etc", Modified),
            change("/etc/hosts", Modified),
            change("/etc/motd", Added),
            change("/etc/old", Deleted),
            change("/gone", Deleted),
        ]
    }

    #[test]
    fn changes_become_entries_and_whiteouts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let export = export(tmp.path());
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).expect("mkdir");
        let changes = fixture_changes();
        let entries =
            change_set_entries(&export, &changes, &staging, &["/etc/hosts"]).expect("entries");
        let seen = described(&entries);
        let want = |p: &str, k: &str, m: u32| (p.to_owned(), k.to_owned(), m);
        assert_eq!(
            seen,
            vec![
                want("/.wh.gone", "", 0),
                want("/bin", "dir", 0o755),
                want("/bin/hl", "bb!", 0o755),
                want("/etc", "dir", 0o755),
                want("/etc/.wh.old", "", 0),
                want("/etc/motd", "hi", 0o4640),
            ]
        );
        let motd = entries
            .iter()
            .find(|e| e.path == "/etc/motd")
            .expect("motd");
        assert_eq!((motd.uid, motd.gid), (1000, 1000));
        let whiteout = entries.iter().find(|e| e.path == "/.wh.gone").expect("wh");
        assert_eq!((whiteout.uid, whiteout.gid), (0, 0));
    }

    #[test]
    fn special_files_and_unexported_paths_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let export = export(tmp.path());
        let err = change_set_entries(
            &export,
            &[change("/ff", PathChangeKind::Added)],
            tmp.path(),
            &[],
        )
        .expect_err("fifo");
        assert_eq!(
            err.to_string(),
            "/ff: the command created a fifo; a layer holds only files, folders and symlinks"
        );
        let err = change_set_entries(
            &export,
            &[change("/nowhere", PathChangeKind::Added)],
            tmp.path(),
            &[],
        )
        .expect_err("missing");
        assert!(matches!(err, ChangeSetError::NotExported { path } if path == "/nowhere"));
    }

    /// What the entries say, files by content: comparable across the tar
    /// and folder readers.
    fn described(entries: &[LayerEntry]) -> Vec<(String, String, u32)> {
        let mut seen: Vec<(String, String, u32)> = entries
            .iter()
            .map(|e| {
                let kind = match &e.kind {
                    EntryKind::File { source } => {
                        String::from_utf8(std::fs::read(source).expect("source")).expect("utf8")
                    }
                    EntryKind::Dir => "dir".into(),
                    EntryKind::Symlink { target } => format!("-> {target}"),
                    other => format!("{other:?}"),
                };
                (e.path.clone(), kind, e.mode)
            })
            .collect();
        seen.sort();
        seen
    }

    #[test]
    fn a_folder_of_changes_gives_what_the_export_gives() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let export = export(tmp.path());
        // The same changed paths as an overlay upper folder holds them.
        let upper = tmp.path().join("upper");
        let set_mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        std::fs::create_dir_all(upper.join("bin")).expect("mkdir");
        std::fs::create_dir_all(upper.join("etc")).expect("mkdir");
        std::fs::write(upper.join("bin/busybox"), "bb!").expect("write");
        set_mode(&upper.join("bin/busybox"), 0o755);
        std::fs::hard_link(upper.join("bin/busybox"), upper.join("bin/hl")).expect("link");
        std::fs::write(upper.join("etc/motd"), "hi").expect("write");
        set_mode(&upper.join("etc/motd"), 0o4640);
        std::fs::write(upper.join("etc/hosts"), "").expect("write");
        let changes = fixture_changes();
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).expect("mkdir");
        let from_tar =
            change_set_entries(&export, &changes, &staging, &["/etc/hosts"]).expect("tar");
        let staging2 = tmp.path().join("staging2");
        std::fs::create_dir(&staging2).expect("mkdir");
        let from_dir = change_set_entries_from_dir(&upper, &changes, &staging2, &["/etc/hosts"])
            .expect("folder");
        assert_eq!(described(&from_dir), described(&from_tar));
        // Files are read in place, not copied.
        let hl = from_dir.iter().find(|e| e.path == "/bin/hl").expect("hl");
        assert!(matches!(&hl.kind, EntryKind::File { source } if *source == upper.join("bin/hl")));
    }

    #[test]
    fn a_folder_of_changes_that_cannot_stand_for_a_path_says_so() {
        let tmp = tempfile::tempdir().expect("tmp");
        let upper = tmp.path().join("upper");
        std::fs::create_dir_all(&upper).expect("mkdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(&outside, upper.join("lnk")).expect("symlink");
        for path in ["/missing", "/lnk/secret"] {
            let err = change_set_entries_from_dir(
                &upper,
                &[change(path, PathChangeKind::Added)],
                tmp.path(),
                &[],
            )
            .expect_err(path);
            assert!(
                matches!(&err, ChangeSetError::NotInChangesDir { path: p, .. } if p == path),
                "{err}"
            );
        }
    }
}
