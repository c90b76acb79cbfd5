//! Build one recipe into the store: base, layers, config, manifest, tags.

use std::collections::BTreeMap;
use std::time::Instant;

use kiln_cache::entry::{self, Lookup};
use kiln_cache::explain::{self, LastBuild, LayerSnapshot, Why};
use kiln_cache::key::{InputRecord, KeyInput, LayerKey};
use kiln_cache::stat::StatCache;
use kiln_engine::Engine;
use kiln_image::{
    BaseImage, EntryKind, ImageSpec, LayerBlob, LayerEntry, LayerRecord, RuntimeConfig, Store,
};
use kiln_recipe::{BaseRef, LayerKind, Recipe};

use crate::capability::{Stage, ensure_supported};
use crate::events::Events;
use crate::plan::{context_dir, file_layer_definition, file_layer_entries, recipe_dir};
use crate::reference::{self, ImageRef};
use crate::report::{BaseReport, BuildReport, LayerReport};
use crate::run_layer::{ImageSoFar, build_run_layer, read_run_secrets, run_layer_definition};
use crate::test_run::new_run_id;
use crate::{KilnError, stored_recipe};

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `SOURCE_DATE_EPOCH`: overrides the recipe's `epoch`.
    pub source_date_epoch: Option<u64>,
    /// Tags to give the image besides its version.
    pub extra_tags: Vec<String>,
    /// Build every layer anew, ignoring (but refreshing) the cache.
    pub no_cache: bool,
    /// How many independent recipes build at once (`-j`); 0 counts as 1.
    pub jobs: usize,
    /// The `dev.kiln.run` label of the containers that run layers use:
    /// whoever cancels the build removes them by it. A fresh id when `None`.
    pub run_id: Option<String>,
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

async fn load_base(
    store: &Store,
    recipe: &Recipe,
    built: &BuiltRecipes,
    engine: Option<&dyn Engine>,
) -> Result<Option<BaseImage>, KilnError> {
    match &recipe.image.base {
        BaseRef::Scratch => Ok(None),
        BaseRef::Registry {
            host,
            repository,
            tag,
            digest,
        } => {
            let digest = digest
                .as_deref()
                .map(str::parse::<kiln_image::Digest>)
                .transpose()
                .map_err(|e| KilnError::InvalidReference {
                    reference: recipe.image.base.to_string(),
                    reason: e.to_string(),
                })?;
            // Anonymous pulls; a tag is resolved to the digest the registry
            // serves, and every blob is verified as it streams in.
            let image = kiln_image::pull_registry(
                store,
                host,
                repository,
                tag.as_deref(),
                digest.as_ref(),
                kiln_image::RegistryAuth::Anonymous,
            )
            .await?;
            Ok(Some(image))
        }
        BaseRef::DockerDaemon { reference } => {
            let engine = engine.ok_or_else(|| KilnError::NoEngineForBase {
                base: recipe.image.base.to_string(),
            })?;
            // `docker save` into a temporary file in the store, then the
            // same import as any docker-archive: layers byte for byte.
            let tmp = tempfile::NamedTempFile::new_in(store.bookkeeping_dir())
                .or_else(|_| tempfile::NamedTempFile::new())
                .map_err(|source| KilnError::Io {
                    path: store.bookkeeping_dir(),
                    source,
                })?;
            engine
                .save_image(reference, tmp.path())
                .await
                .map_err(|e| match e {
                    kiln_engine::EngineError::NotFound { .. } => KilnError::InvalidReference {
                        reference: recipe.image.base.to_string(),
                        reason: "the container engine holds no such image".into(),
                    },
                    other => other.into(),
                })?;
            Ok(Some(kiln_image::import_docker_archive(
                store,
                tmp.path(),
                Some(reference),
            )?))
        }
        BaseRef::Recipe { path } => {
            let file = kiln_recipe::recipe_file(&recipe_dir(recipe).join(path));
            let file = std::fs::canonicalize(&file)
                .map_err(|source| KilnError::Io { path: file, source })?;
            let digest = built
                .get(&file)
                .ok_or_else(|| KilnError::InvalidReference {
                    reference: format!("recipe:{}", path.display()),
                    reason: "that recipe was not built first".into(),
                })?;
            Ok(Some(kiln_image::load_image(store, digest)?))
        }
        BaseRef::Oci { dir, reference } => Ok(Some(kiln_image::import_oci_layout(
            store,
            &recipe_dir(recipe).join(dir),
            reference.as_deref(),
        )?)),
        BaseRef::OciArchive { file, reference } => Ok(Some(kiln_image::import_oci_archive(
            store,
            &recipe_dir(recipe).join(file),
            reference.as_deref(),
        )?)),
        BaseRef::DockerArchive { file, reference } => Ok(Some(kiln_image::import_docker_archive(
            store,
            &recipe_dir(recipe).join(file),
            reference.as_deref(),
        )?)),
        BaseRef::Kiln { name, tag, digest } => {
            let image_ref = match (tag, digest) {
                (_, Some(d)) => format!("{name}@{d}"),
                (Some(t), None) => format!("{name}:{t}"),
                (None, None) => name.to_string(),
            };
            let ImageRef { digest, .. } = reference::resolve(store, &image_ref)?;
            Ok(Some(kiln_image::load_image(store, &digest)?))
        }
    }
}

/// Recipes built so far in this run, by canonical recipe file: what
/// `recipe:` bases resolve to.
type BuiltRecipes = BTreeMap<std::path::PathBuf, kiln_image::Digest>;

/// Build `recipe` into `store` and tag it. Same recipe and inputs give the
/// same manifest digest, wherever and whenever it runs. A `recipe:` base is
/// built first (and its own, down the chain).
///
/// Run layers run in `engine`; a recipe with one and no engine is
/// [`KilnError::NoEngine`] before any work starts.
pub async fn build(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
) -> Result<BuildReport, KilnError> {
    if !matches!(recipe.image.base, BaseRef::Recipe { .. }) {
        return build_one(store, recipe, options, engine, events, &BuiltRecipes::new()).await;
    }
    let mut reports = build_all(
        store,
        std::slice::from_ref(&recipe.path),
        options,
        engine,
        events,
    )
    .await?;
    // The graph puts the recipe asked for last: everything else is below it.
    reports.pop().ok_or_else(|| KilnError::InvalidReference {
        reference: recipe.path.display().to_string(),
        reason: "nothing was built".into(),
    })
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
                let digest = report
                    .digest
                    .parse()
                    .map_err(
                        |e: kiln_image::DigestParseError| KilnError::InvalidReference {
                            reference: report.digest.clone(),
                            reason: e.to_string(),
                        },
                    )?;
                built.insert(graph.recipes[n].path.clone(), digest);
                reports.push(report);
            }
        }
    }
    Ok(reports)
}

async fn build_one(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions,
    engine: Option<&dyn Engine>,
    events: &dyn Events,
    built: &BuiltRecipes,
) -> Result<BuildReport, KilnError> {
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
    let started = Instant::now();
    let name = recipe.image.name.to_string();
    let epoch = options
        .source_date_epoch
        .or(recipe.image.epoch)
        .unwrap_or(0);
    events.build_started(&name, recipe.layers.len());

    let base = load_base(store, recipe, built, engine).await?;
    let base_report = base.as_ref().map(|b| BaseReport {
        reference: recipe.image.base.to_string(),
        digest: b.manifest_digest.to_string(),
    });
    let context = context_dir(recipe);
    let mut stat = StatCache::load(store);
    let last = explain::load_last(store, &name);
    let mut parent = base
        .as_ref()
        .map_or_else(|| "scratch".to_owned(), |b| b.manifest_digest.to_string());
    let mut snapshots = Vec::with_capacity(recipe.layers.len());
    let mut layers = Vec::with_capacity(recipe.layers.len());
    let mut reports = Vec::with_capacity(recipe.layers.len());
    let config = runtime_config(recipe);
    // Read before any layer runs: a missing secret stops the build early.
    let run_secrets = read_run_secrets(recipe)?;
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let store_root = store.root().to_path_buf();
    // File layers that missed are written concurrently, each on its own
    // blocking task; the queue keeps them in layer order. A run layer needs
    // every layer below it, so the queue is drained before it runs.
    let mut queue: Vec<Queued> = Vec::new();
    for layer in &recipe.layers {
        events.layer_started(&name, &layer.name);
        let (snapshot, entries) = match &layer.kind {
            LayerKind::Files(files) => {
                let entries = file_layer_entries(&context, files)?;
                let snapshot = snapshot(
                    &mut stat,
                    &context,
                    &layer.name,
                    &parent,
                    epoch,
                    files,
                    &entries,
                )?;
                (snapshot, entries)
            }
            LayerKind::Run(run) => (
                run_snapshot(&layer.name, &parent, epoch, run, &config)?,
                Vec::new(),
            ),
        };
        let previous = last.layers.iter().find(|l| l.name == layer.name);
        let lookup = if options.no_cache {
            None
        } else {
            Some(entry::lookup(store, &snapshot.key)?)
        };
        let created_by = match &layer.kind {
            LayerKind::Files(_) => format!("kiln layer {}: files", layer.name),
            LayerKind::Run(run) => format!("kiln layer {}: run {}", layer.name, run.run),
        };
        let (pending, why) = match lookup {
            Some(Lookup::Hit(blob)) => (Pending::Cached(blob), Vec::new()),
            other => {
                let why = match other {
                    Some(Lookup::Miss(miss)) => explain::explain(previous, &snapshot, &miss),
                    _ => vec![Why::NoCache],
                };
                let pending = match (&layer.kind, engine) {
                    (LayerKind::Run(run), Some(engine)) => {
                        drain(
                            &mut queue,
                            store,
                            &store_root,
                            &name,
                            events,
                            &mut layers,
                            &mut reports,
                        )
                        .await?;
                        let so_far = ImageSoFar {
                            base: base.as_ref(),
                            layers: &layers,
                            config: &config,
                            epoch,
                        };
                        Pending::Built(
                            build_run_layer(
                                store,
                                engine,
                                &name,
                                &layer.name,
                                run,
                                &snapshot.key,
                                &so_far,
                                &run_secrets,
                                &run_id,
                            )
                            .await?,
                        )
                    }
                    (LayerKind::Run(_), None) => {
                        return Err(KilnError::NoEngine {
                            layer: layer.name.clone(),
                        });
                    }
                    (LayerKind::Files(_), _) => {
                        // Tar and gzip are CPU and disk work: off the async
                        // threads, beside the other layers' and builds'.
                        let store = store.clone();
                        Pending::Writing(tokio::task::spawn_blocking(move || {
                            kiln_image::write_layer(&store, entries, epoch)
                        }))
                    }
                };
                (pending, why)
            }
        };
        queue.push(Queued {
            layer: layer.name.clone(),
            created_by,
            key: snapshot.key.clone(),
            why,
            pending,
        });
        parent = snapshot.key.to_string();
        snapshots.push(snapshot);
    }
    drain(
        &mut queue,
        store,
        &store_root,
        &name,
        events,
        &mut layers,
        &mut reports,
    )
    .await?;

    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_owned(),
        kiln_image::rfc3339(epoch),
    );
    annotations.insert("org.opencontainers.image.title".to_owned(), name.clone());
    if let Some(version) = &recipe.image.version {
        annotations.insert(
            "org.opencontainers.image.version".to_owned(),
            version.clone(),
        );
    }
    let spec = ImageSpec {
        base,
        config,
        layers,
        created_epoch: epoch,
        annotations,
    };
    let built = kiln_image::assemble(store, &spec)?;
    let digest = built.manifest.digest.clone();
    // Before the image gets a name: no declared secret may be in it.
    let base_layers = built.layers.len().saturating_sub(recipe.layers.len());
    crate::leak::check(store, recipe, &built, base_layers)?;
    // Only a build that passed the leak check leaves bookkeeping behind: it
    // names host files, and a file's name may be what leaked.
    stat.save()?;
    explain::save_last(store, &name, &LastBuild { layers: snapshots })?;
    // The recipe is kept beside the image so that `kiln test NAME:TAG` knows
    // its checks. It holds secret sources, never secret values.
    stored_recipe::save(store, &digest, recipe)?;
    let tags = tags(recipe, options);
    for tag in &tags {
        store.set_ref(&format!("{name}:{tag}"), &built.manifest)?;
    }
    let report = BuildReport {
        name,
        digest: digest.to_string(),
        tags,
        base: base_report,
        layers: reports,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    events.build_finished(&report);
    Ok(report)
}

fn layer_report(name: &str, blob: &LayerBlob, why: &[Why]) -> LayerReport {
    LayerReport {
        name: name.to_owned(),
        digest: blob.digest.to_string(),
        size: blob.size,
        cached: why.is_empty(),
        why: why.iter().map(ToString::to_string).collect(),
    }
}

/// A run layer's cache key: the parent's key, the epoch and the layer's
/// definition (command, env, network, secret names). It has no inputs: the
/// command's output is a function of the image so far, which the parent's
/// key stands for.
fn run_snapshot(
    name: &str,
    parent: &str,
    epoch: u64,
    run: &kiln_recipe::RunLayer,
    config: &RuntimeConfig,
) -> Result<LayerSnapshot, KilnError> {
    let input = KeyInput {
        parent: parent.to_owned(),
        epoch,
        definition: run_layer_definition(run, config),
        inputs: Vec::new(),
    };
    Ok(LayerSnapshot {
        name: name.to_owned(),
        key: LayerKey::of(&input)?,
        input,
        sources: BTreeMap::new(),
    })
}

/// The layer's cache key and what it is made of: the parent's key, the
/// epoch, the recipe's definition and every entry as it will be stored,
/// files by content digest (from the stat cache when unchanged).
fn snapshot(
    stat: &mut StatCache,
    context: &std::path::Path,
    name: &str,
    parent: &str,
    epoch: u64,
    files: &kiln_recipe::FileLayer,
    entries: &[LayerEntry],
) -> Result<LayerSnapshot, KilnError> {
    // Hash the files the stat cache does not vouch for on every core first;
    // the loop below then finds them cached.
    stat.prefetch(entries.iter().filter_map(|e| match &e.kind {
        EntryKind::File { source } => Some(source.as_path()),
        _ => None,
    }));
    let mut inputs = Vec::with_capacity(entries.len());
    let mut sources = BTreeMap::new();
    for e in entries {
        let (kind, digest, target) = match &e.kind {
            EntryKind::File { source } => {
                let shown = source.strip_prefix(context).unwrap_or(source);
                sources.insert(e.path.clone(), shown.display().to_string());
                ("file", Some(stat.digest(source)?), None)
            }
            EntryKind::Dir => ("dir", None, None),
            EntryKind::Symlink { target } => ("symlink", None, Some(target.clone())),
        };
        inputs.push(InputRecord {
            path: e.path.clone(),
            kind: kind.to_owned(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            digest,
            target,
        });
    }
    let input = KeyInput {
        parent: parent.to_owned(),
        epoch,
        definition: file_layer_definition(files),
        inputs,
    };
    let key = LayerKey::of(&input)?;
    Ok(LayerSnapshot {
        name: name.to_owned(),
        key,
        input,
        sources,
    })
}

/// A layer's blob: reused, built by a run layer, or being written.
enum Pending {
    /// A cache hit.
    Cached(LayerBlob),
    /// Built already (a run layer).
    Built(LayerBlob),
    /// Being written on a blocking task.
    Writing(tokio::task::JoinHandle<Result<LayerBlob, kiln_image::ImageError>>),
}

/// A layer waiting, in order, for its blob.
struct Queued {
    layer: String,
    created_by: String,
    key: LayerKey,
    why: Vec<Why>,
    pending: Pending,
}

/// Wait for every queued layer in order; record each new blob in the cache
/// (only now that it is stored) and report it.
async fn drain(
    queue: &mut Vec<Queued>,
    store: &Store,
    store_root: &std::path::Path,
    image: &str,
    events: &dyn Events,
    layers: &mut Vec<LayerRecord>,
    reports: &mut Vec<LayerReport>,
) -> Result<(), KilnError> {
    for queued in queue.drain(..) {
        let blob = match queued.pending {
            Pending::Cached(blob) => blob,
            Pending::Built(blob) => {
                entry::record(store, &queued.key, &blob)?;
                blob
            }
            Pending::Writing(task) => {
                let blob = task.await.map_err(|e| KilnError::Io {
                    path: store_root.to_path_buf(),
                    source: std::io::Error::other(e),
                })??;
                entry::record(store, &queued.key, &blob)?;
                blob
            }
        };
        let report = layer_report(&queued.layer, &blob, &queued.why);
        events.layer_finished(image, &report);
        reports.push(report);
        layers.push(LayerRecord {
            blob,
            created_by: queued.created_by,
        });
    }
    Ok(())
}
