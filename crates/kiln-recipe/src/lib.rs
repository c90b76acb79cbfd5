//! kiln-recipe: the recipe format. TOML text goes in; a typed, validated
//! [`Recipe`] comes out, or a [`RecipeError`] that lists every problem in the
//! file, each located at file:line:column.
//!
//! # The format
//!
//! A recipe (by convention `kiln.toml` in the image's folder) describes one
//! golden image:
//!
//! - `[image]`: the repository `name` (required), an optional `version`
//!   (also stored as a tag), the `base` it is built on (`scratch`, `oci:DIR`,
//!   `docker://HOST/REPO:TAG`, `recipe:PATH`, `kiln:NAME`...; default
//!   `scratch`), the `epoch` every timestamp is set to, and the `context`
//!   folder that file sources are read from (default `.`).
//! - `[config]`: the OCI runtime configuration (entrypoint, cmd, env,
//!   workdir, user, expose, labels, stop_signal, volumes).
//! - `[[layer]]`, in order, each exactly one OCI layer: a *file layer*
//!   (`files`, `dirs`, `symlinks`, with a default `owner`) or a *run layer*
//!   (`run`, with the `secrets` it may read, build-time `env` and
//!   `network`), never both.
//! - `[secrets.NAME]`: secrets declared with where their value is read
//!   (`from = "env:VAR"` or `"file:PATH"`). Values never reach the image.
//! - `[boot]`: how the test-runner boots the image (secrets, env, timeout).
//! - `[[check]]`: checks of exactly one kind (`http`, `tcp`, `command`,
//!   `file`, `metadata`) that must pass before the image is promoted.
//! - `[promote]`: the channels a passing image moves, signing and pushing.
//!
//! The user's reference, every key with its default, is `docs/recipe.md`
//! in the repository; `fixtures/recipes/good/full.toml` is the format's
//! complete example and a test keeps it parsing.
//!
//! # Strictness
//!
//! A typo must never be silently ignored, so unknown keys are errors (with
//! the nearest known key suggested), and so are keys that do not belong
//! where they are written: `status` on a tcp check, `secrets` on a file
//! layer, a decimal `mode = 755`. Every value type ([`Mode`], [`Owner`],
//! [`Duration`], [`BaseRef`], ...) can only hold a valid value, so code
//! downstream never re-checks. This crate does no I/O beyond [`load`]
//! reading the one file: whether `src` files exist is the image builder's
//! question.
//!
//! # Errors
//!
//! Parsing does not stop at the first problem: [`RecipeError::Invalid`]
//! holds a [`RecipeDiagnostic`] for each, in file order, with line, column,
//! byte span, the source line and a message that says what to write
//! instead. `RecipeError` implements [`miette::Diagnostic`], so a binary
//! that enables miette's `fancy` feature renders the offending lines
//! underlined.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use kiln_recipe::{CheckKind, LayerKind};
//!
//! let text = r#"
//! [image]
//! name = "hello"
//! base = "scratch"
//!
//! [[layer]]
//! name = "app"
//! files = [{ src = "rootfs/app", dest = "/bin/app", mode = 0o755 }]
//!
//! [[check]]
//! name = "answers"
//! http = { port = 8080 }
//! "#;
//! let recipe = kiln_recipe::parse(text, Path::new("kiln.toml"))?;
//! assert_eq!(recipe.image.name.as_str(), "hello");
//! assert!(matches!(recipe.layers[0].kind, LayerKind::Files(_)));
//! let CheckKind::Http(http) = &recipe.checks[0].kind else { panic!("an http check") };
//! assert_eq!((http.path.as_str(), http.status), ("/", 200));
//!
//! let typo = "[image]\nnmae = \"hello\"\n";
//! let err = kiln_recipe::parse(typo, Path::new("kiln.toml")).unwrap_err();
//! assert_eq!(
//!     err.diagnostics()[0].to_string(),
//!     "kiln.toml:2:1: unknown key `nmae` in [image]; did you mean `name`?"
//! );
//! # Ok::<(), kiln_recipe::RecipeError>(())
//! ```
#![deny(missing_docs)]

mod check;
mod diagnostic;
mod document;
mod field;
mod layer;
pub mod model;
mod section;
mod serialised;
pub mod values;

use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use diagnostic::{RecipeDiagnostic, RecipeError};
pub use kiln_error_kind::ErrorKind;
pub use model::*;
pub use values::ValueError;

use document::{Problem, Problems};

/// The file name looked for when a recipe path is a folder.
pub const RECIPE_FILE_NAME: &str = "kiln.toml";

/// Parses and validates a recipe's text. `path` is where the text came from:
/// it names the file in diagnostics and is stored in [`Recipe::path`].
///
/// Every problem in the text is reported, not only the first; a TOML syntax
/// error is reported alone, since nothing after it can be trusted.
pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.message().trim_end();
            let message = if message == "duplicate key" {
                "invalid TOML: duplicate key; a key can be set only once in a table, so remove one"
                    .to_owned()
            } else {
                format!("invalid TOML: {message}")
            };
            let problem = Problem {
                span: e.span().unwrap_or(0..0),
                label: "invalid TOML".to_owned(),
                message,
                help: Some(
                    "a recipe is a TOML file: see https://toml.io for the syntax".to_owned(),
                ),
            };
            return Err(RecipeError::invalid(path, text, vec![problem]));
        }
    };
    let mut problems = Problems::default();
    let recipe = section::recipe(path, text, &doc, &mut problems);
    match recipe {
        Some(recipe) if problems.0.is_empty() => Ok(recipe),
        _ => {
            if problems.0.is_empty() {
                // Every reader that gives up records why; this keeps the
                // error non-empty should one ever forget.
                problems.fail::<()>(0..0, "invalid", "invalid recipe");
            }
            Err(RecipeError::invalid(path, text, problems.0))
        }
    }
}

/// Reads and parses the recipe at `path`: a file, or a folder that holds
/// [`RECIPE_FILE_NAME`]. [`Recipe::path`] is the file read.
pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
    let file = recipe_file(path);
    let text = std::fs::read_to_string(&file).map_err(|source| RecipeError::Io {
        path: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// The recipe file `path` names: itself, or `<path>/kiln.toml` for a folder.
pub fn recipe_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(RECIPE_FILE_NAME)
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests;
