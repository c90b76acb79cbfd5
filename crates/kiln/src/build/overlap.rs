//! Stage 1 beside the first layer: a base the store does not hold yet is
//! imported while the recipe's first layer, a run layer, already runs on
//! the engine's own image of it, by id. A `docker-daemon:` base is that
//! image (`docker save`, streamed into the store); a `rootfs:` folder the
//! store has not seen has one when an earlier build of this store's
//! namespace gave the engine its base and named it by the folder's stamp
//! ([`rootfs_name`]; a first build names it once imported). The step
//! needs the store's copy of the base only to assemble the image; its
//! cache key rests on the base's manifest digest, which exists once the
//! import is done, so the key, the cache lookup and the miss explanation
//! come after, as for any layer ([`super::layers`] takes what ran as the
//! layer unless the cache hits, and then leaves it to gc). Keys are unchanged: they do not depend on whether the layer ran
//! early. What ran is kept only if the base imported is the image it ran
//! on (its config digest is the engine's id): a name that led elsewhere
//! costs the step a second run, never a wrong layer.
//!
//! Done only where the layer would run anyway: the base is not stored, so
//! no cache entry is expected for it, and no `--cache-from` registry could
//! serve the layer (or `--no-cache` rebuilds it regardless); not with
//! `--check-reproducible`, nor when the recipe adds volumes (the step then
//! runs on an image assembled in the store).

use std::path::Path;

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
    let early = match (at.engine, first_run(recipe)) {
        (Some(engine), Some(run)) if may_run_early(at.options, plan) => Some((engine, run)),
        _ => None,
    };
    match (&recipe.image.base, early) {
        (BaseRef::DockerDaemon { reference }, Some((engine, run))) => {
            daemon_base(at, recipe, plan, engine, run, reference).await
        }
        (BaseRef::Rootfs { path }, Some((engine, run))) => {
            rootfs_base(at, recipe, plan, engine, run, path).await
        }
        _ => Ok((resolve(at, recipe, plan).await?, None)),
    }
}

/// Stage 1 as when nothing overlaps.
async fn resolve(
    at: &Setting<'_, '_>,
    recipe: &Recipe,
    plan: &Plan,
) -> Result<Option<BaseImage>, KilnError> {
    super::base::resolve(at.store, recipe, at.built, at.engine, plan.epoch, at.stat).await
}

/// A `docker-daemon:` base: the step runs on the engine's image, by id,
/// while the store reads it out of the engine.
async fn daemon_base<'e>(
    at: &Setting<'_, 'e>,
    recipe: &Recipe,
    plan: &Plan,
    engine: &'e dyn Engine,
    run: &RunLayer,
    reference: &str,
) -> Result<(Option<BaseImage>, Option<LayerBlob>), KilnError> {
    let (store, cancel) = (at.store, at.store.cancel());
    let base = recipe.image.base.to_string();
    let found = engine_images::find_daemon_base(store, engine, reference, &base);
    let id = match until_cancelled(cancel, found).await? {
        DaemonBase::Stored(image) => return Ok((Some(image), None)),
        DaemonBase::NotStored(id) => id,
    };
    let import = until_cancelled(
        cancel,
        engine_images::import_daemon_base(store, engine, &id, &base),
    );
    // The volumes the engine mounts in the step's container, as the
    // base's config would give them once imported.
    let Some(volumes) = engine.image_volumes(id.as_str()).await? else {
        // This engine cannot tell: imported first, as any base.
        return Ok((Some(import.await?), None));
    };
    let volumes = crate::mount_points::cleaned(volumes.iter().map(String::as_str));
    let held = EngineBase {
        id: id.as_str(),
        volumes: &volumes,
    };
    let (image, blob) = beside(at, recipe, plan, engine, run, held, import).await?;
    Ok((Some(image), blob))
}

/// A `rootfs:` folder the store has not seen (an empty store, a new
/// folder): the engine may hold its base already, from an earlier build of
/// this store's namespace, under a name made of the folder's stamp
/// ([`rootfs_name`]). Then the step runs on that image while the folder is
/// imported; else the folder is imported first and the image the engine
/// is given is named so, for the next time. The stamp walk costs a few
/// milliseconds of a build that imports the whole folder; a folder the
/// store knows is found from its stamp in stage 1, as always.
async fn rootfs_base<'e>(
    at: &Setting<'_, 'e>,
    recipe: &Recipe,
    plan: &Plan,
    engine: &'e dyn Engine,
    run: &RunLayer,
    path: &Path,
) -> Result<(Option<BaseImage>, Option<LayerBlob>), KilnError> {
    let store = at.store;
    let folder = crate::plan::recipe_dir(recipe).join(path);
    let unseen = kiln_image::rootfs_is_folder(&folder).unwrap_or(false)
        && kiln_cache::stamps::recall(store, &folder).is_none();
    if !unseen {
        return Ok((resolve(at, recipe, plan).await?, None));
    }
    let walked = folder.clone();
    let stamp = crate::blocking::run(move || kiln_image::rootfs_folder_stamp(&walked)).await?;
    let platform = super::base::platform(recipe);
    let name = rootfs_name(store, &stamp, plan.epoch, &platform);
    let Some(id) = engine.image_id(&name).await? else {
        let image = resolve(at, recipe, plan).await?;
        if let Some(image) = &image {
            name_rootfs_base(store, engine, image, &name, &stamp).await?;
        }
        return Ok((image, None));
    };
    // A kiln base's config declares no volumes.
    let held = EngineBase {
        id: &id,
        volumes: &[],
    };
    let import = async {
        resolve(at, recipe, plan)
            .await?
            .ok_or_else(|| KilnError::InvalidReference {
                reference: recipe.image.base.to_string(),
                reason: "it resolved to no image".into(),
            })
    };
    let (image, blob) = beside(at, recipe, plan, engine, run, held, import).await?;
    if blob.is_none() {
        // The name led to another image (the same stamp, other files):
        // it is moved to this one.
        name_rootfs_base(store, engine, &image, &name, &stamp).await?;
    }
    Ok((Some(image), blob))
}

/// The engine name of the base made from a `rootfs:` folder whose stamp is
/// `stamp`, at `epoch`, for `platform`: `NAMESPACE/rootfs:HEX16`, HEX16
/// from the digest of all three and the layer format. Removed by `kiln gc`
/// with the rest of the store's namespace.
fn rootfs_name(
    store: &Store,
    stamp: &kiln_image::TreeStamp,
    epoch: u64,
    platform: &kiln_image::Platform,
) -> String {
    let named = format!(
        "kiln rootfs base\n{}\n{}\n{epoch}\n{platform}",
        kiln_cache::key::FORMAT,
        stamp.digest
    );
    let hex = kiln_image::Digest::of(named.as_bytes()).hex().to_owned();
    format!(
        "{}/rootfs:{}",
        engine_images::engine_namespace(store),
        &hex[..16]
    )
}

/// Give the engine `image` (the base a `rootfs:` folder became) and name
/// it `name`, when the folder's stamp is settled (an unsettled one may
/// stand for other files next time). The first step holds the base in the
/// engine anyway; this holds it a moment earlier.
async fn name_rootfs_base(
    store: &Store,
    engine: &dyn Engine,
    image: &BaseImage,
    name: &str,
    stamp: &kiln_image::TreeStamp,
) -> Result<(), KilnError> {
    if !stamp.settled {
        return Ok(());
    }
    let held = engine_images::hold_base(store, engine, image).await?;
    match engine.tag_image(&held, name).await {
        // Removed in between: the first step loads it again, unnamed.
        Ok(()) | Err(kiln_engine::EngineError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Run the first step on `held`, the engine's image of the base, while
/// `import` brings the base into the store; the base, and the step's blob
/// when the base imported is the image it ran on.
async fn beside<'e>(
    at: &Setting<'_, 'e>,
    recipe: &Recipe,
    plan: &Plan,
    engine: &'e dyn Engine,
    run: &RunLayer,
    held: EngineBase<'_>,
    import: impl std::future::Future<Output = Result<BaseImage, KilnError>>,
) -> Result<(BaseImage, Option<LayerBlob>), KilnError> {
    let (store, cancel) = (at.store, at.store.cancel());
    let so_far = ImageSoFar {
        base: None,
        layers: &[],
        config: &plan.config,
        epoch: plan.epoch,
        volatile: &plan.volatile,
        engine_base: Some(held),
    };
    if !runs_on_base(&so_far) {
        return Ok((import.await?, None));
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
    let (imported, ran) = tokio::join!(import, until_cancelled(cancel, ran));
    let image = imported?;
    let blob = ran?;
    // The step ran on the image the store now holds, as the engine
    // described it: anything else and the layer runs again on the stored
    // base.
    let same = engine_images::engine_id(&image)?.as_str() == held.id
        && crate::mount_points::config_volumes(&image.config) == held.volumes;
    Ok((image, same.then_some(blob)))
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
