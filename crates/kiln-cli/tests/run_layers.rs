//! Run layers through the `kiln` binary on the real Docker engine: what a
//! command changed becomes exactly one reproducible layer (whiteouts for
//! deletions, nothing the engine put into the container), tools read it,
//! the image boots with the changes, and a failing command fails the build
//! with its output and leaves no container behind.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{
    assert_store_never_saw, engine, have_tool, json, kiln, kiln_with_env, managed_container_images,
    ok, skopeo_inspect, stderr,
};

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// A recipe named `name`: busybox and some seed files as file layers, then
/// a run layer `changes` running `run` (a TOML string), then `checks`.
fn run_recipe(dir: &Path, name: &str, run: &str, checks: &str) -> PathBuf {
    let image = dir.join(name);
    std::fs::create_dir_all(image.join("rootfs")).expect("mkdir");
    std::fs::copy("/bin/busybox", image.join("rootfs/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    write(&image.join("seed/data/keep.txt"), "keep\n");
    write(&image.join("seed/data/old.txt"), "old\n");
    write(&image.join("seed/data/mod.txt"), "original\n");
    write(&image.join("seed/cfg/a"), "a\n");
    write(&image.join("seed/cfg/b"), "b\n");
    write(
        &image.join("kiln.toml"),
        &format!(
            r#"
[image]
name = "{name}"
version = "1.0.0"
base = "scratch"
epoch = 1700000000

[config]
entrypoint = ["/bin/busybox", "sleep", "3600"]
env = {{ PATH = "/bin" }}

[[layer]]
name = "busybox"
files = [{{ src = "rootfs/busybox", dest = "/bin/busybox", mode = 0o755 }}]
symlinks = [{{ path = "/bin/sh", target = "busybox" }}]

[[layer]]
name = "seed"
files = [{{ src = "seed/", dest = "/" }}]

[[layer]]
name = "changes"
run = {run}
env = {{ MODE = "build-only" }}

[boot]
timeout = "60s"
{checks}
"#
        ),
    );
    image
}

/// What the run layer's command does: add, modify, delete, replace a
/// folder, add a symlink, and record its env and network interfaces.
const CHANGES: &str = r#""echo new > /data/new.txt && echo changed >> /data/mod.txt && rm /data/old.txt && rm -rf /cfg && mkdir /cfg && echo fresh > /cfg/c && ln -s new.txt /data/link && echo $MODE > /data/mode.txt && ls /sys/class/net > /data/net.txt""#;

const CHECKS: &str = r#"
[[check]]
name = "new file"
file = "/data/new.txt"
contains = "new"

[[check]]
name = "modified file"
file = "/data/mod.txt"
contains = "original\nchanged"

[[check]]
name = "deleted file is gone"
file = "/data/old.txt"
exists = false

[[check]]
name = "replaced folder lost its old content"
file = "/cfg/a"
exists = false

[[check]]
name = "replaced folder has the new content"
command = ["/bin/busybox", "cat", "/cfg/c"]
stdout_contains = "fresh"

[[check]]
name = "untouched file stays"
file = "/data/keep.txt"
contains = "keep"

[[check]]
name = "build-time env is not in the config"
metadata = { env = { PATH = "/bin" } }
"#;

/// One tar entry as the test compares it: kind, mode, owner, content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: char,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    content: String,
}

/// The entries of a gzip layer blob, read with the tar crate.
fn layer_entries(blob: &Path) -> BTreeMap<String, Seen> {
    let file = std::fs::File::open(blob).expect("blob");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let kind = match header.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            other => panic!("{path}: unexpected entry type {other:?}"),
        };
        let mut content = String::new();
        entry.read_to_string(&mut content).expect("content");
        if kind == 'l' {
            content = header
                .link_name()
                .expect("link")
                .expect("target")
                .to_string_lossy()
                .into_owned();
        }
        out.insert(
            path,
            Seen {
                kind,
                mode: header.mode().expect("mode"),
                owner: (header.uid().expect("uid"), header.gid().expect("gid")),
                mtime: header.mtime().expect("mtime"),
                content,
            },
        );
    }
    out
}

fn layer_digest(report: &Value, name: &str) -> String {
    report["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["digest"].as_str())
        .expect("layer digest")
        .to_owned()
}

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    store
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_layer_holds_exactly_what_the_command_changed() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = run_recipe(tmp.path(), "runchanges", CHANGES, CHECKS);
    let recipe = image.to_str().expect("utf8");
    let store = tmp.path().join("store");
    let first = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    let digest = first["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();

    let layer = layer_entries(&blob_path(&store, &layer_digest(&first, "changes")));
    let file = |mode: u32, content: &str| Seen {
        kind: 'f',
        mode,
        owner: (0, 0),
        mtime: 1_700_000_000,
        content: content.to_owned(),
    };
    let dir = Seen {
        kind: 'd',
        mode: 0o755,
        owner: (0, 0),
        mtime: 1_700_000_000,
        content: String::new(),
    };
    let whiteout = file(0, "");
    let expected: BTreeMap<String, Seen> = [
        ("cfg/", dir.clone()),
        ("cfg/.wh.a", whiteout.clone()),
        ("cfg/.wh.b", whiteout.clone()),
        ("cfg/c", file(0o644, "fresh\n")),
        ("data/", dir.clone()),
        ("data/.wh.old.txt", whiteout.clone()),
        (
            "data/link",
            Seen {
                kind: 'l',
                mode: 0o777,
                owner: (0, 0),
                mtime: 1_700_000_000,
                content: "new.txt".into(),
            },
        ),
        ("data/mod.txt", file(0o644, "original\nchanged\n")),
        ("data/mode.txt", file(0o644, "build-only\n")),
        // No network: the loopback interface only.
        ("data/net.txt", file(0o644, "lo\n")),
        ("data/new.txt", file(0o644, "new\n")),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_owned(), s))
    .collect();
    assert_eq!(layer, expected);
    for engine_file in ["etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"] {
        assert!(
            !layer.contains_key(engine_file),
            "{engine_file} in the layer"
        );
    }

    assert_no_build_images(&store);

    // The same digest again: from the cache, and run anew.
    let cached = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        cached["images"][0]["digest"].as_str(),
        Some(digest.as_str())
    );
    assert_eq!(
        cached["images"][0]["layers"][2]["cached"],
        Value::Bool(true)
    );
    let rebuilt = json(&ok(kiln(
        &store,
        &["build", recipe, "--json", "--no-cache"],
    )));
    assert_eq!(
        rebuilt["images"][0]["digest"].as_str(),
        Some(digest.as_str()),
        "running the command again gives the same bytes"
    );
    assert_eq!(
        rebuilt["images"][0]["layers"][2]["cached"],
        Value::Bool(false)
    );

    if have_tool("skopeo") {
        let inspected = skopeo_inspect(&[&format!("oci:{}:runchanges:1.0.0", store.display())]);
        assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
        assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(3));
    }
    if have_tool("umoci") {
        let root = support::umoci::unpack(&store, "runchanges:1.0.0", &tmp.path().join("bundle"));
        assert!(!root.join("data/old.txt").exists(), "whiteout applied");
        assert!(!root.join("cfg/a").exists() && !root.join("cfg/b").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("cfg/c")).expect("cfg/c"),
            "fresh\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("data/keep.txt")).expect("keep"),
            "keep\n"
        );
        assert!(
            !root.join("data/.wh.old.txt").exists(),
            "a whiteout is not a file"
        );
    }

    // Docker boots it and sees the changes.
    let out = ok(kiln(&store, &["test", "runchanges:1.0.0", "--json"]));
    let report = json(&out);
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    assert_eq!(report["digest"].as_str(), Some(digest.as_str()));
}

/// Images of kiln-managed containers, from the docker CLI.
/// Owners, modes, hard links and a copied-up folder: what the upper folder
/// reader must read exactly as the export does.
const METADATA_CHANGES: &str = r#""echo new > /data/new.txt && chown 1000:42 /data/new.txt && chmod 4750 /data/new.txt && ln /data/keep.txt /data/hard && chmod 0700 /cfg && echo changed >> /data/mod.txt && rm /data/old.txt && ln -s ../data/new.txt /cfg/link""#;

#[tokio::test]
async fn the_upper_folder_and_the_export_give_the_same_layer() {
    let Some(engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = run_recipe(tmp.path(), "runcapture", METADATA_CHANGES, "");
    let recipe = image.to_str().expect("utf8");
    let store = tmp.path().join("store");
    // This engine is local: the default reads the container's upper folder
    // (kiln-engine's tests check that it offers one here) ...
    let from_upper = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    // ... and forced, the engine's filesystem export.
    let from_export = json(&ok(kiln_with_env(
        &store,
        &["build", recipe, "--json", "--no-cache"],
        &[("KILN_RUN_LAYER_CAPTURE", "export")],
    )));
    assert_eq!(
        layer_digest(&from_upper, "changes"),
        layer_digest(&from_export, "changes"),
        "both ways of reading the changes give the same layer"
    );
    assert_eq!(
        from_upper["images"][0]["digest"],
        from_export["images"][0]["digest"]
    );
    let layer = layer_entries(&blob_path(&store, &layer_digest(&from_upper, "changes")));
    let new = layer.get("data/new.txt").expect("new file");
    assert_eq!((new.mode, new.owner), (0o4750, (1000, 42)));
    let hard = layer.get("data/hard").expect("hard link");
    assert_eq!((hard.kind, hard.content.as_str()), ('f', "keep\n"));
    assert_eq!(layer.get("cfg/").expect("cfg").mode, 0o700);
    assert!(layer.contains_key("data/.wh.old.txt"));
    drop(engine);
}

/// A command that writes beside and into the folders `VOLUMES` declares:
/// `/vol` and `/srv/a/b` (with `/srv`) are new, `/data` the seed's.
const INTO_VOLUMES: &str = r#""mkdir -p /out /vol /srv/a/b && echo kept > /out/kept.txt && echo lost > /vol/lost.txt && echo lost > /srv/a/b/lost.txt && echo lost > /data/lost.txt""#;

/// The same command's own part alone.
const BESIDE_VOLUMES: &str = r#""mkdir -p /out && echo kept > /out/kept.txt""#;

/// `/lnk/app` is reached through the symlink `/lnk` -> `cfg`, and
/// `/abs/deep/x` through `/abs` -> `/data/../cfg`: the engine makes
/// `/cfg/app` and `/cfg/deep/x`.
const VOLUMES: &str = r#"volumes = ["/vol", "/srv/a/b/", "/data", "/lnk/app", "/abs/deep/x"]"#;

/// [`run_recipe`] with `[config] volumes` set to `volumes`, and a symlink
/// `/lnk` to the seed's `/cfg` in the busybox layer.
fn with_volumes(image: PathBuf, volumes: &str) -> PathBuf {
    let toml_path = image.join("kiln.toml");
    let toml = std::fs::read_to_string(&toml_path).expect("read recipe");
    let sh = r#"symlinks = [{ path = "/bin/sh", target = "busybox" }]"#;
    assert!(toml.contains(sh));
    let toml = toml.replacen(
        sh,
        r#"symlinks = [{ path = "/bin/sh", target = "busybox" }, { path = "/lnk", target = "cfg" }, { path = "/abs", target = "/data/../cfg" }]"#,
        1,
    );
    let config = "env = { PATH = \"/bin\" }\n";
    assert!(toml.contains(config));
    write(
        &toml_path,
        &toml.replacen(config, &format!("{config}{volumes}\n"), 1),
    );
    image
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_layer_leaves_out_volume_mount_points_and_what_went_into_volumes() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let build = |image: PathBuf| {
        json(&ok(kiln(
            &store,
            &["build", image.to_str().expect("utf8"), "--json"],
        )))
    };
    let entries = |report: &Value| -> Vec<String> {
        layer_entries(&blob_path(&store, &layer_digest(report, "changes")))
            .into_keys()
            .collect()
    };

    // With the volumes: the engine created /vol, /srv, /srv/a, /srv/a/b,
    // /cfg/app, /cfg/deep and /cfg/deep/x (changing /cfg); /data was the seed's; what went into
    // them went to the volumes. The layer holds the command's own change
    // only.
    let volumes = build(with_volumes(
        run_recipe(tmp.path(), "runvolumes", INTO_VOLUMES, ""),
        VOLUMES,
    ));
    assert_eq!(entries(&volumes), ["out/", "out/kept.txt"]);

    // The same command without the volumes keeps everything it wrote: the
    // volumes are part of the step's cache key, so this is no cache hit.
    let plain = build(run_recipe(tmp.path(), "runnovolumes", INTO_VOLUMES, ""));
    assert_eq!(
        plain["images"][0]["layers"][2]["cached"],
        Value::Bool(false)
    );
    assert_eq!(
        entries(&plain),
        [
            "data/",
            "data/lost.txt",
            "out/",
            "out/kept.txt",
            "srv/",
            "srv/a/",
            "srv/a/b/",
            "srv/a/b/lost.txt",
            "vol/",
            "vol/lost.txt",
        ]
    );

    // The same bytes as a recipe whose command never touched those folders.
    let beside = build(run_recipe(tmp.path(), "runbeside", BESIDE_VOLUMES, ""));
    assert_eq!(
        layer_digest(&volumes, "changes"),
        layer_digest(&beside, "changes")
    );

    // And the same when the changes are read from the engine's export of
    // the container instead of its upper folder.
    let exported = json(&ok(kiln_with_env(
        &store,
        &[
            "build",
            tmp.path().join("runvolumes").to_str().expect("utf8"),
            "--json",
            "--no-cache",
        ],
        &[("KILN_RUN_LAYER_CAPTURE", "export")],
    )));
    assert_eq!(
        layer_digest(&exported, "changes"),
        layer_digest(&volumes, "changes")
    );

    if have_tool("umoci") {
        let root = support::umoci::unpack(&store, "runvolumes:1.0.0", &tmp.path().join("bundle"));
        // The seed's /data stays as it was; the new mount points are not
        // in the image (the engine makes them when it runs it).
        assert_eq!(
            std::fs::read_to_string(root.join("data/keep.txt")).expect("keep"),
            "keep\n"
        );
        assert!(!root.join("data/lost.txt").exists());
        for absent in ["vol", "srv", "cfg/app", "cfg/deep"] {
            assert!(!root.join(absent).exists(), "/{absent} in the image");
        }
        assert_eq!(
            std::fs::read_to_string(root.join("out/kept.txt")).expect("kept"),
            "kept\n"
        );
    }
    assert_no_build_images(&store);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_fails_the_build_with_its_output() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = run_recipe(
        tmp.path(),
        "runfails",
        r#""echo about to fail; echo trouble on stderr >&2; exit 7""#,
        "",
    );
    let store = tmp.path().join("store");
    let out = kiln(&store, &["build", image.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("layer changes"), "{err}");
    assert!(err.contains("exited with code 7"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
    assert!(err.contains("trouble on stderr"), "{err}");
    // Nothing was tagged.
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    assert_eq!(images["images"], serde_json::json!([]));
    let namespace = support::engine_namespace(&store);
    let left: Vec<String> = managed_container_images()
        .into_iter()
        .filter(|i| i.starts_with(&namespace))
        .collect();
    assert!(left.is_empty(), "build containers left behind: {left:?}");
    assert_no_build_images(&store);
}

/// The temporary images run layers start from are gone after the build:
/// no name under the store's namespace but the base cache.
fn assert_no_build_images(store: &Path) {
    let left: Vec<String> = support::engine_names(store)
        .into_iter()
        .filter(|n| !n.contains("/base:"))
        .collect();
    assert!(left.is_empty(), "build images left behind: {left:?}");
}

#[test]
fn a_run_layer_without_an_engine_is_exit_3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = run_recipe(tmp.path(), "runnoengine", r#""true""#, "");
    let no_engine = format!("unix://{}/no.sock", tmp.path().display());
    let out = kiln_with_env(
        &tmp.path().join("store"),
        &["build", image.to_str().expect("utf8")],
        &[("DOCKER_HOST", &no_engine)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("engine"), "{}", stderr(&out));
}

const TOKEN: &str = "kiln-run-s3cr3t-7f3a";

/// A recipe whose run layer `changes` reads the secret `token` (from
/// `KILN_RUN_TOKEN`), and a later run layer that does not list it.
fn secret_recipe(dir: &Path, name: &str, run: &str) -> PathBuf {
    run_recipe(
        dir,
        name,
        &format!("{run}\nsecrets = [\"token\"]"),
        r#"
[secrets.token]
from = "env:KILN_RUN_TOKEN"

[[layer]]
name = "after"
run = "test ! -e /run/secrets/token && echo unseen > /data/after.txt"
"#,
    )
}

fn kiln_with_token(store: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .arg("--store")
        .arg(store)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_RUN_TOKEN");
    if let Some(token) = token {
        cmd.env("KILN_RUN_TOKEN", token);
    }
    cmd.output().expect("run kiln")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_layer_reads_only_its_own_secrets_as_read_only_files() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = secret_recipe(
        tmp.path(),
        "runsecret",
        r#""wc -c < /run/secrets/token > /data/len.txt && if echo x 2>/dev/null > /run/secrets/token; then echo writable; else echo read-only; fi > /data/ro.txt && ls /run/secrets > /data/listing.txt""#,
    );
    let store = tmp.path().join("store");
    let recipe = image.to_str().expect("utf8");
    let report = json(&ok(kiln_with_token(
        &store,
        &["build", recipe, "--json"],
        Some(TOKEN),
    )));
    let layer = layer_entries(&blob_path(&store, &layer_digest(&report, "changes")));
    let paths: Vec<&str> = layer.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        ["data/", "data/len.txt", "data/listing.txt", "data/ro.txt"],
        "the secrets' mount point stays out of the layer"
    );
    assert_eq!(
        layer["data/len.txt"].content.trim(),
        TOKEN.len().to_string()
    );
    assert_eq!(layer["data/ro.txt"].content, "read-only\n");
    assert_eq!(layer["data/listing.txt"].content, "token\n");
    let after = layer_entries(&blob_path(&store, &layer_digest(&report, "after")));
    assert_eq!(after["data/after.txt"].content, "unseen\n");

    // The step used its secret and wrote only a fact about it: the value
    // is nowhere in the store.
    assert_store_never_saw(&store, TOKEN);

    // A step that writes the secret into the image fails the build, naming
    // the secret and the path; nothing is tagged, nothing of it is kept.
    let leaky_store = tmp.path().join("leaky-store");
    let image = secret_recipe(
        tmp.path(),
        "runsecretleaks",
        r#""cat /run/secrets/token > /data/copy.txt""#,
    );
    let out = kiln_with_token(
        &leaky_store,
        &["build", image.to_str().expect("utf8")],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("secret token") && err.contains("/data/copy.txt"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    let images = json(&ok(kiln(&leaky_store, &["images", "--json"])));
    assert_eq!(images["images"], serde_json::json!([]));
    assert_store_never_saw(&leaky_store, TOKEN);

    // A failing step's output is shown with the secret redacted.
    let image = secret_recipe(
        tmp.path(),
        "runsecretfails",
        r#""echo token is $(cat /run/secrets/token); exit 3""#,
    );
    let out = kiln_with_token(
        &store,
        &["build", image.to_str().expect("utf8")],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("token is ***"), "{err}");
    assert!(
        !err.contains(TOKEN),
        "the secret leaked into the error: {err}"
    );

    // A missing secret stops the build before any layer is built.
    let out = kiln_with_token(&store, &["build", recipe], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("secret token"), "{err}");
    assert!(!err.contains("layer busybox"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_motd_example_builds_and_passes_its_checks() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("motd");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/motd");
    std::fs::create_dir_all(image.join("rootfs")).expect("mkdir");
    // A version of its own keeps this test's images apart in the engine.
    let toml = std::fs::read_to_string(example.join("kiln.toml")).expect("read");
    write(
        &image.join("kiln.toml"),
        &toml.replace("version = \"1.0.0\"", "version = \"0.0.1-test\""),
    );
    std::fs::copy("/bin/busybox", image.join("rootfs/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    let store = tmp.path().join("store");
    let recipe = image.to_str().expect("utf8");
    let build = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.args(["build", recipe, "--json", "--store"])
            .arg(&store)
            .args(extra)
            .env_remove("SOURCE_DATE_EPOCH")
            .env("MOTD_BUILD_TOKEN", TOKEN);
        json(&ok(cmd.output().expect("kiln")))["images"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    let digest = build(&[]);
    assert_eq!(build(&["--no-cache"]), digest);
    let out = kiln_with_token(&store, &["test", "motd:0.0.1-test", "--json"], None);
    let report = json(&ok(out));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
}

/// A recipe `name` built on the image of the recipe in `parent` (so that
/// its run layer's base is kept in the engine as the build cache), with a
/// file of `unique` content so that no other test builds the same image.
fn child_of(dir: &Path, name: &str, parent: &str, unique: &str) -> PathBuf {
    let image = dir.join(name);
    write(&image.join("own/unique.txt"), unique);
    write(
        &image.join("kiln.toml"),
        &format!(
            r#"
[image]
name = "{name}"
version = "1.0.0"
base = "recipe:../{parent}"
epoch = 1700000000

[[layer]]
name = "own"
files = [{{ src = "own/", dest = "/own/" }}]

[[layer]]
name = "child-run"
run = "echo child > /data/child.txt"

[boot]
timeout = "60s"

[[check]]
name = "the child's run layer ran on the parent"
file = "/data/child.txt"
contains = "child"
"#
        ),
    );
    image
}

/// The image id (config digest) of the image `reference` of `store`.
fn config_id(store: &Path, reference: &str) -> String {
    let inspected = json(&ok(kiln(store, &["inspect", reference])));
    inspected["manifest"]["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned()
}

fn engine_holds(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .expect("docker image inspect")
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_keep_only_the_base_cache_tests_leave_nothing_and_gc_takes_only_its_own() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let unique = format!("{:?}\n", std::time::SystemTime::now());
    run_recipe(tmp.path(), "leftparent", CHANGES, "");
    let child = child_of(tmp.path(), "leftchild", "leftparent", &unique);
    let recipe = child.to_str().expect("utf8");
    let store_a = tmp.path().join("store-a");
    let store_b = tmp.path().join("store-b");
    let _cleanup_a = support::EngineCleanup(store_a.clone());
    let _cleanup_b = support::EngineCleanup(store_b.clone());

    // A build keeps the base its run layer started from, and nothing else.
    ok(kiln(&store_a, &["build", recipe]));
    let after_build = support::engine_names(&store_a);
    assert!(
        !after_build.is_empty() && after_build.iter().all(|n| n.contains("/base:")),
        "only the base cache stays after a build: {after_build:?}"
    );
    let child_id = config_id(&store_a, "leftchild:1.0.0");
    assert!(!engine_holds(&child_id), "the child's build image stayed");

    // A test loads the image and takes it out again, passed or not.
    let report = json(&ok(kiln(&store_a, &["test", "leftchild:1.0.0", "--json"])));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    assert_eq!(support::engine_names(&store_a), after_build);
    assert!(!engine_holds(&child_id), "the tested image stayed");

    // An image the engine held before the test is left as it was.
    let held = format!("kiln-test/leftchild-held:{}", std::process::id());
    ok(kiln(
        &store_a,
        &[
            "export",
            "leftchild:1.0.0",
            &format!("docker-daemon:{held}"),
        ],
    ));
    let report = json(&ok(kiln(&store_a, &["test", "leftchild:1.0.0", "--json"])));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    assert!(engine_holds(&held), "the user's image was removed");
    let _ = Command::new("docker").args(["rmi", &held]).output();
    assert_eq!(support::engine_names(&store_a), after_build);

    // Another store's build of the same recipe has its own cache name.
    ok(kiln(&store_b, &["build", recipe]));
    let of_b = support::engine_names(&store_b);
    assert!(!of_b.is_empty(), "store b's base cache");

    // gc of a removes a's names only; b's stay, and so does b's image.
    let gc = json(&ok(kiln(&store_a, &["gc", "--json"])));
    let removed: Vec<String> = gc["engine_removed"]
        .as_array()
        .expect("engine_removed")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    assert_eq!(removed, after_build, "{gc:#}");
    assert_eq!(support::engine_names(&store_a), Vec::<String>::new());
    assert_eq!(support::engine_names(&store_b), of_b);
    assert!(of_b.iter().all(|n| engine_holds(n)));

    ok(kiln(&store_b, &["gc"]));
    assert_eq!(support::engine_names(&store_b), Vec::<String>::new());
}
