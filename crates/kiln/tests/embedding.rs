//! The facade as a Rust tool that embeds kiln uses it: recipes from memory,
//! typed digests and OCI types back, errors to branch on. These tests need
//! no container engine: their recipes have file layers only.

use std::path::Path;

use kiln::{BuildOptions, Digest, ErrorKind, KilnError, Store};

/// A recipe in a fresh context folder that holds one file to copy.
fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("site")).expect("mkdir");
    std::fs::write(dir.path().join("site/index.html"), "hello\n").expect("write");
    dir
}

const RECIPE: &str = r#"
[image]
name = "embedded"
version = "1.0.0"
epoch = 1700000000

[config]
cmd = ["/bin/true"]
labels = { "org.example.stage" = "file" }

[[layer]]
name = "site"
files = [{ src = "site/", dest = "/www/" }]
"#;

mod support;
use support::block_on;

/// Build [`RECIPE`], parsed with `ctx` as its context, into `store`.
fn build(store: &Store, ctx: &Path) -> kiln::BuildReport {
    let recipe = kiln::parse_recipe(RECIPE, ctx).expect("parse");
    assert!(!kiln::needs_engine(&recipe), "file layers only");
    support::parse_and_build(store, ctx, RECIPE)
}

#[test]
fn a_recipe_from_memory_builds_and_inspects_as_oci_types() {
    let ctx = context();
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(store_dir.path()).expect("store");
    let report = build(&store, ctx.path());

    let inspection = kiln::inspect(&store, "embedded:1.0.0").expect("inspect");
    assert_eq!(inspection.digest, report.digest);
    assert_eq!(Digest::of(&inspection.manifest_bytes), inspection.digest);
    let annotations = inspection
        .manifest
        .annotations()
        .clone()
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some("1.0.0")
    );
    assert_eq!(inspection.manifest.layers().len(), 1);
    assert_eq!(
        inspection.manifest.layers()[0].digest().to_string(),
        report.layers[0].digest.to_string()
    );
    let config = inspection.config.config().clone().expect("runtime config");
    let labels = config.labels().clone().unwrap_or_default();
    assert_eq!(
        labels.get("org.example.stage").map(String::as_str),
        Some("file")
    );
    assert_eq!(inspection.config.rootfs().diff_ids().len(), 1);

    // `kiln inspect` prints the stored documents, not a re-serialisation.
    let json = serde_json::to_value(&inspection).expect("json");
    let stored: serde_json::Value =
        serde_json::from_slice(&inspection.config_bytes).expect("config json");
    assert_eq!(json["config"], stored);
    assert_eq!(json["digest"], report.digest.to_string());
}

#[test]
fn errors_say_what_callers_branch_on() {
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(store_dir.path()).expect("store");

    let bad: Result<Digest, _> = "sha256:nothex".parse();
    let err = KilnError::from(bad.expect_err("bad digest"));
    assert_eq!(err.kind(), ErrorKind::Input);
    assert!(err.to_string().contains("sha256:nothex"), "{err}");

    let err = kiln::rollback(&store, "web", "stable").expect_err("nothing to roll back");
    assert!(err.is_nothing_to_roll_back(), "{err:?}");
    assert!(!err.is_untested());

    // A digest that is stored but was never tested is refused as untested.
    let ctx = context();
    let built = build(&store, ctx.path());
    let err = kiln::promote(&store, "embedded", &built.digest, "stable").expect_err("untested");
    assert!(err.is_untested(), "{err:?}");
    assert!(!err.is_nothing_to_roll_back() && !err.is_engine_unreachable());
}

#[test]
fn a_bad_recipe_from_memory_names_the_context_file() {
    let err = kiln::parse_recipe("[image]\nnmae = \"x\"\n", Path::new("/ctx")).expect_err("typo");
    let KilnError::Recipe(recipe) = &err else {
        panic!("a recipe error: {err:?}")
    };
    assert_eq!(
        recipe.diagnostics()[0].to_string(),
        "/ctx/kiln.toml:2:1: unknown key `nmae` in [image]; did you mean `name`?"
    );
    assert_eq!(err.kind(), ErrorKind::Input);
}

/// Records event names, from whichever thread they come.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().expect("lock").push(event);
    }
}

impl kiln::CheckEvents for Recorder {}

impl kiln::Events for Recorder {
    fn build_started(&self, image: &str, layers: usize) {
        self.push(format!("build_started {image} {layers}"));
    }
    fn layer_started(&self, _image: &str, layer: &str) {
        self.push(format!("layer_started {layer}"));
    }
    fn layer_finished(&self, _image: &str, layer: &kiln::LayerReport) {
        self.push(format!(
            "layer_finished {} cached={}",
            layer.name, layer.cached
        ));
    }
    fn build_finished(&self, report: &kiln::BuildReport) {
        self.push(format!("build_finished {}", report.digest));
    }
}

#[test]
fn a_build_reports_each_layer_to_a_shared_sink() {
    let ctx = context();
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(store_dir.path()).expect("store");
    let recipe = kiln::parse_recipe(RECIPE, ctx.path()).expect("parse");
    // A sink is shared across threads; Arc proves it can be.
    let sink = std::sync::Arc::new(Recorder::default());
    let report = block_on(kiln::build(
        &store,
        &recipe,
        &BuildOptions::default(),
        None,
        sink.as_ref(),
    ))
    .expect("build");
    let events = sink.0.lock().expect("lock").clone();
    assert_eq!(
        events,
        [
            "build_started embedded 1".to_owned(),
            "layer_started site".to_owned(),
            "layer_finished site cached=false".to_owned(),
            format!("build_finished {}", report.digest),
        ]
    );
}
