//! A Rust tool that embeds kiln: build a recipe, test it in the container
//! engine, promote it and try a rollback, with its own `Events` sink and
//! Ctrl-C cancelling the run (containers and temporary files removed).
//!
//! ```text
//! cargo run -p kiln --example embed -- images/hello /tmp/kiln-store
//! ```
//!
//! It checks what it saw: every layer and check reported once, the test
//! result and the promotion reported, and exits non-zero otherwise, so that
//! CI (`cargo xtask ci`) runs it as a test of the library against the real
//! engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use kiln::{
    BuildOptions, BuildReport, Cancel, CheckOutcome, Digest, Docker, ErrorKind, KilnError,
    LayerReport, Move, Store, TestOptions, TestReport,
};

/// Everything the run reported, kept to print and to check at the end.
/// Callbacks may come from several threads: the sink is behind a lock.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
}

impl Log {
    fn push(&self, line: String) {
        eprintln!("  [event] {line}");
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    fn count(&self, prefix: &str) -> usize {
        self.lines
            .lock()
            .map(|l| l.iter().filter(|l| l.starts_with(prefix)).count())
            .unwrap_or(0)
    }
}

impl kiln::CheckEvents for Log {
    fn check_started(&self, name: &str) {
        self.push(format!("check started {name}"));
    }
    fn check_finished(&self, outcome: &CheckOutcome) {
        let verdict = if outcome.passed { "passed" } else { "failed" };
        self.push(format!("check finished {} {verdict}", outcome.name));
    }
}

impl kiln::Events for Log {
    fn build_started(&self, image: &str, layers: usize) {
        self.push(format!("build started {image} ({layers} layers)"));
    }
    fn layer_started(&self, _image: &str, layer: &str) {
        self.push(format!("layer started {layer}"));
    }
    fn layer_finished(&self, _image: &str, layer: &LayerReport) {
        let how = if layer.cached { "cached" } else { "built" };
        self.push(format!(
            "layer finished {} {how} {}",
            layer.name, layer.digest
        ));
    }
    fn build_finished(&self, report: &BuildReport) {
        self.push(format!("build finished {} {}", report.name, report.digest));
    }
    fn loading_image(&self, image: &str, digest: &Digest) {
        self.push(format!("loading {image}@{}", digest.short()));
    }
    fn boot_started(&self, image: &str, digest: &Digest) {
        self.push(format!("boot started {image}@{}", digest.short()));
    }
    fn test_finished(&self, report: &TestReport) {
        self.push(format!("test finished passed={}", report.passed));
    }
    fn promoted(&self, image: &str, channel: &str, moved: &Move) {
        self.push(format!("promoted {image}:{channel} -> {}", moved.to));
    }
}

/// What went wrong, for the exit code.
enum Failure {
    Kiln(KilnError),
    Unexpected(String),
}

impl From<KilnError> for Failure {
    fn from(e: KilnError) -> Self {
        Failure::Kiln(e)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let recipe = args
        .next()
        .map_or_else(|| "images/hello".into(), PathBuf::from);
    let store = args.next().map_or_else(
        || std::env::temp_dir().join("kiln-embed-example"),
        PathBuf::from,
    );

    // Ctrl-C cancels the token; build and test notice within about a
    // second, remove the run's containers and temporary files, and return
    // KilnError::Cancelled.
    let cancel = Cancel::default();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });

    match run(&recipe, &store, &cancel).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Kiln(KilnError::Cancelled)) => {
            eprintln!("cancelled: the run's containers and temporary files were removed");
            ExitCode::from(130)
        }
        Err(Failure::Kiln(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(match e.kind() {
                ErrorKind::Input => 2,
                ErrorKind::Environment => 3,
                _ => 1,
            })
        }
        Err(Failure::Unexpected(what)) => {
            eprintln!("unexpected: {what}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    recipe: &std::path::Path,
    store: &std::path::Path,
    cancel: &Cancel,
) -> Result<(), Failure> {
    let recipe = kiln::load_recipe(recipe)?;
    let store = Store::open(store).map_err(KilnError::from)?;
    let docker = Docker::connect().await.map_err(KilnError::from)?;
    let log = Log::default();

    let options = BuildOptions {
        cancel: cancel.clone(),
        ..BuildOptions::default()
    };
    // Only recipes with run layers or docker-daemon: bases need the engine
    // to build; it is needed to test either way.
    let engine = kiln::needs_engine(&recipe).then_some(&docker as &dyn kiln::Engine);
    let built = kiln::build(&store, &recipe, &options, engine, &log).await?;
    println!("built {} {}", built.name, built.digest);

    let test_options = TestOptions {
        cancel: cancel.clone(),
        ..TestOptions::default()
    };
    let tested = kiln::test(&store, &docker, &recipe, &built.digest, &test_options, &log).await?;
    println!(
        "tested {}@{}: passed={}",
        tested.name, tested.digest, tested.passed
    );
    if !tested.passed {
        return Err(Failure::Unexpected(format!(
            "a check failed: {:?}",
            tested.checks
        )));
    }

    // promote and rollback report through their return value; `release`
    // (build, test, promote in one call) reports `promoted` events.
    let moved = kiln::promote(&store, &built.name, &built.digest, "stable")?;
    println!("stable -> {}", moved.to);
    match kiln::rollback(&store, &built.name, "stable") {
        Ok(back) => println!("rolled stable back to {}", back.to),
        Err(e) if e.is_nothing_to_roll_back() => {
            println!("nothing to roll back: stable stays at {}", moved.to);
        }
        Err(e) => return Err(e.into()),
    }

    // What the sink saw must match what was built and tested.
    let seen = [
        (
            "layer finished",
            log.count("layer finished"),
            recipe.layers.len(),
        ),
        (
            "check finished",
            log.count("check finished"),
            recipe.checks.len(),
        ),
        ("boot started", log.count("boot started"), 1),
        ("test finished", log.count("test finished"), 1),
    ];
    for (event, got, want) in seen {
        if got != want {
            return Err(Failure::Unexpected(format!(
                "{event}: {got} events, expected {want}"
            )));
        }
    }
    Ok(())
}
