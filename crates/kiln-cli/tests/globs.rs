//! Globs in `src` through the `kiln` binary: what a glob copies (read back
//! by skopeo and umoci), where a glob that matches nothing is reported, and
//! that a file the glob newly matches is a cache miss `--explain` names.

mod support;

use std::path::{Path, PathBuf};

use support::{have_tool, json, kiln, layers, ok, skopeo_inspect, stderr};

const RECIPE: &str = r#"[image]
name = "globbed"
version = "1.0.0"

[[layer]]
name = "pages"
files = [
  { src = "site/**/*.html", dest = "/www/", exclude = ["drafts/"] },
]
"#;

/// A recipe folder with pages at two depths, a draft and a stylesheet.
fn image(dir: &Path, recipe: &str) -> PathBuf {
    for (path, text) in [
        ("site/index.html", "<h1>home</h1>\n"),
        ("site/style.css", "h1 {}\n"),
        ("site/blog/first.html", "<p>first</p>\n"),
        ("site/drafts/wip.html", "<p>wip</p>\n"),
    ] {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    std::fs::write(dir.join("kiln.toml"), recipe).expect("recipe");
    dir.to_path_buf()
}

#[test]
fn a_glob_copies_its_matches_and_tools_read_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = image(&tmp.path().join("img"), RECIPE);
    let store = tmp.path().join("store");
    let report = json(&ok(kiln(
        &store,
        &["build", dir.to_str().expect("utf8"), "--json"],
    )));
    let digest = report["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();

    if have_tool("skopeo") {
        let inspected = skopeo_inspect(&[&format!("oci:{}:globbed:1.0.0", store.display())]);
        assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
        assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(1));
    }
    if have_tool("umoci") {
        let root = support::umoci::unpack(&store, "globbed:1.0.0", &tmp.path().join("bundle"));
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        assert_eq!(read("www/index.html").as_deref(), Some("<h1>home</h1>\n"));
        assert_eq!(
            read("www/blog/first.html").as_deref(),
            Some("<p>first</p>\n")
        );
        // Not matched (css), excluded (drafts/), and the base folder's own
        // name is not repeated below dest.
        for absent in ["www/style.css", "www/drafts", "www/site"] {
            assert!(!root.join(absent).exists(), "{absent} should not be there");
        }
    }
}

#[test]
fn a_glob_that_matches_nothing_is_exit_2_at_its_src() {
    let tmp = tempfile::tempdir().expect("tmp");
    let recipe = RECIPE.replace("site/**/*.html", "site/*.xml");
    let dir = image(&tmp.path().join("img"), &recipe);
    let store = tmp.path().join("store");
    let out = kiln(&store, &["build", dir.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Line 8, column 11: the string value of `src`.
    assert!(
        stderr(&out).contains("kiln.toml:8:11") && stderr(&out).contains("site/*.xml"),
        "{}",
        stderr(&out)
    );
    // A glob into a dest that is not a folder is caught when parsing.
    let recipe = RECIPE.replace("dest = \"/www/\"", "dest = \"/www\"");
    std::fs::write(dir.join("kiln.toml"), recipe).expect("recipe");
    let out = kiln(&store, &["build", dir.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("kiln.toml:8:"), "{}", stderr(&out));
}

#[test]
fn a_file_the_glob_newly_matches_is_a_cache_miss_explain_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = image(&tmp.path().join("img"), RECIPE);
    let store = tmp.path().join("store");
    let recipe = dir.to_str().expect("utf8");
    let first = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    let again = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(layers(&again), [("pages".to_owned(), true)]);
    assert_eq!(again["images"][0]["digest"], first["images"][0]["digest"]);

    // Nothing the layer held changed: only the set of matches did.
    std::fs::write(dir.join("site/blog/second.html"), "<p>second</p>\n").expect("write");
    let out = ok(kiln(&store, &["build", recipe, "--json", "--explain"]));
    let changed = json(&out);
    assert_eq!(layers(&changed), [("pages".to_owned(), false)]);
    assert_ne!(changed["images"][0]["digest"], first["images"][0]["digest"]);
    let why = changed["images"][0]["layers"][0]["why"].to_string();
    assert!(
        why.contains("/www/blog/second.html (from site/blog/second.html) is new"),
        "{why}"
    );
    assert!(
        stderr(&out).contains("/www/blog/second.html (from site/blog/second.html) is new"),
        "{}",
        stderr(&out)
    );
}
