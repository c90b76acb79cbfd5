//! Run layers: a command run in the container engine on the image built so
//! far; what it changed in the filesystem becomes exactly one layer.
//!
//! The image so far (base, layers, config) is assembled in the store and
//! loaded into the engine; the command runs in a container of it, with the
//! layer's build-time env and no network unless asked. When the engine is
//! local and offers the container's overlay folders, what changed is found
//! by walking the upper folder over the lower ones (kiln-image's `overlay`,
//! the same list the engine's differ gives) and read in place; else the
//! engine's list of changes is the truth and the content comes from a tar
//! of the container's whole filesystem. kiln-image's `change_set` turns
//! either into the same layer entries, written like every other layer. What
//! the engine did for its mount points (volumes, the secrets folder) is
//! taken out of the change list first (see `mount_points`). Each file read
//! from the upper folder is removed there as soon as its bytes are in the
//! layer, and the container on every return path, beside the rest of the
//! build (see `removals`): the build returns once it is gone.

use std::collections::BTreeMap;

use kiln_engine::{
    ChangeKind, ContainerId, ContainerSpec, Engine, MANAGED_LABEL, RUN_LABEL, ReadOnlyMount,
};
use kiln_image::change_set::{self, ChangeSetError, PathChange, PathChangeKind};
use kiln_image::overlay;
use kiln_image::{BaseImage, ImageSpec, LayerBlob, LayerRecord, RuntimeConfig, Store};
use kiln_recipe::{LayerKind, Recipe, RunCommand, RunLayer};
use serde_json::{Value, json};

use crate::KilnError;
use crate::engine_images::load_into_engine;
use crate::mount_points;
use crate::removals::{self, Removal, Removals};
use crate::secret::{self, SecretValue};

/// Paths the engine itself puts into every container (mount points for its
/// own files, its marker file, the secrets mount): never part of a layer,
/// whatever the command did to them.
const ENGINE_PATHS: &[&str] = &[
    "/.dockerenv",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/run/secrets",
    "/dev",
    "/proc",
    "/sys",
];

/// How many lines of a failed command's output its error shows.
const OUTPUT_TAIL_LINES: usize = 20;

/// The run layer's definition as canonical data, for its cache key: the
/// command, its env, its network and the NAMES of its secrets (a value
/// never reaches a key).
///
/// The configuration the command runs with (the config's env, the step's
/// user and working folder) is part of it too, and so are the volatile
/// globs and the recipe's volumes, which shape what is kept (what the
/// command writes into a volume is not): the parent's key stands for the
/// filesystem so far, not for the recipe's `[config]`. Volumes appear only
/// when there are some, so that the keys of recipes without any stay as
/// they were.
pub fn run_layer_definition(run: &RunLayer, config: &RuntimeConfig, volatile: &[String]) -> Value {
    let command = match &run.run {
        RunCommand::Shell(s) => json!({ "shell": s }),
        RunCommand::Exec(argv) => json!({ "exec": argv }),
    };
    let mut definition = json!({
        "run": command,
        "env": run.env,
        "network": run.network,
        "secrets": run.secrets,
        "config": {
            "env": config.env,
            "user": run.user,
            "workdir": run_workdir(run, config),
        },
        "volatile": volatile,
    });
    if !config.volumes.is_empty() {
        definition["volumes"] = json!(config.volumes);
    }
    definition
}

/// Where the step runs: its own `workdir`, else the config's, else `/`.
fn run_workdir(run: &RunLayer, config: &RuntimeConfig) -> String {
    run.workdir
        .clone()
        .or_else(|| config.workdir.clone())
        .unwrap_or_else(|| "/".to_owned())
}

/// The files a run layer leaves out: `[image] volatile` (or the default
/// list), as gitignore-style globs anchored at the image's root.
pub struct Volatile(ignore::gitignore::Gitignore);

impl Volatile {
    /// Compile `globs` (absolute in-image globs such as `/var/log/apt/**`).
    pub fn new(globs: &[String]) -> Result<Volatile, KilnError> {
        let mut builder = ignore::gitignore::GitignoreBuilder::new("/");
        for glob in globs {
            builder
                .add_line(None, glob)
                .map_err(|e| KilnError::InvalidVolatile {
                    glob: glob.clone(),
                    reason: e.to_string(),
                })?;
        }
        builder
            .build()
            .map(Volatile)
            .map_err(|e| KilnError::InvalidVolatile {
                glob: globs.join(", "),
                reason: e.to_string(),
            })
    }

    /// Whether the in-image `path` (or a folder above it) is volatile.
    pub fn matches(&self, path: &str, is_dir: bool) -> bool {
        self.0
            .matched_path_or_any_parents(std::path::Path::new(path), is_dir)
            .is_ignore()
    }
}

/// The image a run layer's command runs on.
pub struct ImageSoFar<'a> {
    /// The base, if any.
    pub base: Option<&'a BaseImage>,
    /// kiln's layers built before this one.
    pub layers: &'a [LayerRecord],
    /// The image's runtime configuration (env, user, workdir apply to the
    /// command).
    pub config: &'a RuntimeConfig,
    /// The build's epoch.
    pub epoch: u64,
    /// What the step's layer leaves out.
    pub volatile: &'a Volatile,
    /// The base as the engine holds it, when the store does not hold it
    /// yet (a `docker-daemon:` base being imported while the first step
    /// runs): the step runs on it by id, and `base` is not read. Only for a
    /// step that runs on the base itself (`runs_on_base`).
    pub engine_base: Option<EngineBase<'a>>,
}

/// A base image the engine holds, known by what the engine says of it.
#[derive(Debug, Clone, Copy)]
pub struct EngineBase<'a> {
    /// Its engine id (the digest of its config).
    pub id: &'a str,
    /// The volumes its config declares, cleaned.
    pub volumes: &'a [String],
}

/// Where a run layer's secrets appear in its container.
const SECRETS_DIR: &str = "/run/secrets";

/// Read every secret that some run layer of `recipe` lists, before any
/// layer runs: a missing one stops the build early.
pub fn read_run_secrets(recipe: &Recipe) -> Result<BTreeMap<String, SecretValue>, KilnError> {
    let mut secrets = BTreeMap::new();
    for layer in &recipe.layers {
        if let LayerKind::Run(run) = &layer.kind {
            for name in &run.secrets {
                if !secrets.contains_key(name) {
                    secrets.insert(name.clone(), secret::read(recipe, name)?);
                }
            }
        }
    }
    Ok(secrets)
}

/// A run layer's secrets as files on the host, for a read-only bind mount
/// at `/run/secrets`: `PRIVATE/secrets/NAME`, where PRIVATE is a fresh
/// 0700 folder only kiln's user can enter (the inner folder and files are
/// world-readable so that a command running as any user can read them
/// inside the container). When dropped, each file is overwritten with
/// zeros, then the folder is removed.
struct SecretFiles {
    private: tempfile::TempDir,
    /// Each file written and its length, for the overwrite.
    written: Vec<(std::path::PathBuf, usize)>,
}

impl Drop for SecretFiles {
    fn drop(&mut self) {
        for (path, len) in &self.written {
            overwrite_with_zeros(path, *len);
        }
    }
}

/// Overwrite the first `len` bytes of the file at `path` with zeros and
/// flush them to disk, so that removing it leaves no secret in its blocks.
/// Best effort: a file that cannot be opened is removed all the same.
fn overwrite_with_zeros(path: &std::path::Path, len: usize) {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    // The files are read-only (0o444): kiln, their owner, may make them
    // writable again.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = file
            .write_all(&vec![0u8; len])
            .and_then(|()| file.sync_data());
    }
}

impl SecretFiles {
    fn write(secrets: &[SecretValue]) -> Result<SecretFiles, KilnError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |path: std::path::PathBuf| move |source| KilnError::Io { path, source };
        // tempfile creates the folder with mode 0700.
        let private = tempfile::Builder::new()
            .prefix("kiln-secrets-")
            .tempdir()
            .map_err(io(std::env::temp_dir()))?;
        let dir = private.path().join("secrets");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(io(dir.clone()))?;
        // Built first, so that a failure part way still overwrites what was
        // written.
        let mut files = SecretFiles {
            private,
            written: Vec::new(),
        };
        for s in secrets {
            let path = dir.join(s.name());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&path)
                .map_err(io(path.clone()))?;
            files.written.push((path.clone(), s.expose().len()));
            file.write_all(s.expose()).map_err(io(path.clone()))?;
        }
        Ok(files)
    }

    fn mount(&self) -> ReadOnlyMount {
        ReadOnlyMount {
            source: self.private.path().join("secrets"),
            target: SECRETS_DIR.to_owned(),
        }
    }
}

/// Run `run` (layer `layer` of image `image`) on `so_far` in `engine` and
/// write what it changed as one layer blob into `store`. The secrets it
/// lists are taken from `secrets` (see [`read_run_secrets`]); its container
/// is labelled with `run_id`.
///
/// The container (and the temporary image it ran on) is removed beside the
/// rest of the build: its removal is handed to `removals`, which the build
/// awaits before it returns.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build_run_layer<'a>(
    store: &Store,
    engine: &'a dyn Engine,
    removals: &Removals<'a>,
    image: &str,
    layer: &str,
    run: &RunLayer,
    so_far: &ImageSoFar<'_>,
    secrets: &BTreeMap<String, SecretValue>,
    run_id: &str,
    check_reproducible: bool,
) -> Result<LayerBlob, KilnError> {
    let secrets: Vec<SecretValue> = run
        .secrets
        .iter()
        .filter_map(|name| secrets.get(name).cloned())
        .collect();
    // The base goes into the engine once, as its own image: this image
    // and later ones then send only kiln's layers.
    let held_base = match (
        so_far.engine_base,
        so_far.base.filter(|b| !b.layers.is_empty()),
    ) {
        (Some(held), _) => Some(held.id.to_owned()),
        (None, Some(base)) => Some(crate::engine_images::hold_base(store, engine, base).await?),
        (None, None) => None,
    };
    let (tag, temporary) = match held_base {
        // Nothing of kiln's below: the container runs on the base the
        // engine holds, and the config's env, user and workdir are given
        // to it directly; no image is written, loaded or untagged.
        Some(id) if runs_on_base(so_far) => (id, false),
        _ => {
            let spec = ImageSpec {
                platform: kiln_image::Platform::host(),
                base: so_far.base.cloned(),
                config: so_far.config.clone(),
                layers: so_far.layers.to_vec(),
                created_epoch: so_far.epoch,
                annotations: BTreeMap::new(),
            };
            // The temporary image's blobs are unreferenced: `kiln gc`
            // removes them.
            let owned = store.clone();
            let built = crate::blocking::run(move || kiln_image::assemble(&owned, &spec)).await?;
            // A name of this run's own: a build of the same image in
            // another run removes only its name, never this one's image.
            let tag = crate::engine_images::run_name(
                store,
                &format!("build-{image}"),
                built.manifest.digest.hex(),
            );
            // Removed below; a cancelled run's tag is removed by
            // cancel::settle.
            crate::cancel::remember_tag(run_id, &tag);
            let tag = load_into_engine(store, engine, &built.manifest.digest, tag).await?;
            (tag, true)
        }
    };
    let step = Step {
        store,
        engine,
        layer,
        run,
        so_far,
        tag: &tag,
        secrets: &secrets,
        run_id,
    };
    let (first, removed_first) = step.run().await;
    let mut containers = vec![removed_first];
    let result = match first {
        // `--check-reproducible`: the same step again from the same parent;
        // any difference is named.
        Ok(first) if check_reproducible => {
            let (second, removed_second) = step.run().await;
            containers.push(removed_second);
            match second {
                Ok(second) if second.digest == first.digest => Ok(first),
                Ok(second) => {
                    match kiln_image::layer_differences(store, &first.digest, &second.digest) {
                        Ok(paths) => Err(KilnError::NotReproducible {
                            layer: layer.to_owned(),
                            paths,
                        }),
                        Err(e) => Err(e.into()),
                    }
                }
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    // The containers go, then the temporary name, whatever happened (and
    // with it the image, once no container uses it): builds must not pile
    // up images. The held base stays.
    let run_id = run_id.to_owned();
    removals.defer(Box::pin(async move {
        let mut outcome = Ok(());
        for removed in containers {
            outcome = outcome.and(removed.await);
        }
        if temporary {
            let untagged = engine.remove_image(&tag).await;
            if untagged.is_ok() {
                crate::cancel::forget_tag(&run_id, &tag);
            }
            outcome = outcome.and(untagged.map_err(KilnError::from));
        }
        outcome
    }));
    result
}

/// Whether the step can run on the base image itself: no layer of kiln's
/// is below it, and the recipe adds no volume (the base image does not
/// declare it, so the engine would not mount it, and what the command
/// writes there would stay in the layer instead of going to the volume). Everything else of the image so far's config
/// that matters to the command (env, user, workdir, entrypoint) is given to
/// the container directly (see [`container_env`]).
pub(crate) fn runs_on_base(so_far: &ImageSoFar<'_>) -> bool {
    so_far.layers.is_empty() && so_far.config.volumes.is_empty()
}

/// The env a step's container gets on top of its image's: the config's
/// (already in an image assembled with it, needed when the step runs on
/// the bare base), then the step's own, which wins on a clash. Each name
/// appears once: the engine appends a repeated name it does not know from
/// the image instead of replacing it.
fn container_env(run: &RunLayer, config: &RuntimeConfig) -> Vec<(String, String)> {
    config
        .env
        .iter()
        .filter(|(k, _)| !run.env.contains_key(*k))
        .chain(&run.env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One run of a step: everything it needs to run in a container of `tag`.
struct Step<'s, 'e> {
    store: &'s Store,
    engine: &'e dyn Engine,
    layer: &'s str,
    run: &'s RunLayer,
    so_far: &'s ImageSoFar<'s>,
    tag: &'s str,
    secrets: &'s [SecretValue],
    run_id: &'s str,
}

impl<'e> Step<'_, 'e> {
    /// Run the step in a fresh container and capture its changes; the
    /// container's removal is returned, to be awaited (whatever the
    /// outcome).
    async fn run(&self) -> (Result<LayerBlob, KilnError>, Removal<'e>) {
        let secret_files = if self.secrets.is_empty() {
            None
        } else {
            match SecretFiles::write(self.secrets) {
                Ok(files) => Some(files),
                Err(e) => return (Err(e), removals::nothing()),
            }
        };
        run_in_container(self, secret_files).await
    }
}

/// Run the step in a container of `tag` and capture its changes; returns
/// that and the container's removal (which also removes the secrets' host
/// folder once nothing mounts it).
async fn run_in_container<'e>(
    step: &Step<'_, 'e>,
    secret_files: Option<SecretFiles>,
) -> (Result<LayerBlob, KilnError>, Removal<'e>) {
    let Step {
        engine,
        run,
        so_far,
        tag,
        secrets,
        run_id,
        ..
    } = *step;
    let (entrypoint, cmd) = match &run.run {
        RunCommand::Shell(s) => (vec!["/bin/sh".to_owned(), "-c".to_owned()], vec![s.clone()]),
        RunCommand::Exec(argv) => match argv.split_first() {
            Some((first, rest)) => (vec![first.clone()], rest.to_vec()),
            None => (Vec::new(), Vec::new()),
        },
    };
    let container = ContainerSpec {
        image: tag.to_owned(),
        env: container_env(run, so_far.config),
        labels: BTreeMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (RUN_LABEL.to_owned(), run_id.to_owned()),
        ]),
        network: run.network,
        entrypoint: Some(entrypoint),
        cmd: Some(cmd),
        // As a Dockerfile step before USER: the step's own user (root
        // unless it says), whatever the image runs as.
        user: Some(run.user.clone()),
        workdir: Some(run_workdir(run, so_far.config)),
        read_only_mounts: secret_files.iter().map(SecretFiles::mount).collect(),
        ..ContainerSpec::default()
    };
    let id = match engine.create_container(&container).await {
        Ok(id) => id,
        Err(e) => return (Err(e.into()), removals::nothing()),
    };
    let mounted = secret_files.is_some();
    // A secret of several lines cut by the engine's line limit would leave
    // its last lines: fetch as many more lines as a secret spans, redact the
    // whole, and only then keep the last OUTPUT_TAIL_LINES.
    let secret_lines = secrets
        .iter()
        .map(|s| s.expose().split(|&b| b == b'\n').count())
        .max()
        .unwrap_or(0);
    let log_lines = OUTPUT_TAIL_LINES + secret_lines;
    let result = run_and_capture(step, &id, mounted, log_lines).await;
    // The step's output is shown only with every secret it saw redacted.
    let result = result.map_err(|e| match e {
        KilnError::RunFailed {
            layer,
            code,
            output,
        } => KilnError::RunFailed {
            layer,
            code,
            output: last_lines(&secret::redact(&output, secrets), OUTPUT_TAIL_LINES),
        },
        other => other,
    });
    // Removed whatever happened; a failure to remove does not hide the
    // step's own error (the build reports the step's first).
    let removal = Box::pin(async move {
        let removed = engine.remove_container(&id).await;
        // The secrets' host folder goes once nothing mounts it.
        drop(secret_files);
        removed.map_err(KilnError::from)
    });
    (result, removal)
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let text = text.trim_end_matches('\n');
    let start = text
        .rmatch_indices('\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    text[start..].to_owned()
}

async fn run_and_capture(
    step: &Step<'_, '_>,
    id: &ContainerId,
    secrets_mounted: bool,
    log_lines: usize,
) -> Result<LayerBlob, KilnError> {
    let Step {
        store,
        engine,
        layer,
        so_far,
        ..
    } = *step;
    let (epoch, volatile) = (so_far.epoch, so_far.volatile);
    engine.start(id).await?;
    let code = engine.wait(id).await?;
    if code != 0 {
        let output = engine.logs_tail(id, log_lines).await?;
        return Err(KilnError::RunFailed {
            layer: layer.to_owned(),
            code,
            output,
        });
    }
    let io = |path: std::path::PathBuf| move |source| KilnError::Io { path, source };
    // The export and the staged files live in the store's bookkeeping
    // folder (same filesystem as the blobs) and go when this returns.
    let tmp = tempfile::Builder::new()
        .prefix("run-layer-")
        .tempdir_in(store.bookkeeping_dir())
        .or_else(|_| tempfile::tempdir())
        .map_err(io(store.bookkeeping_dir()))?;
    let staging = tmp.path().join("staged");
    std::fs::create_dir(&staging).map_err(io(staging.clone()))?;
    let change_set_error = |source| KilnError::ChangeSet {
        layer: layer.to_owned(),
        source,
    };
    // The upper folder holds exactly what changed: what changed is found
    // by walking it over the lower folders (the list the engine's differ
    // gives, a comparison of the filesystem before and after, without the
    // engine reading the whole filesystem twice: 1.5-2 s of a Debian run
    // layer, docs/benchmarks.md), and read in place. It stays valid until
    // the container is removed, after the layer is written.
    let walked = match engine.overlay_dirs(id).await? {
        Some(dirs) => match overlay::overlay_changes(&dirs.upper, &dirs.lowers) {
            Ok(changes) => Some((dirs.upper, changes)),
            // Overlay keeps something elsewhere: the engine's list and
            // export are the truth.
            Err(ChangeSetError::NotInChangesDir { .. }) => None,
            Err(e) => return Err(change_set_error(e)),
        },
        None => None,
    };
    let from_upper = match walked {
        Some((upper, changes)) => {
            let changes = without_mounts(engine, id, so_far, secrets_mounted, changes).await?;
            match change_set::change_set_entries_from_dir(&upper, &changes, &staging, ENGINE_PATHS)
            {
                Ok(entries) => Some((entries, upper)),
                Err(ChangeSetError::NotInChangesDir { .. }) => None,
                Err(e) => return Err(change_set_error(e)),
            }
        }
        None => None,
    };
    let (mut entries, upper) = match from_upper {
        Some((entries, upper)) => (entries, Some(upper)),
        None => {
            let changes = engine_changes(engine, id).await?;
            let changes = without_mounts(engine, id, so_far, secrets_mounted, changes).await?;
            let export = tmp.path().join("export.tar");
            engine.export_to_file(id, &export).await?;
            let entries = change_set::change_set_entries(&export, &changes, &staging, ENGINE_PATHS)
                .map_err(change_set_error)?;
            // The export is no longer needed: free its space before the
            // layer is written.
            std::fs::remove_file(&export).map_err(io(export.clone()))?;
            (entries, None)
        }
    };
    // Logs and caches a package manager rewrites on every run stay out, so
    // the same install gives the same layer.
    entries.retain(|e| !volatile.matches(&e.path, e.kind == kiln_image::EntryKind::Dir));
    let blob = match &upper {
        Some(upper) => write_freeing(store, entries, epoch, upper)?,
        None => kiln_image::write_layer(store, entries, epoch)?,
    };
    if let Some(upper) = upper {
        empty_upper_dir(&upper);
    }
    Ok(blob)
}

/// Write a run layer whose files are read in place from the container's
/// upper folder `upper`, removing each file there on another thread as
/// soon as its bytes are in the layer: nothing reads it again (the
/// container is removed next), and removing files costs mostly waiting for
/// the disk (on a filesystem that discards freed blocks), which then
/// overlaps the compression instead of following it (docs/benchmarks.md).
/// Only files below `upper` are removed.
fn write_freeing(
    store: &Store,
    entries: Vec<kiln_image::LayerEntry>,
    epoch: u64,
    upper: &std::path::Path,
) -> Result<LayerBlob, kiln_image::ImageError> {
    let (sender, paths) = std::sync::mpsc::channel::<std::path::PathBuf>();
    let remover = std::thread::Builder::new()
        .name("kiln-free".into())
        .spawn(move || {
            for path in paths {
                // Best effort: what is left goes with the container.
                let _ = std::fs::remove_file(path);
            }
        });
    let Ok(remover) = remover else {
        return kiln_image::write_layer(store, entries, epoch);
    };
    let mut release = |path: &std::path::Path| {
        if path.starts_with(upper) {
            let _ = sender.send(path.to_path_buf());
        }
    };
    let written = kiln_image::write_layer_releasing(store, entries, epoch, &mut release);
    drop(sender);
    let _ = remover.join();
    written
}

/// The engine's own list of what the container changed.
async fn engine_changes(
    engine: &dyn Engine,
    id: &ContainerId,
) -> Result<Vec<PathChange>, KilnError> {
    Ok(engine
        .changes(id)
        .await?
        .into_iter()
        .map(|c| PathChange {
            path: c.path,
            kind: match c.kind {
                ChangeKind::Added => PathChangeKind::Added,
                ChangeKind::Modified => PathChangeKind::Modified,
                ChangeKind::Deleted => PathChangeKind::Deleted,
            },
        })
        .collect())
}

/// `changes` without the engine's mount points and what the command wrote
/// into a volume: not the command's changes. The volumes are looked up
/// where the engine placed them; the secrets' folder is never read back
/// (its files hold the secrets).
async fn without_mounts(
    engine: &dyn Engine,
    id: &ContainerId,
    so_far: &ImageSoFar<'_>,
    secrets_mounted: bool,
    changes: Vec<PathChange>,
) -> Result<Vec<PathChange>, KilnError> {
    let mut mounts = mount_points::as_placed(engine, id, volumes(so_far), &changes).await?;
    if secrets_mounted {
        mounts.push(SECRETS_DIR.to_owned());
    }
    Ok(mount_points::without_mount_points(changes, &mounts))
}

/// Remove what the step wrote from its container's upper folder, once its
/// layer is written and only the container's removal is left: measured on
/// a loaded 2-core machine, the engine took 4.2-4.5 s to remove a container
/// that had written 60 MB, and 1.8-2.4 s when kiln removed the files first
/// (docs/benchmarks.md). Best effort: whatever is left, the engine removes
/// with the container.
fn empty_upper_dir(upper: &std::path::Path) {
    let Ok(children) = std::fs::read_dir(upper) else {
        return;
    };
    for child in children.flatten() {
        let path = child.path();
        let _ = match child.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// The volumes the engine mounts in the step's container: the image's
/// (the base's and `[config] volumes`, which the image the step runs on
/// declares), cleaned, each once.
fn volumes(so_far: &ImageSoFar<'_>) -> Vec<String> {
    let base = match so_far.engine_base {
        Some(held) => held.volumes.to_vec(),
        None => so_far
            .base
            .map(|b| mount_points::config_volumes(&b.config))
            .unwrap_or_default(),
    };
    mount_points::cleaned(
        base.iter()
            .chain(&so_far.config.volumes)
            .map(String::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_overwritten_with_zeros_then_removed_when_dropped() {
        let secrets = [
            SecretValue::new("db", b"s3cret-db-value".to_vec()),
            SecretValue::new("token", b"tok".to_vec()),
        ];
        let files = SecretFiles::write(&secrets).expect("written");
        let dir = files.mount().source;
        // A hard link outside the folder sees the same bytes after removal.
        let witness = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
        let linked = witness.path().join("db");
        std::fs::hard_link(dir.join("db"), &linked).expect("hard link");
        assert_eq!(std::fs::read(&linked).expect("read"), b"s3cret-db-value");
        drop(files);
        assert!(!dir.exists(), "the folder is removed");
        assert_eq!(std::fs::read(&linked).expect("read"), vec![0u8; 15]);
    }

    #[test]
    fn the_volumes_are_the_base_ones_and_the_recipe_ones_cleaned_each_once() {
        let base = BaseImage {
            manifest_digest: kiln_image::Digest::of(b"manifest"),
            manifest: json!({}),
            config: json!({ "config": { "Volumes": { "/var/lib/db/": {}, "/data": {} } } }),
            layers: Vec::new(),
            diff_ids: Vec::new(),
        };
        let config = RuntimeConfig {
            volumes: vec!["/data".into(), "/srv//a".into()],
            ..RuntimeConfig::default()
        };
        let volatile = Volatile::new(&[]).expect("compiles");
        let so_far = ImageSoFar {
            base: Some(&base),
            layers: &[],
            config: &config,
            epoch: 0,
            volatile: &volatile,
            engine_base: None,
        };
        assert_eq!(volumes(&so_far), ["/data", "/srv/a", "/var/lib/db"]);
    }

    #[test]
    fn the_default_volatile_list_takes_apt_and_dpkg_noise_only() {
        let globs = kiln_recipe::ImageSection::default_volatile();
        let volatile = Volatile::new(&globs).expect("the default list compiles");
        for noise in [
            "/var/log/apt/history.log",
            "/var/log/apt/term.log",
            "/var/log/dpkg.log",
            "/var/log/alternatives.log",
            "/var/cache/ldconfig/aux-cache",
            "/var/cache/apt/pkgcache.bin",
            "/var/cache/debconf/config.dat-old",
            "/var/lib/dpkg/status-old",
        ] {
            assert!(volatile.matches(noise, false), "{noise}");
        }
        for kept in [
            "/var/log",
            "/var/lib/dpkg/status",
            "/var/cache/debconf/config.dat",
            "/usr/sbin/nginx",
            "/var/cache/apt/archives/partial",
            "/etc/apt/sources.list",
        ] {
            assert!(!volatile.matches(kept, false), "{kept}");
        }
        let own = Volatile::new(&["/stamp".to_owned()]).expect("compiles");
        assert!(own.matches("/stamp", false));
        assert!(!own.matches("/var/log/dpkg.log", false));
    }
}
