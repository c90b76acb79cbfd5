//! Build arguments end to end: `--arg` changes exactly the layers whose
//! definition uses it, the same values give the same digest in any store,
//! the values are in the manifest's annotations and in the recipe kept
//! beside the image, and every mistake is exit 2 naming it. File-only
//! recipes: no engine needed, except where skopeo reads the image back.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{cached, have_tool, json, kiln, layers, ok, skopeo_inspect, stderr};

const RECIPE: &str = r#"[args]
RELEASE = "1.0.0"
GREETING = "hello"
UNUSED = "x"

[image]
name = "greeter"
version = "${RELEASE}"

[config]
labels = { "org.opencontainers.image.version" = "${RELEASE}", "literal" = "$${RELEASE}" }

[[layer]]
name = "static"
files = [{ src = "www/", dest = "/www/" }]

[[layer]]
name = "greeting"
files = [{ src = "greetings/${GREETING}.txt", dest = "/etc/greeting" }]
"#;

/// A recipe folder with two greetings to choose from.
fn recipe(root: &Path) -> PathBuf {
    let dir = root.join("greeter");
    std::fs::create_dir_all(dir.join("www")).expect("mkdir");
    std::fs::create_dir_all(dir.join("greetings")).expect("mkdir");
    std::fs::write(dir.join("www/index.html"), "<p>hi</p>\n").expect("write");
    std::fs::write(dir.join("greetings/hello.txt"), "hello\n").expect("write");
    std::fs::write(dir.join("greetings/bye.txt"), "bye\n").expect("write");
    std::fs::write(dir.join("kiln.toml"), RECIPE).expect("write recipe");
    dir
}

/// `kiln build DIR --json ARGS...`.
fn build(store: &Path, dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["build", dir.to_str().expect("utf-8"), "--json"];
    all.extend_from_slice(args);
    json(&ok(kiln(store, &all)))
}

/// The one image's digest.
fn digest(report: &Value) -> &str {
    report["images"][0]["digest"].as_str().expect("a digest")
}

#[test]
fn an_arg_changes_only_what_uses_it_and_is_recorded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = recipe(tmp.path());
    let store = tmp.path().join("store");

    let first = build(&store, &dir, &[]);
    assert_eq!(first["images"][0]["tags"][0], "1.0.0", "{first}");
    let again = build(&store, &dir, &[]);
    assert_eq!(digest(&again), digest(&first));

    // GREETING is used by one layer: only that layer is built again.
    let bye = build(&store, &dir, &["--arg", "GREETING=bye"]);
    assert_ne!(digest(&bye), digest(&first));
    assert_eq!(
        layers(&bye),
        cached(&[("static", true), ("greeting", false)]),
        "{bye}"
    );
    // The same value gives the same digest, here and in a fresh store.
    let bye_again = build(&store, &dir, &["--arg", "GREETING=bye"]);
    assert_eq!(digest(&bye_again), digest(&bye));
    let elsewhere = build(&tmp.path().join("other"), &dir, &["--arg", "GREETING=bye"]);
    assert_eq!(digest(&elsewhere), digest(&bye));
    // Giving the default explicitly is the default build.
    let explicit = build(&store, &dir, &["--arg", "GREETING=hello"]);
    assert_eq!(digest(&explicit), digest(&first));

    // An argument no value uses rebuilds no layer, but the image records
    // it, so its digest changes.
    let unused = build(&store, &dir, &["--arg", "UNUSED=y"]);
    assert_eq!(
        layers(&unused),
        cached(&[("static", true), ("greeting", true)]),
        "{unused}"
    );
    assert_ne!(digest(&unused), digest(&first));

    // RELEASE: the version (and so the tag), a label, the annotations.
    let release = build(&store, &dir, &["--arg", "RELEASE=2.0.0"]);
    assert_eq!(release["images"][0]["tags"][0], "2.0.0", "{release}");
    let inspected = json(&ok(kiln(&store, &["inspect", "greeter:2.0.0"])));
    let annotations = &inspected["manifest"]["annotations"];
    assert_eq!(annotations["dev.kiln.arg.RELEASE"], "2.0.0", "{inspected}");
    assert_eq!(annotations["dev.kiln.arg.GREETING"], "hello", "{inspected}");
    assert_eq!(annotations["dev.kiln.arg.UNUSED"], "x", "{inspected}");
    assert_eq!(
        annotations["org.opencontainers.image.version"], "2.0.0",
        "{inspected}"
    );
    let labels = &inspected["config"]["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"], "2.0.0",
        "{inspected}"
    );
    assert_eq!(labels["literal"], "${RELEASE}", "{inspected}");

    // The recipe kept beside the image is the value built.
    let hex = digest(&release).trim_start_matches("sha256:");
    let kept = std::fs::read_to_string(store.join(format!("kiln/recipes/{hex}.json")))
        .expect("the kept recipe");
    let kept: Value = serde_json::from_str(&kept).expect("json");
    assert_eq!(kept["recipe"]["image"]["version"], "2.0.0", "{kept}");
    assert_eq!(kept["recipe"]["args"]["RELEASE"], "2.0.0", "{kept}");

    // Other OCI tools see the annotation in the store as it is.
    if have_tool("skopeo") {
        let manifest =
            skopeo_inspect(&["--raw", &format!("oci:{}:greeter:2.0.0", store.display())]);
        assert_eq!(manifest["annotations"]["dev.kiln.arg.RELEASE"], "2.0.0");
        assert_eq!(manifest["annotations"]["dev.kiln.arg.GREETING"], "hello");
    }
}

/// Runs kiln, expects exit 2, and gives stderr on one line (miette wraps
/// and frames long messages).
fn refused(store: &Path, args: &[&str]) -> String {
    let out = kiln(store, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let words: Vec<&str> = err
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ")
}

#[test]
fn mistakes_are_exit_2_naming_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = recipe(tmp.path());
    let store = tmp.path().join("store");
    let path = dir.to_str().expect("utf-8");

    let err = refused(&store, &["build", path, "--arg", "RELAESE=2"]);
    assert!(
        err.contains("--arg RELAESE is not a build argument"),
        "{err}"
    );
    assert!(err.contains("RELEASE, GREETING, UNUSED"), "{err}");
    let err = refused(&store, &["build", path, "--arg", "RELEASE"]);
    assert!(err.contains("NAME=VALUE"), "{err}");
    let err = refused(&store, &["release", path, "--arg", "NOPE=1"]);
    assert!(err.contains("--arg NOPE"), "{err}");
    let err = refused(&store, &["test", path, "--arg", "NOPE=1"]);
    assert!(err.contains("--arg NOPE"), "{err}");
    // A value that makes the version no tag is refused where it is used.
    let err = refused(&store, &["build", path, "--arg", "RELEASE=a b"]);
    assert!(err.contains("kiln.toml:8:11"), "{err}");
    assert!(err.contains("invalid version \"a b\""), "{err}");

    // An unknown name and an unterminated `${`, at their line:column.
    let text = RECIPE
        .replace("${GREETING}.txt", "${GREETNG}.txt")
        .replace("name = \"static\"", "name = \"static${\"");
    std::fs::write(dir.join("kiln.toml"), text).expect("write");
    let err = refused(&store, &["build", path]);
    assert!(err.contains("kiln.toml:14:15"), "{err}");
    assert!(err.contains("`${` has no closing `}`"), "{err}");
    assert!(err.contains("kiln.toml:19:29"), "{err}");
    assert!(err.contains("unknown build argument `GREETNG`"), "{err}");
    // Nothing was stored by any of these.
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    assert_eq!(
        images["images"].as_array().map(Vec::len),
        Some(0),
        "{images}"
    );

    // --arg is for recipes: an image of the store was built with its own.
    std::fs::write(dir.join("kiln.toml"), RECIPE).expect("write");
    ok(kiln(&store, &["build", path]));
    let err = refused(&store, &["test", "greeter:1.0.0", "--arg", "RELEASE=1"]);
    assert!(err.contains("--arg is for a recipe"), "{err}");
}

#[test]
fn check_takes_the_values_build_will_be_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = recipe(tmp.path());
    let store = tmp.path().join("store");
    let path = dir.to_str().expect("utf-8");

    let checked = json(&ok(kiln(
        &store,
        &["check", path, "--arg", "GREETING=bye", "--json"],
    )));
    assert_eq!(checked["recipes"][0]["ok"], Value::Bool(true), "{checked}");
    // The same mistakes as build, with the same words and places.
    for args in [["--arg", "RELAESE=2"], ["--arg", "RELEASE=a b"]] {
        let mut check = vec!["check", path];
        check.extend(args);
        let mut build = vec!["build", path];
        build.extend(args);
        assert_eq!(refused(&store, &check), refused(&store, &build), "{args:?}");
    }
    let err = refused(&store, &["check", path, "--arg", "RELEASE"]);
    assert!(err.contains("NAME=VALUE"), "{err}");
    let err = refused(&store, &["check", path, "--arg", "RELEASE=a b"]);
    assert!(err.contains("kiln.toml:8:11"), "{err}");
    assert!(err.contains("invalid version \"a b\""), "{err}");
    // --json names the argument in the recipe's errors too.
    let out = kiln(&store, &["check", path, "--arg", "RELAESE=2", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["recipes"][0]["ok"], Value::Bool(false), "{report}");
    assert!(
        report["recipes"][0]["errors"]
            .to_string()
            .contains("RELAESE"),
        "{report}"
    );
}
