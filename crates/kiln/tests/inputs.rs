//! Inputs are hashed from the bytes that go into the layer: a file (or a
//! `rootfs:` tar) changed between hashing (the cache key) and writing fails
//! the build, naming the file, and nothing is tagged or cached under a key
//! that names other content.

mod support;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use kiln::{BuildOptions, KilnError, Store};
use support::{AtLayer, assert_fsck_clean, assert_store_untouched, files_under, write};

/// The build failed because the input `file` changed under it, and says so.
fn assert_fails_naming_change(result: Result<kiln::BuildReport, KilnError>, file: &str) {
    let Err(err) = result else {
        panic!("a build whose input {file} changed under it succeeded: {result:?}");
    };
    let message = err.to_string();
    assert!(
        message.contains(file) && message.contains("changed"),
        "the error does not name {file}: {message}"
    );
    assert!(matches!(err, KilnError::Image(_)), "{err:?}");
}

#[tokio::test]
async fn a_file_changed_between_hashing_and_writing_fails_the_build_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("image");
    let input = image.join("data/app.conf");
    write(&input, b"mode=old\n");
    write(
        &image.join("kiln.toml"),
        br#"
[image]
name = "changing"
version = "1.0.0"
base = "scratch"

[[layer]]
name = "conf"
files = [{ src = "data/app.conf", dest = "/etc/app.conf" }]
"#,
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    // Same size, other content: only the content check can see it.
    let events = AtLayer {
        layer: "conf",
        action: || std::fs::write(&input, b"mode=new\n").expect("change the input"),
    };
    let result = kiln::build(&store, &recipe, &BuildOptions::default(), None, &events).await;
    assert_fails_naming_change(result, "app.conf");
    let index = std::fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(!index.contains("changing:1.0.0"), "{index}");

    // No cache entry names the old content's key: built from the old
    // content again, the layer is written anew, never served with the new
    // bytes.
    std::fs::write(&input, b"mode=old\n").expect("restore");
    let report = support::build(&store, &recipe)
        .await
        .expect("a build of the settled input");
    assert!(!report.layers[0].cached, "{:?}", report.layers[0]);
}

/// A tar of one file, `/etc/app.conf` holding `conf`, owned by root.
fn tar_of(dir: &Path, conf: &[u8]) -> Vec<u8> {
    let tree = dir.join(format!("tree-{}", conf.len()));
    let _ = std::fs::remove_dir_all(&tree);
    write(&tree.join("etc/app.conf"), conf);
    let out = std::process::Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&tree)
        .args(["-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&tree).expect("rm tree");
    out.stdout
}

/// Whether any file descriptor of this process is open on `path`.
fn open_here(path: &Path) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

/// Serves `first` to the first reader of the FIFO at `fifo`, then `rest`
/// to every later one, each read whole: a tar file whose content changes
/// between one read and the next, exactly when kiln reads it again. Runs
/// until the path is no longer a FIFO (the thread is never joined: a build
/// that stops reading leaves it waiting, harmlessly).
fn serve_changing(fifo: PathBuf, first: Vec<u8>, rest: Vec<u8>) {
    std::thread::spawn(move || {
        let mut content = first;
        loop {
            // Blocks until a reader opens the FIFO.
            let Ok(mut writer) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            if !writer.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
                return;
            }
            // A reader that stops early (a failed build) ends this write.
            let _ = std::io::Write::write_all(&mut writer, &content);
            drop(writer);
            content.clone_from(&rest);
            // The next open must meet the next reader, not this one: wait
            // until this one has closed the FIFO. (A reader blocked in
            // open(2) holds no descriptor yet.)
            while open_here(&fifo) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rootfs_tar_changed_between_hashing_and_unpacking_fails_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = std::fs::canonicalize(tmp.path())
        .expect("canonical")
        .join("image");
    std::fs::create_dir_all(&image).expect("mkdir");
    write(
        &image.join("kiln.toml"),
        br#"
[image]
name = "changing-rootfs"
version = "1.0.0"
base = "rootfs:rootfs.tar"

[[layer]]
name = "marker"
files = [{ src = "marker.txt", dest = "/marker.txt" }]
"#,
    );
    write(&image.join("marker.txt"), b"marker\n");
    // Same size, other content: only the digest of the bytes unpacked can
    // tell them apart.
    let old = tar_of(tmp.path(), b"mode=old\n");
    let new = tar_of(tmp.path(), b"mode=new\n");
    assert_eq!(old.len(), new.len());
    assert_ne!(old, new);
    let tar = image.join("rootfs.tar");
    let made = std::process::Command::new("mkfifo")
        .arg(&tar)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    serve_changing(tar.clone(), old, new.clone());

    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    assert_fails_naming_change(support::build(&store, &recipe).await, "rootfs.tar");
    // Nothing half-stored: no blob, no temporary file, no tag, no cache
    // entry, no staged file of the tar.
    assert_store_untouched(&store);
    let cache = files_under(&store.root().join("kiln/cache"));
    assert!(
        cache.iter().all(|p| p.ends_with("stat.json")),
        "cache entries written: {cache:?}"
    );
    let left: Vec<_> = files_under(&store.root().join("kiln"))
        .into_iter()
        .filter(|p| {
            !p.starts_with(store.root().join("kiln/cache"))
                && !p.starts_with(store.root().join("kiln/locks"))
        })
        .collect();
    assert!(left.is_empty(), "files left in the store: {left:?}");
    assert_fsck_clean(&store);

    // Settled (a plain file now), the same recipe builds, from the new
    // content.
    let settled = image.join("rootfs.tar.new");
    std::fs::write(&settled, &new).expect("write");
    std::fs::rename(&settled, &tar).expect("replace the FIFO");
    let report = support::build(&store, &recipe)
        .await
        .expect("a build of the settled tar");
    let again = support::build(&store, &recipe)
        .await
        .expect("a second build of the settled tar");
    assert_eq!(report.digest, again.digest);
    assert_fsck_clean(&store);
}
