//! Writes that land whole or not at all: a temporary file in the target's
//! folder, fsync, rename over the target, fsync the folder. A crash leaves
//! the old content or the new, never a torn file.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::ImageError;

/// Write `bytes` to `path` atomically, creating missing parent folders.
/// Readers see the old content or the new one, never a mix, even after a
/// crash. The file gets mode 0o644.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(ImageError::io(dir))?;
    let mut tmp = staging_file(dir)?;
    tmp.write_all(bytes).map_err(ImageError::io(tmp.path()))?;
    commit(tmp, path)
}

/// [`write_atomic`], unless `path` already holds exactly `bytes`: then
/// nothing is written and `false` is returned. A rebuild that changed
/// nothing rewrites (and flushes to disk) none of its bookkeeping: each
/// flush costs milliseconds, tens of them on a busy disk.
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, ImageError> {
    if holds(path, bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes)?;
    Ok(true)
}

/// [`write_atomic`] without flushing anything to disk: readers still see the
/// old content or the new, never a mix, but a crash may lose the write or
/// leave the file empty or zeroed. Only for files whose loss costs time and
/// never gives a wrong result: caches that check what they read (the stat
/// cache's checksum; a cache entry that does not parse is a miss, and its
/// blob is checked on every hit) and take anything else as missing. Each
/// flush it skips costs milliseconds, tens of them on a busy disk.
pub fn write_atomic_unflushed(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(ImageError::io(dir))?;
    let mut tmp = staging_file(dir)?;
    tmp.write_all(bytes).map_err(ImageError::io(tmp.path()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(ImageError::io(tmp.path()))?;
    tmp.persist(path).map_err(|e| ImageError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// [`write_atomic_unflushed`], unless `path` already holds exactly `bytes`:
/// then nothing is written and `false` is returned.
pub fn write_atomic_unflushed_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, ImageError> {
    if holds(path, bytes) {
        return Ok(false);
    }
    write_atomic_unflushed(path, bytes)?;
    Ok(true)
}

/// Whether the file at `path` holds exactly `bytes` (read only when its
/// size matches).
fn holds(path: &Path, bytes: &[u8]) -> bool {
    let same_size =
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64);
    same_size && std::fs::read(path).is_ok_and(|held| held == bytes)
}

/// Remove the file at `path`; whether it was there. Removing what is
/// already gone is not an error: another cleaner got there first.
pub fn remove_if_present(path: &Path) -> Result<bool, ImageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ImageError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The folder `path` is in (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary file in `dir`, deleted unless committed.
pub(crate) fn staging_file(dir: &Path) -> Result<tempfile::NamedTempFile, ImageError> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(ImageError::io(dir))
}

/// Make `tmp` readable by all, flush it to disk, rename it to `path` and
/// flush the folder entry too.
pub(crate) fn commit(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), ImageError> {
    commit_file(tmp, path)?;
    sync_dir(parent(path))
}

/// [`commit`] but for the folder entry: the caller flushes the folder once
/// after renaming several files into it, before anything names them.
pub(crate) fn commit_file(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let tmp_path = tmp.path().to_path_buf();
    let file = tmp.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(ImageError::io(&tmp_path))?;
    file.sync_all().map_err(ImageError::io(&tmp_path))?;
    tmp.persist(path).map_err(|e| ImageError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Flush a folder's entries (a rename is durable only then).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_creates_parents() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("a/b/c.json");
        write_atomic(&file, b"one")?;
        write_atomic(&file, b"two")?;
        assert_eq!(std::fs::read(&file)?, b"two");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))?.collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        Ok(())
    }

    #[test]
    fn unflushed_writes_replace_whole_files_too() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("cache/stat.bin");
        write_atomic_unflushed(&file, b"one")?;
        let inode = std::fs::metadata(&file)?.ino();
        assert!(!write_atomic_unflushed_if_changed(&file, b"one")?);
        assert_eq!(std::fs::metadata(&file)?.ino(), inode, "not replaced");
        assert!(write_atomic_unflushed_if_changed(&file, b"two")?);
        assert_eq!(std::fs::read(&file)?, b"two");
        assert_ne!(
            std::fs::metadata(&file)?.ino(),
            inode,
            "replaced, not rewritten in place"
        );
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o644
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cache"))?.collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        Ok(())
    }

    #[test]
    fn if_changed_writes_only_new_content() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("a/state.json");
        assert!(
            write_atomic_if_changed(&file, b"one")?,
            "a missing file is written"
        );
        let inode = std::fs::metadata(&file)?.ino();
        assert!(
            !write_atomic_if_changed(&file, b"one")?,
            "the same bytes are not"
        );
        assert_eq!(
            std::fs::metadata(&file)?.ino(),
            inode,
            "the file was not replaced"
        );
        assert!(
            write_atomic_if_changed(&file, b"two")?,
            "other bytes of the same size are"
        );
        assert_eq!(std::fs::read(&file)?, b"two");
        assert!(
            write_atomic_if_changed(&file, b"three")?,
            "a longer content is"
        );
        assert_eq!(std::fs::read(&file)?, b"three");
        Ok(())
    }
}
