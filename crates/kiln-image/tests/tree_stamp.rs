//! A `rootfs:` folder's stamp: the lean walk (`rootfs_folder_stamp`, split
//! over threads below depth 3) and the full walk (`rootfs_folder_walk`)
//! must give the same stamp for the same tree, whatever it holds; the
//! stamp must move with everything a layer key is made of; and a tree just
//! written is not settled.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use kiln_image::{ImageError, rootfs_folder_stamp, rootfs_folder_walk};
use kiln_testkit::run_ok;

/// A tree with every kind of entry, several of them below the depth where
/// the lean walk splits (`a/b/c/...`), and folders of one level only; at
/// that depth, empty folders (one of them last of all) and a file between
/// folders.
fn tree(root: &Path) {
    for dir in [
        "etc",
        "dev",
        "a/b/c/d/e",
        "a/b/empty",
        "a/b/f",
        "a/g",
        "usr/share/doc/x",
        "usr/share/zz",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let files = [
        "etc/os-release",
        "a/b/c/one",
        "a/b/c/d/e/deep",
        "a/b/f/two",
        "a/b/e-file",
        "usr/share/doc/x/copyright",
        "top",
    ];
    for (i, file) in files.iter().enumerate() {
        std::fs::write(root.join(file), format!("{file} {i}\n")).expect("write");
    }
    std::fs::set_permissions(
        root.join("a/b/c/one"),
        std::fs::Permissions::from_mode(0o4750),
    )
    .expect("chmod");
    symlink("../one", root.join("a/b/c/d/up")).expect("symlink");
    symlink("/etc/os-release", root.join("usr/share/doc/x/abs")).expect("symlink");
    std::fs::hard_link(root.join("a/b/c/one"), root.join("a/b/c/d/e/linked")).expect("link");
    run_ok(
        Command::new("mknod")
            .arg(root.join("dev/null"))
            .args(["c", "1", "3"]),
    );
    run_ok(
        Command::new("mknod")
            .arg(root.join("a/b/c/d/loop0"))
            .args(["b", "7", "0"]),
    );
    run_ok(Command::new("mkfifo").arg(root.join("a/b/c/d/e/fifo")));
}

#[test]
fn the_lean_walk_and_the_full_walk_give_one_stamp() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    tree(&root);
    let lean = rootfs_folder_stamp(&root).expect("stamp");
    let full = rootfs_folder_walk(&root).expect("walk");
    assert_eq!(lean.digest, full.stamp.digest);
    assert!(
        !lean.settled && !full.stamp.settled,
        "files written just now are within the racy window"
    );
    assert_eq!(
        rootfs_folder_stamp(&root).expect("stamp").digest,
        lean.digest,
        "the same tree twice"
    );
}

#[test]
fn the_stamp_moves_with_everything_a_key_is_made_of() {
    type Change = fn(&Path);
    let changes: [(&str, Change); 10] = [
        ("content", |r| {
            std::fs::write(r.join("a/b/f/two"), "a/b/f/two 9\n").expect("write")
        }),
        ("mode of a folder", |r| {
            std::fs::set_permissions(r.join("a/b/c/d"), std::fs::Permissions::from_mode(0o700))
                .expect("chmod")
        }),
        ("owner of a file", |r| {
            std::os::unix::fs::chown(r.join("top"), Some(7), Some(8)).expect("chown")
        }),
        ("a new file below the split", |r| {
            std::fs::write(r.join("a/b/c/d/e/new"), "").expect("write")
        }),
        ("an entry removed", |r| {
            std::fs::remove_file(r.join("usr/share/doc/x/abs")).expect("rm")
        }),
        ("a symlink's target", |r| {
            std::fs::remove_file(r.join("a/b/c/d/up")).expect("rm");
            symlink("../onE", r.join("a/b/c/d/up")).expect("symlink");
        }),
        ("a device's numbers", |r| {
            std::fs::remove_file(r.join("dev/null")).expect("rm");
            run_ok(
                Command::new("mknod")
                    .arg(r.join("dev/null"))
                    .args(["c", "1", "5"]),
            );
        }),
        ("a hard link broken", |r| {
            std::fs::remove_file(r.join("a/b/c/d/e/linked")).expect("rm");
            std::fs::write(r.join("a/b/c/d/e/linked"), "a/b/c/one 1\n").expect("write");
        }),
        ("a file renamed", |r| {
            std::fs::rename(r.join("top"), r.join("toq")).expect("mv")
        }),
        ("an mtime", |r| {
            std::fs::File::options()
                .write(true)
                .open(r.join("etc/os-release"))
                .and_then(|f| f.set_modified(std::time::UNIX_EPOCH))
                .expect("touch")
        }),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    for (what, change) in changes {
        let root = tmp.path().join(what.replace(' ', "-"));
        tree(&root);
        let before = rootfs_folder_stamp(&root).expect("stamp");
        change(&root);
        let after = rootfs_folder_stamp(&root).expect("stamp");
        assert_ne!(before.digest, after.digest, "{what}");
        let full = rootfs_folder_walk(&root).expect("walk");
        assert_eq!(after.digest, full.stamp.digest, "{what}: both walks agree");
    }
}

#[test]
fn what_the_full_walk_refuses_the_lean_walk_refuses() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("a/b/c/d")).expect("mkdir");
    let bad = root
        .join("a/b/c/d")
        .join(std::ffi::OsStr::from_bytes(b"\xff"));
    std::fs::write(&bad, "").expect("write");
    let lean = rootfs_folder_stamp(&root).expect_err("a name that is not UTF-8");
    assert!(
        matches!(&lean, ImageError::NonUtf8Path { path } if *path == bad),
        "{lean:?}"
    );
    assert!(matches!(
        rootfs_folder_walk(&root),
        Err(ImageError::NonUtf8Path { .. })
    ));
    std::fs::remove_file(&bad).expect("rm");
    let socket = root.join("a/sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let lean = rootfs_folder_stamp(&root).expect_err("a socket");
    assert!(
        matches!(&lean, ImageError::UnsupportedFileType { path } if *path == socket),
        "{lean:?}"
    );
}
