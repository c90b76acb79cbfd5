//! A rebuild that changed nothing writes nothing into the store (each
//! flushed write costs milliseconds, tens on a busy disk, and a rebuild that
//! changed nothing should cost a few), while one that changed a file still
//! writes everything that follows from it: the tag moves, and the stat
//! cache, the last build and the stored recipe say so. No engine needed:
//! the recipe has a file layer only; the bookkeeping is the same for every
//! base.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln::Store;

mod support;

const RECIPE: &str = r#"
[image]
name = "rebuilt"
version = "1.0.0"
epoch = 1700000000

[[layer]]
name = "site"
files = [{ src = "site/", dest = "/www/" }]
"#;

/// Write `content` to `path`, dated an hour ago: older than the stat
/// cache's racy window, so that an unchanged file is never hashed again.
fn write_old(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(an_hour_ago))
        .expect("set mtime");
}

fn build(store: &Store, ctx: &Path) -> kiln::BuildReport {
    support::parse_and_build(store, ctx, RECIPE)
}

/// Every file under `dir` (lock files aside: taking a lock opens them)
/// with its inode and modification time: a file replaced or rewritten
/// shows a new pair.
fn files(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut found = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                todo.push(path);
            } else if path.extension().is_none_or(|e| e != "lock") {
                let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
                found.insert(rel, (meta.ino(), meta.mtime(), meta.mtime_nsec()));
            }
        }
    }
    found
}

fn changed(
    before: &BTreeMap<PathBuf, (u64, i64, i64)>,
    after: &BTreeMap<PathBuf, (u64, i64, i64)>,
) -> Vec<PathBuf> {
    after
        .iter()
        .filter(|(path, stamp)| before.get(*path) != Some(*stamp))
        .map(|(path, _)| path.clone())
        .collect()
}

#[test]
fn a_rebuild_that_changed_nothing_writes_nothing_and_a_change_writes_all_it_must() {
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(ctx.path().join("site")).expect("mkdir");
    let page = ctx.path().join("site/index.html");
    write_old(&page, "hello\n");
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(store_dir.path()).expect("store");

    let first = build(&store, ctx.path());
    let before = files(store_dir.path());
    for kept in ["index.json", "kiln/cache/stat.bin"] {
        assert!(before.contains_key(Path::new(kept)), "{kept} was written");
    }

    let again = build(&store, ctx.path());
    assert_eq!(again.digest, first.digest);
    assert!(again.layers.iter().all(|l| l.cached));
    let rewritten = changed(&before, &files(store_dir.path()));
    assert!(
        rewritten.is_empty(),
        "a rebuild that changed nothing wrote {rewritten:?}"
    );

    // One file changed (same size, so only its content and date tell).
    write_old(&page, "howdy\n");
    std::fs::File::options()
        .write(true)
        .open(&page)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(1800)))
        .expect("set mtime");
    let moved = build(&store, ctx.path());
    assert_ne!(moved.digest, first.digest, "the change was noticed");
    assert!(!moved.layers[0].cached, "its layer was built again");
    let rewritten = changed(&before, &files(store_dir.path()));
    for must in [
        "index.json",
        "kiln/cache/stat.bin",
        "kiln/cache/last/rebuilt.json",
    ] {
        assert!(
            rewritten.contains(&PathBuf::from(must)),
            "{must} was not rewritten after a change: {rewritten:?}"
        );
    }
    let recipe = format!("kiln/recipes/{}.json", moved.digest.hex());
    assert!(rewritten.contains(&PathBuf::from(&recipe)), "{recipe} kept");
    let tagged = store
        .resolve("rebuilt:1.0.0")
        .expect("index")
        .expect("tagged");
    assert_eq!(
        tagged.digest, moved.digest,
        "the tag moved to the new image"
    );

    // And back: the first image again, the tag follows.
    write_old(&page, "hello\n");
    let back = build(&store, ctx.path());
    assert_eq!(back.digest, first.digest);
    let tagged = store
        .resolve("rebuilt:1.0.0")
        .expect("index")
        .expect("tagged");
    assert_eq!(tagged.digest, first.digest, "the tag moved back");
}
