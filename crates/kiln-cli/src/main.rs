//! The `kiln` binary: flag definitions plus glue. Every command is a few
//! lines over the `kiln` facade; this is the only place that prints and picks
//! exit codes (docs/cli.md: 0 ok, 1 the work failed, 2 bad input, 3 the
//! environment lacks something).

/// `println!` that ends quietly on a closed stdout (see [`say`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (see [`tell`]).
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::tell(format_args!($($arg)*))
    };
}

mod args;
mod junit;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use kiln::{BuildOptions, Chain, Engine, KilnError, Recipe, Store};
use serde_json::json;

use args::{BuildFlags, Cli, Command, store_dir};
use render::Progress;

/// How a command ended badly: the exit code and what to tell the user.
enum Failure {
    /// A pipeline error; its kind picks the exit code.
    Kiln(KilnError),
    /// The work ran and failed (a check, a refused step), already reported.
    WorkFailed,
    /// Recipes that did not validate, already rendered.
    BadRecipes,
    /// A flag or argument the facade never saw.
    Usage(String),
    /// Interrupted by Ctrl-C after cleaning up.
    Interrupted,
}

impl From<KilnError> for Failure {
    fn from(e: KilnError) -> Self {
        match e {
            KilnError::Cancelled => Failure::Interrupted,
            other => Failure::Kiln(other),
        }
    }
}

type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    // A recipe error's first line is `FILE:LINE:COLUMN: message`: keep it
    // whole, however long the path, so that it can be read, grepped and
    // clicked; the terminal wraps what it must.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tell!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(report_failure(failure)),
    }
}

fn report_failure(failure: Failure) -> u8 {
    match failure {
        Failure::Kiln(KilnError::Recipe(e)) => {
            tell!("{:?}", miette::Report::new(e));
            2
        }
        Failure::Kiln(e) => {
            tell!("error: {}", Chain(&e));
            e.kind().exit_code()
        }
        Failure::WorkFailed => 1,
        Failure::BadRecipes => 2,
        Failure::Usage(message) => {
            tell!("error: {message}");
            2
        }
        Failure::Interrupted => {
            tell!("interrupted: the run's containers were removed");
            130
        }
    }
}

async fn run(command: Command) -> CmdResult {
    let common = command.common().clone();
    let store_path = store_dir(common.store.as_ref());
    let json = common.json;
    match command {
        Command::Check { recipes, args, .. } => check(&recipes, &args.map(), json),
        Command::Build { recipes, build, .. } => {
            let store = open_store(&store_path)?;
            // Render every root's diagnostics at once, then plan the graph
            // (recipe: bases built first, each recipe once).
            let args = build.args.map();
            load_all(&recipes, &args)?;
            let graph = kiln::plan_graph_with_args(&recipes, &args)?;
            let options = BuildOptions {
                cancel: cancel_on_ctrl_c(),
                ..build_options(&build)?
            };
            let progress = Progress::new().explaining(build.explain);
            // Only run layers need the engine: file-only recipes build
            // without one.
            let docker = if graph.recipes.iter().any(kiln::needs_engine) {
                Some(kiln::Docker::connect().await.map_err(KilnError::from)?)
            } else {
                None
            };
            let engine = docker.as_ref().map(|e| e as &dyn Engine);
            let reports = kiln::build_graph(&store, &graph, &options, engine, &progress).await?;
            if json {
                print_json(&json!({ "images": reports }));
            } else {
                for r in &reports {
                    say!("{} {}", r.name, r.digest);
                }
            }
            Ok(())
        }
        Command::Test {
            target,
            junit,
            args,
            ..
        } => {
            let store = open_store(&store_path)?;
            let engine = kiln::Docker::connect().await.map_err(KilnError::from)?;
            let options = kiln::TestOptions {
                run_id: Some(kiln::new_run_id()),
                cancel: cancel_on_ctrl_c(),
            };
            let (recipe, digest) = test_target(&store, &engine, &target, &args, &options).await?;
            let progress = Progress::new();
            let report = kiln::test(&store, &engine, &recipe, &digest, &options, &progress).await?;
            if let Some(path) = junit {
                write_file(&path, junit::render(std::slice::from_ref(&report)))?;
            }
            if json {
                print_json(&report);
            } else {
                let verdict = if report.passed { "passed" } else { "FAILED" };
                say!("{}@{} {verdict}", report.name, report.digest);
            }
            if report.passed {
                Ok(())
            } else {
                Err(Failure::WorkFailed)
            }
        }
        Command::Promote { image, channel, .. } => {
            let store = open_store(&store_path)?;
            let Some((name, digest)) = image.split_once('@') else {
                return Err(Failure::Usage(format!("{image:?}: write NAME@sha256:HEX")));
            };
            let digest = digest
                .parse()
                .map_err(|e: kiln::DigestParseError| Failure::Usage(e.to_string()))?;
            let resolved = kiln::resolve(&store, &format!("{name}@{digest}"))?;
            let moved = kiln::promote(&store, &resolved.name, &digest, &channel)?;
            print_move(json, &resolved.name, &channel, &moved);
            Ok(())
        }
        Command::Release {
            recipes,
            junit,
            build,
            ..
        } => {
            let store = open_store(&store_path)?;
            let recipes = load_all(&recipes, &build.args.map())?;
            for recipe in &recipes {
                kiln::ensure_supported(recipe, kiln::Stage::Release)?;
            }
            let engine = kiln::Docker::connect().await.map_err(KilnError::from)?;
            let options = BuildOptions {
                cancel: cancel_on_ctrl_c(),
                ..build_options(&build)?
            };
            let progress = Progress::new().explaining(build.explain);
            let mut releases = Vec::new();
            for recipe in &recipes {
                let run_id = kiln::new_run_id();
                let options = BuildOptions {
                    run_id: Some(run_id.clone()),
                    ..options.clone()
                };
                let release = kiln::release(&store, &engine, recipe, &options, &run_id, &progress);
                releases.push(release.await?);
            }
            if let Some(path) = junit {
                let tests: Vec<_> = releases.iter().map(|r| r.test.clone()).collect();
                write_file(&path, junit::render(&tests))?;
            }
            if json {
                print_json(&json!({ "releases": releases }));
            } else {
                for r in &releases {
                    let verdict = if r.test.passed { "passed" } else { "FAILED" };
                    let channels = if r.promoted.is_empty() {
                        "-".to_owned()
                    } else {
                        r.promoted.join(",")
                    };
                    say!(
                        "{} {} {verdict} promoted: {channels}",
                        r.build.name,
                        r.build.digest
                    );
                }
            }
            if releases.iter().all(|r| r.test.passed) {
                Ok(())
            } else {
                Err(Failure::WorkFailed)
            }
        }
        Command::Rollback { name, channel, .. } => {
            let store = open_store(&store_path)?;
            let moved = kiln::rollback(&store, &name, &channel)?;
            print_move(json, &name, &channel, &moved);
            Ok(())
        }
        Command::Images { .. } => {
            let store = open_store(&store_path)?;
            let images = kiln::images(&store)?;
            if json {
                print_json(&json!({ "images": images }));
            } else {
                say!(
                    "{:<20} {:<20} {:<16} {:<19} {:>10}  TEST",
                    "NAME",
                    "TAGS",
                    "CHANNELS",
                    "DIGEST",
                    "SIZE"
                );
                for i in &images {
                    let dash = |v: &[String]| {
                        if v.is_empty() {
                            "-".to_owned()
                        } else {
                            v.join(",")
                        }
                    };
                    say!(
                        "{:<20} {:<20} {:<16} {:<19} {:>10}  {}",
                        i.name,
                        dash(&i.tags),
                        dash(&i.channels),
                        &i.digest.as_str()[..19],
                        render::human_size(i.size),
                        serde_json::to_value(i.test)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        Command::Gc { keep, .. } => {
            let store = open_store(&store_path)?;
            let options = keep.map_or_else(kiln::GcOptions::default, kiln::GcOptions::keep);
            // What this store's runs left in the engine goes too; with no
            // engine reachable there is nothing of it to remove now.
            let engine_removed = match kiln::Docker::connect().await {
                Ok(engine) => Some(kiln::gc_engine(&store, &engine).await?),
                Err(e) => {
                    tell!(
                        "note: the engine's leftovers of this store were not looked for: {}",
                        Chain(&e)
                    );
                    None
                }
            };
            let outcome = kiln::gc(&store, &options)?;
            let report = &outcome.blobs;
            if json {
                print_json(&json!({
                    "removed": report.removed,
                    "freed_bytes": report.freed_bytes,
                    "kept": report.kept,
                    "dropped_images": outcome.dropped_images,
                    "engine_removed": engine_removed,
                }));
            } else {
                for image in &outcome.dropped_images {
                    say!("dropped {image}");
                }
                for name in engine_removed.iter().flatten() {
                    say!("removed {name} from the engine");
                }
                say!(
                    "removed {} blobs ({} bytes), kept {}",
                    report.removed.len(),
                    report.freed_bytes,
                    report.kept
                );
            }
            Ok(())
        }
        Command::Fsck { repair, .. } => {
            let store = open_store(&store_path)?;
            let options = if repair {
                kiln::FsckOptions::repair()
            } else {
                kiln::FsckOptions::default()
            };
            let report = kiln::fsck(&store, &options)?;
            if json {
                print_json(&json!({
                    "clean": report.is_clean(),
                    "blobs": report.blobs,
                    "unreferenced": report.unreferenced,
                    "writers_active": report.writers_active,
                    "problems": report.problems,
                }));
            } else {
                render::fsck(&report);
            }
            if report.is_clean() {
                Ok(())
            } else {
                Err(Failure::WorkFailed)
            }
        }
        Command::Inspect {
            reference,
            platform,
            ..
        } => {
            let inspection = if reference.starts_with("docker://") {
                kiln::inspect_registry(&reference, platform.as_ref()).await?
            } else if platform.is_some() {
                return Err(Failure::Usage(
                    "--platform is for a registry reference (docker://...): a stored image has one platform".into(),
                ));
            } else {
                kiln::inspect(&open_store(&store_path)?, &reference)?
            };
            print_json(&inspection);
            Ok(())
        }
        Command::Keygen {
            output_key_prefix, ..
        } => {
            let files = kiln::keygen(&output_key_prefix, cosign_password().as_bytes())?;
            if json {
                print_json(&json!({
                    "private_key": files.private_key,
                    "public_key": files.public_key,
                }));
            } else {
                tell!("Private key written to {}", files.private_key.display());
                tell!("Public key written to {}", files.public_key.display());
            }
            Ok(())
        }
        Command::Sign { reference, key, .. } => {
            let store = open_store(&store_path)?;
            let key = kiln::read_signing_key(&key, cosign_password().as_bytes())?;
            let report = kiln::sign(&store, &reference, &key).await?;
            if json {
                print_json(&report);
            } else {
                let what = if report.added {
                    "signed"
                } else {
                    "already signed with this key"
                };
                say!("{} {what} ({})", report.digest, report.signature_tag);
            }
            Ok(())
        }
        Command::Verify {
            reference,
            key,
            attestation,
            ..
        } => {
            let store = open_store(&store_path)?;
            let attestation = attestation
                .map(|a| a.parse::<kiln::PredicateKind>())
                .transpose()
                .map_err(Failure::Usage)?;
            let report = kiln::verify(&store, &reference, &key, attestation).await?;
            if json {
                print_json(&report);
            } else {
                say!(
                    "{} verified: {} {} with {}",
                    report.digest,
                    report.verified,
                    report.checked,
                    key.display()
                );
            }
            Ok(())
        }
        Command::Schema { .. } => {
            // Already JSON, so --json changes nothing.
            say!("{}", kiln::recipe_schema().trim_end());
            Ok(())
        }
        Command::Sbom { reference, .. } => {
            let store = open_store(&store_path)?;
            print_json(&kiln::sbom(&store, &reference)?);
            Ok(())
        }
        Command::Export {
            reference,
            destination,
            no_signatures,
            ..
        } => {
            let store = open_store(&store_path)?;
            let destination_text = destination;
            let destination: kiln::Destination = destination_text.parse()?;
            let options = if no_signatures {
                kiln::ExportOptions::without_attachments()
            } else {
                kiln::ExportOptions::default()
            }
            .with_cancel(cancel_on_ctrl_c());
            let exported = if destination.needs_engine() {
                let engine = kiln::Docker::connect().await.map_err(KilnError::from)?;
                kiln::export_with(&store, Some(&engine), &reference, &destination, &options).await?
            } else {
                kiln::export_with(&store, None, &reference, &destination, &options).await?
            };
            if json {
                print_json(&json!({
                    "reference": exported.reference,
                    "digest": exported.digest,
                    "destination": destination_text,
                    "name": exported.name,
                    "attachments": exported.attachments,
                }));
            } else {
                say!(
                    "{} {} -> {destination_text} ({})",
                    exported.reference,
                    exported.digest,
                    exported.name
                );
            }
            Ok(())
        }
    }
}

/// The private key's password, as cosign reads it: `COSIGN_PASSWORD`,
/// empty when unset.
fn cosign_password() -> String {
    std::env::var("COSIGN_PASSWORD").unwrap_or_default()
}

fn open_store(path: &Path) -> Result<Store, Failure> {
    Store::open(path).map_err(|e| Failure::Kiln(e.into()))
}

fn build_options(flags: &BuildFlags) -> Result<BuildOptions, Failure> {
    Ok(BuildOptions {
        no_cache: flags.no_cache,
        jobs: usize::from(flags.jobs),
        cache_from: flags.cache_from.clone(),
        cache_to: flags.cache_to.clone(),
        check_reproducible: flags.check_reproducible,
        ..options_with_tags(flags.tags.clone())?
    })
}

fn options_with_tags(extra_tags: Vec<String>) -> Result<BuildOptions, Failure> {
    // SOURCE_DATE_EPOCH is read here, not in the library, so embedders
    // choose whether the environment may change their digests.
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
            Failure::Usage(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds"
            ))
        })?),
        _ => None,
    };
    Ok(BuildOptions {
        source_date_epoch,
        extra_tags,
        no_cache: false,
        jobs: 1,
        run_id: None,
        cancel: kiln::Cancel::default(),
        cache_from: Vec::new(),
        cache_to: None,
        check_reproducible: false,
    })
}

/// Load every recipe with the build arguments `args`; render all their
/// diagnostics before giving up.
fn load_all(
    paths: &[PathBuf],
    args: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Recipe>, Failure> {
    let mut recipes = Vec::new();
    let mut bad = false;
    for path in paths {
        match kiln::load_recipe_with_args(path, args) {
            Ok(r) => recipes.push(r),
            Err(KilnError::Recipe(e)) => {
                tell!("{:?}", miette::Report::new(e));
                bad = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if bad {
        Err(Failure::BadRecipes)
    } else {
        Ok(recipes)
    }
}

/// `kiln check`: each recipe parsed and validated with `args` applied, as
/// `kiln build` reads it.
fn check(
    paths: &[PathBuf],
    args: &std::collections::BTreeMap<String, String>,
    json: bool,
) -> CmdResult {
    let mut results = Vec::new();
    let mut all_ok = true;
    for path in paths {
        match kiln_recipe::load_with_args(path, args) {
            Ok(recipe) => {
                if !json {
                    say!("ok {} ({})", path.display(), recipe.image.name);
                }
                results.push(json!({ "path": path, "name": recipe.image.name.as_str(), "ok": true, "errors": [] }));
            }
            Err(e) => {
                all_ok = false;
                let errors: Vec<_> = e
                    .diagnostics()
                    .iter()
                    .map(|d| json!({ "line": d.line, "column": d.column, "message": d.message }))
                    .collect();
                let errors = if errors.is_empty() {
                    vec![json!({ "message": Chain(&e).to_string() })]
                } else {
                    errors
                };
                results.push(json!({ "path": path, "ok": false, "errors": errors }));
                tell!("{:?}", miette::Report::new(e));
            }
        }
    }
    if json {
        print_json(&json!({ "recipes": results }));
    }
    if all_ok {
        Ok(())
    } else {
        Err(Failure::BadRecipes)
    }
}

/// A recipe path is built first; anything else names an image in the store.
async fn test_target(
    store: &Store,
    engine: &kiln::Docker,
    target: &str,
    args: &crate::args::BuildArgs,
    test: &kiln::TestOptions,
) -> Result<(Recipe, kiln::Digest), Failure> {
    let path = Path::new(target);
    if path.is_file() || path.join("kiln.toml").is_file() {
        let recipe = load_all(&[path.to_path_buf()], &args.map())?.remove(0);
        let options = BuildOptions {
            run_id: test.run_id.clone(),
            cancel: test.cancel.clone(),
            ..options_with_tags(Vec::new())?
        };
        let progress = Progress::new();
        let built = kiln::build(store, &recipe, &options, Some(engine), &progress).await?;
        return Ok((recipe, built.digest));
    }
    if !args.args.is_empty() {
        return Err(Failure::Usage(format!(
            "--arg is for a recipe, and {target} is an image of the store: it was built with its arguments (see its dev.kiln.arg.* annotations)"
        )));
    }
    let resolved = kiln::resolve(store, target)?;
    let recipe = kiln::recipe_of(store, &resolved.name, &resolved.digest)?;
    Ok((recipe, resolved.digest))
}

/// A token that Ctrl-C cancels: the library then stops the run, removes
/// its containers and temporary files, and returns `Cancelled`. Set up only
/// for commands that run long work, so that Ctrl-C elsewhere still simply
/// ends the process.
fn cancel_on_ctrl_c() -> kiln::Cancel {
    let cancel = kiln::Cancel::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    cancel
}

fn print_move(json: bool, name: &str, channel: &str, moved: &kiln::Move) {
    let from = moved.from.as_ref().map(ToString::to_string);
    if json {
        print_json(
            &json!({ "name": name, "channel": channel, "from": from, "to": moved.to.to_string() }),
        );
    } else {
        say!(
            "{name}:{channel} {} -> {}",
            from.as_deref().unwrap_or("(none)"),
            moved.to
        );
    }
}

/// Print one line on stdout. A closed stdout (`kiln images | head -1`)
/// ends the command quietly with exit 0: whoever closed it has read what it
/// wanted, and the work is already done and stored.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            tell!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// Print one line on stderr. Progress and diagnostics are for whoever
/// watches: a closed stderr (`kiln build 2>&1 >/dev/null | head -1`) loses
/// them, and the command goes on to its own end and exit code.
fn tell(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(line)
        .and_then(|()| stderr.write_all(b"\n"));
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => say!("{text}"),
        Err(e) => tell!("error: cannot render JSON: {e}"),
    }
}

fn write_file(path: &Path, text: String) -> CmdResult {
    std::fs::write(path, text).map_err(|source| {
        Failure::Kiln(KilnError::Io {
            path: path.to_owned(),
            source,
        })
    })
}
