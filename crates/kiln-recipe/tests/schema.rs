//! The recipe's JSON Schema: the committed `docs/recipe.schema.json` is
//! what the parser's types generate now, every good recipe (the fixtures
//! and `images/*/kiln.toml`) is valid against it, and every bad fixture the
//! schema can catch is invalid against it. The others are semantic: only
//! the parser, with the whole recipe in hand, can tell.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&kiln_recipe::schema_json()).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

/// The recipe at `path` as JSON, as an editor's TOML plugin sees it.
fn as_json(path: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(path).expect("readable recipe");
    toml::from_str(&text).ok()
}

/// Every `.toml` file in `dir`, sorted.
fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .expect("fixtures folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    out
}

#[test]
fn the_committed_schema_is_current() {
    let file = root().join("docs/recipe.schema.json");
    let committed = fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == kiln_recipe::schema_json(),
        "{} is stale: run `cargo xtask schema` and commit it",
        file.display()
    );
}

#[test]
fn every_good_recipe_is_valid() {
    let validator = validator();
    let mut recipes = tomls(&root().join("fixtures/recipes/good"));
    for entry in fs::read_dir(root().join("images")).expect("images/") {
        let recipe = entry.expect("entry").path().join("kiln.toml");
        if recipe.is_file() {
            recipes.push(recipe);
        }
    }
    assert!(recipes.len() >= 3, "{recipes:?}");
    for recipe in recipes {
        let value = as_json(&recipe).expect("good recipes are TOML");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", recipe.display());
    }
}

/// Bad fixtures the schema cannot catch, and why: each needs more than
/// one value's shape.
const SEMANTIC: &[(&str, &str)] = &[
    (
        "10-mode-decimal",
        "TOML gives the integer, not the radix it was written in",
    ),
    (
        "11-duplicate-layer-name",
        "uniqueness of a key across the array's tables",
    ),
    ("16-undeclared-run-secret", "a reference to [secrets]"),
    ("17-undeclared-boot-secret", "a reference to [secrets]"),
    ("21-src-parent-dir", "a `..` component anywhere in the path"),
    (
        "29-exists-false-with-contains",
        "two keys that contradict each other",
    ),
    (
        "34-folder-copy-dest",
        "src and dest agreeing on a trailing `/`",
    ),
    (
        "46-duplicate-check-name",
        "uniqueness of a key across the array's tables",
    ),
    (
        "56-unknown-build-argument",
        "build arguments are replaced before values are read; the schema sees the text",
    ),
    (
        "57-unterminated-build-argument",
        "build arguments are replaced before values are read; the schema sees the text",
    ),
];

#[test]
fn bad_recipes_the_schema_can_catch_are_invalid() {
    let validator = validator();
    let mut caught = Vec::new();
    let mut missed = Vec::new();
    for path in tomls(&root().join("fixtures/recipes/bad")) {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        // Bad TOML is not the schema's to catch: the editor's TOML parser
        // reports it first.
        let invalid = as_json(&path).is_none_or(|value| !validator.is_valid(&value));
        if invalid {
            caught.push(stem);
        } else {
            missed.push(stem);
        }
    }
    let semantic: Vec<&str> = SEMANTIC.iter().map(|(name, _)| *name).collect();
    let wrongly_semantic: Vec<&String> = caught
        .iter()
        .filter(|c| semantic.contains(&c.as_str()))
        .collect();
    assert!(
        missed == semantic && wrongly_semantic.is_empty(),
        "missed by the schema: {missed:#?}\nlisted as semantic: {semantic:#?}"
    );
}
