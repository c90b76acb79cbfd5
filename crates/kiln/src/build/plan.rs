//! Stage 2, plan (and, before stage 1, refusal): what is refused before any work starts, and the
//! facts every later stage shares (name, epoch, runtime config, tags, the
//! run layers' secrets and run id), worked out once from the recipe and the
//! options.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_engine::Engine;
use kiln_image::RuntimeConfig;
use kiln_recipe::{LayerKind, Recipe};

use super::BuildOptions;
use crate::KilnError;
use crate::capability::{Stage, ensure_supported};
use crate::plan::context_dir;
use crate::run_layer::read_run_secrets;
use crate::secret::SecretValue;
use crate::test_run::new_run_id;

/// Refuse a recipe this build cannot do before anything is read or stored:
/// an unsupported feature, or a run layer and no engine.
pub(super) fn refuse(recipe: &Recipe, engine: Option<&dyn Engine>) -> Result<(), KilnError> {
    ensure_supported(recipe, Stage::Build)?;
    if engine.is_none() {
        if let Some(layer) = recipe
            .layers
            .iter()
            .find(|l| matches!(l.kind, LayerKind::Run(_)))
        {
            return Err(KilnError::NoEngine {
                layer: layer.name.clone(),
            });
        }
    }
    Ok(())
}

/// What every stage of one build shares.
pub(super) struct Plan {
    /// The image's name.
    pub name: String,
    /// The build's epoch: `SOURCE_DATE_EPOCH`, else the recipe's, else 0.
    pub epoch: u64,
    /// The image's runtime configuration.
    pub config: RuntimeConfig,
    /// The tags the build gives.
    pub tags: Vec<String>,
    /// The folder file layers read from.
    pub context: PathBuf,
    /// The run layers' secrets, by name.
    pub run_secrets: BTreeMap<String, SecretValue>,
    /// The `dev.kiln.run` label of the run layers' containers.
    pub run_id: String,
    /// `[image] volatile`, or the default list: part of run layers' keys.
    pub volatile_globs: Vec<String>,
    /// The same globs, compiled: what run layers leave out.
    pub volatile: crate::run_layer::Volatile,
}

/// Plan the build of `recipe`. Run secrets are read here, before any layer
/// runs: a missing secret stops the build early.
pub(super) fn plan(recipe: &Recipe, options: &BuildOptions) -> Result<Plan, KilnError> {
    Ok(Plan {
        name: recipe.image.name.to_string(),
        epoch: options
            .source_date_epoch
            .or(recipe.image.epoch)
            .unwrap_or(0),
        config: runtime_config(recipe),
        tags: tags(recipe, options),
        context: context_dir(recipe),
        run_secrets: read_run_secrets(recipe)?,
        run_id: options.run_id.clone().unwrap_or_else(new_run_id),
        volatile: crate::run_layer::Volatile::new(&recipe.image.volatile_globs())?,
        volatile_globs: recipe.image.volatile_globs(),
    })
}

/// The tags a build gives: the version (or `latest` when the recipe has
/// none) and any extra tags.
fn tags(recipe: &Recipe, options: &BuildOptions) -> Vec<String> {
    let mut tags = vec![
        recipe
            .image
            .version
            .clone()
            .unwrap_or_else(|| "latest".to_owned()),
    ];
    for tag in &options.extra_tags {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}

fn runtime_config(recipe: &Recipe) -> RuntimeConfig {
    let c = &recipe.config;
    RuntimeConfig {
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: c.env.clone(),
        workdir: c.workdir.clone(),
        user: c.user.clone(),
        exposed_ports: c.expose.iter().map(ToString::to_string).collect(),
        labels: c.labels.clone(),
        stop_signal: c.stop_signal.clone(),
        volumes: c.volumes.clone(),
    }
}
