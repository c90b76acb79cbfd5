//! kiln as a Rust tool embeds it: recipe values changed in memory are what
//! gets built, stored, inspected and tested, the `kiln` binary sees them as
//! the library built them.

mod support;

use std::path::Path;

use kiln::{BuildOptions, NoEvents, Store};
use serde_json::Value;
use support::{engine, hello_copy, json, kiln, ok};

async fn build(store: &Path, recipe: &kiln::Recipe) -> kiln::BuildReport {
    let store = Store::open(store).expect("store");
    kiln::build(&store, recipe, &BuildOptions::default(), None, &NoEvents)
        .await
        .expect("build")
}

fn label<'a>(inspected: &'a Value, key: &str) -> Option<&'a str> {
    inspected["config"]["config"]["Labels"][key].as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipe_changed_in_memory_is_what_is_stored_inspected_and_tested() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "1.0.0-file");
    let store = tmp.path().join("store");
    let mut recipe = kiln::load_recipe(&image).expect("load");
    recipe.image.version = Some("1.0.1-embedded".into());
    recipe
        .config
        .labels
        .insert("dev.example.embedded".into(), "yes".into());
    recipe.checks.retain(|c| c.name != "home page");
    recipe.checks[0].name = "health, as embedded".into();
    let expected: Vec<String> = recipe.checks.iter().map(|c| c.name.clone()).collect();
    let built = build(&store, &recipe).await;
    assert_eq!(built.tags, ["1.0.1-embedded"]);

    let inspected = json(&ok(kiln(&store, &["inspect", "hello:1.0.1-embedded"])));
    assert_eq!(inspected["digest"].as_str(), Some(built.digest.as_str()));
    assert_eq!(
        inspected["manifest"]["annotations"]["org.opencontainers.image.version"].as_str(),
        Some("1.0.1-embedded")
    );
    assert_eq!(label(&inspected, "dev.example.embedded"), Some("yes"));
    // The file's version was never built.
    let out = kiln(&store, &["inspect", "hello:1.0.0-file"]);
    assert_eq!(out.status.code(), Some(2));

    // Test by reference: the checks are the ones built, not the file's.
    let report = json(&ok(kiln(
        &store,
        &["test", "hello:1.0.1-embedded", "--json"],
    )));
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
}

#[tokio::test]
async fn a_child_on_a_recipe_base_changed_in_memory_builds_as_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    hello_copy(tmp.path(), "1.0.0-graph");
    let child = tmp.path().join("child");
    std::fs::create_dir_all(child.join("site")).expect("mkdir");
    std::fs::write(child.join("site/child.html"), "a child\n").expect("write");
    std::fs::write(
        child.join("kiln.toml"),
        "[image]\nname = \"child\"\nversion = \"1.0.0\"\nbase = \"recipe:../hello\"\n\n\
         [[layer]]\nname = \"page\"\nfiles = [{ src = \"site/child.html\", dest = \"/www/child.html\" }]\n",
    )
    .expect("write recipe");
    let store = tmp.path().join("store");
    let mut recipe = kiln::load_recipe(&child).expect("load");
    recipe.image.version = Some("2.0.0-memory".into());
    recipe
        .config
        .labels
        .insert("dev.example.child".into(), "changed".into());
    let built = build(&store, &recipe).await;
    assert_eq!(built.name, "child");
    assert_eq!(built.tags, ["2.0.0-memory"]);

    let inspected = json(&ok(kiln(&store, &["inspect", "child:2.0.0-memory"])));
    assert_eq!(inspected["digest"].as_str(), Some(built.digest.as_str()));
    assert_eq!(label(&inspected, "dev.example.child"), Some("changed"));
    // Built on the base recipe, which was built first from its file.
    assert_eq!(label(&inspected, "test.copy"), Some("1.0.0-graph"));
    ok(kiln(&store, &["inspect", "hello:1.0.0-graph"]));
    assert_eq!(
        kiln(&store, &["inspect", "child:1.0.0"]).status.code(),
        Some(2)
    );
}
