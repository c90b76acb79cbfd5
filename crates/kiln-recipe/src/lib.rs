//! kiln-recipe: the recipe format. TOML text goes in; a typed, validated
//! [`Recipe`] comes out, or a [`RecipeError`] that lists every problem in the
//! file, each located at file:line:column.
//!
//! # The format
//!
//! A recipe (by convention `kiln.toml` in the image's folder) describes one
//! golden image:
//!
//! - `[args]`: build arguments with their defaults; `${NAME}` in any
//!   string value is replaced by the argument's value (see
//!   [`parse_with_args`]).
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

mod args;
mod check;
mod diagnostic;
mod document;
mod field;
mod layer;
pub mod model;
mod schema;
mod section;
mod serialised;
pub mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use diagnostic::{KeyStep, RecipeDiagnostic, RecipeError};
pub use kiln_error_kind::ErrorKind;
pub use model::*;
pub use schema::schema_json;
pub use values::ValueError;

use document::{Problem, Problems};

/// The file name looked for when a recipe path is a folder.
pub const RECIPE_FILE_NAME: &str = "kiln.toml";

/// Parses and validates a recipe's text. `path` is where the text came from:
/// it names the file in diagnostics and is stored in [`Recipe::path`].
///
/// Every problem in the text is reported, not only the first; a TOML syntax
/// error is reported alone, since nothing after it can be trusted. Build
/// arguments take their `[args]` defaults; [`parse_with_args`] overrides
/// them.
pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
    parse_with_args(text, path, &BTreeMap::new())
}

/// [`parse`] with build arguments: `args` (`--arg NAME=VALUE`) override
/// the defaults of `[args]`, and every `${NAME}` in a string value of the
/// recipe (outside `[args]`) is replaced by its value before the value is
/// read, so the [`Recipe`] holds the values that are built and
/// [`Recipe::args`] the values in force. A name in `args` that `[args]`
/// does not declare, a `${NAME}` of an undeclared name and an unterminated
/// `${` are problems (`$${` is a literal `${`).
///
/// ```
/// use std::collections::BTreeMap;
/// use std::path::Path;
///
/// let text = "[args]\nRELEASE = \"1.0.0\"\n[image]\nname = \"web\"\nversion = \"${RELEASE}\"\n";
/// let args = BTreeMap::from([("RELEASE".to_owned(), "1.1.0".to_owned())]);
/// let recipe = kiln_recipe::parse_with_args(text, Path::new("kiln.toml"), &args)?;
/// assert_eq!(recipe.image.version.as_deref(), Some("1.1.0"));
/// assert_eq!(recipe.args["RELEASE"], "1.1.0");
///
/// let unknown = BTreeMap::from([("RELAESE".to_owned(), "2".to_owned())]);
/// let err = kiln_recipe::parse_with_args(text, Path::new("kiln.toml"), &unknown).unwrap_err();
/// assert!(err.to_string().contains("--arg RELAESE is not a build argument"));
/// # Ok::<(), kiln_recipe::RecipeError>(())
/// ```
pub fn parse_with_args(
    text: &str,
    path: &Path,
    args: &BTreeMap<String, String>,
) -> Result<Recipe, RecipeError> {
    let mut doc = match DeTable::parse(text) {
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
    let values = args::values(&doc, args, &mut problems);
    let failed = args::substitute(&mut doc, text, &values, &mut problems);
    let before = problems.0.len();
    let recipe = section::recipe(path, text, &doc, &mut problems).map(|recipe| Recipe {
        args: values.values,
        ..recipe
    });
    // A value left unsubstituted was reported already; what the sections
    // say about it (not a valid version...) would only repeat that.
    let mut at = 0;
    problems.0.retain(|problem| {
        at += 1;
        at <= before || !failed.contains(&problem.span)
    });
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
    load_with_args(path, &BTreeMap::new())
}

/// [`load`] with build arguments, as [`parse_with_args`] takes them.
pub fn load_with_args(path: &Path, args: &BTreeMap<String, String>) -> Result<Recipe, RecipeError> {
    let file = recipe_file(path);
    let text = std::fs::read_to_string(&file).map_err(|source| RecipeError::Io {
        path: file.clone(),
        source,
    })?;
    parse_with_args(&text, &file, args)
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
