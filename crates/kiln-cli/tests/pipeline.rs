//! The whole pipeline through the `kiln` binary, on real parts: the Docker
//! engine, skopeo and umoci. Each test works on its own copy of
//! `images/hello` and its own store.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_testkit::Registry;
use serde_json::Value;
use support::{
    assert_store_never_saw, build_digest, cached, engine, have_tool, hello_copy, json, kiln,
    kiln_with_env, layers, ok, repo_root, skopeo_inspect, stderr,
};

/// Touch every file under `dir` with a different mtime.
fn retime(dir: &Path, seconds: u64) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if entry.file_type().expect("type").is_dir() {
            retime(&path, seconds);
        }
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        let file = std::fs::File::options()
            .read(true)
            .open(&path)
            .expect("open");
        file.set_modified(when).expect("set mtime");
    }
}

#[test]
fn same_inputs_in_two_folders_give_the_same_digest_and_tools_read_the_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = hello_copy(&tmp.path().join("a"), "1.0.0");
    let b = hello_copy(&tmp.path().join("somewhere/else/b"), "1.0.0");
    retime(&a, 1_000_000);
    retime(&b, 2_000_000_000);
    let store_a = tmp.path().join("store-a");
    let store_b = tmp.path().join("store-b");
    let digest_a = build_digest(&store_a, &a);
    let digest_b = build_digest(&store_b, &b);
    assert_eq!(
        digest_a, digest_b,
        "same recipe and inputs must give the same manifest digest"
    );
    // A build never depends on the time of day either: build again later.
    assert_eq!(build_digest(&store_a, &a), digest_a);

    if have_tool("skopeo") {
        let inspected = skopeo_inspect(&[&format!("oci:{}:hello:1.0.0", store_a.display())]);
        assert_eq!(inspected["Digest"].as_str(), Some(digest_a.as_str()));
    }
    if have_tool("umoci") {
        let root = support::umoci::unpack(&store_a, "hello:1.0.0", &tmp.path().join("bundle"));
        let page = std::fs::read_to_string(root.join("www/index.html")).expect("unpacked page");
        assert!(page.contains("Hello from kiln"));
        let meta = std::fs::symlink_metadata(root.join("bin/sh")).expect("sh");
        assert!(meta.file_type().is_symlink());
    }
}

#[test]
fn source_date_epoch_changes_the_digest() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.1.0-epoch");
    let store = tmp.path().join("store");
    let plain = build_digest(&store, &image);
    let out = kiln_with_env(
        &store,
        &["build", image.to_str().expect("utf8"), "--json"],
        &[("SOURCE_DATE_EPOCH", "1800000000")],
    );
    let with_epoch = json(&ok(out))["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_ne!(plain, with_epoch);
}

#[tokio::test(flavor = "multi_thread")]
async fn release_promotes_a_passing_digest_and_rollback_goes_back() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "1.0.0");
    let store = tmp.path().join("store");
    let recipe = image.to_str().expect("utf8");

    let out = ok(kiln(
        &store,
        &["release", recipe, "--json", "--junit"]
            .into_iter()
            .chain([tmp.path().join("junit.xml").to_str().expect("utf8")])
            .collect::<Vec<_>>(),
    ));
    let first = json(&out);
    let release = &first["releases"][0];
    assert_eq!(release["test"]["passed"], Value::Bool(true), "{first:#}");
    assert_eq!(release["promoted"], serde_json::json!(["stable"]));
    let v1 = release["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let checks = release["test"]["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 7, "every check of images/hello is reported");
    let junit = std::fs::read_to_string(tmp.path().join("junit.xml")).expect("junit");
    assert!(junit.contains("tests=\"7\" failures=\"0\""), "{junit}");

    // A second version with another page.
    std::fs::write(
        image.join("site/index.html"),
        "<h1>Hello from kiln, v2</h1>\n",
    )
    .expect("write");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        toml.replace("version = \"1.0.0\"", "version = \"2.0.0\""),
    )
    .expect("write");
    let second = json(&ok(kiln(&store, &["release", recipe, "--json"])));
    let v2 = second["releases"][0]["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_ne!(v1, v2);

    let images = json(&ok(kiln(&store, &["images", "--json"])));
    let row = |digest: &str| {
        images["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["digest"] == digest)
            .cloned()
            .expect("listed")
    };
    assert_eq!(row(&v2)["channels"], serde_json::json!(["stable"]));
    assert_eq!(row(&v2)["tags"], serde_json::json!(["2.0.0"]));
    assert_eq!(row(&v2)["test"], "passed");
    assert_eq!(row(&v1)["channels"], serde_json::json!([]));

    let back = json(&ok(kiln(
        &store,
        &["rollback", "hello", "--channel", "stable", "--json"],
    )));
    assert_eq!(back["from"].as_str(), Some(v2.as_str()));
    assert_eq!(back["to"].as_str(), Some(v1.as_str()));
    if have_tool("skopeo") {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:hello:stable", store.display()))
            .output()
            .expect("skopeo");
        let inspected: Value = serde_json::from_slice(&out.stdout).expect("skopeo json");
        assert_eq!(
            inspected["Digest"].as_str(),
            Some(v1.as_str()),
            "the store's stable ref follows the rollback"
        );
    }
    // Nothing earlier than v1 to go back to.
    let out = kiln(&store, &["rollback", "hello", "--channel", "stable"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no earlier passing digest"),
        "{}",
        stderr(&out)
    );

    // No container is left behind by any of it.
    assert_no_containers_of(&store);
}

/// Neither a kiln container of `store`'s runs nor any engine name of it
/// is left (a test's image goes once its test ends), as the docker CLI, an
/// independent tool, sees it.
fn assert_no_containers_of(store: &Path) {
    let namespace = support::engine_namespace(store);
    let left: Vec<String> = support::managed_container_images()
        .into_iter()
        .filter(|i| i.starts_with(&namespace))
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
    assert_eq!(support::engine_names(store), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_refuses_an_untested_digest_and_a_failing_one() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.2.0-refused");
    let store = tmp.path().join("store");
    let digest = build_digest(&store, &image);

    let out = kiln(
        &store,
        &["promote", &format!("hello@{digest}"), "--channel", "stable"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no test record"), "{}", stderr(&out));

    // Break the image: no health endpoint. Its checks fail, and neither
    // release nor promote moves the channel.
    std::fs::remove_file(image.join("site/health")).expect("rm");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        toml.replace("deadline = \"20s\"", "deadline = \"2s\""),
    )
    .expect("write");
    let out = kiln(
        &store,
        &["release", image.to_str().expect("utf8"), "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let release = &report["releases"][0];
    assert_eq!(release["test"]["passed"], Value::Bool(false));
    assert_eq!(release["promoted"], serde_json::json!([]));
    let health = release["test"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "health endpoint")
        .expect("health check reported");
    assert_eq!(health["passed"], Value::Bool(false));
    let detail = health["detail"].as_str().expect("detail");
    assert!(
        detail.contains("404"),
        "the detail says what was seen: {detail}"
    );
    let broken = release["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let out = kiln(
        &store,
        &["promote", &format!("hello@{broken}"), "--channel", "stable"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed its checks"),
        "{}",
        stderr(&out)
    );
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    assert!(
        images["images"]
            .as_array()
            .expect("images")
            .iter()
            .all(|i| i["channels"] == serde_json::json!([])),
        "no channel moved: {images:#}"
    );
    assert_no_containers_of(&store);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_by_reference_uses_the_stored_recipe() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.3.0-by-ref");
    let store = tmp.path().join("store");
    let digest = build_digest(&store, &image);
    // The recipe folder is gone: the store kept what the checks need.
    std::fs::remove_dir_all(&image).expect("rm");
    let out = ok(kiln(&store, &["test", "hello:0.3.0-by-ref", "--json"]));
    let report = json(&out);
    assert_eq!(report["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    // Now it is promotable.
    ok(kiln(
        &store,
        &["promote", &format!("hello@{digest}"), "--channel", "canary"],
    ));
}

#[test]
fn no_engine_is_exit_3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.4.0");
    let no_engine = format!("unix://{}/no.sock", tmp.path().display());
    let out = kiln_with_env(
        &tmp.path().join("store"),
        &["test", image.to_str().expect("utf8")],
        &[("DOCKER_HOST", &no_engine)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("engine"), "{}", stderr(&out));
}

#[test]
fn a_release_whose_signing_key_is_unusable_builds_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.5.0");
    let store = tmp.path().join("store");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        toml.replace(
            "channels = [\"stable\"]",
            "channels = [\"stable\"]\nsign = \"env:KILN_SIGNING_KEY\"",
        ),
    )
    .expect("write");
    let out = kiln_with_env(
        &store,
        &["release", image.to_str().expect("utf8")],
        &[("KILN_SIGNING_KEY", "")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("KILN_SIGNING_KEY"),
        "{}",
        stderr(&out)
    );
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    assert_eq!(
        images["images"],
        serde_json::json!([]),
        "refused before any work"
    );
}

#[test]
fn check_reports_file_line_and_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad = tmp.path().join("kiln.toml");
    std::fs::write(
        &bad,
        "[image]\nname = \"x\"\nbase = \"scratch\"\nverison = \"1\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("check")
        .arg(&bad)
        .arg(repo_root().join("images/hello"))
        .output()
        .expect("kiln");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("kiln.toml:4:1"), "{err}");
    assert!(err.contains("verison"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok "),
        "the good recipe is reported too"
    );
}

#[test]
fn bad_flags_and_references_are_exit_2() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let out = kiln(&store, &["inspect", "nothing:here"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));
    let out = kiln(&store, &["promote", "hello", "--channel", "stable"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = kiln(&store, &["build"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_removes_the_running_container() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.6.0-interrupted");
    // A check that waits a long time on a port nothing listens on.
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        format!(
            "{toml}\n[[check]]\nname = \"never\"\ntcp = {{ port = 9999 }}\ndeadline = \"5m\"\n"
        )
        .replace("timeout = \"60s\"", "timeout = \"10m\""),
    )
    .expect("write");
    let store = tmp.path().join("store");
    build_digest(&store, &image);
    let namespace = support::engine_namespace(&store);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["test", image.to_str().expect("utf8"), "--store"])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kiln");
    // Wait until its container runs, then interrupt it as Ctrl-C would.
    let running = || {
        support::running_managed_container_images()
            .iter()
            .any(|i| i.starts_with(&namespace))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the test container never started"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "kiln exited before its container ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    interrupt(child);
    assert_no_containers_of(&store);
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_keeps_what_a_rollback_needs_and_removes_orphans() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.7.0-gc");
    let store = tmp.path().join("store");
    let recipe = image.to_str().expect("utf8");
    let released = json(&ok(kiln(&store, &["release", recipe, "--json"])));
    let v1 = released["releases"][0]["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    // Rebuild under the same version with other content: the tag moves to
    // v2 and no tag names v1 any more, but `stable` may roll back to it.
    std::fs::write(
        image.join("site/index.html"),
        "<h1>Hello from kiln, again</h1>\n",
    )
    .expect("write");
    let released = json(&ok(kiln(&store, &["release", recipe, "--json"])));
    let v2 = released["releases"][0]["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    // The release says the tag moved, from v1 to v2.
    let moved = &released["releases"][0]["build"]["moved"];
    assert_eq!(moved.as_array().map(Vec::len), Some(1), "{released:#}");
    assert_eq!(moved[0]["from"].as_str(), Some(v1.as_str()));
    assert_eq!(moved[0]["to"].as_str(), Some(v2.as_str()));
    assert!(moved[0]["tag"].is_string());
    // And an orphan: built, tagged, then its tag moved by a third build.
    std::fs::write(image.join("site/index.html"), "<h1>orphan</h1>\n").expect("write");
    let orphan = build_digest(&store, &image);
    // Built again with nothing changed: no tag moved.
    let same = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        same["images"][0]["moved"],
        serde_json::json!([]),
        "{same:#}"
    );
    std::fs::write(
        image.join("site/index.html"),
        "<h1>Hello from kiln, v3</h1>\n",
    )
    .expect("write");
    // A person is told on stderr: old -> new digest.
    let out = ok(kiln(&store, &["build", recipe]));
    let v3 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .expect("name and digest on stdout");
    assert!(
        stderr(&out).contains(&format!("{orphan} -> {v3}")),
        "{}",
        stderr(&out)
    );

    let report = json(&ok(kiln(&store, &["gc", "--json"])));
    let removed: Vec<&str> = report["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        removed.contains(&orphan.as_str()),
        "the orphan's manifest is collected: {report:#}"
    );
    assert!(
        !removed.contains(&v1.as_str()) && !removed.contains(&v2.as_str()),
        "{report:#}"
    );
    let back = json(&ok(kiln(
        &store,
        &["rollback", "hello", "--channel", "stable", "--json"],
    )));
    assert_eq!(
        back["to"].as_str(),
        Some(v1.as_str()),
        "v1 survived gc whole"
    );
    ok(kiln(
        &store,
        &[
            "export",
            &format!("hello@{v1}"),
            &format!("oci:{}:v1", tmp.path().join("out").display()),
        ],
    ));
}

#[test]
fn export_writes_what_skopeo_reads() {
    if !have_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.8.0-export");
    let store = tmp.path().join("store");
    let digest = build_digest(&store, &image);
    for (dest, read_as) in [
        (
            format!("oci:{}/layout:hello:x", tmp.path().display()),
            format!("oci:{}/layout:hello:x", tmp.path().display()),
        ),
        (
            format!("oci-archive:{}/hello-oci.tar:hello:x", tmp.path().display()),
            format!("oci-archive:{}/hello-oci.tar:hello:x", tmp.path().display()),
        ),
        (
            format!(
                "docker-archive:{}/hello-docker.tar:hello:x",
                tmp.path().display()
            ),
            format!("docker-archive:{}/hello-docker.tar", tmp.path().display()),
        ),
    ] {
        ok(kiln(&store, &["export", "hello:0.8.0-export", &dest]));
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(&read_as)
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo {read_as}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inspected: Value = serde_json::from_slice(&out.stdout).expect("json");
        if !read_as.starts_with("docker-archive:") {
            // docker-archive has no manifest of its own to digest.
            assert_eq!(
                inspected["Digest"].as_str(),
                Some(digest.as_str()),
                "{read_as}"
            );
        }
        assert_eq!(
            inspected["Layers"].as_array().map(Vec::len),
            Some(2),
            "{read_as}"
        );
    }
    let out = kiln(&store, &["export", "hello:0.8.0-export", "ftp:somewhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A child recipe that adds one page on top of `base`.
fn child_recipe(dir: &Path, base: &str) -> PathBuf {
    let child = dir.join("child");
    std::fs::create_dir_all(child.join("site")).expect("mkdir");
    std::fs::write(child.join("site/child.html"), "a child of hello\n").expect("write");
    std::fs::write(
        child.join("kiln.toml"),
        format!(
            r#"[image]
name = "hello-child"
version = "1.0.0"
base = "{base}"

[[layer]]
name = "child page"
owner = "1000:1000"
files = [{{ src = "site/child.html", dest = "/www/child.html" }}]

[[check]]
name = "the base still serves"
http = {{ port = 8080, path = "/health" }}
body_contains = "ok"
interval = "100ms"

[[check]]
name = "the child page is served"
http = {{ port = 8080, path = "/child.html" }}
body_contains = "a child of hello"

[[check]]
name = "config is inherited"
metadata = {{ user = "1000:1000", exposed = [8080] }}
"#
        ),
    )
    .expect("write recipe");
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn children_build_on_kiln_and_oci_bases_with_the_base_layers_underneath() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.9.0-base");
    let store = tmp.path().join("store");
    let base_digest = build_digest(&store, &image);

    let on_kiln = child_recipe(&tmp.path().join("k"), "kiln:hello:0.9.0-base");
    let report = json(&ok(kiln(
        &store,
        &["test", on_kiln.to_str().expect("utf8"), "--json"],
    )));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    let child_digest = report["digest"].as_str().expect("digest").to_owned();

    let base = json(&ok(kiln(
        &store,
        &["inspect", &format!("hello@{base_digest}")],
    )));
    let child = json(&ok(kiln(
        &store,
        &["inspect", &format!("hello-child@{child_digest}")],
    )));
    let base_layers = base["manifest"]["layers"]
        .as_array()
        .expect("layers")
        .clone();
    let child_layers = child["manifest"]["layers"].as_array().expect("layers");
    assert_eq!(child_layers.len(), base_layers.len() + 1);
    assert_eq!(
        child_layers[..base_layers.len()],
        base_layers[..],
        "base layers reused byte for byte"
    );
    assert_eq!(child["config"]["history"].as_array().map(Vec::len), Some(3));

    // The same base through an OCI layout gives the very same child.
    let layout = tmp.path().join("layout");
    ok(kiln(
        &store,
        &[
            "export",
            "hello:0.9.0-base",
            &format!("oci:{}:base", layout.display()),
        ],
    ));
    let on_oci = child_recipe(
        &tmp.path().join("o"),
        &format!("oci:{}:base", layout.display()),
    );
    let other_store = tmp.path().join("other-store");
    assert_eq!(build_digest(&other_store, &on_oci), child_digest);

    // And through the archive transports: same base, same child.
    for (export, base) in [
        (
            format!("oci-archive:{}/base-oci.tar:base", tmp.path().display()),
            format!("oci-archive:{}/base-oci.tar:base", tmp.path().display()),
        ),
        (
            format!(
                "docker-archive:{}/base-docker.tar:hello:base",
                tmp.path().display()
            ),
            format!(
                "docker-archive:{}/base-docker.tar:hello:base",
                tmp.path().display()
            ),
        ),
    ] {
        ok(kiln(&store, &["export", "hello:0.9.0-base", &export]));
        let dir = tmp.path().join(format!("a{}", base.len()));
        let child = child_recipe(&dir, &base);
        let report = json(&ok(kiln(
            &tmp.path().join(format!("s{}", base.len())),
            &["test", child.to_str().expect("utf8"), "--json"],
        )));
        assert_eq!(report["passed"], Value::Bool(true), "{base}: {report:#}");
        if base.starts_with("oci-archive:") {
            assert_eq!(
                report["digest"].as_str(),
                Some(child_digest.as_str()),
                "{base}"
            );
        }
    }

    // A base that does not exist is bad input.
    let missing = child_recipe(&tmp.path().join("m"), "kiln:hello:9.9.9");
    let out = kiln(&store, &["build", missing.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("hello:9.9.9"), "{}", stderr(&out));
}

#[test]
fn the_cache_reuses_unchanged_layers_and_says_why_others_were_built() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.10.0-cache");
    let store = tmp.path().join("store");
    let recipe = image.to_str().expect("utf8");

    let first = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        layers(&first),
        cached(&[("busybox", false), ("site", false)])
    );
    assert_eq!(
        first["images"][0]["layers"][0]["why"][0],
        "first build of this layer"
    );

    let again = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(layers(&again), cached(&[("busybox", true), ("site", true)]));
    assert_eq!(again["images"][0]["digest"], first["images"][0]["digest"]);

    // One file changed: only its layer is built, and --explain names it.
    std::fs::write(
        image.join("site/index.html"),
        "<h1>Hello from kiln, changed</h1>\n",
    )
    .expect("write");
    let out = ok(kiln(&store, &["build", recipe, "--json", "--explain"]));
    let changed = json(&out);
    assert_eq!(
        layers(&changed),
        cached(&[("busybox", true), ("site", false)])
    );
    let why = changed["images"][0]["layers"][1]["why"].to_string();
    assert!(
        why.contains("/www/index.html")
            && why.contains("site/index.html")
            && why.contains("content"),
        "{why}"
    );
    assert!(
        stderr(&out).contains("miss, /www/index.html (from site/index.html) changed: content"),
        "{}",
        stderr(&out)
    );

    // A change to the recipe's layer definition is named by key.
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        toml.replace("exclude = [\"**/*.tmp\"]", "exclude = [\"**/*.bak\"]"),
    )
    .expect("write");
    let edited = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        layers(&edited),
        cached(&[("busybox", true), ("site", false)])
    );
    let why = edited["images"][0]["layers"][1]["why"].to_string();
    assert!(why.contains("files[0].exclude"), "{why}");
    let digest = edited["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();

    // A corrupted blob is never served: it is rebuilt, and repaired.
    let busybox_blob = edited["images"][0]["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let blob_path = store
        .join("blobs/sha256")
        .join(&busybox_blob["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob_path).expect("blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob_path, &bytes).expect("corrupt");
    let repaired = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        layers(&repaired),
        cached(&[("busybox", false), ("site", true)])
    );
    assert!(
        repaired["images"][0]["layers"][0]["why"]
            .to_string()
            .contains("corrupt")
    );
    assert_eq!(
        repaired["images"][0]["digest"].as_str(),
        Some(digest.as_str())
    );
    let fixed = std::fs::read(&blob_path).expect("blob");
    assert_eq!(
        format!("sha256:{}", sha256_hex(&fixed)),
        busybox_blob,
        "the blob was rewritten whole"
    );

    // A deleted blob too.
    std::fs::remove_file(&blob_path).expect("rm");
    let rebuilt = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        layers(&rebuilt),
        cached(&[("busybox", false), ("site", true)])
    );
    assert!(
        rebuilt["images"][0]["layers"][0]["why"]
            .to_string()
            .contains("missing")
    );

    // --no-cache builds everything, to the same digest.
    let fresh = json(&ok(kiln(
        &store,
        &["build", recipe, "--json", "--no-cache"],
    )));
    assert_eq!(
        layers(&fresh),
        cached(&[("busybox", false), ("site", false)])
    );
    assert_eq!(fresh["images"][0]["digest"].as_str(), Some(digest.as_str()));
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_secret_value_changes_no_cache_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.11.0-secret-key");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        format!("{toml}\n[secrets.token]\nfrom = \"env:KILN_TEST_TOKEN\"\n"),
    )
    .expect("write");
    let store = tmp.path().join("store");
    let build = |value: &str| {
        let out = kiln_with_env(
            &store,
            &["build", image.to_str().expect("utf8"), "--json"],
            &[("KILN_TEST_TOKEN", value)],
        );
        json(&ok(out))
    };
    let first = build("first-value");
    let second = build("another-value");
    assert_eq!(
        layers(&second),
        cached(&[("busybox", true), ("site", true)])
    );
    assert_eq!(first["images"][0]["digest"], second["images"][0]["digest"]);
    let cache = std::fs::read_dir(store.join("kiln/cache/layers"))
        .expect("cache")
        .count();
    assert_eq!(cache, 2, "one entry per layer, whatever the secret's value");
}

#[test]
fn kiln_check_locates_every_malformed_fixture() {
    let dir = repo_root().join("fixtures/recipes/bad");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).expect("expected");
        let (line_col, message) = expected.trim().split_once(": ").expect("LINE:COL: message");
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("check")
            .arg(&path)
            .output()
            .expect("kiln");
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let err = stderr(&out);
        let located = format!("{}:{line_col}", path.display());
        assert!(
            err.contains(&located),
            "{}: wants {located}:\n{err}",
            path.display()
        );
        // The first line is whole, however long the path:
        // `FILE:LINE:COL: ...message...`.
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{located}: ")) && l.contains(message)),
            "{}: wants one line holding {located} and {message:?}:\n{err}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} malformed recipes");
}

const SECRET: &str = "kiln-test-s3cr3t-value-42";

fn build_with_secret(image: &Path, store: &Path) -> Output {
    kiln_with_env(
        store,
        &["build", image.to_str().expect("utf8"), "--json"],
        &[("KILN_TEST_SECRET", SECRET)],
    )
}

#[test]
fn a_secret_leaked_into_the_image_fails_the_build_and_is_not_stored() {
    type Leak = fn(&Path) -> String;
    let cases: [(&str, Leak, &str); 5] = [
        (
            "file content",
            |image| {
                std::fs::write(image.join("site/token.txt"), format!("token={SECRET}\n"))
                    .expect("write");
                String::new()
            },
            "/www/token.txt",
        ),
        (
            "file name",
            |image| {
                std::fs::write(image.join(format!("site/{SECRET}.txt")), "x").expect("write");
                String::new()
            },
            "/www/***.txt",
        ),
        (
            "base64 in a file",
            |image| {
                let b64 = Command::new("sh")
                    .arg("-c")
                    .arg(format!("printf 'user:%s' '{SECRET}' | base64 -w0"))
                    .output()
                    .expect("base64")
                    .stdout;
                std::fs::write(image.join("site/auth"), b64).expect("write");
                String::new()
            },
            "base64",
        ),
        (
            "config env",
            |_| format!("env = {{ PATH = \"/bin\", TOKEN = \"{SECRET}\" }}"),
            "/config/Env",
        ),
        (
            "label",
            |_| format!("labels = {{ \"leak\" = \"{SECRET}\" }}"),
            "/config/Labels",
        ),
    ];
    for (what, leak, place) in cases {
        let tmp = tempfile::tempdir().expect("tmp");
        let image = hello_copy(tmp.path(), "0.12.0-leak");
        let config_line = leak(&image);
        let mut toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
        if let Some(key) = config_line
            .split_whitespace()
            .next()
            .filter(|k| !k.is_empty())
        {
            let start = toml.find(&format!("\n{key} = ")).expect("config key") + 1;
            let end = start + toml[start..].find('\n').expect("eol");
            toml.replace_range(start..end, &config_line);
        }
        toml.push_str("\n[secrets.api_token]\nfrom = \"env:KILN_TEST_SECRET\"\n");
        std::fs::write(image.join("kiln.toml"), toml).expect("write");
        let store = tmp.path().join("store");
        let out = build_with_secret(&image, &store);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("secret api_token") && err.contains(place),
            "{what}: {err}"
        );
        assert!(
            !err.contains(SECRET),
            "{what}: the error shows the value: {err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty()
                || !String::from_utf8_lossy(&out.stdout).contains(SECRET)
        );
        let images = json(&ok(kiln(&store, &["images", "--json"])));
        assert_eq!(
            images["images"],
            serde_json::json!([]),
            "{what}: nothing is tagged"
        );
        assert_store_never_saw(&store, SECRET);
    }
}

#[test]
fn a_declared_secret_that_does_not_leak_builds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.13.0-no-leak");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    std::fs::write(
        image.join("kiln.toml"),
        format!("{toml}\n[secrets.api_token]\nfrom = \"env:KILN_TEST_SECRET\"\n"),
    )
    .expect("write");
    let store = tmp.path().join("store");
    ok(build_with_secret(&image, &store));
    assert_store_never_saw(&store, SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_secrets_reach_the_container_and_no_report() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.14.0-boot-secret");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    let extra = r#"
[secrets.db_env]
from = "env:KILN_TEST_SECRET"

[secrets.db_file]
from = "env:KILN_TEST_SECRET"

[[check]]
name = "both boot secrets arrive"
command = ["/bin/sh", "-c", "test -n \"$DB_PASSWORD\" && test \"$DB_PASSWORD\" = \"$(cat /run/secrets/db)\" && echo same"]
stdout_contains = "same"

[[check]]
name = "a check that prints the secret and fails"
command = ["/bin/sh", "-c", "echo \"password is $DB_PASSWORD\"; exit 3"]
"#;
    let toml = toml.replace(
        "[boot]\ntimeout = \"60s\"",
        "[boot]\ntimeout = \"60s\"\nsecrets = { db_env = \"env:DB_PASSWORD\", db_file = \"file:/run/secrets/db\" }",
    );
    std::fs::write(image.join("kiln.toml"), format!("{toml}{extra}")).expect("write");
    let store = tmp.path().join("store");
    let junit = tmp.path().join("junit.xml");
    let out = kiln_with_env(
        &store,
        &[
            "test",
            image.to_str().expect("utf8"),
            "--json",
            "--junit",
            junit.to_str().expect("utf8"),
        ],
        &[("KILN_TEST_SECRET", SECRET)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .expect("check")
    };
    assert_eq!(
        check("both boot secrets arrive")["passed"],
        Value::Bool(true),
        "{report:#}"
    );
    let failed = check("a check that prints the secret and fails");
    let detail = failed["detail"].as_str().expect("detail");
    assert!(detail.contains("password is ***"), "{detail}");
    for text in [
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
        std::fs::read_to_string(&junit).expect("junit"),
    ] {
        assert!(
            !text.contains(SECRET),
            "a report shows the boot secret: {text}"
        );
    }
    assert_store_never_saw(&store, SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_bases_build_first_each_once_and_cycles_are_refused() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let hello = hello_copy(tmp.path(), "0.15.0-graph");
    let child = child_recipe(&tmp.path().join("c"), "recipe:../../hello");
    let store = tmp.path().join("store");

    // Asking for the child builds its base first.
    let report = json(&ok(kiln(
        &store,
        &["build", child.to_str().expect("utf8"), "--json"],
    )));
    let names: Vec<&str> = report["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["hello", "hello-child"]);
    // Asking for both builds each once.
    let both = json(&ok(kiln(
        &store,
        &[
            "build",
            child.to_str().expect("utf8"),
            hello.to_str().expect("utf8"),
            "--json",
        ],
    )));
    let names: Vec<&str> = both["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["hello", "hello-child"]);
    // The child boots with its base underneath.
    let tested = json(&ok(kiln(
        &store,
        &["test", child.to_str().expect("utf8"), "--json"],
    )));
    assert_eq!(tested["passed"], Value::Bool(true), "{tested:#}");

    // A loop back to the child is a cycle, reported with its path.
    let toml = std::fs::read_to_string(hello.join("kiln.toml")).expect("read");
    std::fs::write(
        hello.join("kiln.toml"),
        toml.replace("base = \"scratch\"", "base = \"recipe:../c/child\""),
    )
    .expect("write");
    let out = kiln(&store, &["build", child.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cycle") && err.contains("hello/kiln.toml") && err.contains("child/kiln.toml"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_builds_on_a_registry_base() {
    let Some(_engine) = engine().await else {
        return;
    };
    if !have_tool("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.16.0-registry");
    let store = tmp.path().join("store");
    let base_digest = build_digest(&store, &image);
    let remote = format!("127.0.0.1:{}/team/hello", registry.port);
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:hello:0.16.0-registry", store.display()))
        .arg(format!("docker://{remote}:base"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let on_kiln = child_recipe(&tmp.path().join("k"), "kiln:hello:0.16.0-registry");
    let local = build_digest(&store, &on_kiln);
    let on_registry = child_recipe(&tmp.path().join("r"), &format!("docker://{remote}:base"));
    let other = tmp.path().join("other-store");
    let report = json(&ok(kiln(
        &other,
        &["test", on_registry.to_str().expect("utf8"), "--json"],
    )));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    assert_eq!(
        report["digest"].as_str(),
        Some(local.as_str()),
        "the pulled base is byte-identical"
    );
    // The build output names the base by the digest its tag resolved to.
    let built = json(&ok(kiln(
        &other,
        &["build", on_registry.to_str().expect("utf8"), "--json"],
    )));
    let child_build = &built["images"][0];
    assert_eq!(
        child_build["base"]["reference"].as_str(),
        Some(format!("docker://{remote}:base").as_str())
    );
    assert_eq!(
        child_build["base"]["digest"].as_str(),
        Some(base_digest.as_str())
    );

    // An unknown tag is bad input; a registry that is not there is exit 3.
    let missing = child_recipe(&tmp.path().join("m"), &format!("docker://{remote}:nope"));
    let out = kiln(&other, &["build", missing.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let port = registry.port;
    drop(registry);
    let gone = child_recipe(
        &tmp.path().join("g"),
        &format!("docker://127.0.0.1:{port}/team/hello:base"),
    );
    let out = kiln(
        &tmp.path().join("third-store"),
        &["build", gone.to_str().expect("utf8")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_builds_on_a_docker_daemon_base() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.17.0-daemon");
    let store = tmp.path().join("store");
    build_digest(&store, &image);
    let tag = "kiln-test/hello-daemon:0.17.0";
    ok(kiln(
        &store,
        &[
            "export",
            "hello:0.17.0-daemon",
            &format!("docker-daemon:{tag}"),
        ],
    ));
    let child = child_recipe(&tmp.path().join("d"), &format!("docker-daemon:{tag}"));
    let report = json(&ok(kiln(
        &tmp.path().join("other"),
        &["test", child.to_str().expect("utf8"), "--json"],
    )));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    let inspected = json(&ok(kiln(
        &tmp.path().join("other"),
        &["inspect", "hello-child:1.0.0"],
    )));
    assert_eq!(
        inspected["manifest"]["layers"].as_array().map(Vec::len),
        Some(3),
        "base layers underneath"
    );
    let _ = Command::new("docker").args(["rmi", tag]).output();

    let missing = child_recipe(&tmp.path().join("m"), "docker-daemon:kiln-test/not-there:1");
    let out = kiln(
        &tmp.path().join("third"),
        &["build", missing.to_str().expect("utf8")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not-there"), "{}", stderr(&out));
}

#[test]
fn independent_recipes_build_together_with_j() {
    let tmp = tempfile::tempdir().expect("tmp");
    let hello = hello_copy(tmp.path(), "0.18.0-jobs");
    let alone = child_recipe(&tmp.path().join("alone"), "scratch");
    let toml = std::fs::read_to_string(alone.join("kiln.toml")).expect("read");
    std::fs::write(
        alone.join("kiln.toml"),
        toml.replace("name = \"hello-child\"", "name = \"alone\""),
    )
    .expect("write");
    let on_top = child_recipe(&tmp.path().join("top"), "recipe:../../hello");
    let store = tmp.path().join("store");
    let paths = [&on_top, &alone, &hello].map(|p| p.to_str().expect("utf8").to_owned());
    let mut args = vec!["build", "-j", "2", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let report = json(&ok(kiln(&store, &args)));
    let names: Vec<&str> = report["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{report:#}");
    // The child comes after its base; the independent ones come first.
    assert_eq!(names[2], "hello-child", "{names:?}");
    let mut first_two = names[..2].to_vec();
    first_two.sort_unstable();
    assert_eq!(first_two, ["alone", "hello"]);
    // The same graph one at a time gives the same digests.
    let serial = json(&ok(kiln(&tmp.path().join("serial"), &{
        let mut a = vec!["build", "--json"];
        a.extend(paths.iter().map(String::as_str));
        a
    })));
    let digests = |r: &Value| {
        let mut d: Vec<String> = r["images"]
            .as_array()
            .expect("images")
            .iter()
            .filter_map(|i| i["digest"].as_str().map(str::to_owned))
            .collect();
        d.sort();
        d
    };
    assert_eq!(digests(&report), digests(&serial));
}

/// Every piece of `SECRET` at least `min` characters long.
fn pieces_of_secret(min: usize) -> Vec<&'static str> {
    (min..=SECRET.len())
        .flat_map(|len| (0..=SECRET.len() - len).map(move |at| &SECRET[at..at + len]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_printed_across_the_truncation_point_appears_nowhere() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.16.0-secret-cut");
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read");
    // A check's output is shown as its last 1000 characters: the secret is
    // printed so that this cut falls in its middle, once on stdout and once
    // on stderr.
    let after = 1000 - SECRET.len() / 2;
    let extra = format!(
        r#"
[secrets.db_env]
from = "env:KILN_TEST_SECRET"

[[check]]
name = "prints the secret across the cut"
command = ["/bin/sh", "-c", "printf 'head %s' \"$DB_PASSWORD\"; printf 'x%.0s' $(seq {after}); printf 'head %s' \"$DB_PASSWORD\" >&2; printf 'y%.0s' $(seq {after}) >&2; exit 3"]
"#
    );
    let toml = toml.replace(
        "[boot]\ntimeout = \"60s\"",
        "[boot]\ntimeout = \"60s\"\nsecrets = { db_env = \"env:DB_PASSWORD\" }",
    );
    std::fs::write(image.join("kiln.toml"), format!("{toml}{extra}")).expect("write");
    let store = tmp.path().join("store");
    let junit = tmp.path().join("junit.xml");
    let out = kiln_with_env(
        &store,
        &[
            "test",
            image.to_str().expect("utf8"),
            "--json",
            "--junit",
            junit.to_str().expect("utf8"),
        ],
        &[("KILN_TEST_SECRET", SECRET)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let detail = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "prints the secret across the cut")
        .and_then(|c| c["detail"].as_str())
        .expect("the check's detail")
        .to_owned();
    // The cut did fall where the secret was: what is shown starts with
    // the mask, not with the filler.
    assert!(detail.contains("***x"), "{detail}");
    assert!(detail.contains("***y"), "{detail}");
    let mut texts = vec![
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", stderr(&out)),
        ("junit", std::fs::read_to_string(&junit).expect("junit")),
    ];
    // The stored test record (and everything else kiln keeps).
    let mut pending = vec![store.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                texts.push(("store", text));
            }
        }
    }
    for piece in pieces_of_secret(6) {
        for (what, text) in &texts {
            assert!(
                !text.contains(piece),
                "{what} shows {piece:?}, a piece of the secret"
            );
        }
    }
}

#[test]
fn hostile_recipes_are_exit_2_never_a_crash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let deep = 100_000;
    // Random bytes from a fixed xorshift, so the case is the same each run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random-bytes", random),
        (
            "deep-arrays",
            format!("x = {}{}\n", "[".repeat(deep), "]".repeat(deep)).into_bytes(),
        ),
        (
            "deep-inline-tables",
            format!("x = {}1{}\n", "{a = ".repeat(deep), "}".repeat(deep)).into_bytes(),
        ),
        (
            "deep-dotted-table",
            format!("[{}]\n", vec!["a"; deep].join(".")).into_bytes(),
        ),
    ];
    for (name, bytes) in cases {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, bytes).expect("write");
        let out = kiln(&store, &["check", file.to_str().expect("utf8")]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            stderr(&out).chars().take(2000).collect::<String>()
        );
    }
}

/// The hello image set to push to `destination` when released.
fn pushing_hello(dir: &Path, version: &str, destination: &str) -> PathBuf {
    let image = hello_copy(dir, version);
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read recipe");
    let toml = toml.replace(
        "channels = [\"stable\"]",
        &format!("channels = [\"stable\"]\npush = \"{destination}\""),
    );
    std::fs::write(image.join("kiln.toml"), toml).expect("write recipe");
    image
}

/// `docker` with its output, failing the test when it fails.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn release_pushes_the_tested_digest_and_docker_runs_it() {
    let Some(_engine) = engine().await else {
        return;
    };
    if !have_tool("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = format!("127.0.0.1:{}/team/hello-pushed", registry.port);
    let image = pushing_hello(tmp.path(), "0.30.0-push", &format!("docker://{repo}"));
    let store = tmp.path().join("store");
    let empty_config = tmp.path().join("docker-config");
    std::fs::create_dir_all(&empty_config).expect("mkdir");
    let env = [("DOCKER_CONFIG", empty_config.to_str().expect("utf8"))];
    let release = |env: &[(&str, &str)]| {
        json(&ok(kiln_with_env(
            &store,
            &["release", image.to_str().expect("utf8"), "--json"],
            env,
        )))
    };
    let first = release(&env);
    let r = &first["releases"][0];
    let digest = r["build"]["digest"].as_str().expect("digest").to_owned();
    assert_eq!(
        r["pushed"]["digest"].as_str(),
        Some(digest.as_str()),
        "{r:#}"
    );
    assert_eq!(
        r["pushed"]["tags"],
        serde_json::json!(["0.30.0-push", "stable"])
    );
    assert_eq!(
        r["pushed"]["blobs_uploaded"], 3,
        "config and two layers: {r:#}"
    );
    // The registry serves kiln's digest under every tag.
    for tag in ["0.30.0-push", "stable"] {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{repo}:{tag}"))
            .output()
            .expect("skopeo");
        let inspect: Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
        assert_eq!(
            inspect["Digest"].as_str(),
            Some(digest.as_str()),
            "tag {tag}"
        );
    }
    // Docker pulls it and runs it.
    let pulled = format!("{repo}:0.30.0-push");
    docker(&["pull", &pulled]);
    let said = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/busybox",
        &pulled,
        "cat",
        "/www/index.html",
    ]);
    let _ = Command::new("docker").args(["rmi", &pulled]).output();
    assert!(said.contains("Hello from kiln"), "{said}");

    // A second release pushes no blob: the registry has them all.
    let second = release(&env);
    let r = &second["releases"][0];
    assert_eq!(r["pushed"]["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(r["pushed"]["blobs_uploaded"], 0, "{r:#}");

    // An export under another tag is the same digest.
    ok(kiln_with_env(
        &store,
        &[
            "export",
            "hello:0.30.0-push",
            &format!("docker://{repo}:exported"),
        ],
        &env,
    ));
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{repo}:exported"))
        .output()
        .expect("skopeo");
    let inspect: Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    assert_eq!(inspect["Digest"].as_str(), Some(digest.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_docker_config_helpers_and_registry_auth_file() {
    let Some(_engine) = engine().await else {
        return;
    };
    let Some(line) = kiln_testkit::htpasswd("kiln", "s3cret") else {
        return;
    };
    let Some(registry) = Registry::start_with_auth(Some(&line)) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let host = format!("127.0.0.1:{}", registry.port);
    let image = hello_copy(tmp.path(), "0.31.0-private");
    let store = tmp.path().join("store");
    build_digest(&store, &image);
    let auth = |user_password: &str| {
        use base64::Engine as _;
        serde_json::json!({ "auths": { host.clone(): {
            "auth": base64::engine::general_purpose::STANDARD.encode(user_password)
        } } })
        .to_string()
    };
    let dir = |name: &str, config: Option<String>| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        if let Some(config) = config {
            std::fs::write(d.join("config.json"), config).expect("write config");
        }
        d.to_str().expect("utf8").to_owned()
    };
    let nothing = dir("none", None);
    let good = dir("good", Some(auth("kiln:s3cret")));
    let bad = dir("bad", Some(auth("kiln:hunter2-bad")));
    let export = |to: &str, env: &[(&str, &str)]| {
        kiln_with_env(
            &store,
            &[
                "export",
                "hello:0.31.0-private",
                &format!("docker://{host}/team/private:{to}"),
            ],
            env,
        )
    };

    // No credentials, and wrong ones: exit 3, naming the registry and
    // what to set, never the password.
    for (config, what) in [(&nothing, "none"), (&bad, "wrong")] {
        let out = export(
            "x",
            &[("DOCKER_CONFIG", config), ("REGISTRY_AUTH_FILE", "")],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
        assert!(
            err.contains(&host) && err.contains("REGISTRY_AUTH_FILE"),
            "{what}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    // docker's config.json.
    ok(export(
        "1",
        &[("DOCKER_CONFIG", &good), ("REGISTRY_AUTH_FILE", "")],
    ));
    // containers-auth.json through REGISTRY_AUTH_FILE; it comes first.
    let auth_file = tmp.path().join("auth.json");
    std::fs::write(&auth_file, auth("kiln:s3cret")).expect("write auth file");
    let auth_file = auth_file.to_str().expect("utf8");
    ok(export(
        "2",
        &[("DOCKER_CONFIG", &bad), ("REGISTRY_AUTH_FILE", auth_file)],
    ));
    // A credential helper on PATH, named by credHelpers.
    let path =
        kiln_testkit::credential_helper(&tmp.path().join("bin"), "kiln-test", "kiln", "s3cret");
    let helped = dir(
        "helped",
        Some(serde_json::json!({ "credHelpers": { host.clone(): "kiln-test" } }).to_string()),
    );
    ok(export(
        "3",
        &[
            ("DOCKER_CONFIG", &helped),
            ("REGISTRY_AUTH_FILE", ""),
            ("PATH", &path),
        ],
    ));

    // A private docker:// base, in another store, with the same credentials.
    let child = child_recipe(
        &tmp.path().join("c"),
        &format!("docker://{host}/team/private:1"),
    );
    let other = tmp.path().join("other-store");
    let out = kiln_with_env(
        &other,
        &["build", child.to_str().expect("utf8"), "--json"],
        &[
            ("DOCKER_CONFIG", &nothing),
            ("REGISTRY_AUTH_FILE", auth_file),
        ],
    );
    let built = json(&ok(out));
    assert!(
        built["images"][0]["base"]["digest"].as_str().is_some(),
        "{built:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_store_takes_every_layer_from_the_shared_cache() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.32.0-shared");
    let recipe = image.to_str().expect("utf8");
    let cache = format!("docker://127.0.0.1:{}/team/cache", registry.port);
    let first = json(&ok(kiln(
        &tmp.path().join("machine-a"),
        &["build", recipe, "--cache-to", &cache, "--json"],
    )));
    let second = json(&ok(kiln(
        &tmp.path().join("machine-b"),
        &["build", recipe, "--cache-from", &cache, "--json"],
    )));
    let (a, b) = (&first["images"][0], &second["images"][0]);
    assert_eq!(a["digest"], b["digest"], "the same image on both machines");
    let layers = b["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2);
    for layer in layers {
        assert_eq!(layer["cached"], Value::Bool(true), "{layer:#}");
    }
    // A cache that is not a repository is bad input.
    let out = kiln(
        &tmp.path().join("machine-c"),
        &["build", recipe, "--cache-from", &format!("{cache}:tagged")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Ctrl-C (SIGINT) to a running `kiln`; its output, once it exited as an
/// interrupted run does (130).
fn interrupt(child: std::process::Child) -> Output {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    out
}

#[test]
fn ctrl_c_during_a_push_leaves_no_tag_and_the_store_untouched() {
    if !have_tool("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.32.0-ctrl-c");
    let store = tmp.path().join("store");
    build_digest(&store, &image);
    let upstream = format!("127.0.0.1:{}", registry.port);
    // Passes everything until the first blob upload, then holds it.
    let proxy = kiln_testkit::Proxy::start(&upstream, kiln_testkit::Fault::StallUploads);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["export", "hello:0.32.0-ctrl-c"])
        .arg(format!("docker://{}/team/interrupted:1", proxy.host))
        .arg("--store")
        .arg(&store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kiln");
    // Wait until the push is mid-upload (no assertion on how long it takes;
    // the bound only keeps a broken kiln from hanging the suite).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !proxy.faulted() {
        if std::time::Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            panic!("the push never reached a blob upload");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = interrupt(child);
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));

    // The registry itself (not through the proxy) has no such tag.
    let inspect = || {
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{upstream}/team/interrupted:1"))
            .output()
            .expect("skopeo")
    };
    let tags = inspect();
    assert!(
        !tags.status.success(),
        "the interrupted push left a tag: {}",
        String::from_utf8_lossy(&tags.stdout)
    );
    let fsck = kiln(&store, &["fsck", "--json"]);
    assert_eq!(json(&fsck)["problems"], serde_json::json!([]));
    assert_eq!(fsck.status.code(), Some(0), "{}", stderr(&fsck));
    // A push without the proxy then completes (nothing was held), and the
    // same inspection now finds the tag.
    ok(kiln(
        &store,
        &[
            "export",
            "hello:0.32.0-ctrl-c",
            &format!("docker://{upstream}/team/interrupted:1"),
        ],
    ));
    assert!(inspect().status.success());
}
