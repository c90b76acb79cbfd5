//! The store's locks: how many kiln processes share one store safely.
//!
//! Three flock(2) locks, each on its own file, each released when its guard
//! is dropped or the process dies (the kernel drops flock locks with the
//! last open file, so a SIGKILLed process never leaves one behind):
//!
//! - **the lease** (`kiln/locks/store.lock`, shared): held for its whole
//!   run by anything that writes blobs or names them (a build, a test run,
//!   a promotion, a signature). Leases do not block each other, so builds,
//!   tests and promotions run side by side.
//! - **the sweep** (the same file, exclusive): held by whatever removes
//!   blobs (`kiln gc`, `kiln fsck --repair`, a leak check's discard). It
//!   waits until no lease is held, so every build in progress is a root of
//!   gc without gc having to know what the build wrote; and no lease is
//!   granted while it is held. Only a holder of the sweep removes a blob.
//! - **sections** (`kiln/locks/NAME.lock`, exclusive): short
//!   read-modify-write critical sections over one bookkeeping file (a
//!   channel's history and its ref in index.json), taken under a lease.
//!
//! index.json itself is guarded by a fourth, internal lock on the store's
//! folder (see [`crate::Store::set_ref`]), always taken last and held only
//! for the rewrite. The order is lease or sweep, then section, then
//! index.json; nobody takes them the other way round, so no deadlock.
//!
//! Readers (`kiln images`, `inspect`) take no lock: every file they read is
//! replaced atomically, so they see the old content or the new one.
//!
//! flock locks belong to the open file description: two leases taken by
//! one process on two descriptors are independent, and a process holding a
//! lease that asks for the sweep waits for itself forever. Drop the lease
//! first ([`Lease::into_sweep`] does it).

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::{ImageError, Store};

/// The file of the lease and the sweep, under `kiln/locks/`.
const STORE_LOCK: &str = "store.lock";

/// A shared lock on the store: while any lease is held, no blob is
/// removed. Take one for the whole of any operation that writes blobs or
/// names them.
#[derive(Debug)]
pub struct Lease {
    file: File,
    path: PathBuf,
}

/// The exclusive lock on the store: no lease is held by anyone while it is.
/// Only its holder removes blobs.
#[derive(Debug)]
pub struct Sweep {
    _file: File,
}

/// An exclusive lock on one named bookkeeping section (`channel-web-stable`),
/// for a read-modify-write that must not interleave with another.
#[derive(Debug)]
pub struct Section {
    _file: File,
}

impl Lease {
    /// Give up the lease and wait for the sweep. Not atomic: another sweep
    /// may run between the two, so re-read whatever the lease protected.
    pub fn into_sweep(self) -> Result<Sweep, ImageError> {
        flock(&self.file, &self.path, FlockOperation::LockExclusive)?;
        Ok(Sweep { _file: self.file })
    }
}

impl Store {
    /// Take a [`Lease`], waiting while a sweep runs.
    pub fn lease(&self) -> Result<Lease, ImageError> {
        let (file, path) = self.lock_file(STORE_LOCK)?;
        flock(&file, &path, FlockOperation::LockShared)?;
        Ok(Lease { file, path })
    }

    /// Take the [`Sweep`], waiting until no lease is held.
    pub fn sweep(&self) -> Result<Sweep, ImageError> {
        let (file, path) = self.lock_file(STORE_LOCK)?;
        flock(&file, &path, FlockOperation::LockExclusive)?;
        Ok(Sweep { _file: file })
    }

    /// The [`Sweep`] if nobody holds a lease right now, else `None`.
    pub fn try_sweep(&self) -> Result<Option<Sweep>, ImageError> {
        let (file, path) = self.lock_file(STORE_LOCK)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Sweep { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(ImageError::Io {
                path,
                source: e.into(),
            }),
        }
    }

    /// Take the exclusive [`Section`] `name` (letters, digits, `.`, `_`,
    /// `-`), waiting while another holds it.
    pub fn section(&self, name: &str) -> Result<Section, ImageError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !name.starts_with('.');
        if !valid {
            return Err(ImageError::InvalidRefName {
                name: name.to_owned(),
                reason: "a lock section is named with letters, digits, '.', '_' and '-'".into(),
            });
        }
        let (file, path) = self.lock_file(&format!("{name}.lock"))?;
        flock(&file, &path, FlockOperation::LockExclusive)?;
        Ok(Section { _file: file })
    }

    /// Open (creating) `kiln/locks/NAME`. Lock files are never removed: a
    /// removed lock file would let two processes lock two different files.
    fn lock_file(&self, name: &str) -> Result<(File, PathBuf), ImageError> {
        let dir = self.bookkeeping_dir().join("locks");
        std::fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(ImageError::io(&path))?;
        Ok((file, path))
    }
}

fn flock(file: &File, path: &Path, op: FlockOperation) -> Result<(), ImageError> {
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(ImageError::Io {
                    path: path.to_path_buf(),
                    source: e.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_share_and_the_sweep_excludes_them() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let a = store.lease()?;
        let b = store.lease()?;
        assert!(store.try_sweep()?.is_none(), "a lease blocks the sweep");
        drop(a);
        assert!(store.try_sweep()?.is_none(), "any lease blocks the sweep");
        drop(b);
        let sweep = store.try_sweep()?;
        assert!(sweep.is_some(), "no lease, so the sweep is free");
        assert!(store.try_sweep()?.is_none(), "one sweep at a time");
        drop(sweep);
        let lease = store.lease()?;
        let sweep = lease.into_sweep()?;
        assert!(store.try_sweep()?.is_none());
        drop(sweep);
        assert!(store.try_sweep()?.is_some());
        Ok(())
    }

    #[test]
    fn section_names_cannot_leave_the_lock_folder() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(store.section(bad).is_err(), "{bad:?}");
        }
        let _s = store.section("channel-web-stable")?;
        Ok(())
    }
}
