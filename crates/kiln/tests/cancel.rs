//! Cancellation through the library's `Cancel` token: a cancelled build
//! returns `Cancelled`, names nothing, and leaves no container, temporary
//! file or partial blob behind once the call returns.

use std::path::{Path, PathBuf};

use kiln::{BuildOptions, Cancel, Events, KilnError, Store};
use kiln_engine::RUN_LABEL;

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The store holds no blob, no temporary file and no ref.
fn assert_store_untouched(store: &Store) {
    let blobs = files_under(&store.root().join("blobs"));
    assert!(blobs.is_empty(), "the store kept {blobs:?}");
    let index = std::fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(
        !index.contains("org.opencontainers.image.ref.name"),
        "a cancelled build named an image: {index}"
    );
}

/// Cancels `cancel` when the layer `layer` starts.
struct CancelAt {
    layer: &'static str,
    cancel: Cancel,
}

impl kiln::CheckEvents for CancelAt {}
impl Events for CancelAt {
    fn layer_started(&self, _image: &str, layer: &str) {
        if layer == self.layer {
            self.cancel.cancel();
        }
    }
}

#[tokio::test]
async fn a_build_cancelled_as_its_layers_start_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("image");
    let big: Vec<u8> = (0..4u32 << 20)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2])
        .collect();
    write(&image.join("data/big.bin"), &big);
    write(&image.join("data/small.txt"), b"small\n");
    write(
        &image.join("kiln.toml"),
        br#"
[image]
name = "cancelled"
version = "1.0.0"
base = "scratch"

[[layer]]
name = "small"
files = [{ src = "data/small.txt", dest = "/small.txt" }]

[[layer]]
name = "big"
files = [{ src = "data/big.bin", dest = "/big.bin" }]
"#,
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let cancel = Cancel::new();
    let options = BuildOptions {
        cancel: cancel.clone(),
        ..BuildOptions::default()
    };
    // Cancelled as the first layer starts: every layer's write then meets
    // the token, so not one blob may be in the store afterwards.
    let events = CancelAt {
        layer: "small",
        cancel,
    };
    let result = kiln::build(&store, &recipe, &options, None, &events).await;
    assert!(
        matches!(result, Err(KilnError::Cancelled)),
        "not cancelled: {result:?}"
    );
    assert_store_untouched(&store);

    // The same store builds the recipe afterwards, as if nothing happened.
    let report = kiln::build(
        &store,
        &recipe,
        &BuildOptions::default(),
        None,
        &kiln::NoEvents,
    )
    .await
    .expect("a build after the cancelled one");
    assert_eq!(report.layers.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_layer_cancelled_while_running_leaves_no_container() {
    let Some(docker) = kiln_engine::testing::engine_or_skip().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("image");
    std::fs::create_dir_all(image.join("rootfs")).expect("mkdir");
    std::fs::copy("/bin/busybox", image.join("rootfs/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    write(
        &image.join("kiln.toml"),
        br#"
[image]
name = "cancelled-run"
version = "1.0.0"
base = "scratch"

[config]
env = { PATH = "/bin" }

[[layer]]
name = "busybox"
files = [{ src = "rootfs/busybox", dest = "/bin/busybox", mode = 0o755 }]
symlinks = [{ path = "/bin/sh", target = "busybox" }]

[[layer]]
name = "forever"
run = "sleep 600"
"#,
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let run_id = kiln::new_run_id();
    let cancel = Cancel::new();
    let options = BuildOptions {
        run_id: Some(run_id.clone()),
        cancel: cancel.clone(),
        ..BuildOptions::default()
    };
    let build = kiln::build(&store, &recipe, &options, Some(&docker), &kiln::NoEvents);
    // Cancel once the run layer's container exists (it sleeps ten minutes).
    let watcher = async {
        loop {
            let running = docker
                .containers_labelled(RUN_LABEL, &run_id)
                .await
                .expect("list containers");
            if !running.is_empty() {
                cancel.cancel();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let (result, ()) = tokio::join!(build, watcher);
    assert!(
        matches!(result, Err(KilnError::Cancelled)),
        "not cancelled: {result:?}"
    );
    let left = docker
        .containers_labelled(RUN_LABEL, &run_id)
        .await
        .expect("list containers");
    assert!(left.is_empty(), "containers left behind: {left:?}");
    let index = std::fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(!index.contains("cancelled-run:1.0.0"), "{index}");
    let temporary: Vec<_> = files_under(&store.root().join("blobs"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
        })
        .collect();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
}
