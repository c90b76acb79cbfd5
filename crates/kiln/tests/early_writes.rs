//! A file layer whose contents changed since the image's last build is
//! written while the base resolves, not after it: the base here is an `oci:`
//! layout whose `index.json` is a FIFO, served only once the changed
//! layer's blob is in the store (or after a generous deadline, so that a
//! build that does not write early fails the test instead of hanging). What
//! is written early is exactly what a build from an empty store writes; a
//! change undone is a cache hit after all; and a base that fails while a
//! layer is written early fails the build with the base's error, leaving no
//! temporary file and no tag moved.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::Store;
use support::{assert_fsck_clean, files_under, write};

/// How long the FIFO's server waits for a blob before it serves anyway.
const DEADLINE: Duration = Duration::from_secs(60);

/// What the server of `index.json` serves, and what it saw.
#[derive(Default)]
struct Served {
    /// The bytes of `index.json`.
    bytes: Vec<u8>,
    /// Serve only once a blob not in this set is in the store.
    wait_beyond: Option<BTreeSet<PathBuf>>,
    /// The blobs that were new when it served, after waiting.
    seen: Option<Vec<PathBuf>>,
    /// Whether it gave up waiting.
    timed_out: bool,
}

/// Serve `served` to each reader of the FIFO at `fifo`, forever (the thread
/// ends with the test process); `blobs` is the store's blobs folder.
fn serve(fifo: PathBuf, blobs: PathBuf, served: Arc<Mutex<Served>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            // Blocks until a reader opens the FIFO.
            let Ok(mut writer) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            let mut state = served.lock().expect("served");
            if let Some(before) = state.wait_beyond.take() {
                let started = Instant::now();
                let new = loop {
                    let now: Vec<_> = files_under(&blobs)
                        .into_iter()
                        .filter(|p| !before.contains(p) && !is_temporary(p))
                        .collect();
                    if !now.is_empty() {
                        break now;
                    }
                    if started.elapsed() > DEADLINE {
                        state.timed_out = true;
                        break now;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                };
                state.seen = Some(new);
            }
            let _ = std::io::Write::write_all(&mut writer, &state.bytes);
            drop(state);
            drop(writer);
            // Let this reader see the end of the file before the next open.
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

const RECIPE: &str = r#"
[image]
name = "early"
version = "1.0.0"
base = "oci:layout:base"
epoch = 1700000000

[[layer]]
name = "site"
files = [{ src = "site/", dest = "/www/" }]
"#;

/// A base image in an OCI layout at `ctx/layout`, ref `base`, its
/// `index.json` a FIFO; returns the bytes that FIFO must serve.
fn base_layout(ctx: &Path) -> Vec<u8> {
    let made = ctx.join("made");
    write(&made.join("hello.txt"), b"hello\n");
    write(
        &made.join("kiln.toml"),
        br#"
[image]
name = "base"
version = "1.0.0"
epoch = 1700000000

[[layer]]
name = "hello"
files = [{ src = "hello.txt", dest = "/hello.txt" }]
"#,
    );
    let layout = ctx.join("layout");
    let store = Store::open(&layout).expect("layout");
    let recipe = kiln::load_recipe(&made).expect("recipe");
    let report = support::block_on(support::build(&store, &recipe)).expect("base");
    // Only the manifest, as ref `base`: what the FIFO serves.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": report.digest.to_string(),
            "size": std::fs::metadata(store.blob_path(&report.digest)).expect("manifest").len(),
            "annotations": { "org.opencontainers.image.ref.name": "base" },
        }],
    });
    let index_path = layout.join("index.json");
    std::fs::remove_file(&index_path).expect("rm index.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&index_path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    serde_json::to_vec(&index).expect("json")
}

#[test]
fn a_file_layer_changed_since_the_last_build_is_written_while_the_base_resolves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = tmp.path().join("ctx");
    let index = base_layout(&ctx);
    write(&ctx.join("site/index.html"), b"<p>one</p>\n");
    write(&ctx.join("site/about.html"), b"<p>about</p>\n");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let blobs = store.root().join("blobs/sha256");
    let served = Arc::new(Mutex::new(Served {
        bytes: index.clone(),
        ..Served::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    serve(
        ctx.join("layout/index.json"),
        blobs.clone(),
        served.clone(),
        stop.clone(),
    );

    // The first build writes nothing early: the FIFO is served at once.
    let first = support::parse_and_build(&store, &ctx, RECIPE);
    assert!(!first.layers[0].cached);

    // Changed: the base is served only once the new layer is stored.
    write(&ctx.join("site/index.html"), b"<p>two</p>\n");
    served.lock().expect("served").wait_beyond = Some(files_under(&blobs).into_iter().collect());
    let second = support::parse_and_build(&store, &ctx, RECIPE);
    let state = served.lock().expect("served");
    assert!(
        !state.timed_out,
        "the base was read before the changed layer was written"
    );
    let seen = state.seen.clone().expect("the server waited");
    drop(state);
    let layer = blobs.join(second.layers[0].digest.hex());
    assert_eq!(seen, vec![layer], "the blob written early is the layer's");
    assert!(!second.layers[0].cached, "{:?}", second.layers[0]);
    assert_ne!(second.digest, first.digest);

    // The same bytes as a build that wrote nothing early (an empty store).
    let fresh = Store::open(tmp.path().join("fresh")).expect("fresh");
    let cold = support::parse_and_build(&fresh, &ctx, RECIPE);
    assert_eq!(cold.digest, second.digest);
    assert_eq!(cold.layers[0].digest, second.layers[0].digest);

    // Undone: written early again, and the cache hit is taken after all.
    write(&ctx.join("site/index.html"), b"<p>one</p>\n");
    let third = support::parse_and_build(&store, &ctx, RECIPE);
    assert!(third.layers[0].cached, "{:?}", third.layers[0]);
    assert_eq!(third.digest, first.digest);
    assert_fsck_clean(&store);

    // A base that fails while a layer is written early: the base's error,
    // no temporary file, and the tag still names the last good build.
    write(&ctx.join("site/index.html"), b"<p>three</p>\n");
    {
        let mut state = served.lock().expect("served");
        state.bytes = b"{ not an index".to_vec();
        state.wait_beyond = Some(files_under(&blobs).into_iter().collect());
    }
    let recipe = kiln::parse_recipe(RECIPE, &ctx).expect("parse");
    let failed = support::block_on(support::build(&store, &recipe));
    stop.store(true, Ordering::SeqCst);
    let Err(error) = failed else {
        panic!("a build on a broken base succeeded: {failed:?}");
    };
    assert!(
        error.to_string().contains("index.json"),
        "not the base's error: {error}"
    );
    assert!(!served.lock().expect("served").timed_out);
    let temporary: Vec<_> = files_under(store.root())
        .into_iter()
        .filter(|p| is_temporary(p))
        .collect();
    assert!(temporary.is_empty(), "left behind: {temporary:?}");
    let tagged = store.resolve("early:1.0.0").expect("resolve").expect("tag");
    assert_eq!(tagged.digest, third.digest);
    assert_fsck_clean(&store);
}
