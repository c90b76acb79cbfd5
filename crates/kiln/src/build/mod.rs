//! Build one recipe into the store, as a pipeline of named stages, each in
//! its own module; [`build_one`] shows their order:
//!
//! 1. [`base`]: resolve the base into the store (a `docker-daemon:` base
//!    not stored yet beside the first run layer, [`overlap`]);
//! 2. [`plan`]: the facts every stage shares (epoch, config, tags, secrets);
//! 3. [`snapshot`]: every layer's inputs and cache key (file layers'
//!    contents are read while the base resolves, and [`early_writes`]
//!    starts writing those likely to miss);
//! 4. [`layers`]: each layer from the cache or built (file layers written
//!    concurrently, run layers in the engine);
//! 5. [`assemble`]: config and manifest;
//! 6. [`leak`]: no declared secret value anywhere in what the recipe added;
//! 7. [`record`]: stat cache, last build, stored recipe, and last the tags.
//!
//! Only [`record`] makes a build visible: a build that stops earlier leaves
//! at most unnamed blobs, which gc removes. The whole build holds a lease on
//! the store (see [`kiln_image::lock`]), so gc never removes what a build
//! in progress wrote or reuses.

mod assemble;
pub use assemble::ARG_ANNOTATION_PREFIX;
mod base;
mod early_writes;
mod layers;
mod leak;
mod overlap;
mod plan;
mod record;
mod rootfs;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kiln_cache::explain;
use kiln_cache::stat::StatCache;
use kiln_engine::Engine;
use kiln_image::{Cancel, Store};
use kiln_recipe::{BaseRef, Recipe};

use crate::KilnError;
use crate::cancel::{self, until_cancelled};
use crate::capability::{Stage, ensure_supported};
use crate::events::Events;
use crate::graph::BuildGraph;
use crate::removals::Removals;
use crate::report::{BaseReport, BuildReport};
use crate::test_run::new_run_id;

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `SOURCE_DATE_EPOCH`: overrides the recipe's `epoch`.
    pub source_date_epoch: Option<u64>,
    /// Tags to give the image besides its version.
    pub extra_tags: Vec<String>,
    /// Build every layer of the recipe anew, ignoring (but refreshing) the
    /// cache. The base is taken as it is, as Docker takes a `FROM`: a
    /// `rootfs:` tree whose files did not change is not imported again.
    pub no_cache: bool,
    /// How many independent recipes build at once (`-j`); 0 counts as 1.
    pub jobs: usize,
    /// The `dev.kiln.run` label of the containers that run layers use:
    /// whoever cancels the build removes them by it. A fresh id when `None`.
    pub run_id: Option<String>,
    /// Cancels the build: it stops within about a second, removes the
    /// run's containers and temporary files, leaves no partial blob and no
    /// tag, and returns [`KilnError::Cancelled`]. Never cancelled by
    /// default.
    pub cancel: Cancel,
    /// `--cache-from docker://HOST/REPO`: registries whose shared layer
    /// cache a local miss is taken from (verified), first first.
    pub cache_from: Vec<String>,
    /// `--cache-to docker://HOST/REPO`: the registry each built layer's
    /// cache entry and blob are published to.
    pub cache_to: Option<String>,
    /// Build every run layer twice from the same parent and fail with
    /// [`KilnError::NotReproducible`], naming the files, when the two
    /// differ (`kiln build --check-reproducible`).
    pub check_reproducible: bool,
}

/// The build's stat cache, shared by the stages that hash on the blocking
/// pool. It is read from the store by the first stage that locks it, on
/// that stage's thread: a `rootfs:` base known by its stamp is walked
/// meanwhile, and never waits for it.
#[derive(Clone)]
struct SharedStat(Arc<LazyStat>);

/// What a [`SharedStat`] holds: the store it is read from, and once read,
/// the cache.
struct LazyStat {
    store: Store,
    cache: OnceLock<Mutex<StatCache>>,
}

impl SharedStat {
    /// The stat cache of `store`, not read yet.
    fn of(store: &Store) -> SharedStat {
        SharedStat(Arc::new(LazyStat {
            store: store.clone(),
            cache: OnceLock::new(),
        }))
    }
}

/// The stat cache behind `stat`, read first if no stage has read it (only
/// on the blocking pool: that reads a file); a stage that panicked holding
/// it left digests that are still true, so a poisoned lock is taken as it
/// is.
fn lock_stat(stat: &SharedStat) -> std::sync::MutexGuard<'_, StatCache> {
    let LazyStat { store, cache } = &*stat.0;
    cache
        .get_or_init(|| Mutex::new(StatCache::load(store)))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Recipes built so far in this run, by canonical recipe file: what
/// `recipe:` bases resolve to.
type BuiltRecipes = BTreeMap<std::path::PathBuf, kiln_image::Digest>;

/// Build `recipe` into `store` and tag it: exactly this value, whether it
/// was read from a file or made or changed in memory, and the value kept
/// beside the image is this one. Same recipe and inputs give the same
/// manifest digest, wherever and whenever it runs. A `recipe:` base is read
/// from disk and built first (and its own, down the chain).
///
/// Run layers run in `engine`; a recipe with one and no engine is
/// [`KilnError::NoEngine`] before any work starts
/// ([`needs_engine`](crate::needs_engine) says whether one is needed).
pub async fn build(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
) -> Result<BuildReport, KilnError> {
    if !matches!(recipe.image.base, BaseRef::Recipe { .. }) {
        let (store, options) = for_this_run(store, options);
        let result = build_one(
            &store,
            recipe,
            &options,
            engine,
            events,
            &BuiltRecipes::new(),
        )
        .await;
        return settle(result, &options, engine).await;
    }
    let graph = crate::graph::plan_recipes(vec![recipe.clone()])?;
    // The recipe asked for is the graph's first node.
    let mut reports = build_nodes(store, &graph, options, engine, events).await?;
    let at = reports.iter().position(|(n, _)| *n == 0);
    match at {
        Some(at) => Ok(reports.swap_remove(at).1),
        None => Err(KilnError::InvalidReference {
            reference: recipe.path.display().to_string(),
            reason: "nothing was built".into(),
        }),
    }
}

/// Build the recipes at `paths` and every recipe they are built on, each
/// once, dependencies first ([`crate::plan_graph`]). Reports come in build
/// order.
pub async fn build_all(
    store: &Store,
    paths: &[std::path::PathBuf],
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
) -> Result<Vec<BuildReport>, KilnError> {
    let graph = crate::graph::plan(paths)?;
    build_graph(store, &graph, options, engine, events).await
}

/// Build every recipe of `graph` ([`crate::plan_graph`],
/// [`crate::plan_recipes`]), each once, dependencies first: exactly the
/// values it holds. Reports come in build order.
pub async fn build_graph(
    store: &Store,
    graph: &BuildGraph,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
) -> Result<Vec<BuildReport>, KilnError> {
    let reports = build_nodes(store, graph, options, engine, events).await?;
    Ok(reports.into_iter().map(|(_, report)| report).collect())
}

/// The store handle and options one run works with: the handle carries the
/// run's token, and the run id is fixed now so that a cancelled run can
/// find its containers.
fn for_this_run(store: &Store, options: &BuildOptions) -> (Store, BuildOptions) {
    let options = BuildOptions {
        run_id: Some(options.run_id.clone().unwrap_or_else(new_run_id)),
        ..options.clone()
    };
    (store.with_cancel(&options.cancel), options)
}

/// [`cancel::settle`] for a build run with `options` from [`for_this_run`].
async fn settle<T>(
    result: Result<T, KilnError>,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
) -> Result<T, KilnError> {
    let run_id = options.run_id.as_deref().unwrap_or_default();
    cancel::settle(result, &options.cancel, engine, run_id).await
}

/// [`build_graph`], each report with the index of its recipe in the graph.
async fn build_nodes(
    store: &Store,
    graph: &BuildGraph,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
) -> Result<Vec<(usize, BuildReport)>, KilnError> {
    let (store, options) = for_this_run(store, options);
    let result = build_levels(&store, graph, &options, engine, events).await;
    settle(result, &options, engine).await
}

/// [`build_nodes`] once the run is set up: level by level, up to `jobs`
/// recipes of a level at once.
async fn build_levels(
    store: &Store,
    graph: &BuildGraph,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
) -> Result<Vec<(usize, BuildReport)>, KilnError> {
    // Refuse what cannot be built before building anything.
    for recipe in &graph.recipes {
        ensure_supported(recipe, Stage::Build)?;
    }
    let mut built = BuiltRecipes::new();
    let mut reports = Vec::with_capacity(graph.recipes.len());
    // Recipes of one level are independent: up to `jobs` build at once.
    let jobs = options.jobs.max(1);
    for level in &graph.levels {
        for chunk in level.chunks(jobs) {
            let builds = chunk
                .iter()
                .map(|&n| build_one(store, &graph.recipes[n], options, engine, events, &built));
            let done = futures_util::future::join_all(builds).await;
            for (&n, report) in chunk.iter().zip(done) {
                let report = report?;
                built.insert(graph.files[n].clone(), report.digest.clone());
                reports.push((n, report));
            }
        }
    }
    Ok(reports)
}

/// Build one recipe whose `recipe:` base (if any) is in `built`.
async fn build_one(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
    built: &BuiltRecipes,
) -> Result<BuildReport, KilnError> {
    plan::refuse(recipe, engine)?;
    // A build in progress is a root of gc: its lease keeps every blob it
    // writes or reuses until the tags name them (or a leak discards them).
    // Waiting for it (while gc runs) stops at once when cancelled.
    let lease = until_cancelled(&options.cancel, crate::store_lock::lease(store)).await?;
    let started = Instant::now();
    events.build_started(&recipe.image.name.to_string(), recipe.layers.len());
    // Run layers' containers are removed beside the later stages; the
    // build returns only once they are gone.
    let (removals, removing) = Removals::new();
    let stages = async move {
        let at = Stages {
            store,
            recipe,
            options,
            engine,
            events,
            removals: &removals,
        };
        let report = at.run(built, lease, started).await;
        drop(removals);
        report
    };
    let (report, removed) = futures_util::future::join(stages, removing).await;
    let report = report?;
    removed?;
    events.build_finished(&report);
    Ok(report)
}

/// What the stages of one build share.
struct Stages<'a, 'e> {
    store: &'a Store,
    recipe: &'a Recipe,
    options: &'a BuildOptions,
    engine: Option<&'e dyn Engine>,
    events: &'a dyn Events,
    removals: &'a Removals<'e>,
}

impl Stages<'_, '_> {
    /// Stages 1 to 7 of the build (see the module's doc), under `lease`,
    /// timed from `started`.
    async fn run(
        &self,
        built: &BuiltRecipes,
        lease: kiln_image::Lease,
        started: Instant,
    ) -> Result<BuildReport, KilnError> {
        let Stages {
            store,
            recipe,
            options,
            engine,
            events,
            removals,
        } = *self;
        let shared =
            crate::registry::SharedCache::open(&options.cache_from, options.cache_to.as_deref())?;
        // Every stage's file work runs on the blocking pool (crate::blocking):
        // what it needs is owned or shared, and it stops at a cancel itself.
        let plan = Arc::new(plan::plan(recipe, options)?);
        let owned = Arc::new(recipe.clone());
        let stat = SharedStat::of(store);
        let setting = overlap::Setting {
            store,
            engine,
            events,
            options,
            built,
            stat: &stat,
            removals,
        };
        // The file layers' contents are read, and the layers likely to
        // miss start being written, while the base resolves.
        let contents = async {
            let (recipe, for_parts, stat, owned_store) =
                (owned.clone(), plan.clone(), stat.clone(), store.clone());
            let (mut parts, last) = crate::blocking::run(move || {
                let parts = snapshot::parts(&recipe, &for_parts, &mut lock_stat(&stat))?;
                let last = explain::load_last(&owned_store, &for_parts.name);
                Ok::<_, KilnError>((parts, last))
            })
            .await?;
            let writes =
                early_writes::EarlyWrites::start(store, &mut parts, &last, plan.epoch, options);
            Ok::<_, KilnError>((parts, last, writes))
        };
        let (based, contents) = tokio::join!(
            overlap::base_and_first_layer(&setting, recipe, &plan),
            contents
        );
        // A base that failed is reported first, as when nothing overlapped.
        let ((base, first_run), (parts, last, writes)) = match (based, contents) {
            (Ok(based), Ok(contents)) => (based, contents),
            (Err(e), Ok((_, _, writes))) => {
                writes.settle().await;
                return Err(e);
            }
            (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
        };
        let (mut inputs, base) = {
            let plan = plan.clone();
            let taken = crate::blocking::run(move || {
                let inputs = snapshot::take(&plan, base.as_ref(), parts)?;
                Ok::<_, KilnError>((inputs, base))
            })
            .await;
            match taken {
                Ok(taken) => taken,
                Err(e) => {
                    writes.settle().await;
                    return Err(e);
                }
            }
        };
        let workshop = layers::Workshop {
            store,
            engine,
            events,
            no_cache: options.no_cache,
            shared: shared.as_ref(),
            check_reproducible: options.check_reproducible,
            removals,
        };
        let produced = layers::produce(
            &workshop,
            recipe,
            &plan,
            base.as_ref(),
            &mut inputs,
            &last,
            layers::Started { first_run, writes },
        )
        .await?;
        let base_report = base.as_ref().map(|b| BaseReport {
            reference: recipe.image.base.to_string(),
            digest: b.manifest_digest.clone(),
        });
        let to_publish: Vec<_> = inputs
            .snapshots
            .iter()
            .map(|s| s.key.clone())
            .zip(produced.records.iter().map(|r| r.blob.clone()))
            .collect();
        let image = {
            let (store, recipe, plan) = (store.clone(), owned.clone(), plan.clone());
            let records = produced.records;
            crate::blocking::run(move || assemble::assemble(&store, &recipe, &plan, base, records))
                .await?
        };
        let image = Arc::new(image);
        // Before the image gets a name: no declared secret may be in it.
        let base_layers = image.layers.len().saturating_sub(recipe.layers.len());
        let lease = leak::check(store, &owned, &image, base_layers, lease).await?;
        // A container that could not be removed fails the build before
        // the image is named.
        removals.settled().await?;
        let moved = {
            let (store, recipe, plan, image) = (store.clone(), owned, plan.clone(), image.clone());
            let snapshots = inputs.snapshots;
            crate::blocking::run(move || {
                record::record(&store, &recipe, &plan, &image, &lock_stat(&stat), snapshots)
            })
            .await?
        };
        if let Some(shared) = &shared {
            until_cancelled(&options.cancel, shared.publish(store, &to_publish)).await?;
        }
        drop(lease);

        let report = BuildReport {
            name: plan.name.clone(),
            digest: image.manifest.digest.clone(),
            tags: plan.tags.clone(),
            moved,
            base: base_report,
            layers: produced.reports,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        Ok(report)
    }
}
