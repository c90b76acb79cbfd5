//! Stage 4, produce the layers: each layer is looked up in the cache by
//! its key; a miss is built. File layers that missed are written
//! concurrently, each on its own blocking task; a queue keeps them in layer
//! order. A run layer needs every layer below it, so the queue is drained
//! before it runs. A new blob enters the cache only once it is stored.

use std::collections::VecDeque;

use kiln_cache::entry::{self, Lookup};
use kiln_cache::explain::{self, LastBuild, Why};
use kiln_cache::key::LayerKey;
use kiln_engine::Engine;
use kiln_image::{BaseImage, LayerBlob, LayerRecord, Store};
use kiln_recipe::{LayerKind, Recipe};

use super::early_writes::{EarlyWrites, Writing, write_files};
use super::plan::Plan;
use super::snapshot::Inputs;
use crate::KilnError;
use crate::cancel::until_cancelled;
use crate::events::Events;
use crate::removals::Removals;
use crate::report::LayerReport;
use crate::run_layer::{ImageSoFar, build_run_layer};

/// The layers a build produced, in recipe order.
pub(super) struct Produced {
    /// What the image is assembled from.
    pub records: Vec<LayerRecord>,
    /// What the build reports.
    pub reports: Vec<LayerReport>,
}

/// Where the produce stage works and whom it tells.
pub(super) struct Workshop<'a, 'e> {
    /// The store blobs and cache entries go to.
    pub store: &'a Store,
    /// The engine run layers run in.
    pub engine: Option<&'e dyn Engine>,
    /// Who hears of each layer.
    pub events: &'a dyn Events,
    /// Build every layer anew (`--no-cache`).
    pub no_cache: bool,
    /// Registries a local miss is looked up in (`--cache-from`).
    pub shared: Option<&'a crate::registry::SharedCache>,
    /// Build every run layer twice and refuse differences
    /// (`--check-reproducible`); run layers then skip the cache.
    pub check_reproducible: bool,
    /// Where run layers hand the removal of their containers.
    pub removals: &'a Removals<'e>,
}

/// What was started before the layers' keys were known.
pub(super) struct Started {
    /// The first layer, a run layer already run while the base was
    /// imported (see `overlap`): it stands for that layer when the cache
    /// misses or is not asked; a hit is taken instead, as if the layer had
    /// not run.
    pub first_run: Option<LayerBlob>,
    /// File layers being written since the base began to resolve (see
    /// `early_writes`): a miss takes its write.
    pub writes: EarlyWrites,
}

/// Produce every layer of `recipe` from its `inputs`, taking what was
/// `started`; `last` is the previous build of the same image, to explain a
/// cache miss.
///
/// On failure (a cancel included) the layers still being written are
/// waited for: they stop at their next write, and their temporary files are
/// gone when this returns. So are the early writes no layer took.
pub(super) async fn produce(
    at: &Workshop<'_, '_>,
    recipe: &Recipe,
    plan: &Plan,
    base: Option<&BaseImage>,
    inputs: &mut Inputs,
    last: &LastBuild,
    started: Started,
) -> Result<Produced, KilnError> {
    let Started {
        first_run,
        mut writes,
    } = started;
    let mut queue = VecDeque::new();
    let result = produce_into(
        at,
        recipe,
        plan,
        base,
        inputs,
        last,
        first_run,
        &mut writes,
        &mut queue,
    )
    .await;
    if result.is_err() {
        for queued in queue {
            if let Pending::Writing(task) = queued.pending {
                // Its own outcome no longer matters: the build failed.
                let _ = task.await;
            }
        }
    }
    writes.settle().await;
    result
}

/// [`produce`], queueing layers being written in `queue`.
#[allow(clippy::too_many_arguments)]
async fn produce_into(
    at: &Workshop<'_, '_>,
    recipe: &Recipe,
    plan: &Plan,
    base: Option<&BaseImage>,
    inputs: &mut Inputs,
    last: &LastBuild,
    mut ran_early: Option<LayerBlob>,
    writes: &mut EarlyWrites,
    queue: &mut VecDeque<Queued>,
) -> Result<Produced, KilnError> {
    let store = at.store;
    let name = &plan.name;
    let epoch = plan.epoch;
    let mut layers = Vec::with_capacity(recipe.layers.len());
    let mut reports = Vec::with_capacity(recipe.layers.len());
    for (index, ((layer, snapshot), entries)) in recipe
        .layers
        .iter()
        .zip(&inputs.snapshots)
        .zip(inputs.entries.iter_mut())
        .enumerate()
    {
        // Only the first layer can have run early; it was announced when it
        // started. On a cache hit, what it built is left to gc.
        let early = ran_early.take();
        if early.is_none() {
            at.events.layer_started(name, &layer.name);
        }
        let previous = last.layers.iter().find(|l| l.name == layer.name);
        let rebuild =
            at.no_cache || (at.check_reproducible && matches!(layer.kind, LayerKind::Run(_)));
        let lookup = if rebuild {
            None
        } else {
            let mut found = entry::lookup(store, &snapshot.key)?;
            if let (Lookup::Miss(_), Some(shared)) = (&found, at.shared) {
                if let Some(blob) = shared.fetch(store, &snapshot.key).await? {
                    found = Lookup::Hit(blob);
                }
            }
            Some(found)
        };
        let created_by = match &layer.kind {
            LayerKind::Files(_) => format!("kiln layer {}: files", layer.name),
            LayerKind::Run(run) => format!("kiln layer {}: run {}", layer.name, run.run),
        };
        let (pending, why) = match lookup {
            Some(Lookup::Hit(blob)) => (Pending::Cached(blob), Vec::new()),
            other => {
                let why = match other {
                    Some(Lookup::Miss(miss)) => explain::explain(previous, snapshot, &miss),
                    _ => vec![Why::NoCache],
                };
                let pending = match (&layer.kind, at.engine, early) {
                    (LayerKind::Run(_), _, Some(blob)) => Pending::Built(blob),
                    (LayerKind::Run(run), Some(engine), None) => {
                        drain(queue, store, name, at.events, &mut layers, &mut reports).await?;
                        let so_far = ImageSoFar {
                            base,
                            layers: &layers,
                            config: &plan.config,
                            epoch,
                            volatile: &plan.volatile,
                            engine_base: None,
                        };
                        let built = build_run_layer(
                            store,
                            engine,
                            at.removals,
                            name,
                            &layer.name,
                            run,
                            &so_far,
                            &plan.run_secrets,
                            &plan.run_id,
                            at.check_reproducible,
                        );
                        Pending::Built(until_cancelled(store.cancel(), built).await?)
                    }
                    (LayerKind::Run(_), None, None) => {
                        return Err(KilnError::NoEngine {
                            layer: layer.name.clone(),
                        });
                    }
                    (LayerKind::Files(_), _, _) => match writes.take(index) {
                        Some(write) => Pending::Writing(write),
                        None => {
                            // Each file is checked on the bytes written
                            // against the digest its key was made from.
                            let entries = std::mem::take(entries);
                            let expected = super::snapshot::file_digests(&snapshot.input.inputs);
                            Pending::Writing(write_files(store, entries, epoch, expected))
                        }
                    },
                };
                (pending, why)
            }
        };
        queue.push_back(Queued {
            layer: layer.name.clone(),
            created_by,
            key: snapshot.key.clone(),
            why,
            pending,
        });
    }
    drain(queue, store, name, at.events, &mut layers, &mut reports).await?;
    Ok(Produced {
        records: layers,
        reports,
    })
}

fn layer_report(name: &str, blob: &LayerBlob, why: &[Why]) -> LayerReport {
    LayerReport {
        name: name.to_owned(),
        digest: blob.digest.clone(),
        size: blob.size,
        cached: why.is_empty(),
        why: why.iter().map(ToString::to_string).collect(),
    }
}

/// A layer's blob: reused, built by a run layer, or being written.
enum Pending {
    /// A cache hit.
    Cached(LayerBlob),
    /// Built already (a run layer).
    Built(LayerBlob),
    /// Being written on a blocking task.
    Writing(Writing),
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
    queue: &mut VecDeque<Queued>,
    store: &Store,
    image: &str,
    events: &dyn Events,
    layers: &mut Vec<LayerRecord>,
    reports: &mut Vec<LayerReport>,
) -> Result<(), KilnError> {
    while let Some(queued) = queue.pop_front() {
        let blob = match queued.pending {
            Pending::Cached(blob) => blob,
            Pending::Built(blob) => {
                entry::record(store, &queued.key, &blob)?;
                blob
            }
            Pending::Writing(task) => {
                let blob = task.await.map_err(|e| KilnError::Io {
                    path: store.root().to_path_buf(),
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
