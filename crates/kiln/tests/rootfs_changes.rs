//! A `rootfs:` folder base is checked for change by one stat per entry,
//! its files' digests served by the stat cache while their stat holds: every
//! kind of change must still give a new base (content behind an unchanged
//! size and mtime, mode, owner, a new or removed entry, a folder, a device
//! node, a hard link, a symlink's target), and what the image does not hold
//! (an mtime alone) must not. The tree's files are dated an hour back, older
//! than the stat cache's racy window, so an unchanged file is served from
//! the cache rather than hashed again. No engine needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use kiln::{Digest, Store};
use kiln_testkit::run_ok;

mod support;

/// Set the mtime of `path` an hour back (or to `when`).
fn date(path: &Path, when: Option<SystemTime>) {
    let when = when.unwrap_or_else(|| SystemTime::now() - Duration::from_secs(3600));
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .expect("set mtime");
}

fn write_old(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write");
    date(path, None);
}

/// Build the recipe on the tree at `root`; the base's manifest digest.
fn base_digest(store: &Store, ctx: &Path, root: &Path) -> Digest {
    let recipe = format!(
        "[image]\nname = \"tree\"\nversion = \"1.0.0\"\nbase = \"rootfs:{}\"\nepoch = 1700000000\n\n\
         [[layer]]\nname = \"site\"\nfiles = [{{ src = \"site/\", dest = \"/srv/\" }}]\n",
        root.display()
    );
    let report = support::parse_and_build(store, ctx, &recipe);
    report.base.expect("a rootfs base").digest
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn every_kind_of_change_to_a_rootfs_folder_gives_a_new_base() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    small_tree(&root);
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("site")).expect("mkdir");
    write_old(&ctx.join("site/index.html"), "hi\n");
    let store = Store::open(tmp.path().join("store")).expect("store");

    let first = base_digest(&store, &ctx, &root);
    assert_eq!(
        base_digest(&store, &ctx, &root),
        first,
        "an unchanged tree gives the same base"
    );

    // Each change, made on top of the ones before it, must give a base
    // never seen before.
    let mut seen = BTreeMap::from([(first.clone(), "the first build")]);
    let mut expect_new = |what: &'static str| {
        let digest = base_digest(&store, &ctx, &root);
        if let Some(earlier) = seen.insert(digest.clone(), what) {
            panic!("{what}: the base is {digest}, as after {earlier}");
        }
    };

    // Same size, mtime put back: only the ctime (and the content) tell.
    let release = root.join("etc/os-release");
    let mtime = std::fs::metadata(&release)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(&release, "ID=tref\n").expect("write");
    date(&release, Some(mtime));
    expect_new("content changed behind the same size and mtime");

    chmod(&root.join("bin/tool"), 0o4755);
    expect_new("a mode changed");

    std::os::unix::fs::chown(root.join("bin/tool"), Some(1234), Some(5678)).expect("chown");
    expect_new("an owner changed");

    write_old(&root.join("etc/hostname"), "tree\n");
    expect_new("a new file");

    std::fs::remove_file(root.join("etc/hostname")).expect("rm");
    std::fs::remove_file(root.join("bin/alias")).expect("rm");
    expect_new("an entry removed");

    std::fs::create_dir(root.join("srv")).expect("mkdir");
    expect_new("a new empty folder");

    std::os::unix::fs::symlink("../etc/os-release", root.join("bin/alias")).expect("symlink");
    expect_new("a symlink back, to another target");

    std::fs::remove_file(root.join("dev/null")).expect("rm");
    run_ok(
        Command::new("mknod")
            .arg(root.join("dev/null"))
            .args(["c", "1", "5"]),
    );
    expect_new("a device node's numbers changed");

    // b.so becomes a hard link of a.so: same content, mode, owner, but a
    // link in the layer instead of a second file.
    std::fs::remove_file(root.join("usr/lib/b.so")).expect("rm");
    std::fs::hard_link(root.join("usr/lib/a.so"), root.join("usr/lib/b.so")).expect("link");
    expect_new("two files became hard links of each other");

    // What the layer does not hold: mtimes are the epoch in the image.
    let before = base_digest(&store, &ctx, &root);
    date(
        &root.join("bin/tool"),
        Some(SystemTime::now() - Duration::from_secs(7200)),
    );
    assert_eq!(
        base_digest(&store, &ctx, &root),
        before,
        "an mtime alone is not in the image"
    );
}

/// The tree both tests change: an entry of each kind, two files of the
/// same content, a device node, files dated an hour back.
fn small_tree(root: &Path) {
    for dir in ["etc", "bin", "dev", "usr/lib/deep/er"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    write_old(&root.join("etc/os-release"), "ID=tree\n");
    write_old(&root.join("bin/tool"), "#!/bin/sh\necho tool\n");
    write_old(&root.join("usr/lib/a.so"), "same bytes\n");
    write_old(&root.join("usr/lib/b.so"), "same bytes\n");
    write_old(&root.join("usr/lib/deep/er/c.so"), "deep\n");
    std::os::unix::fs::symlink("tool", root.join("bin/alias")).expect("symlink");
    run_ok(
        Command::new("mknod")
            .arg(root.join("dev/null"))
            .args(["c", "1", "3"]),
    );
}

/// A `rootfs:` folder whose files all last changed (mtime and ctime) more
/// than the racy window ago has its key remembered by its stamp, and an
/// unchanged folder is then known by one walk of stats. Each kind of change
/// made to such a folder must give the base that a store with nothing
/// remembered gives, which for all but an mtime is a new one.
#[test]
fn a_remembered_folder_still_sees_every_kind_of_change() {
    type Change = fn(&Path);
    let changes: [(&str, Change, bool); 12] = [
        (
            "content changed behind the same size and mtime",
            |r| {
                let file = r.join("etc/os-release");
                let mtime = std::fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .expect("mtime");
                std::fs::write(&file, "ID=tref\n").expect("write");
                date(&file, Some(mtime));
            },
            true,
        ),
        (
            "content changed deep down",
            |r| std::fs::write(r.join("usr/lib/deep/er/c.so"), "DEEP\n").expect("write"),
            true,
        ),
        (
            "a mode changed",
            |r| chmod(&r.join("bin/tool"), 0o4755),
            true,
        ),
        (
            "a folder's mode changed",
            |r| chmod(&r.join("usr/lib/deep"), 0o700),
            true,
        ),
        (
            "a folder's owner changed",
            |r| std::os::unix::fs::chown(r.join("usr/lib"), Some(1234), Some(5678)).expect("chown"),
            true,
        ),
        (
            "a new file",
            |r| write_old(&r.join("etc/hostname"), "tree\n"),
            true,
        ),
        (
            "an entry removed",
            |r| std::fs::remove_file(r.join("bin/alias")).expect("rm"),
            true,
        ),
        (
            "a new empty folder",
            |r| std::fs::create_dir(r.join("srv")).expect("mkdir"),
            true,
        ),
        (
            "a symlink's target",
            |r| {
                std::fs::remove_file(r.join("bin/alias")).expect("rm");
                std::os::unix::fs::symlink("../etc/os-release", r.join("bin/alias"))
                    .expect("symlink");
            },
            true,
        ),
        (
            "a device node's numbers",
            |r| {
                std::fs::remove_file(r.join("dev/null")).expect("rm");
                run_ok(
                    Command::new("mknod")
                        .arg(r.join("dev/null"))
                        .args(["c", "1", "5"]),
                );
            },
            true,
        ),
        (
            "two files became hard links of each other",
            |r| {
                std::fs::remove_file(r.join("usr/lib/b.so")).expect("rm");
                std::fs::hard_link(r.join("usr/lib/a.so"), r.join("usr/lib/b.so")).expect("link");
            },
            true,
        ),
        (
            "an mtime alone",
            |r| {
                date(
                    &r.join("bin/tool"),
                    Some(SystemTime::now() - Duration::from_secs(7200)),
                )
            },
            false,
        ),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("site")).expect("mkdir");
    write_old(&ctx.join("site/index.html"), "hi\n");
    let trees: Vec<_> = (0..changes.len())
        .map(|i| {
            let root = tmp.path().join(format!("root-{i}"));
            small_tree(&root);
            root
        })
        .collect();
    // A ctime cannot be dated back: wait out the racy window (2 s) once.
    std::thread::sleep(Duration::from_millis(2100));
    let store = Store::open(tmp.path().join("store")).expect("store");
    for (i, ((what, change, new), root)) in changes.iter().zip(&trees).enumerate() {
        let first = base_digest(&store, &ctx, root);
        let stamp = kiln_image::rootfs_folder_stamp(root).expect("stamp");
        assert!(stamp.settled, "{what}: the tree is older than the window");
        let held = kiln_cache::stamps::recall(&store, root).expect("a key remembered");
        assert!(
            held.key(&stamp, 1_700_000_000).is_some(),
            "{what}: remembered under the stamp a lean walk gives"
        );
        assert_eq!(base_digest(&store, &ctx, root), first, "{what}: unchanged");

        change(root);
        let changed = base_digest(&store, &ctx, root);
        let fresh = Store::open(tmp.path().join(format!("fresh-{i}"))).expect("store");
        let truth = base_digest(&fresh, &ctx, root);
        assert_eq!(changed, truth, "{what}: as a store with nothing remembered");
        assert_eq!(changed != first, *new, "{what}: a new base or not");
    }
}
