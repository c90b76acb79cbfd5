//! Set-up the library's input and cancellation tests share: writing an
//! image folder, listing a store's files, and acting at the moment a
//! layer starts.
// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kiln::{BuildOptions, BuildReport, Events, KilnError, Recipe, Store};

/// Write `content` to `path`, making its folders.
pub fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Copy the host's static busybox to `root/rootfs/busybox`.
pub fn copy_busybox(root: &Path) {
    std::fs::create_dir_all(root.join("rootfs")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("rootfs/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
}

/// A recipe's head: `[image]` `name` at 1.0.0 on scratch, `[config]` with
/// PATH=/bin and `entrypoint` (TOML, may be empty), and a first layer
/// `busybox` of what [`copy_busybox`] copied, `/bin/sh` linked to it.
pub fn busybox_recipe_head(name: &str, entrypoint: &str) -> String {
    format!(
        r#"
[image]
name = "{name}"
version = "1.0.0"
base = "scratch"

[config]
env = {{ PATH = "/bin" }}
{entrypoint}

[[layer]]
name = "busybox"
files = [{{ src = "rootfs/busybox", dest = "/bin/busybox", mode = 0o755 }}]
symlinks = [{{ path = "/bin/sh", target = "busybox" }}]
"#
    )
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
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
pub fn assert_store_untouched(store: &Store) {
    let blobs = files_under(&store.root().join("blobs"));
    assert!(blobs.is_empty(), "the store kept {blobs:?}");
    let index = std::fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(
        !index.contains("org.opencontainers.image.ref.name"),
        "the build named an image: {index}"
    );
}

/// Build `recipe` into `store` with the default options and no engine or
/// events.
pub async fn build(store: &Store, recipe: &Recipe) -> Result<BuildReport, KilnError> {
    kiln::build(
        store,
        recipe,
        &BuildOptions::default(),
        None,
        &kiln::NoEvents,
    )
    .await
}

/// `kiln fsck` finds nothing wrong in `store`.
pub fn assert_fsck_clean(store: &Store) {
    let report = kiln::fsck(store, &kiln::FsckOptions::default()).expect("fsck");
    assert!(report.problems.is_empty(), "fsck: {:?}", report.problems);
}

/// Runs `action` when the layer `layer` starts (after every input was
/// hashed for its cache key, before anything is written).
pub struct AtLayer<F> {
    pub layer: &'static str,
    pub action: F,
}

impl<F: Fn() + Send + Sync> kiln::CheckEvents for AtLayer<F> {}
impl<F: Fn() + Send + Sync> Events for AtLayer<F> {
    fn layer_started(&self, _image: &str, layer: &str) {
        if layer == self.layer {
            (self.action)();
        }
    }
}

/// Run `f` to its end on a runtime of its own.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Parse `recipe` (with `ctx` as its folder) and [`build`] it into `store`,
/// which must succeed.
pub fn parse_and_build(store: &Store, ctx: &Path, recipe: &str) -> BuildReport {
    let recipe = kiln::parse_recipe(recipe, ctx).expect("parse");
    block_on(build(store, &recipe)).expect("build")
}
