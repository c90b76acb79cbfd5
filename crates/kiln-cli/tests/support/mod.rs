//! Helpers both end-to-end test files use: run the `kiln` binary, read its
//! JSON, and decide whether a missing real part fails or skips a test.
// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub(crate) mod umoci;

// The missing-tool rule, like the registry, the proxies and htpasswd, is
// shared with kiln-image's tests through the dev-only crate kiln-testkit.
pub(crate) use kiln_testkit::required;

/// The engine, or `None` after saying the test is skipped.
pub(crate) async fn engine() -> Option<kiln_engine::Docker> {
    kiln_engine::testing::engine_or_skip().await
}

/// `skopeo inspect ARGS...` (e.g. `oci:STORE:NAME:TAG`, or `--raw` first):
/// its JSON, after asserting that skopeo read the image.
pub(crate) fn skopeo_inspect(args: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {args:?}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo's JSON")
}

pub(crate) fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || !required(),
        "{tool} is required (KILN_REQUIRE_ENGINE=1 or CI=true) but missing"
    );
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

pub(crate) fn kiln(store: &Path, args: &[&str]) -> Output {
    kiln_with_env(store, args, &[])
}

/// [`kiln`] with extra environment variables (a secret's source,
/// `SOURCE_DATE_EPOCH`, `DOCKER_HOST`).
pub(crate) fn kiln_with_env(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .arg("--store")
        .arg(store)
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .output()
        .expect("run kiln")
}

pub(crate) fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub(crate) fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "kiln failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No file of the store, gzip blobs decompressed, holds `value` raw or in
/// base64.
pub(crate) fn assert_store_never_saw(store: &Path, value: &str) {
    let b64 = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{value}' | base64 -w0"))
        .output()
        .expect("base64")
        .stdout;
    let mut pending = vec![store.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let mut bytes = std::fs::read(&path).expect("read");
            if bytes.starts_with(&[0x1f, 0x8b]) {
                bytes = Command::new("gzip")
                    .arg("-dc")
                    .arg(&path)
                    .output()
                    .expect("gzip")
                    .stdout;
            }
            for needle in [value.as_bytes(), b64.as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A copy of images/hello in its own folder, with busybox staged, as
/// `version`: tests that run side by side use distinct versions, hence
/// distinct digests, so that none sees another's containers.
pub(crate) fn hello_copy(dir: &Path, version: &str) -> PathBuf {
    let image = dir.join("hello");
    copy_tree(&repo_root().join("images/hello"), &image);
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read recipe");
    // The version alone changes only the manifest; Docker names images by
    // their config, so a label keeps each test's image (and containers)
    // apart in the engine too.
    let toml = toml
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
        .replace(
            "labels = {",
            &format!("labels = {{ \"test.copy\" = \"{version}\","),
        );
    std::fs::write(image.join("kiln.toml"), toml).expect("write recipe");
    std::fs::create_dir_all(image.join("rootfs")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", image.join("rootfs/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    image
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "busybox" {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Build `recipe` into `store`; the image's digest.
pub(crate) fn build_digest(store: &Path, recipe: &Path) -> String {
    let out = ok(kiln(
        store,
        &["build", recipe.to_str().expect("utf8"), "--json"],
    ));
    json(&out)["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned()
}

/// Each layer of the first image of `kiln build --json`'s `report`: its
/// name and whether it came from the cache.
pub(crate) fn layers(report: &Value) -> Vec<(String, bool)> {
    report["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["name"].as_str().expect("name").to_owned(),
                l["cached"].as_bool().expect("cached"),
            )
        })
        .collect()
}

/// What [`layers`] gives, from names and whether each is cached.
pub(crate) fn cached(names: &[(&str, bool)]) -> Vec<(String, bool)> {
    names.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

/// The namespace the engine names of `store`'s runs live under.
pub(crate) fn engine_namespace(store: &Path) -> String {
    kiln::engine_namespace(&kiln::Store::open(store).expect("open the store"))
}

/// Every image name the engine holds under `store`'s namespace, sorted, as
/// the docker CLI (an independent tool) lists them.
pub(crate) fn engine_names(store: &Path) -> Vec<String> {
    let prefix = format!("{}/", engine_namespace(store));
    let out = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .expect("docker images");
    assert!(out.status.success(), "docker images: {}", stderr(&out));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The image each kiln container (labelled `dev.kiln.managed`) was created
/// from, whatever its state, as the docker CLI lists them.
pub(crate) fn managed_container_images() -> Vec<String> {
    container_images(true)
}

/// [`managed_container_images`] of the running containers only.
pub(crate) fn running_managed_container_images() -> Vec<String> {
    container_images(false)
}

fn container_images(all: bool) -> Vec<String> {
    let out = Command::new("docker")
        .arg("ps")
        .args(all.then_some("-a"))
        .args([
            "--filter",
            "label=dev.kiln.managed=true",
            "--format",
            "{{.Image}}",
        ])
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `kiln gc` on a store when dropped, so that a test leaves nothing of
/// its store in the shared engine (the run layers' base cache), even when
/// it fails half-way. Declare it after the store's temporary folder, so
/// that it is dropped first.
pub(crate) struct EngineCleanup(pub(crate) PathBuf);

impl Drop for EngineCleanup {
    fn drop(&mut self) {
        if self.0.join("oci-layout").exists() {
            let _ = kiln(&self.0, &["gc"]);
        }
    }
}
