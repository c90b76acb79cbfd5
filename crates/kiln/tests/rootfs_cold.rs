//! A `rootfs:` folder whose files the stat cache knows none of (a first
//! build from it, an empty store) is read once: its layer is written first,
//! each file hashed on the bytes written, and its key made after from those
//! digests. The same base comes out as when the stat cache vouches for the
//! files and the layer is written after the key, and a cache entry found
//! once the key is known is taken. Alone in its test binary: it counts the
//! bytes the whole process reads. No engine needed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln::{Digest, Store};
use kiln_testkit::bytes_read;

mod support;

/// How much file content the tree holds.
const TREE_BYTES: usize = 16 << 20;

/// A tree of 16 files of 1 MiB each (content that does not compress to
/// nothing), dated an hour back, beyond the stat cache's racy window.
fn tree(root: &Path) {
    for i in 0..16u32 {
        let dir = root.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let content: Vec<u8> = (0..(TREE_BYTES / 16) as u32)
            .map(|n| (n ^ i).wrapping_mul(2_654_435_761).to_le_bytes()[2])
            .collect();
        let file = dir.join(format!("f{i}"));
        std::fs::write(&file, content).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3600)))
            .expect("set mtime");
    }
}

/// Build a recipe on the tree at `root` into `store`: the base's manifest
/// digest and the image's.
fn build(store: &Store, ctx: &Path, root: &Path) -> (Digest, Digest) {
    let recipe = format!(
        "[image]\nname = \"cold\"\nversion = \"1.0.0\"\nbase = \"rootfs:{}\"\nepoch = 1700000000\n",
        root.display()
    );
    let report = support::parse_and_build(store, ctx, &recipe);
    (report.base.expect("a rootfs base").digest, report.digest)
}

/// Remove `store`'s `kiln/cache/NAME` (a file or a folder), if there.
fn forget(store: &Store, name: &str) {
    let path = store.root().join("kiln/cache").join(name);
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
}

/// Remove the folders' remembered keys, keeping their stat caches.
fn forget_remembered_keys(store: &Store) {
    let stamps = store.root().join("kiln/cache/stamps");
    for file in std::fs::read_dir(&stamps).expect("stamps").flatten() {
        if file.path().extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(file.path()).expect("rm");
        }
    }
}

#[test]
fn a_tree_the_stat_cache_does_not_know_is_read_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    tree(&root);
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    let store = Store::open(tmp.path().join("store")).expect("store");

    // Empty store: every file read once (hashing it for the key and then
    // writing it read it twice).
    let before = bytes_read();
    let first = build(&store, &ctx, &root);
    let read = bytes_read() - before;
    assert!(
        read < (TREE_BYTES + TREE_BYTES / 2) as u64,
        "{read} bytes read for {TREE_BYTES} bytes of files"
    );

    // The stat cache vouches for every file, the layer's cache entry and
    // the folder's remembered key are gone: the key is made first and the
    // layer written after it, the other way. The same base.
    forget(&store, "layers");
    forget_remembered_keys(&store);
    assert_eq!(build(&store, &ctx, &root), first);

    // The stat cache is gone (the folder's own, beside its remembered key),
    // the cache entry is there: written first again, and the entry found by
    // the key afterwards is taken.
    forget(&store, "stat.bin");
    forget(&store, "stamps");
    assert_eq!(build(&store, &ctx, &root), first);

    // A fresh store elsewhere: the same base, byte for byte.
    let other = Store::open(tmp.path().join("other")).expect("store");
    assert_eq!(build(&other, &ctx, &root), first);
}
