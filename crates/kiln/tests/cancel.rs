//! Cancellation through the library's `Cancel` token: a cancelled build
//! returns `Cancelled`, names nothing, and leaves no container, temporary
//! file or partial blob behind once the call returns.

mod support;

use kiln::{BuildOptions, Cancel, KilnError, Store};
use kiln_engine::RUN_LABEL;
use kiln_testkit::{bytes_read, once_read};
use support::{
    AtLayer, assert_fsck_clean, assert_store_untouched, copy_busybox, files_under, write,
};

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
    let events = AtLayer {
        layer: "small",
        action: move || cancel.cancel(),
    };
    let result = kiln::build(&store, &recipe, &options, None, &events).await;
    assert!(
        matches!(result, Err(KilnError::Cancelled)),
        "not cancelled: {result:?}"
    );
    assert_store_untouched(&store);

    // The same store builds the recipe afterwards, as if nothing happened.
    let report = support::build(&store, &recipe)
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
    support::copy_busybox(&image);
    // A name of this process's own: the temporary engine tag it checks
    // for below is named after it, and another run's leftovers would not
    // be this run's to judge.
    let name = format!("cancelled-run-{}", std::process::id());
    write(
        &image.join("kiln.toml"),
        format!(
            r#"{}
[[layer]]
name = "forever"
run = "sleep 600"
"#,
            support::busybox_recipe_head(&name, "")
        )
        .as_bytes(),
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    cancel_once_its_container_runs(&docker, &store, &recipe, &name).await;
}

/// Build `recipe` (image `name`, whose first run layer sleeps ten minutes)
/// into `store`, cancel it once the run layer's container exists, and check
/// that it returns `Cancelled` and leaves no container, no temporary image,
/// no tag and no temporary file.
async fn cancel_once_its_container_runs(
    docker: &kiln_engine::Docker,
    store: &Store,
    recipe: &kiln::Recipe,
    name: &str,
) {
    let run_id = kiln::new_run_id();
    let cancel = Cancel::new();
    let options = BuildOptions {
        run_id: Some(run_id.clone()),
        cancel: cancel.clone(),
        ..BuildOptions::default()
    };
    let build = kiln::build(store, recipe, &options, Some(docker), &kiln::NoEvents);
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
    // Nor the temporary image its run layer ran in.
    // Run names live under the store's engine namespace.
    let namespace = kiln::engine_namespace(store);
    let tags = std::process::Command::new("docker")
        .args(["images", "--quiet", "--filter"])
        .arg(format!("reference={namespace}/build-{name}"))
        .output()
        .expect("docker images");
    assert!(tags.status.success());
    assert!(
        tags.stdout.is_empty(),
        "{namespace}/build-{name} left behind: {}",
        String::from_utf8_lossy(&tags.stdout)
    );
    let index = std::fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(!index.contains(&format!("{name}:1.0.0")), "{index}");
    let temporary: Vec<_> = files_under(&store.root().join("blobs"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
        })
        .collect();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
}

// A `docker-daemon:` base the store does not hold is imported while the
// first step already runs on the engine's image: a cancel then stops both,
// and leaves no container, no tag and no partial blob.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_step_cancelled_while_its_base_is_imported_leaves_nothing() {
    let Some(docker) = kiln_engine::testing::engine_or_skip().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    copy_busybox(&root);
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::rename(root.join("rootfs/busybox"), root.join("bin/busybox")).expect("mv");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
    let base_tag = format!("kiln-test/cancel-early:{}", std::process::id());
    let imported = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c bin | docker import - '{base_tag}' >/dev/null",
            root.display()
        ))
        .status()
        .expect("docker import");
    assert!(imported.success(), "docker import");
    let image = tmp.path().join("image");
    write(
        &image.join("kiln.toml"),
        format!(
            r#"
[image]
name = "cancelled-early"
version = "1.0.0"
base = "docker-daemon:{base_tag}"

[config]
env = {{ PATH = "/bin" }}

[[layer]]
name = "forever"
run = "sleep 600"
"#
        )
        .as_bytes(),
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    cancel_once_its_container_runs(&docker, &store, &recipe, "cancelled-early").await;
    let _ = std::process::Command::new("docker")
        .args(["rmi", &base_tag])
        .output();
}

/// Bytes this process has read through read(2) so far (`rchar`): how far a
/// long step got, measured without a clock.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_cancelled_while_hashing_a_huge_input_stops_long_before_the_end() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("image");
    write(&image.join("data/small.txt"), b"small\n");
    // 64 GiB, sparse: hashing it (and then tar and gzip) takes minutes.
    let size: u64 = 64 << 30;
    std::fs::File::create(image.join("data/huge.bin"))
        .and_then(|f| f.set_len(size))
        .expect("a sparse file");
    write(
        &image.join("kiln.toml"),
        br#"
[image]
name = "cancelled-hashing"
version = "1.0.0"
base = "scratch"

[[layer]]
name = "data"
files = [{ src = "data/", dest = "/data/" }]
"#,
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let cancel = Cancel::new();
    let options = BuildOptions {
        cancel: cancel.clone(),
        ..BuildOptions::default()
    };
    let before = bytes_read();
    // Cancel once 64 MiB of the input have been read (hashing is under way,
    // on the blocking pool).
    let watcher = once_read(64 << 20, {
        let cancel = cancel.clone();
        move || cancel.cancel()
    });
    let result = kiln::build(&store, &recipe, &options, None, &kiln::NoEvents).await;
    let read = bytes_read() - before;
    watcher.join().expect("watcher");
    assert!(
        matches!(result, Err(KilnError::Cancelled)),
        "not cancelled: {result:?}"
    );
    assert!(
        read < size / 16,
        "read {read} of {size} bytes before stopping"
    );
    assert_store_untouched(&store);
    assert_fsck_clean(&store);
}
