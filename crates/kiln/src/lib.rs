//! kiln: the golden-image pipeline, for embedders.
//!
//! A recipe (see [`kiln_recipe`]) becomes a reproducible OCI image in
//! kiln's store ([`build()`]), is booted in a real container engine and
//! checked ([`test()`]), and only a digest that passed moves a channel
//! ([`promote()`], [`release()`], [`rollback()`]), and is signed, attested
//! and described as cosign does ([`sign()`], [`verify()`], [`sbom()`]).
//!
//! This crate plans and sequences; the work is done by the crates below it:
//! `kiln-image` (layers, manifests, the store), `kiln-engine` (Docker),
//! `kiln-check` (the checks) and `kiln-promote` (records and channels). It
//! never prints: progress reaches the caller through [`Events`], and every
//! failure is a [`KilnError`] whose [`KilnError::kind`] says which exit code
//! a command line should use.
//!
//! ```no_run
//! use kiln::{BuildOptions, NoEvents, Store};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let recipe = kiln::load_recipe("images/hello".as_ref())?;
//! let store = Store::open("/tmp/kiln-store")?;
//! // A recipe with `run` layers needs an engine: `Some(&docker)`.
//! let report = kiln::build(&store, &recipe, &BuildOptions::default(), None, &NoEvents).await?;
//! println!("{} {}", report.name, report.digest);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod blocking;
mod build;
mod cancel;
mod capability;
mod catalog;
mod chunk_reader;
mod engine_images;
mod error;
mod events;
mod export;
mod fsck;
mod gc;
mod graph;
mod mount_points;
mod plan;
mod reference;
mod registry;
mod release;
mod removals;
mod report;
mod run_layer;
mod secret;
mod sign;
mod store_lock;
mod stored_recipe;
mod test_run;

use kiln_promote::channel;

pub use build::{ARG_ANNOTATION_PREFIX, BuildOptions, build, build_all, build_graph};
pub use capability::{Stage, ensure_supported, needs_engine};
pub use catalog::{ImageSummary, IndexEntry, Inspection, TestStatus, images, inspect};
pub use engine_images::{engine_namespace, ensure_in_engine, load_into_engine};
pub use error::{Chain, ErrorKind, KilnError};
pub use events::{Events, NoEvents};
pub use export::{Destination, ExportOptions, Exported, export, export_with};
pub use fsck::{FsckOptions, FsckReport, Problem, ProblemKind, fsck};
pub use gc::{GcOptions, GcOutcome, gc, gc_engine};
pub use graph::{
    BuildGraph, plan as plan_graph, plan_recipes, plan_with_args as plan_graph_with_args,
};
pub use kiln_cache::CacheError;
pub use kiln_check::{CheckError, CheckEvents, CheckOutcome};
pub use kiln_engine::{Docker, Engine, EngineError, MANAGED_LABEL, RUN_LABEL};
pub use kiln_image::change_set::ChangeSetError;
pub use kiln_image::{Cancel, Digest, DigestParseError, GcReport, ImageError, Store, oci_spec};
pub use kiln_promote::PromoteError;
pub use kiln_promote::channel::Move;
pub use kiln_recipe::{RECIPE_FILE_NAME, Recipe, RecipeDiagnostic, RecipeError};
pub use kiln_secrets::SecretError;
pub use kiln_sign::{PredicateKind, SigningKey};
pub use reference::{ImageRef, resolve};
pub use registry::{RegistryTarget, inspect_registry};
pub use release::release;
pub use report::{
    BaseReport, BuildReport, CheckReport, LayerReport, MovedTag, PushedReport, ReleaseReport,
    TestReport,
};
pub use secret::{Redactor, SecretValue, redact};
pub use sign::{
    KeyFiles, SignError, SignReport, VerifyFailure, VerifyReport, keygen, read_signing_key, sbom,
    sign, verify,
};
pub use test_run::{TestOptions, new_run_id, recipe_of, test};

/// The recipe model: every type a [`Recipe`] is made of ([`recipe::Layer`],
/// [`recipe::Check`], [`recipe::BaseRef`]...), so that embedders can read
/// and change a recipe in memory without depending on `kiln-recipe`
/// themselves.
pub mod recipe {
    pub use kiln_recipe::model::*;
    pub use kiln_recipe::values::ValueError;
}

/// The recipe format's JSON Schema (draft 2020-12), pretty-printed, as
/// `kiln schema` prints it: generated from the parser's own types; it
/// checks a recipe's shape, the parser its meaning.
pub fn recipe_schema() -> String {
    kiln_recipe::schema_json()
}

/// Read and validate the recipe at `path` (a file, or a folder holding
/// `kiln.toml`).
pub fn load_recipe(path: &std::path::Path) -> Result<Recipe, KilnError> {
    Ok(kiln_recipe::load(path)?)
}

/// [`load_recipe`] with build arguments: `args` (`--arg NAME=VALUE`)
/// override the defaults of the recipe's `[args]`, and every `${NAME}` in
/// its string values is replaced ([`kiln_recipe::parse_with_args`]). A name
/// the recipe does not declare is an error naming it.
pub fn load_recipe_with_args(
    path: &std::path::Path,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<Recipe, KilnError> {
    Ok(kiln_recipe::load_with_args(path, args)?)
}

/// Parse and validate a recipe held in memory. `context` is the folder its
/// relative paths (`src`, `oci:` and `recipe:` bases, secret files) are read
/// from; the recipe's [`Recipe::path`], and the file its diagnostics name, is
/// `context/kiln.toml`, which need not exist.
///
/// ```
/// let text = "[image]\nname = \"hello\"\nversion = \"1.0.0\"\n";
/// let recipe = kiln::parse_recipe(text, "images/hello".as_ref())?;
/// assert_eq!(recipe.path, std::path::Path::new("images/hello/kiln.toml"));
/// assert_eq!(recipe.image.version.as_deref(), Some("1.0.0"));
/// # Ok::<(), kiln::KilnError>(())
/// ```
pub fn parse_recipe(text: &str, context: &std::path::Path) -> Result<Recipe, KilnError> {
    Ok(kiln_recipe::parse(text, &context.join(RECIPE_FILE_NAME))?)
}

/// [`parse_recipe`] with build arguments, as [`load_recipe_with_args`]
/// takes them. The recipe returned holds the substituted values, and
/// [`Recipe::args`] the values in force: building it records them in the
/// image's annotations (`dev.kiln.arg.NAME`) and keeps this value.
///
/// ```
/// use std::collections::BTreeMap;
/// let text = "[args]\nRELEASE = \"1.0.0\"\n[image]\nname = \"hello\"\nversion = \"${RELEASE}\"\n";
/// let args = BTreeMap::from([("RELEASE".to_owned(), "2.0.0".to_owned())]);
/// let recipe = kiln::parse_recipe_with_args(text, "images/hello".as_ref(), &args)?;
/// assert_eq!(recipe.image.version.as_deref(), Some("2.0.0"));
/// # Ok::<(), kiln::KilnError>(())
/// ```
pub fn parse_recipe_with_args(
    text: &str,
    context: &std::path::Path,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<Recipe, KilnError> {
    Ok(kiln_recipe::parse_with_args(
        text,
        &context.join(RECIPE_FILE_NAME),
        args,
    )?)
}

/// Move `channel` of `name` to `digest`; refused unless the digest passed
/// its checks.
pub fn promote(
    store: &Store,
    name: &str,
    digest: &Digest,
    channel: &str,
) -> Result<Move, KilnError> {
    Ok(channel::promote(store, name, digest, channel)?)
}

/// Move `channel` of `name` back to the previous digest that passed.
pub fn rollback(store: &Store, name: &str, channel: &str) -> Result<Move, KilnError> {
    Ok(channel::rollback(store, name, channel)?)
}
