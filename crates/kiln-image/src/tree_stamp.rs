//! A `rootfs:` folder's stamp: a sha256 over what a walk observes of each
//! entry, in walk order (in-image path, kind, permission bits, owner,
//! symlink target, device numbers, and for a regular file its size, mtime,
//! ctime, inode, device and link count), hashed in pieces (see below).
//! Everything a folder's layer key is made of is either in it as observed,
//! or (a file's content) vouched for by the same stat the stat cache
//! trusts, so one stamp stands for one key
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
//! buffer, which that thread hashes. The stamp is the sha256 of those
//! pieces' digests in walk order: the runs of the top between two such
//! folders, and each folder's descendants (empty for an empty folder), so
//! it does not depend on the threads, and no thread hashes everything at
//! the end. Children are stat-ed and subfolders opened relative to their
//! folder's descriptor, not by full path (below a fixed depth a folder is
//! closed before the walk goes into its subfolders, so that a deep tree
//! holds few descriptors).
//! [`rootfs_folder_walk`](crate::rootfs_folder_walk) gives the same stamp
//! from the entries and metadata of its own walk, cut at the same places.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsStr};
use std::fs::Metadata;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::{Condvar, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    AtFlags, CWD, FileType, Mode, OFlags, RawDir, Statx, StatxFlags, makedev, openat, readlinkat,
    statx,
};
use sha2::{Digest as _, Sha256};

use crate::entry::{FileMetadata, device_numbers};
use crate::{Digest, EntryKind, ImageError, LayerEntry};

/// How long before a walk a file must have last changed for its stat to
/// vouch for its content, in nanoseconds (the stat cache's window).
const RACY_NS: i128 = 2_000_000_000;

/// The first bytes hashed: a stamp of another form never matches.
/// 2: hashed in pieces, cut at the folders of [`SPLIT_DEPTH`].
const FORM: &[u8] = b"kiln tree stamp 2\n";

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
    let queue = Queue::default();
    // Each thread walks the units it takes off the queue, each whole: the
    // helpers from the first, the thread that walked the top from the last.
    let work = |take: &dyn Fn() -> Option<Unit>| {
        let (mut done, mut scratch) = (Vec::new(), Scratch::default());
        loop {
            let Some(Unit { index, host, path }) = take() else {
                break done;
            };
            let mut records = Records::default();
            let mut path = path;
            let at = Opening::Path(&host);
            let depth = SPLIT_DEPTH + 1;
            let walked = walk(at, &mut path, depth, &mut records, &mut None, &mut scratch);
            done.push((index, walked.map(|()| records.hashed())));
        }
    };
    let (top, split, mut done) = std::thread::scope(|scope| {
        // The helpers start on the first unit while this thread is still
        // walking the top of the tree for the others.
        let helpers: Vec<_> = (1..threads)
            .map(|_| scope.spawn(|| work(&|| queue.first())))
            .collect();
        // Closed however this thread leaves the top (a panic included), so
        // that no helper waits for ever.
        let closing = Closing(&queue);
        let mut split = Split {
            pieces: Vec::new(),
            units: &queue,
        };
        let mut head = Records::default();
        let top = walk(
            Opening::Path(root),
            &mut String::new(),
            1,
            &mut head,
            &mut Some(&mut split),
            &mut Scratch::default(),
        );
        split.pieces.push(head);
        let pieces = split.pieces;
        drop(closing);
        let mut done = work(&|| queue.last());
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
        let hashed = piece.hashed();
        hasher.update(hashed.digest);
        newest = newest.max(hashed.newest_ns);
        if piece.unit_follows {
            // Every unit queued was walked by a thread that returned.
            let Some((_, unit)) = done.next().filter(|(index, _)| *index == at) else {
                return Err(ImageError::Io {
                    path: root.to_path_buf(),
                    source: std::io::Error::other("a part of the walk was lost"),
                });
            };
            let unit = unit?;
            hasher.update(unit.digest);
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
    let mut hasher = Sha256::new_with_prefix(FORM);
    let mut records = Records::default();
    let (mut complete, mut newest) = (true, i128::MIN);
    // Cut where the split walk cuts: after a folder at the split depth (its
    // descendants are one piece), and before the first entry above it.
    let mut in_unit = false;
    let mut cut = |records: &mut Records| {
        let piece = std::mem::take(records).hashed();
        hasher.update(piece.digest);
        newest = newest.max(piece.newest_ns);
    };
    for e in entries {
        let depth = e.path.bytes().filter(|b| *b == b'/').count();
        if in_unit && depth <= SPLIT_DEPTH {
            cut(&mut records);
            in_unit = false;
        }
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
        if !in_unit && depth == SPLIT_DEPTH && matches!(e.kind, EntryKind::Dir) {
            cut(&mut records);
            in_unit = true;
        }
    }
    if in_unit {
        cut(&mut records);
    }
    cut(&mut records);
    TreeStamp {
        digest: Digest::from_hasher(hasher),
        settled: complete && newest.saturating_add(RACY_NS) < started,
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

/// A piece of the walk hashed: its digest, and the newest change among
/// the regular files it holds.
struct Hashed {
    digest: [u8; 32],
    newest_ns: i128,
}

impl Records {
    /// The digest of the records, and their newest change.
    fn hashed(&self) -> Hashed {
        Hashed {
            digest: Sha256::digest(&self.bytes).into(),
            newest_ns: self.newest_ns,
        }
    }

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
struct Split<'q> {
    /// Finished runs of records; each has `unit_follows` set.
    pieces: Vec<Records>,
    /// Where the units go, numbered by how many pieces came before.
    units: &'q Queue,
}

/// The units waiting to be walked, shared by the threads.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    ready: Condvar,
}

/// What a [`Queue`] holds.
#[derive(Default)]
struct Waiting {
    units: VecDeque<Unit>,
    /// Whether the top of the tree is walked: no unit comes any more.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A thread that panicked holding the lock left a queue still whole.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `unit` for the next thread free.
    fn push(&self, unit: Unit) {
        self.lock().units.push_back(unit);
        self.ready.notify_one();
    }

    /// Say that no unit comes any more.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The first unit queued, waiting for one; `None` once the queue is
    /// closed and empty.
    fn first(&self) -> Option<Unit> {
        let mut waiting = self.lock();
        loop {
            if let Some(unit) = waiting.units.pop_front() {
                return Some(unit);
            }
            if waiting.closed {
                return None;
            }
            waiting = self
                .ready
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The last unit queued, for the thread that walked the top, once the
    /// queue is closed: working from both ends, the threads meet in the
    /// middle, and a large folder late in walk order (`usr/share/zoneinfo`
    /// is a fifth of a Debian root) is not left to one thread at the end.
    fn last(&self) -> Option<Unit> {
        self.lock().units.pop_back()
    }
}

/// Closes its queue when dropped.
struct Closing<'q>(&'q Queue);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
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

/// How a folder is opened: by its full host path, or relative to its
/// parent's descriptor (one lookup instead of one per component).
#[derive(Clone, Copy)]
enum Opening<'a> {
    /// By its host path.
    Path(&'a Path),
    /// As `name` in the open folder `parent`; `host` is its host path.
    Child {
        parent: BorrowedFd<'a>,
        name: &'a CStr,
        host: &'a Path,
    },
}

impl Opening<'_> {
    /// The folder's host path, for errors and units.
    fn host(&self) -> &Path {
        match self {
            Opening::Path(host) | Opening::Child { host, .. } => host,
        }
    }

    /// Open the folder for reading its entries.
    fn open(&self) -> Result<OwnedFd, ImageError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match *self {
            Opening::Path(host) => openat(CWD, host, flags, Mode::empty()),
            Opening::Child { parent, name, .. } => openat(parent, name, flags, Mode::empty()),
        }
        .map_err(|e| ImageError::io(self.host())(e.into()))
    }
}

/// What each walking thread reuses from folder to folder: the buffer the
/// kernel fills with a folder's entries.
#[derive(Default)]
struct Scratch {
    entries: Vec<MaybeUninit<u8>>,
}

/// Bytes of entries read from the kernel at once: most folders fit whole.
const ENTRIES_BUFFER: usize = 32 << 10;

/// Record what the folder opened by `at` (at in-image `path`, whose
/// children are at `depth`) holds into `out`, sorted by name at every
/// level, descending into subfolders; with `split`, a subfolder at
/// [`SPLIT_DEPTH`] is left to it as a unit instead. Each child is stat-ed
/// and read (a symlink) relative to the open folder; a subfolder is opened
/// relative to it too while the folder is nearer the root than
/// [`HELD_DEPTH`], and by its full path below, the folder closed first: a
/// walk holds a bounded number of descriptors, however deep the tree.
fn walk(
    at: Opening<'_>,
    path: &mut String,
    depth: usize,
    out: &mut Records,
    split: &mut Option<&mut Split>,
    scratch: &mut Scratch,
) -> Result<(), ImageError> {
    let (fd, listing) = read_folder(at, scratch)?;
    let held = (depth < HELD_DEPTH).then_some(fd);
    let dir = at.host();
    for child in &listing.children {
        let name_c = listing.name(child);
        let name_bytes = name_c.to_bytes();
        let Ok(name) = std::str::from_utf8(name_bytes) else {
            return Err(ImageError::NonUtf8Path {
                path: dir.join(OsStr::from_bytes(name_bytes)),
            });
        };
        let st = &child.st;
        let before = path.len();
        path.push('/');
        path.push_str(name);
        let (uid, gid, bits) = (st.stx_uid, st.stx_gid, u32::from(st.stx_mode) & 0o7777);
        match FileType::from_raw_mode(u32::from(st.stx_mode)) {
            FileType::Symlink => {
                let host = || dir.join(name);
                let target = child.target.as_ref().ok_or_else(|| ImageError::Io {
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
                        s.units.push(unit);
                    }
                    _ => {
                        let next = match &held {
                            Some(parent) => Opening::Child {
                                parent: parent.as_fd(),
                                name: name_c,
                                host: &host,
                            },
                            None => Opening::Path(&host),
                        };
                        walk(next, path, depth + 1, out, split, scratch)?;
                    }
                }
            }
            FileType::RegularFile => {
                out.push(path, bits, uid, gid, &Seen::File(FileStat::of_statx(st)));
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

/// Folders whose children are nearer the root than this keep their
/// descriptor open while their subfolders are walked (so that each is
/// opened relative to it); deeper ones are closed first. A thread holds at
/// most this many folders open.
const HELD_DEPTH: usize = 16;

/// What a folder holds, sorted by name (bytes).
struct Listing {
    /// Every child's name, each followed by a NUL.
    names: Vec<u8>,
    /// The children, in order.
    children: Vec<Child>,
}

/// A child of a folder: where its name is in [`Listing::names`] (NUL
/// included), its `statx` (symlinks not followed), and a symlink's target.
struct Child {
    name: std::ops::Range<usize>,
    st: Statx,
    target: Option<CString>,
}

impl Listing {
    /// The name of `child`.
    fn name(&self, child: &Child) -> &CStr {
        // Every range ends with the NUL pushed after the name.
        CStr::from_bytes_with_nul(&self.names[child.name.clone()]).unwrap_or_default()
    }
}

/// The folder opened by `at`, and what it holds: each child stat-ed, and
/// each symlink read, relative to the folder's descriptor (no lookup of the
/// full path, no `fstat` of the folder as `opendir` makes).
fn read_folder(at: Opening<'_>, scratch: &mut Scratch) -> Result<(OwnedFd, Listing), ImageError> {
    let dir = at.host();
    let io = |path: PathBuf| move |e: rustix::io::Errno| ImageError::io(path)(e.into());
    let fd = at.open()?;
    if scratch.entries.len() < ENTRIES_BUFFER {
        scratch
            .entries
            .resize(ENTRIES_BUFFER, MaybeUninit::uninit());
    }
    let mut names = Vec::new();
    let mut spans = Vec::new();
    let mut entries = RawDir::new(&fd, &mut scratch.entries);
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(io(dir.to_path_buf()))?;
        let name = entry.file_name().to_bytes_with_nul();
        if name != b".\0" && name != b"..\0" {
            spans.push(names.len()..names.len() + name.len());
            names.extend_from_slice(name);
        }
    }
    spans.sort_unstable_by(|a: &std::ops::Range<usize>, b| names[a.clone()].cmp(&names[b.clone()]));
    let mut children = Vec::with_capacity(spans.len());
    for span in spans {
        let name = CStr::from_bytes_with_nul(&names[span.clone()]).unwrap_or_default();
        let host = || dir.join(OsStr::from_bytes(name.to_bytes()));
        let st = statx(
            &fd,
            name,
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_SYNC_AS_STAT,
            StatxFlags::BASIC_STATS,
        )
        .map_err(|e| io(host())(e))?;
        let symlink = FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Symlink;
        let target = if symlink {
            Some(readlinkat(&fd, name, Vec::new()).map_err(|e| io(host())(e))?)
        } else {
            None
        };
        children.push(Child {
            name: span,
            st,
            target,
        });
    }
    Ok((fd, Listing { names, children }))
}
