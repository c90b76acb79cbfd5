//! What a written layer holds, read back with the tar crate.

mod common;

use std::io::Read;

use common::*;
use kiln_image::{EntryKind, ImageError, LayerEntry, Store, write_layer};

struct Seen {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    content: Vec<u8>,
}

fn read_layer(
    store: &Store,
    digest: &kiln_image::Digest,
) -> Result<Vec<Seen>, Box<dyn std::error::Error>> {
    let gz = store.read_blob(digest)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    let mut seen = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        assert_eq!(header.username_bytes(), Some(&b""[..]), "empty uname");
        assert_eq!(header.groupname_bytes(), Some(&b""[..]), "empty gname");
        let path = String::from_utf8(entry.path_bytes().into_owned())?;
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let (kind, mode, uid, gid, mtime) = (
            header.entry_type(),
            header.mode()?,
            header.uid()?,
            header.gid()?,
            header.mtime()?,
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        seen.push(Seen {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            link,
            content,
        });
    }
    Ok(seen)
}

#[test]
fn sample_layer_reads_back_as_planned() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let blob = write_layer(&store, sample_entries(&ctx)?, EPOCH)?;
    let seen = read_layer(&store, &blob.digest)?;

    let names: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    assert!(
        seen.iter().all(|s| s.mtime == EPOCH),
        "every mtime is the epoch"
    );
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "excluded files are absent"
    );
    assert!(
        !names.iter().any(|n| n.starts_with('/')),
        "no leading slash"
    );

    let get = |p: &str| seen.iter().find(|s| s.path == p);
    let www = get("www/").ok_or("www/")?;
    assert_eq!((www.kind, www.mode), (tar::EntryType::Directory, 0o755));
    let tmp = get("tmp/").ok_or("tmp/")?;
    assert_eq!(tmp.mode, 0o1777, "sticky bit kept");
    let helper = get("usr/local/bin/su-helper").ok_or("su-helper")?;
    assert_eq!(helper.mode, 0o4755, "setuid kept");
    let secret = get("etc/app/secret.conf").ok_or("secret.conf")?;
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o640, 1000, 1000));
    assert_eq!(secret.content, b"password = none\n");
    let index = get("www/index.html").ok_or("index.html")?;
    assert_eq!((index.mode, index.kind), (0o644, tar::EntryType::Regular));
    let run = get("www/bin/run.sh").ok_or("run.sh")?;
    assert_eq!(run.mode, 0o755);
    let home = get("www/home.html").ok_or("home.html")?;
    assert_eq!(
        (home.kind, home.link.as_deref()),
        (tar::EntryType::Symlink, Some("index.html"))
    );
    let sh = get("bin/sh").ok_or("bin/sh")?;
    assert_eq!(sh.link.as_deref(), Some("busybox"));
    let deep = format!("www/{LONG}/{LONG}/deep.txt");
    assert!(deep.len() > 100);
    assert_eq!(get(&deep).ok_or("long path")?.content, b"deep\n");
    assert!(
        get(&format!("www/{LONG}/")).is_some(),
        "long folder names keep their trailing slash"
    );
    Ok(())
}

#[test]
fn gzip_header_has_no_name_no_time_and_a_fixed_os() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let blob = write_layer(&store, vec![dir_entry("/x", 0o755)], 0)?;
    let bytes = store.read_blob(&blob.digest)?;
    assert_eq!(&bytes[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    Ok(())
}

fn dir_entry(path: &str, mode: u32) -> LayerEntry {
    LayerEntry {
        path: path.into(),
        kind: EntryKind::Dir,
        mode,
        uid: 0,
        gid: 0,
    }
}

#[test]
fn long_symlink_targets_survive() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let target = format!("/{LONG}/{LONG}");
    let entry = LayerEntry {
        path: "/l".into(),
        kind: EntryKind::Symlink {
            target: target.clone(),
        },
        mode: 0o777,
        uid: 0,
        gid: 0,
    };
    let blob = write_layer(&store, vec![entry], 0)?;
    let seen = read_layer(&store, &blob.digest)?;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].link.as_deref(), Some(target.as_str()));
    Ok(())
}

#[test]
fn duplicate_paths_are_refused_but_identical_folders_merge() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let merged = write_layer(
        &store,
        vec![dir_entry("/a", 0o755), dir_entry("/a", 0o755)],
        0,
    )?;
    assert_eq!(read_layer(&store, &merged.digest)?.len(), 1);
    match write_layer(
        &store,
        vec![dir_entry("/a", 0o755), dir_entry("/a", 0o700)],
        0,
    ) {
        Err(ImageError::DuplicatePath { path }) => assert_eq!(path, "/a"),
        other => return Err(format!("expected DuplicatePath, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn bad_entry_paths_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for bad in ["a", "/a/", "/a/../b", "//a"] {
        assert!(
            matches!(
                write_layer(&store, vec![dir_entry(bad, 0o755)], 0),
                Err(ImageError::InvalidEntryPath { .. })
            ),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn a_file_that_changes_size_while_read_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    // /proc files claim size 0 and then yield bytes: exactly what a file
    // growing between stat and read looks like.
    let entry = LayerEntry {
        path: "/stat".into(),
        kind: EntryKind::File {
            source: "/proc/self/stat".into(),
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    assert!(matches!(
        write_layer(&store, vec![entry], 0),
        Err(ImageError::SourceChanged { .. })
    ));
    let leftovers = std::fs::read_dir(store.root().join("blobs/sha256"))?.count();
    assert_eq!(leftovers, 0, "nothing is left in the store");
    Ok(())
}

#[test]
fn a_big_file_streams_through() -> TestResult {
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("big");
    // 3 MiB of varied bytes: larger than every buffer on the way.
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &data)?;
    let store = Store::open(dir.path().join("store"))?;
    let entry = LayerEntry {
        path: "/big".into(),
        kind: EntryKind::File { source: big },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let blob = write_layer(&store, vec![entry], 0)?;
    let seen = read_layer(&store, &blob.digest)?;
    assert!(seen[0].content == data);
    assert_eq!(
        blob.size,
        std::fs::metadata(store.blob_path(&blob.digest))?.len()
    );
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&store.read_blob(&blob.digest)?[..])
        .read_to_end(&mut tar_bytes)?;
    assert_eq!(
        blob.diff_id,
        kiln_image::Digest::of(&tar_bytes),
        "diff_id is the digest of the tar"
    );
    assert_eq!(tar_bytes.len() % 512, 0);
    Ok(())
}

#[test]
fn each_file_is_released_once_after_its_bytes_and_the_layer_is_the_same() -> TestResult {
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("files");
    std::fs::create_dir(&files)?;
    for (name, content) in [("b", "bee"), ("a", "ay"), ("c", "sea")] {
        std::fs::write(files.join(name), content)?;
    }
    let file = |path: &str, name: &str| LayerEntry {
        path: path.into(),
        kind: EntryKind::File {
            source: files.join(name),
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let entries = vec![
        file("/x/b", "b"),
        file("/x/a", "a"),
        dir_entry("/x", 0o755),
        LayerEntry {
            path: "/x/link".into(),
            kind: EntryKind::HardLink {
                target: "/x/c".into(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        file("/x/c", "c"),
    ];
    let store = Store::open(dir.path().join("store"))?;
    let plain = write_layer(&store, entries.clone(), EPOCH)?;
    let mut released = Vec::new();
    let mut release = |path: &std::path::Path| {
        // Its bytes are in the layer already: the caller may remove it.
        std::fs::remove_file(path).expect("released files are the caller's");
        released.push(path.to_path_buf());
    };
    let freed = kiln_image::write_layer_releasing(&store, entries, EPOCH, &mut release)?;
    assert_eq!(freed, plain, "releasing changes nothing in the layer");
    // In the order written (by path); the hard link is not a file read.
    assert_eq!(
        released,
        [files.join("a"), files.join("b"), files.join("c")]
    );
    let seen = read_layer(&store, &freed.digest)?;
    let content: Vec<(&str, &[u8])> = seen
        .iter()
        .filter(|s| s.kind == tar::EntryType::Regular)
        .map(|s| (s.path.as_str(), &s.content[..]))
        .collect();
    assert_eq!(
        content,
        [("x/a", &b"ay"[..]), ("x/b", b"bee"), ("x/c", b"sea")]
    );
    Ok(())
}
