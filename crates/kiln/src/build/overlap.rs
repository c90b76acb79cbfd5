//! Stage 1 beside the first layer: a `docker-daemon:` base the store does
//! not hold yet is imported (`docker save`, streamed into the store) while
//! the recipe's first layer, a run layer, already runs on the engine's own
//! image, by id. The step needs the store's copy of the base only to
//! assemble the image; its cache key rests on the base's manifest digest,
//! which exists once the import is done, so the key, the cache lookup and
//! the miss explanation come after, as for any layer ([`super::layers`]
//! takes what ran as the layer unless the cache hits, and then leaves it
//! to gc). Keys are unchanged: they do not depend on whether the layer ran
//! early.
//!
//! Done only where the layer would run anyway: the base is not stored, so
//! no cache entry is expected for it, and no `--cache-from` registry could
//! serve the layer (or `--no-cache` rebuilds it regardless); not with
//! `--check-reproducible`, nor when the recipe adds volumes (the step then
//! runs on an image assembled in the store).

use kiln_engine::Engine;
use kiln_image::{BaseImage, LayerBlob, Store};
use kiln_recipe::{BaseRef, LayerKind, Recipe, RunLayer};

use super::BuildOptions;
use super::plan::Plan;
use crate::KilnError;
use crate::cancel::until_cancelled;
use crate::engine_images::{self, DaemonBase};
use crate::events::Events;
use crate::removals::Removals;
use crate::run_layer::{EngineBase, ImageSoFar, build_run_layer, runs_on_base};

/// Where stage 1 works and whom the first layer is announced to.
pub(super) struct Setting<'a, 'e> {
    /// The store the base goes into.
    pub store: &'a Store,
    /// The engine run layers run in.
    pub engine: Option<&'e dyn Engine>,
    /// Who hears of the first layer when it starts early.
    pub events: &'a dyn Events,
    /// The build's options.
    pub options: &'a BuildOptions,
    /// The recipes built so far in this run.
    pub built: &'a super::BuiltRecipes,
    /// The build's stat cache (for `rootfs:` bases).
    pub stat: &'a super::SharedStat,
    /// Where the first layer hands the removal of its container.
    pub removals: &'a Removals<'e>,
}

/// The base of `recipe` in the store (`None` for scratch), and the first
/// layer's blob when it ran while the base was imported.
pub(super) async fn base_and_first_layer(
    at: &Setting<'_, '_>,
    recipe: &Recipe,
    plan: &Plan,
) -> Result<(Option<BaseImage>, Option<LayerBlob>), KilnError> {
    let (store, cancel) = (at.store, at.store.cancel());
    let early = match (&recipe.image.base, at.engine, first_run(recipe)) {
        (BaseRef::DockerDaemon { reference }, Some(engine), Some(run))
            if may_run_early(at.options, plan) =>
        {
            Some((reference, engine, run))
        }
        _ => None,
    };
    let Some((reference, engine, run)) = early else {
        let base =
            super::base::resolve(store, recipe, at.built, at.engine, plan.epoch, at.stat).await?;
        return Ok((base, None));
    };
    let base = recipe.image.base.to_string();
    let found = engine_images::find_daemon_base(store, engine, reference, &base);
    let id = match until_cancelled(cancel, found).await? {
        DaemonBase::Stored(image) => return Ok((Some(image), None)),
        DaemonBase::NotStored(id) => id,
    };
    let import = engine_images::import_daemon_base(store, engine, &id, &base);
    // The volumes the engine mounts in the step's container, as the
    // base's config would give them once imported.
    let Some(volumes) = engine.image_volumes(id.as_str()).await? else {
        // This engine cannot tell: imported first, as any base.
        return Ok((Some(until_cancelled(cancel, import).await?), None));
    };
    let volumes = crate::mount_points::cleaned(volumes.iter().map(String::as_str));
    let so_far = ImageSoFar {
        base: None,
        layers: &[],
        config: &plan.config,
        epoch: plan.epoch,
        volatile: &plan.volatile,
        engine_base: Some(EngineBase {
            id: id.as_str(),
            volumes: &volumes,
        }),
    };
    if !runs_on_base(&so_far) {
        return Ok((Some(until_cancelled(cancel, import).await?), None));
    }
    let layer = &recipe.layers[0].name;
    at.events.layer_started(&plan.name, layer);
    let ran = build_run_layer(
        store,
        engine,
        at.removals,
        &plan.name,
        layer,
        run,
        &so_far,
        &plan.run_secrets,
        &plan.run_id,
        false,
    );
    // Both finish before either's outcome is acted on: the step's container
    // goes beside the build (its removal is handed on), and a failed import
    // leaves only unnamed blobs.
    let (imported, ran) = tokio::join!(
        until_cancelled(cancel, import),
        until_cancelled(cancel, ran)
    );
    let image = imported?;
    let blob = ran?;
    // The step ran on the image the store now holds, as the engine
    // described it: anything else (which no engine does) and the layer
    // runs again on the stored base.
    let same = engine_images::engine_id(&image)? == id
        && crate::mount_points::config_volumes(&image.config) == volumes;
    Ok((Some(image), same.then_some(blob)))
}

/// The recipe's first layer, if it is a run layer.
fn first_run(recipe: &Recipe) -> Option<&RunLayer> {
    match &recipe.layers.first()?.kind {
        LayerKind::Run(run) => Some(run),
        LayerKind::Files(_) => None,
    }
}

/// Whether the first layer may run before its key is known: it will be
/// built whatever the local cache holds (`--no-cache`), or no registry
/// could serve it; never twice (`--check-reproducible`), and only on the
/// bare base (no recipe volumes).
fn may_run_early(options: &BuildOptions, plan: &Plan) -> bool {
    (options.no_cache || options.cache_from.is_empty())
        && !options.check_reproducible
        && plan.config.volumes.is_empty()
}
