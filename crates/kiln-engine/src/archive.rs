//! The tar archives the engine's copy API speaks: the one kiln sends to
//! write a file, and the first entry of the one it gets back for a path.

use std::io::{self, Read};

use crate::engine::{NewFile, PathInfo, PathKind};

/// A tar that creates the folders `missing` (relative, outermost first) and
/// then the file, at `file_name` below them. Uploaded at the deepest folder
/// that exists, so that no existing folder has its mode or owner touched.
pub(crate) fn file_tar(
    missing: &[&str],
    file_name: &str,
    file: &NewFile<'_>,
) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut prefix = String::new();
    for dir in missing {
        prefix.push_str(dir);
        prefix.push('/');
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header.set_mtime(0);
        builder.append_data(&mut header, &prefix, io::empty())?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(file.mode);
    header.set_uid(u64::from(file.uid));
    header.set_gid(u64::from(file.gid));
    header.set_size(file.content.len() as u64);
    header.set_mtime(0);
    builder.append_data(&mut header, format!("{prefix}{file_name}"), file.content)?;
    builder.into_inner()
}

/// Progress of reading the first entry out of a tar that arrives in pieces.
#[derive(Debug)]
pub(crate) enum FirstEntry {
    /// More bytes are needed (at least this many in total, when known).
    NeedMore(Option<usize>),
    /// The entry, complete.
    Done(PathInfo),
}

/// The first entry of the tar held (so far) in `buf`. `complete` says the
/// stream has ended: a short archive is then an error, not a wait.
pub(crate) fn first_entry(buf: &[u8], complete: bool) -> io::Result<FirstEntry> {
    let mut archive = tar::Archive::new(buf);
    let mut entries = match archive.entries() {
        Ok(entries) => entries,
        Err(_) if !complete => return Ok(FirstEntry::NeedMore(None)),
        Err(e) => return Err(e),
    };
    let mut entry = match entries.next() {
        Some(Ok(entry)) => entry,
        // A header (or its long-name or PAX extension) cut short.
        Some(Err(_)) | None if !complete => return Ok(FirstEntry::NeedMore(None)),
        Some(Err(e)) => return Err(e),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the engine sent an empty archive",
            ));
        }
    };
    let header = entry.header();
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link => {
            PathKind::File
        }
        tar::EntryType::Directory => PathKind::Dir,
        tar::EntryType::Symlink => PathKind::Symlink,
        _ => PathKind::Other,
    };
    let mode = header.mode()? & 0o7777;
    let uid = u32::try_from(header.uid()?).map_err(io::Error::other)?;
    let gid = u32::try_from(header.gid()?).map_err(io::Error::other)?;
    let link_target = match kind {
        PathKind::Symlink => entry.link_name()?.map(|p| p.to_string_lossy().into_owned()),
        _ => None,
    };
    if kind != PathKind::File {
        return Ok(FirstEntry::Done(PathInfo {
            kind,
            mode,
            uid,
            gid,
            size: 0,
            content: None,
            link_target,
        }));
    }
    let size = entry.size();
    let wanted = size.min(PathInfo::CONTENT_CAP);
    let start = usize::try_from(entry.raw_file_position()).map_err(io::Error::other)?;
    let end = start.saturating_add(usize::try_from(wanted).map_err(io::Error::other)?);
    if buf.len() < end {
        if complete {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside the file",
            ));
        }
        return Ok(FirstEntry::NeedMore(Some(end)));
    }
    let mut content = Vec::with_capacity(usize::try_from(wanted).unwrap_or(0));
    (&mut entry).take(wanted).read_to_end(&mut content)?;
    Ok(FirstEntry::Done(PathInfo {
        kind,
        mode,
        uid,
        gid,
        size,
        content: Some(content),
        link_target,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path, type, mode, content, link target.
    type TestEntry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

    fn tar_of(entries: &[TestEntry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, mode, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_uid(1000);
            h.set_gid(100);
            h.set_size(data.len() as u64);
            if let Some(link) = link {
                b.append_link(&mut h, path, link).expect("link");
            } else {
                b.append_data(&mut h, path, *data).expect("append");
            }
        }
        b.into_inner().expect("tar")
    }

    fn done(r: io::Result<FirstEntry>) -> PathInfo {
        match r {
            Ok(FirstEntry::Done(info)) => info,
            other => panic!("expected an entry, got {other:?}"),
        }
    }

    #[test]
    fn a_file_needs_its_whole_content_then_yields_it() {
        let tar = tar_of(&[("motd", tar::EntryType::Regular, 0o4755, b"golden\n", None)]);
        assert!(matches!(
            first_entry(&tar[..100], false),
            Ok(FirstEntry::NeedMore(None))
        ));
        assert!(matches!(
            first_entry(&tar[..515], false),
            Ok(FirstEntry::NeedMore(Some(519)))
        ));
        assert!(first_entry(&tar[..515], true).is_err());
        let info = done(first_entry(&tar, true));
        assert_eq!(info.kind, PathKind::File);
        assert_eq!(info.mode, 0o4755, "setuid survives");
        assert_eq!((info.uid, info.gid), (1000, 100));
        assert_eq!(info.content.as_deref(), Some(&b"golden\n"[..]));
        assert_eq!(info.size, 7);
    }

    #[test]
    fn folders_and_symlinks_need_no_content() {
        let tar = tar_of(&[("www/", tar::EntryType::Directory, 0o1777, b"", None)]);
        let info = done(first_entry(&tar[..512], false));
        assert_eq!(
            (info.kind, info.mode, info.content),
            (PathKind::Dir, 0o1777, None)
        );

        let long_target = format!("/{}", "x".repeat(150));
        let tar = tar_of(&[(
            "sh",
            tar::EntryType::Symlink,
            0o777,
            b"",
            Some(&long_target),
        )]);
        let info = done(first_entry(&tar, true));
        assert_eq!(info.kind, PathKind::Symlink);
        assert_eq!(
            info.link_target.as_deref(),
            Some(long_target.as_str()),
            "a GNU long link name is read"
        );
    }

    #[test]
    fn an_empty_stream_is_an_error_once_complete() {
        assert!(matches!(
            first_entry(&[], false),
            Ok(FirstEntry::NeedMore(None))
        ));
        assert!(first_entry(&[], true).is_err());
    }

    #[test]
    fn the_upload_tar_creates_missing_folders_then_the_file() {
        let file = NewFile {
            path: "/run/secrets/db",
            content: b"pw",
            mode: 0o400,
            uid: 1000,
            gid: 1000,
        };
        let tar = file_tar(&["secrets"], "db", &file).expect("tar");
        let mut archive = tar::Archive::new(&tar[..]);
        let got: Vec<(String, u32, u64)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").to_string_lossy().into_owned(),
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("secrets/".to_owned(), 0o755, 0),
                ("secrets/db".to_owned(), 0o400, 1000)
            ]
        );
    }
}
