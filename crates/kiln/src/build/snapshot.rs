//! Stage 3, snapshot the inputs: every layer's cache key and what it is
//! made of, from the parent's key, the epoch, the layer's definition and
//! (for file layers) every entry as it will be stored, files by content
//! digest. Keys chain: each layer's parent is the layer below it, the first
//! one's the base's manifest digest (or `scratch`). So it takes two steps:
//! [`parts`] reads what each layer is made of while the base resolves (a
//! file layer's contents need no base), and [`take`] chains the keys once
//! the base is known.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_cache::explain::LayerSnapshot;
use kiln_cache::key::{InputRecord, KeyInput, LayerKey};
use kiln_cache::stat::StatCache;
use kiln_image::{BaseImage, EntryKind, FileMetadata, LayerEntry};
use kiln_recipe::{LayerKind, Recipe};

use super::plan::Plan;
use crate::KilnError;
use crate::plan::{file_layer_definition, file_layer_entries};
use crate::run_layer::run_layer_definition;

/// Every layer's snapshot, in recipe order, and the entries each file layer
/// writes (empty for run layers and for a file layer already being written,
/// see [`super::early_writes`]).
pub(super) struct Inputs {
    /// One snapshot per layer of the recipe.
    pub snapshots: Vec<LayerSnapshot>,
    /// One list of entries per layer of the recipe.
    pub entries: Vec<Vec<LayerEntry>>,
}

/// What a file layer is made of, whatever it is laid on: its entries as
/// they will be stored and everything of its key but the parent. A file
/// layer's bytes depend on nothing else, so it can be written before its
/// base is known.
pub(super) struct Contents {
    /// The entries, as [`file_layer_entries`] gives them.
    pub entries: Vec<LayerEntry>,
    /// The recipe's definition of the layer.
    pub definition: serde_json::Value,
    /// Every entry as it will be stored, files by content digest.
    pub inputs: Vec<InputRecord>,
    /// For messages: in-image path → source path relative to the context.
    pub sources: BTreeMap<String, String>,
}

impl Contents {
    /// Whether `previous` (the same layer in an earlier build) was made of
    /// exactly this, on whatever parent, with entries at `epoch`.
    pub(super) fn same_as(&self, previous: &LayerSnapshot, epoch: u64) -> bool {
        previous.input.epoch == epoch
            && previous.input.definition == self.definition
            && previous.input.inputs == self.inputs
    }
}

/// One layer of a recipe, ready to be keyed once its parent is known.
pub(super) struct Part {
    /// The layer's name.
    name: String,
    /// What it is made of.
    kind: PartKind,
}

/// What a [`Part`] is made of.
enum PartKind {
    /// A file layer's contents.
    Files(Contents),
    /// A run layer: its key rests on its definition alone.
    Run(kiln_recipe::RunLayer),
}

impl Part {
    /// The file layer's contents, if this is one.
    pub(super) fn files_mut(&mut self) -> Option<&mut Contents> {
        match &mut self.kind {
            PartKind::Files(contents) => Some(contents),
            PartKind::Run(_) => None,
        }
    }

    /// The layer's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

/// Every layer of `recipe` as a [`Part`], file layers with their
/// [`Contents`]; `stat` vouches for files unchanged since they were last
/// hashed.
pub(super) fn parts(
    recipe: &Recipe,
    plan: &Plan,
    stat: &mut StatCache,
) -> Result<Vec<Part>, KilnError> {
    let mut parts = Vec::with_capacity(recipe.layers.len());
    for (index, layer) in recipe.layers.iter().enumerate() {
        let kind = match &layer.kind {
            LayerKind::Run(run) => PartKind::Run(run.clone()),
            LayerKind::Files(files) => {
                let entries = file_layer_entries(&plan.context, files)
                    .map_err(|e| located(recipe, index, files, e))?;
                let (inputs, sources) =
                    input_records(stat, &plan.context, &entries, &FileMetadata::new())?;
                PartKind::Files(Contents {
                    entries,
                    definition: file_layer_definition(files),
                    inputs,
                    sources,
                })
            }
        };
        parts.push(Part {
            name: layer.name.clone(),
            kind,
        });
    }
    Ok(parts)
}

/// Snapshot every layer of the recipe, its `parts` ([`parts`]), on top of
/// `base`. Keys chain: a layer's parent is the layer below it.
pub(super) fn take(
    plan: &Plan,
    base: Option<&BaseImage>,
    parts: Vec<Part>,
) -> Result<Inputs, KilnError> {
    let mut parent = base.map_or_else(|| "scratch".to_owned(), |b| b.manifest_digest.to_string());
    let mut snapshots = Vec::with_capacity(parts.len());
    let mut all_entries = Vec::with_capacity(parts.len());
    for Part { name, kind } in parts {
        let (snapshot, entries) = match kind {
            PartKind::Files(contents) => {
                let input = KeyInput {
                    parent: parent.clone(),
                    epoch: plan.epoch,
                    definition: contents.definition,
                    inputs: contents.inputs,
                };
                let snapshot = LayerSnapshot {
                    name,
                    key: LayerKey::of(&input)?,
                    input,
                    sources: contents.sources,
                };
                (snapshot, contents.entries)
            }
            PartKind::Run(run) => (run_snapshot(&name, &parent, plan, &run)?, Vec::new()),
        };
        parent = snapshot.key.to_string();
        snapshots.push(snapshot);
        all_entries.push(entries);
    }
    Ok(Inputs {
        snapshots,
        entries: all_entries,
    })
}

/// A copy's error about its `src` (missing, no match for a glob, leading
/// out of the context, not fitting `dest`) located at that `src` in the
/// recipe, so that it reads `kiln.toml:LINE:COLUMN: ...` like a parse
/// error. Any other error, or a recipe file that no longer holds the value,
/// is returned as it was.
fn located(
    recipe: &Recipe,
    index: usize,
    files: &kiln_recipe::FileLayer,
    error: KilnError,
) -> KilnError {
    use kiln_image::ImageError as E;
    use kiln_recipe::KeyStep::{Index, Key};
    let (src, label) = match &error {
        KilnError::Image(E::NoMatch { src, .. }) => (src, "matches no file"),
        KilnError::Image(E::SourceMissing { src, .. }) => (src, "does not exist"),
        KilnError::Image(E::ContextEscape { src, .. }) => (src, "leaves the context"),
        KilnError::Image(E::InvalidCopy { src, .. }) => (src, "cannot be copied"),
        _ => return error,
    };
    let Some(file) = files.files.iter().position(|f| &f.src == src) else {
        return error;
    };
    let Ok(text) = std::fs::read_to_string(&recipe.path) else {
        return error;
    };
    let at = [
        Key("layer"),
        Index(index),
        Key("files"),
        Index(file),
        Key("src"),
    ];
    match kiln_recipe::RecipeError::at_value(&recipe.path, &text, &at, label, error.to_string()) {
        Some(e) => KilnError::Recipe(e),
        None => error,
    }
}

/// A run layer's cache key: the parent's key, the epoch and the layer's
/// definition (command, env, network, secret names). It has no inputs: the
/// command's output is a function of the image so far, which the parent's
/// key stands for.
fn run_snapshot(
    name: &str,
    parent: &str,
    plan: &Plan,
    run: &kiln_recipe::RunLayer,
) -> Result<LayerSnapshot, KilnError> {
    let input = KeyInput {
        parent: parent.to_owned(),
        epoch: plan.epoch,
        definition: run_layer_definition(run, &plan.config, &plan.volatile_globs),
        inputs: Vec::new(),
    };
    Ok(LayerSnapshot {
        name: name.to_owned(),
        key: LayerKey::of(&input)?,
        input,
        sources: BTreeMap::new(),
    })
}

/// Every entry as it will be stored, files by content digest (from the
/// stat cache when unchanged, hashed on every core otherwise), and the host
/// source of each file (shown relative to `context`). `noted` holds the
/// metadata of files a walk has just read, so that they are not stat-ed
/// again; any other file is.
pub(super) fn input_records(
    stat: &mut StatCache,
    context: &Path,
    entries: &[LayerEntry],
    noted: &FileMetadata,
) -> Result<(Vec<InputRecord>, BTreeMap<String, String>), KilnError> {
    stat.prefetch_noted(entries.iter().filter_map(|e| match &e.kind {
        EntryKind::File { source } => Some((source.as_path(), noted.get(source))),
        _ => None,
    }));
    let mut inputs = Vec::with_capacity(entries.len());
    let mut sources = BTreeMap::new();
    for e in entries {
        let (kind, digest, target) = match &e.kind {
            EntryKind::File { source } => {
                let shown = source.strip_prefix(context).unwrap_or(source);
                sources.insert(e.path.clone(), shown.display().to_string());
                let digest = match noted.get(source) {
                    Some(meta) => stat.digest_noted(source, meta)?,
                    None => stat.digest(source)?,
                };
                ("file", Some(digest), None)
            }
            EntryKind::Dir => ("dir", None, None),
            EntryKind::Symlink { target } => ("symlink", None, Some(target.clone())),
            EntryKind::HardLink { target } => ("hardlink", None, Some(target.clone())),
            EntryKind::CharDevice { major, minor } => {
                ("char", None, Some(format!("{major},{minor}")))
            }
            EntryKind::BlockDevice { major, minor } => {
                ("block", None, Some(format!("{major},{minor}")))
            }
            EntryKind::Fifo => ("fifo", None, None),
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
    Ok((inputs, sources))
}

/// The content digest of each file among `inputs`, by in-image path: what
/// the layer writer checks the bytes it writes against.
pub(super) fn file_digests(inputs: &[InputRecord]) -> BTreeMap<String, kiln_image::Digest> {
    inputs
        .iter()
        .filter_map(|i| Some((i.path.clone(), i.digest.clone()?)))
        .collect()
}
