//! The command line's edges a new user trips over: a closed stdout, what
//! `export` prints and how it names the image, destinations that are not
//! destinations, and sizes people can read. File-only recipes: no engine
//! needed, except where skopeo reads the export back.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{have_tool, json, kiln, ok, skopeo_inspect, stderr};

/// A store holding `site:1.0.0`, built from a one-file recipe.
fn store_with_site(root: &Path) -> std::path::PathBuf {
    let recipe = root.join("site");
    std::fs::create_dir_all(recipe.join("www")).expect("mkdir");
    std::fs::write(recipe.join("www/index.html"), "<p>golden</p>\n").expect("write");
    std::fs::write(
        recipe.join("kiln.toml"),
        r#"[image]
name = "site"
version = "1.0.0"

[[layer]]
name = "www"
files = [{ src = "www/", dest = "/www/" }]
"#,
    )
    .expect("write recipe");
    let store = root.join("store");
    ok(kiln(&store, &["build", recipe.to_str().expect("utf-8")]));
    store
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with_site(tmp.path());
    // The read end is closed before kiln starts, so its first write meets
    // a broken pipe whatever the timing.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    for args in [
        &["inspect", "site:1.0.0"][..],
        &["images"],
        &["images", "--json"],
        &["fsck"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .arg("--store")
            .arg(&store)
            .stdout(writer.try_clone().expect("clone pipe"))
            .stderr(Stdio::piped())
            .output()
            .expect("run kiln");
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_stderr_loses_the_progress_not_the_work_or_the_exit_code() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with_site(tmp.path());
    let recipe = tmp.path().join("site");
    // A changed page: the build writes its progress to a closed stderr.
    std::fs::write(recipe.join("www/index.html"), "<p>changed</p>\n").expect("write");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .arg("--store")
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(writer.try_clone().expect("clone pipe"))
            .output()
            .expect("run kiln")
    };
    let built = run(&["build", recipe.to_str().expect("utf-8")]);
    assert_eq!(built.status.code(), Some(0));
    let said = String::from_utf8_lossy(&built.stdout).into_owned();
    assert!(said.starts_with("site sha256:"), "{said}");
    let digest = said.split_whitespace().nth(1).expect("a digest");
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    assert_eq!(images["images"][0]["digest"], digest, "{images}");
    // A bad recipe and a bad reference keep their exit code 2.
    std::fs::write(recipe.join("kiln.toml"), "[image]\nnmae = \"site\"\n").expect("write");
    assert_eq!(
        run(&["check", recipe.to_str().expect("utf-8")])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["inspect", "Bad_Name"]).status.code(), Some(2));
}

#[test]
fn export_json_names_the_image_by_the_tag_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with_site(tmp.path());
    let layout = tmp.path().join("layout");
    let dest = format!("oci:{}", layout.display());
    let out = ok(kiln(&store, &["export", "site:1.0.0", &dest, "--json"]));
    let doc = json(&out);
    assert_eq!(doc["reference"], "site:1.0.0", "{doc}");
    assert_eq!(doc["destination"], dest.as_str(), "{doc}");
    assert_eq!(doc["name"], "site:1.0.0", "{doc}");
    let digest = doc["digest"].as_str().expect("a digest");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{doc}");

    let index = std::fs::read_to_string(layout.join("index.json")).expect("index.json");
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name":"site:1.0.0""#),
        "{index}"
    );
    if have_tool("skopeo") {
        let seen = skopeo_inspect(&[&format!("oci:{}:site:1.0.0", layout.display())]);
        assert_eq!(seen["Digest"], digest);
    }
}

#[test]
fn destinations_that_are_not_are_bad_input_and_list_the_destinations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with_site(tmp.path());
    for dest in [
        "out.tar",
        "kiln:site",
        "docker-daemon:Bad_Name:1.0",
        "oci:",
        "docker://",
    ] {
        let out = kiln(&store, &["export", "site:1.0.0", dest]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{dest}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        // Named once: the message does not say it again for each layer of
        // parsing it went through.
        assert_eq!(err.matches(&format!("{dest:?}")).count(), 1, "{err}");
        if dest == "docker-daemon:Bad_Name:1.0" {
            assert!(err.contains("Bad_Name"), "{err}");
        } else if dest == "oci:" || dest == "docker://" {
            assert!(
                err.contains("after the colon") || err.contains("HOST/REPO"),
                "{err}"
            );
        } else {
            assert!(
                err.contains("oci-archive:FILE") && err.contains("docker-daemon:NAME:TAG"),
                "{dest}: {err}"
            );
            assert!(!err.contains("recipe:PATH"), "{dest}: {err}");
        }
    }
}

#[test]
fn an_export_into_a_missing_folder_is_exit_2_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with_site(tmp.path());
    let missing = tmp.path().join("missing");
    for dest in [
        format!("oci-archive:{}/site.tar", missing.display()),
        format!("docker-archive:{}/site.tar", missing.display()),
        format!("oci:{}/layout", missing.display()),
    ] {
        let out = kiln(&store, &["export", "site:1.0.0", &dest]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{dest}: {err}");
        assert!(
            err.contains(&format!("{}: no such folder", missing.display())),
            "{err}"
        );
        assert!(!err.contains(".tmp-"), "{err}");
    }
    assert!(!missing.exists());
}

#[test]
fn images_shows_sizes_for_people_and_bytes_in_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_with_site(tmp.path());
    let bytes = json(&ok(kiln(&store, &["images", "--json"])))["images"][0]["size"]
        .as_u64()
        .expect("size in bytes");
    let table = String::from_utf8_lossy(&ok(kiln(&store, &["images"])).stdout).into_owned();
    let row = table.lines().nth(1).expect("a row");
    let shown = if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    };
    assert!(row.contains(&shown), "{bytes} bytes, row: {row}");
}

/// A `rootfs:` folder nested deeper than the process may open files is
/// walked (no folder is held open per level below a fixed depth), both the
/// first time and once its key is remembered under its stamp (the walk for
/// the stamp alone).
#[test]
fn a_rootfs_folder_deeper_than_the_open_file_limit_still_builds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut deepest = tmp.path().join("root");
    for _ in 0..200 {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).expect("mkdir");
    std::fs::write(deepest.join("f"), "deep\n").expect("write");
    let recipe = tmp.path().join("recipe");
    std::fs::create_dir_all(recipe.join("www")).expect("mkdir");
    std::fs::write(recipe.join("www/index.html"), "<p>deep</p>\n").expect("write");
    let root = tmp.path().join("root");
    std::fs::write(
        recipe.join("kiln.toml"),
        format!(
            "[image]\nname = \"deep\"\nversion = \"1.0.0\"\nbase = \"rootfs:{}\"\n\n\
             [[layer]]\nname = \"www\"\nfiles = [{{ src = \"www/\", dest = \"/www/\" }}]\n",
            root.display()
        ),
    )
    .expect("write recipe");
    // Older than the stat cache's racy window, so that the first build
    // remembers the folder's key and the second walks for its stamp.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let store = tmp.path().join("store");
    let build = || {
        Command::new("prlimit")
            .arg("--nofile=128")
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .args(["build", recipe.to_str().expect("utf-8"), "--store"])
            .arg(&store)
            .output()
            .expect("run prlimit")
    };
    let first = ok(build()).stdout;
    let stamps = store.join("kiln/cache/stamps");
    let remembered = std::fs::read_dir(&stamps)
        .expect("stamps")
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .count();
    assert_eq!(remembered, 1, "the folder's key is remembered");
    assert_eq!(ok(build()).stdout, first, "the same image, from the stamp");
}
