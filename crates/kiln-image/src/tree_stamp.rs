//! A `rootfs:` folder's stamp: one sha256 over what a walk observes of each
//! entry, in walk order (in-image path, kind, permission bits, owner,
//! symlink target, device numbers, and for a regular file its size, mtime,
//! ctime, inode, device and link count). Everything a folder's layer key is
//! made of is either in it as observed, or (a file's content) vouched for
//! by the same stat the stat cache trusts, so one stamp stands for one key
//! and a warm build can find its key from the stamp alone: no record per
//! entry, no stat cache lookups, no canonical JSON of thousands of records.
//!
//! A stamp vouches for content only when no regular file changed within
//! two seconds of the walk (the stat cache's racy window, on mtime and
//! ctime both: a write in the same clock tick as the stat would not move
//! either); [`TreeStamp::settled`] says so, and only a settled stamp is
//! worth remembering.
//!
//! [`rootfs_folder_stamp`] walks a folder for its stamp alone, on every
//! core: folders at depth 3 are queued as the top of the tree is walked,
//! and each is walked whole by whichever thread takes it next, into its own
//! buffer; the buffers are hashed in walk order at the end, so the stamp
//! does not depend on the threads. Children are stat-ed relative to their
//! folder's descriptor, not by full path, and a folder is closed before the
//! walk goes into its subfolders.
//! [`rootfs_folder_walk`](crate::rootfs_folder_walk) gives the same stamp
//! from the entries and metadata of its own walk.

use std::ffi::{CString, OsStr};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, Statx, StatxFlags, makedev, openat, readlinkat,
    statx,
};
use sha2::{Digest as _, Sha256};

use crate::entry::{FileMetadata, device_numbers};
use crate::{Digest, EntryKind, ImageError, LayerEntry};

/// How long before a walk a file must have last changed for its stat to
/// vouch for its content, in nanoseconds (the stat cache's window).
const RACY_NS: i128 = 2_000_000_000;

/// The first bytes hashed: a stamp of another form never matches.
const FORM: &[u8] = b"kiln tree stamp 1\n";

/// Folders this deep (the root's children are at depth 1) are walked whole
/// by one thread each. On a Debian root that is about 140 pieces, the
/// largest (`usr/share/zoneinfo`) a fifth of the entries; one level less
/// leaves `usr/share`, two thirds of them, to one thread.
const SPLIT_DEPTH: usize = 3;

/// What a walk saw of a folder (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeStamp {
    /// sha256 over every entry's observed record, in walk order.
    pub digest: Digest,
    /// Whether every regular file last changed (mtime and ctime) more than
    /// two seconds before the walk began, so that an unchanged stat means
    /// unchanged content. Only a settled stamp may stand for a key.
    pub settled: bool,
}

/// Walk the folder `root` (as [`rootfs_folder_walk`](crate::rootfs_folder_walk)
/// would, on every core) for its [`TreeStamp`] alone. What that walk refuses
/// (a socket, a name that is not UTF-8) is refused here the same way.
pub fn rootfs_folder_stamp(root: &Path) -> Result<TreeStamp, ImageError> {
    let started = now_ns();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let (units, queue) = std::sync::mpsc::channel();
    let queue = Mutex::new(queue);
    // Each thread walks the units it takes off the queue, each whole.
    let work = || {
        let mut done = Vec::new();
        loop {
            let next = queue.lock().map(|q| q.recv());
            let Ok(Ok(Unit { index, host, path })) = next else {
                break done;
            };
            let mut records = Records::default();
            let mut path = path;
            let walked = walk(&host, &mut path, SPLIT_DEPTH + 1, &mut records, &mut None);
            done.push((index, walked.map(|()| records)));
        }
    };
    let (top, split, mut done) = std::thread::scope(|scope| {
        // The helpers start on the first unit while this thread is still
        // walking the top of the tree for the others.
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut split = Split {
            pieces: Vec::new(),
            units,
        };
        let mut head = Records::default();
        let top = walk(
            root,
            &mut String::new(),
            1,
            &mut head,
            &mut Some(&mut split),
        );
        split.pieces.push(head);
        let Split { pieces, units } = split;
        drop(units);
        let mut done = work();
        for helper in helpers {
            match helper.join() {
                Ok(theirs) => done.extend(theirs),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (top, pieces, done)
    });
    top?;
    done.sort_by_key(|(index, _)| *index);
    let mut done = done.into_iter();
    let mut hasher = Sha256::new_with_prefix(FORM);
    let mut newest = i128::MIN;
    for (at, piece) in split.iter().enumerate() {
        hasher.update(&piece.bytes);
        newest = newest.max(piece.newest_ns);
        if piece.unit_follows {
            // Every unit queued was walked by a thread that returned.
            let Some((_, unit)) = done.next().filter(|(index, _)| *index == at) else {
                return Err(ImageError::Io {
                    path: root.to_path_buf(),
                    source: std::io::Error::other("a part of the walk was lost"),
                });
            };
            let unit = unit?;
            hasher.update(&unit.bytes);
            newest = newest.max(unit.newest_ns);
        }
    }
    Ok(TreeStamp {
        digest: Digest::from_hasher(hasher),
        settled: newest.saturating_add(RACY_NS) < started,
    })
}

/// The stamp of the entries a walk of a `rootfs:` folder made (in walk
/// order, before hard links are linked), with the metadata it noted for
/// each regular file; `started` is when that walk began (nanoseconds since
/// the epoch). A file without noted metadata leaves the stamp unsettled.
pub(crate) fn stamp_of_entries(
    entries: &[LayerEntry],
    files: &FileMetadata,
    started: i128,
) -> TreeStamp {
    let mut records = Records::default();
    let mut complete = true;
    for e in entries {
        let seen = match &e.kind {
            EntryKind::Dir => Seen::Dir,
            EntryKind::File { source } => match files.get(source) {
                Some(meta) => Seen::File(FileStat::of(meta)),
                None => {
                    complete = false;
                    Seen::Fifo
                }
            },
            EntryKind::Symlink { target } => Seen::Symlink(target),
            EntryKind::HardLink { .. } => {
                complete = false;
                Seen::Fifo
            }
            EntryKind::CharDevice { major, minor } => Seen::Char(*major, *minor),
            EntryKind::BlockDevice { major, minor } => Seen::Block(*major, *minor),
            EntryKind::Fifo => Seen::Fifo,
        };
        records.push(&e.path, e.mode, e.uid, e.gid, &seen);
    }
    let mut hasher = Sha256::new_with_prefix(FORM);
    hasher.update(&records.bytes);
    TreeStamp {
        digest: Digest::from_hasher(hasher),
        settled: complete && records.newest_ns.saturating_add(RACY_NS) < started,
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// What a regular file's stat adds to its record: what the stat cache
/// compares, and the link count (hard links are in the key).
#[derive(Clone, Copy)]
struct FileStat {
    size: u64,
    ino: u64,
    dev: u64,
    nlink: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileStat {
    /// From the metadata a full walk noted.
    fn of(meta: &Metadata) -> FileStat {
        FileStat {
            size: meta.size(),
            ino: meta.ino(),
            dev: meta.dev(),
            nlink: meta.nlink(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }

    /// From a `statx` answer, the same numbers as [`FileStat::of`] takes
    /// from std's `Metadata` (which std builds from `statx` too).
    fn of_statx(st: &Statx) -> FileStat {
        FileStat {
            size: st.stx_size,
            ino: st.stx_ino,
            dev: makedev(st.stx_dev_major, st.stx_dev_minor),
            nlink: u64::from(st.stx_nlink),
            mtime: st.stx_mtime.tv_sec,
            mtime_nsec: i64::from(st.stx_mtime.tv_nsec),
            ctime: st.stx_ctime.tv_sec,
            ctime_nsec: i64::from(st.stx_ctime.tv_nsec),
        }
    }
}

/// What one entry is, as far as the stamp is concerned.
enum Seen<'a> {
    Dir,
    File(FileStat),
    Symlink(&'a str),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// Records of entries in walk order, and the newest change among the
/// regular files they hold.
#[derive(Default)]
struct Records {
    bytes: Vec<u8>,
    newest_ns: i128,
    /// Whether a split-off folder's records come right after these.
    unit_follows: bool,
}

impl Records {
    /// Append one entry's record: its path (NUL-terminated: a path holds no
    /// NUL), a kind byte, mode, owner and group, and what its kind adds
    /// (fixed widths, a target prefixed by its length).
    fn push(&mut self, path: &str, mode: u32, uid: u32, gid: u32, seen: &Seen<'_>) {
        let b = &mut self.bytes;
        b.extend_from_slice(path.as_bytes());
        b.push(0);
        let kind = match seen {
            Seen::Dir => b'd',
            Seen::File(_) => b'f',
            Seen::Symlink(_) => b'l',
            Seen::Char(..) => b'c',
            Seen::Block(..) => b'b',
            Seen::Fifo => b'p',
        };
        b.push(kind);
        for n in [mode, uid, gid] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        match seen {
            Seen::File(st) => {
                for n in [st.size, st.ino, st.dev, st.nlink] {
                    b.extend_from_slice(&n.to_le_bytes());
                }
                for n in [st.mtime, st.mtime_nsec, st.ctime, st.ctime_nsec] {
                    b.extend_from_slice(&n.to_le_bytes());
                }
                let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
                let changed = ns(st.mtime, st.mtime_nsec).max(ns(st.ctime, st.ctime_nsec));
                self.newest_ns = self.newest_ns.max(changed);
            }
            Seen::Symlink(target) => {
                b.extend_from_slice(&(target.len() as u64).to_le_bytes());
                b.extend_from_slice(target.as_bytes());
            }
            Seen::Char(major, minor) | Seen::Block(major, minor) => {
                b.extend_from_slice(&major.to_le_bytes());
                b.extend_from_slice(&minor.to_le_bytes());
            }
            Seen::Dir | Seen::Fifo => {}
        }
    }
}

/// The top of a split walk: records in walk order, cut wherever a folder
/// at [`SPLIT_DEPTH`] was queued as a [`Unit`] for any thread to walk
/// whole (the run after the last cut is pushed by the caller).
struct Split {
    /// Finished runs of records; each has `unit_follows` set.
    pieces: Vec<Records>,
    /// Where the units go, numbered by how many pieces came before.
    units: Sender<Unit>,
}

/// A folder at [`SPLIT_DEPTH`], queued to be walked whole.
struct Unit {
    /// Its place among the units, in walk order.
    index: usize,
    /// Its host path.
    host: PathBuf,
    /// Its in-image path.
    path: String,
}

/// Record what folder `dir` (at in-image `path`, whose children are at
/// `depth`) holds into `out`, sorted by name at every level, descending
/// into subfolders; with `split`, a subfolder at [`SPLIT_DEPTH`] is left to
/// it as a unit instead. Each child is stat-ed and read (a symlink) relative
/// to the open folder, which is closed before the walk goes down.
fn walk(
    dir: &Path,
    path: &mut String,
    depth: usize,
    out: &mut Records,
    split: &mut Option<&mut Split>,
) -> Result<(), ImageError> {
    for (name, st, target) in read_folder(dir)? {
        let Ok(name) = std::str::from_utf8(&name) else {
            return Err(ImageError::NonUtf8Path {
                path: dir.join(OsStr::from_bytes(&name)),
            });
        };
        let before = path.len();
        path.push('/');
        path.push_str(name);
        let (uid, gid, bits) = (st.stx_uid, st.stx_gid, u32::from(st.stx_mode) & 0o7777);
        match FileType::from_raw_mode(u32::from(st.stx_mode)) {
            FileType::Symlink => {
                let host = || dir.join(name);
                let target = target.ok_or_else(|| ImageError::Io {
                    path: host(),
                    source: std::io::Error::other("a symlink that was not read"),
                })?;
                let target = target
                    .to_str()
                    .map_err(|_| ImageError::NonUtf8Path { path: host() })?;
                out.push(path, 0o777, uid, gid, &Seen::Symlink(target));
            }
            FileType::Directory => {
                out.push(path, bits, uid, gid, &Seen::Dir);
                let host = dir.join(name);
                match split {
                    Some(s) if depth == SPLIT_DEPTH => {
                        let mut run = std::mem::take(out);
                        run.unit_follows = true;
                        let index = s.pieces.len();
                        s.pieces.push(run);
                        let unit = Unit {
                            index,
                            host,
                            path: path.clone(),
                        };
                        // The queue's receiver outlives the walk; were it
                        // gone, the unit's records would be missing and the
                        // stamp refused, not wrong.
                        let _ = s.units.send(unit);
                    }
                    _ => walk(&host, path, depth + 1, out, split)?,
                }
            }
            FileType::RegularFile => {
                out.push(path, bits, uid, gid, &Seen::File(FileStat::of_statx(&st)));
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                let rdev = makedev(st.stx_rdev_major, st.stx_rdev_minor);
                let (major, minor) = device_numbers(rdev);
                let seen = if kind == FileType::CharacterDevice {
                    Seen::Char(major, minor)
                } else {
                    Seen::Block(major, minor)
                };
                out.push(path, bits, uid, gid, &seen);
            }
            FileType::Fifo => out.push(path, bits, uid, gid, &Seen::Fifo),
            _ => {
                return Err(ImageError::UnsupportedFileType {
                    path: dir.join(name),
                });
            }
        }
        path.truncate(before);
    }
    Ok(())
}

/// A child of a folder: its name, its `statx` (symlinks not followed), and
/// a symlink's target.
type Child = (Vec<u8>, Statx, Option<CString>);

/// What folder `dir` holds, sorted by name (bytes): each child stat-ed, and
/// each symlink read, relative to the folder's descriptor (no lookup of the
/// full path, no `fstat` of the folder as `opendir` makes), the folder
/// closed when this returns.
fn read_folder(dir: &Path) -> Result<Vec<Child>, ImageError> {
    let io = |path: PathBuf| move |e: rustix::io::Errno| ImageError::io(path)(e.into());
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = openat(CWD, dir, flags, Mode::empty()).map_err(io(dir.to_path_buf()))?;
    let mut listing = Dir::new(fd).map_err(io(dir.to_path_buf()))?;
    let mut names = Vec::new();
    for entry in &mut listing {
        let entry = entry.map_err(io(dir.to_path_buf()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    let fd = listing.fd().map_err(io(dir.to_path_buf()))?;
    let mut children = Vec::with_capacity(names.len());
    for name in names {
        let host = || dir.join(OsStr::from_bytes(&name));
        let st = statx(
            fd,
            name.as_slice(),
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_SYNC_AS_STAT,
            StatxFlags::BASIC_STATS,
        )
        .map_err(|e| io(host())(e))?;
        let symlink = FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Symlink;
        let target = if symlink {
            Some(readlinkat(fd, name.as_slice(), Vec::new()).map_err(|e| io(host())(e))?)
        } else {
            None
        };
        children.push((name, st, target));
    }
    Ok(children)
}
