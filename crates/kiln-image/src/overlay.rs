//! What a command changed in a container, found from an overlay
//! filesystem's folders: the upper folder (what the container wrote) laid
//! over its lower folders (the image it ran on, top first). Only the upper
//! folder is walked, and the lower folders are looked up only at the paths
//! it holds, so the cost follows what changed, not the size of the image.
//!
//! The list is the one a comparison of the filesystem before and after
//! gives (Docker's "naive" differ, which is what Docker 20.10 answers for
//! a container's changes): a path is added when it did not exist before,
//! modified when its type, mode, owner, device number or (for all but
//! folders) mtime or size differ, or its `security.capability` does, and
//! deleted when it existed before and no longer does. A folder with a
//! change anywhere below it is modified. So a folder overlay copied up only
//! to hold a changed child is modified, never added; a file copied up but
//! left as it was is not listed; and a folder removed and made again
//! (overlay marks it opaque) lists every old path it no longer holds as
//! deleted, each becoming its own whiteout.
//!
//! Overlay's own markers: a whiteout is a character device 0/0; an opaque
//! folder carries `trusted.overlay.opaque` (or `user.overlay.opaque`) = `y`.
//! An upper entry that keeps its name or content elsewhere (`redirect`,
//! `metacopy`) cannot be read this way: that is
//! [`ChangeSetError::NotInChangesDir`], and the caller asks the engine.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::change_set::{ChangeSetError, PathChange, PathChangeKind};

/// Overlay's extended attributes that mean an upper entry does not hold
/// what it stands for: its content is still below (`metacopy`) or it is a
/// renamed folder whose entries live under another name (`redirect`).
pub(crate) const OVERLAY_INDIRECTIONS: &[&str] = &[
    "trusted.overlay.metacopy",
    "trusted.overlay.redirect",
    "user.overlay.metacopy",
    "user.overlay.redirect",
];

/// The attributes that mark a folder opaque (it hides the lower folders'
/// entries of the same name), with overlay's trusted and `userxattr`
/// namespaces.
const OPAQUE: &[&str] = &["trusted.overlay.opaque", "user.overlay.opaque"];

/// The file capabilities a changed file is compared by, as the engine does.
const CAPABILITY: &str = "security.capability";

/// The paths that `upper`, an overlay upper folder, changes over `lowers`,
/// its lower folders, top first (for a Docker container: its `-init`
/// layer, then the image's layers from the top). Sorted by path; `/`
/// itself is never listed.
///
/// A path whose name is not UTF-8 is [`ChangeSetError::InvalidPath`]; an
/// overlay redirect or metacopy in `upper` is
/// [`ChangeSetError::NotInChangesDir`].
pub fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
) -> Result<Vec<PathChange>, ChangeSetError> {
    let mut out = Vec::new();
    walk(upper, "", lowers, false, &mut out)?;
    out.sort();
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// Walk the upper folder `dir` (in-image `path`, `""` for the root), whose
/// old content is the merge of `old_dirs` (top first). `hides_lower`: the
/// new folder holds only what `dir` holds (it or a folder above it is
/// opaque, or it is new). Whether anything below changed.
fn walk(
    dir: &Path,
    path: &str,
    old_dirs: &[PathBuf],
    hides_lower: bool,
    out: &mut Vec<PathChange>,
) -> Result<bool, ChangeSetError> {
    let mut names = Vec::new();
    for child in std::fs::read_dir(dir).map_err(io(dir))? {
        let child = child.map_err(io(dir))?;
        let name = child.file_name();
        let name = name.to_str().ok_or_else(|| ChangeSetError::InvalidPath {
            path: format!("{path}/{}", name.to_string_lossy()),
            reason: "it is not UTF-8".into(),
        })?;
        names.push(name.to_owned());
    }
    names.sort();
    let mut changed = false;
    for name in &names {
        let host = dir.join(name);
        let child = format!("{path}/{name}");
        let meta = std::fs::symlink_metadata(&host).map_err(io(&host))?;
        let old = look_up(old_dirs, name)?;
        if is_whiteout(&meta) {
            if old.is_some() {
                push(out, &child, PathChangeKind::Deleted);
                changed = true;
            }
            continue;
        }
        // One call lists what the checks below need.
        let attrs = xattr_names(&host)?;
        if let Some(attr) = kept_elsewhere(&attrs) {
            return Err(ChangeSetError::NotInChangesDir {
                path: child,
                reason: format!("overlay keeps it elsewhere ({attr})"),
            });
        }
        let is_dir = meta.file_type().is_dir();
        let Some(old) = old else {
            push(out, &child, PathChangeKind::Added);
            changed = true;
            if is_dir {
                walk(&host, &child, &[], true, out)?;
            }
            continue;
        };
        let capability = if attrs.iter().any(|a| a == CAPABILITY) {
            xattr(&host, CAPABILITY)?
        } else {
            None
        };
        let differs = stat_differs(&old.meta, &meta) || xattr(&old.host, CAPABILITY)? != capability;
        if differs {
            push(out, &child, PathChangeKind::Modified);
            changed = true;
        }
        if is_dir {
            let below = if old.meta.file_type().is_dir() {
                let opaque = hides_lower
                    || (attrs.iter().any(|a| OPAQUE.contains(&a.as_str())) && is_opaque(&host));
                walk(&host, &child, &old.dirs, opaque, out)?
            } else {
                walk(&host, &child, &[], true, out)?
            };
            if below && !differs {
                push(out, &child, PathChangeKind::Modified);
            }
            changed |= below;
        }
    }
    if hides_lower {
        // What the lower folders held here and the upper folder does not
        // name is gone.
        for gone in old_names(old_dirs)? {
            if names.binary_search(&gone).is_err() && look_up(old_dirs, &gone)?.is_some() {
                push(out, &format!("{path}/{gone}"), PathChangeKind::Deleted);
                changed = true;
            }
        }
    }
    Ok(changed)
}

fn push(out: &mut Vec<PathChange>, path: &str, kind: PathChangeKind) {
    out.push(PathChange {
        path: path.to_owned(),
        kind,
    });
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ChangeSetError + '_ {
    move |source| ChangeSetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A path as the lower folders merged show it.
struct Old {
    /// Its topmost entry.
    host: PathBuf,
    meta: Metadata,
    /// For a folder: the lower folders merged into it, top first.
    dirs: Vec<PathBuf>,
}

/// `name` in the folder merged from `dirs` (top first), as overlay shows
/// it: the topmost entry wins; a whiteout hides it and everything below;
/// a folder merges the folders of the same name below it, down to an
/// opaque one or to an entry that is not a folder.
fn look_up(dirs: &[PathBuf], name: &str) -> Result<Option<Old>, ChangeSetError> {
    let mut found: Option<Old> = None;
    for dir in dirs {
        let host = dir.join(name);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if absent(&e) => continue,
            Err(e) => return Err(io(&host)(e)),
        };
        if is_whiteout(&meta) || (found.is_some() && !meta.file_type().is_dir()) {
            break;
        }
        let is_dir = meta.file_type().is_dir();
        let opaque = is_dir && is_opaque(&host);
        match &mut found {
            None => {
                found = Some(Old {
                    host: host.clone(),
                    meta,
                    dirs: if is_dir { vec![host] } else { Vec::new() },
                });
                if !is_dir {
                    break;
                }
            }
            Some(old) => old.dirs.push(host),
        }
        if opaque {
            break;
        }
    }
    Ok(found)
}

/// Every name any of `dirs` holds, whiteouts included (the caller looks
/// each up), sorted and once each.
fn old_names(dirs: &[PathBuf]) -> Result<Vec<String>, ChangeSetError> {
    let mut names = Vec::new();
    for dir in dirs {
        for child in std::fs::read_dir(dir).map_err(io(dir))? {
            let child = child.map_err(io(dir))?;
            // A lower name that is not UTF-8 cannot be named in a layer;
            // the engine's list would show it lossily.
            names.push(child.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Not there: missing, or a parent is not a folder.
fn absent(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// Overlay's whiteout: a character device numbered 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    OPAQUE.iter().any(|attr| {
        let mut value = [0u8; 2];
        matches!(rustix::fs::lgetxattr(path, *attr, &mut value[..]), Ok(1) if value[0] == b'y')
    })
}

/// The names of `path`'s extended attributes (none where the filesystem
/// keeps none).
pub(crate) fn xattr_names(path: &Path) -> Result<Vec<String>, ChangeSetError> {
    use rustix::io::Errno;
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|&b| b == 0)
                    .filter(|name| !name.is_empty())
                    .map(|name| String::from_utf8_lossy(name).into_owned())
                    .collect());
            }
            Err(Errno::RANGE) => {
                let len = rustix::fs::llistxattr_query(path).map_err(|e| io(path)(e.into()))?;
                buf = vec![0u8; len.max(buf.len() * 2)];
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(io(path)(e.into())),
        }
    }
}

/// The first of `attrs` that says overlay keeps the entry's content or
/// name elsewhere.
pub(crate) fn kept_elsewhere(attrs: &[String]) -> Option<&str> {
    attrs
        .iter()
        .map(String::as_str)
        .find(|a| OVERLAY_INDIRECTIONS.contains(a))
}

/// The value of the extended attribute `name` of `path`, `None` when it has
/// none (or the filesystem keeps none).
fn xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, ChangeSetError> {
    use rustix::io::Errno;
    let none = |e: Errno| matches!(e, Errno::NODATA | Errno::NOTSUP);
    let len = match rustix::fs::lgetxattr_query(path, name) {
        Ok(len) => len,
        Err(e) if none(e) => return Ok(None),
        Err(e) => return Err(io(path)(e.into())),
    };
    let mut value = vec![0u8; len];
    match rustix::fs::lgetxattr(path, name, &mut value[..]) {
        Ok(n) => {
            value.truncate(n);
            Ok(Some(value))
        }
        Err(e) if none(e) => Ok(None),
        Err(e) => Err(io(path)(e.into())),
    }
}

/// Whether a path changed, judged as the engine judges it: type and mode,
/// owner and device number; for all but folders also the mtime (equal
/// seconds with either side's nanoseconds 0 count as the same, since tar
/// keeps whole seconds) and the size.
fn stat_differs(old: &Metadata, new: &Metadata) -> bool {
    let same_time = old.mtime() == new.mtime()
        && (old.mtime_nsec() == new.mtime_nsec() || old.mtime_nsec() == 0 || new.mtime_nsec() == 0);
    old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || old.rdev() != new.rdev()
        || (!old.file_type().is_dir() && (!same_time || old.size() != new.size()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A whiteout, as overlay makes one (needs CAP_MKNOD or a kernel that
    /// lets anyone make a 0/0 device; kiln's tests run as root).
    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .expect("mknod 0/0");
    }

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
            .expect("setxattr (trusted.* needs root)");
    }

    fn file(path: &Path, content: &str, mtime_secs: u64) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
        set_mtime(path, mtime_secs);
    }

    fn set_mtime(path: &Path, secs: u64) {
        std::fs::File::open(path)
            .expect("open")
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .expect("mtime");
    }

    fn dir(path: &Path) {
        std::fs::create_dir_all(path).expect("mkdir");
    }

    fn listed(changes: &[PathChange]) -> Vec<(String, char)> {
        changes
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    PathChangeKind::Added => 'A',
                    PathChangeKind::Modified => 'C',
                    PathChangeKind::Deleted => 'D',
                };
                (c.path.clone(), kind)
            })
            .collect()
    }

    /// Two lower folders (an `-init`-like top one and the base) and an
    /// upper folder as a command leaves it: a changed file, a file copied
    /// up unchanged, a removed file, a removed folder, a folder removed and
    /// made again (opaque), a new tree, and a name the top lower folder
    /// had whited out made again.
    #[test]
    fn the_upper_folder_lists_what_a_before_and_after_comparison_lists() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (init, base, upper) = (
            tmp.path().join("init"),
            tmp.path().join("base"),
            tmp.path().join("upper"),
        );
        file(&init.join("etc/hosts"), "", 1);
        file(&base.join("etc/passwd"), "root\n", 100);
        file(&base.join("etc/group"), "root\n", 100);
        file(&base.join("cfg/a"), "a", 100);
        file(&base.join("cfg/b"), "b", 100);
        file(&base.join("cfg/sub/x"), "x", 100);
        file(&base.join("gone.txt"), "gone", 100);
        file(&base.join("old-dir/f"), "f", 100);
        file(&base.join("keep/f"), "f", 100);
        file(&base.join("hidden"), "below the init whiteout", 100);
        dir(&base.join("opt"));
        whiteout(&init.join("hidden"));

        // useradd: passwd rewritten, group copied up as it was.
        file(&upper.join("etc/passwd"), "root\napp\n", 200);
        file(&upper.join("etc/group"), "root\n", 100);
        set_mtime(&upper.join("etc"), 200);
        // rm gone.txt, rm -rf old-dir.
        whiteout(&upper.join("gone.txt"));
        whiteout(&upper.join("old-dir"));
        // rm -rf cfg && mkdir cfg && echo c > cfg/c
        file(&upper.join("cfg/c"), "c", 200);
        set_xattr(&upper.join("cfg"), "trusted.overlay.opaque", b"y");
        // cp -a into a new folder.
        file(&upper.join("opt/lib/one.so"), "1", 100);
        file(&upper.join("opt/lib/deep/two.so"), "2", 100);
        // keep copied up (a child opened for writing, left as it was).
        file(&upper.join("keep/f"), "f", 100);
        // A name the image had removed, made again.
        file(&upper.join("hidden"), "new", 200);

        let changes = overlay_changes(&upper, &[init.clone(), base.clone()]).expect("walk");
        let want: Vec<(String, char)> = [
            ("/cfg", 'C'),
            ("/cfg/a", 'D'),
            ("/cfg/b", 'D'),
            ("/cfg/c", 'A'),
            ("/cfg/sub", 'D'),
            ("/etc", 'C'),
            ("/etc/passwd", 'C'),
            ("/gone.txt", 'D'),
            ("/hidden", 'A'),
            ("/old-dir", 'D'),
            ("/opt", 'C'),
            ("/opt/lib", 'A'),
            ("/opt/lib/deep", 'A'),
            ("/opt/lib/deep/two.so", 'A'),
            ("/opt/lib/one.so", 'A'),
        ]
        .into_iter()
        .map(|(p, k)| (p.to_owned(), k))
        .collect();
        assert_eq!(listed(&changes), want);

        // A mode changed on a copied-up file is a change; so is a new
        // capability.
        std::fs::set_permissions(
            upper.join("keep/f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        // cap_net_bind_service, permitted and effective (VFS_CAP_REVISION_2).
        let mut cap = vec![0u8; 20];
        cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        cap[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
        set_xattr(&upper.join("etc/group"), "security.capability", &cap);
        let changes = overlay_changes(&upper, &[init, base]).expect("walk");
        let paths: Vec<String> = changes.into_iter().map(|c| c.path).collect();
        for p in ["/keep", "/keep/f", "/etc/group"] {
            assert!(paths.iter().any(|q| q == p), "{p} in {paths:?}");
        }
    }

    #[test]
    fn a_folder_made_again_below_an_opaque_one_hides_the_old_content_too() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (base, upper) = (tmp.path().join("base"), tmp.path().join("upper"));
        file(&base.join("srv/app/old"), "o", 100);
        file(&base.join("srv/app/keep"), "k", 100);
        // rm -rf srv && mkdir -p srv/app && cp keep srv/app/keep
        file(&upper.join("srv/app/keep"), "k", 100);
        set_xattr(&upper.join("srv"), "trusted.overlay.opaque", b"y");
        let changes = overlay_changes(&upper, &[base]).expect("walk");
        assert!(
            listed(&changes).contains(&("/srv/app/old".to_owned(), 'D')),
            "{changes:?}"
        );
        assert!(!changes.iter().any(|c| c.path == "/srv/app/keep"));
    }

    #[test]
    fn a_redirect_or_metacopy_in_the_upper_folder_is_left_to_the_engine() {
        for attr in ["trusted.overlay.redirect", "trusted.overlay.metacopy"] {
            let tmp = tempfile::tempdir().expect("tmp");
            let (base, upper) = (tmp.path().join("base"), tmp.path().join("upper"));
            file(&base.join("d/f"), "f", 100);
            file(&upper.join("d/f"), "f", 100);
            set_xattr(&upper.join("d/f"), attr, b"/elsewhere");
            let err = overlay_changes(&upper, &[base]).expect_err(attr);
            assert!(
                matches!(&err, ChangeSetError::NotInChangesDir { path, .. } if path == "/d/f"),
                "{err}"
            );
        }
    }
}
