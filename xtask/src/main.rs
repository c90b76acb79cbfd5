//! kiln's automation, run as `cargo xtask <task>`. Product behaviour never
//! lives here: only the steps that prepare a machine and run the checks.
//!
//! - `ci`: install what the tests need when it is missing (as root), start
//!   dockerd when it is not running, then `cargo fmt --check`, clippy with
//!   `-D warnings`, the whole test suite with the engine required, `cargo
//!   doc` with `-D warnings`, and the kiln crate's examples against the
//!   engine.
//! - `demo`: the README's end-to-end job on `images/hello`: build, boot,
//!   check and promote with the release binary.
//! - `stage-debian`: debootstrap a minbase bookworm root from this machine's
//!   Debian mirror into `<target>/fixtures/debian-bookworm/rootfs` (reused
//!   when complete) and print its path; `ci` and `demo` stage it too and
//!   pass it to the tests as `KILN_DEBIAN_ROOTFS`.
//! - `fuzz [--seconds N] [TARGET...]`: the cargo-fuzz targets in fuzz/
//!   (recipe parser, base-layer reader, manifest/index/config parsers), N
//!   seconds each, crashes kept in fuzz/seeds/ (nightly and cargo-fuzz
//!   needed; it says which is missing).
//! - `fetch-cosign`: unpack cosign 2.x from Debian trixie's .deb (through a
//!   private apt source list) into `<target>/tools/cosign/` and print its
//!   path; `ci` does it too and passes it to the tests as `KILN_COSIGN`.
//! - `schema`: write the recipe's JSON Schema, generated from kiln-recipe's
//!   types, to `docs/recipe.schema.json` (a kiln-recipe test fails when the
//!   committed file is stale).
//! - `bench`: kiln beside `docker build` and `tar | gzip` on ~300 MB, medians
//!   and the targets into docs/benchmarks.md. `KILN_BENCH_ONLY=PART`
//!   (`scratch`, `debian`, `debian-cold`, `debian-warm`, `push`) runs one
//!   part and prints its table with the load average, writing nothing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod bench;
mod cosign;
mod debian;
mod fuzz;
mod prerequisites;

/// `cargo xtask schema`: regenerate `docs/recipe.schema.json`.
fn schema() -> Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/recipe.schema.json");
    std::fs::write(&file, kiln_recipe::schema_json())
        .with_context(|| format!("writing {}", file.display()))?;
    println!("{}", file.display());
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(),
        Some("bench") => bench::bench(),
        Some("stage-debian") => debian::stage_command(),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("fetch-cosign") => cosign::ensure().map(|p| println!("{}", p.display())),
        Some("schema") => schema(),
        _ => {
            eprintln!("usage: cargo xtask <ci|demo|bench|stage-debian|fuzz|fetch-cosign|schema>");
            eprintln!("  schema  write the recipe's JSON Schema to docs/recipe.schema.json");
            eprintln!(
                "  ci    install test prerequisites, start dockerd, run fmt, clippy, all tests, docs and examples"
            );
            eprintln!("  demo  build, boot, check and promote images/hello end to end");
            eprintln!(
                "  stage-debian  debootstrap the Debian root the tests and images/debian use"
            );
            eprintln!(
                "  fetch-cosign  unpack Debian trixie's cosign into <target>/tools/cosign (KILN_COSIGN)"
            );
            eprintln!(
                "  bench time kiln against docker build and tar | gzip; write docs/benchmarks.md"
            );
            eprintln!(
                "  fuzz [--seconds N] [TARGET...]  run the cargo-fuzz targets (nightly), keep crashes"
            );
            std::process::exit(2);
        }
    }
}

/// The workspace root (xtask lives one folder below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target folder: `CARGO_TARGET_DIR` when set, else `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {step}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci() -> Result<()> {
    let started = Instant::now();
    prerequisites::ensure_packages()?;
    ensure_dockerd()?;
    let debian = debian::stage()?;
    let cosign = cosign::ensure()?;
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The engine is required: a test that needs Docker fails rather than
    // skips when it cannot reach it.
    run(
        "cargo test",
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("KILN_REQUIRE_ENGINE", "1")
            .env(debian::ENV, &debian)
            .env(cosign::ENV, &cosign),
    )?;
    // The fuzz targets' kept inputs, under stable: fuzz/ is its own
    // workspace, so the workspace's test run does not reach it.
    run(
        "fuzz inputs replayed (stable)",
        cargo()
            .args(["test", "--manifest-path", "fuzz/Cargo.toml"])
            .env("CARGO_TARGET_DIR", target_dir()),
    )?;
    // rustdoc: no broken links, no warnings, in any crate's public docs.
    run(
        "cargo doc -D warnings",
        cargo()
            .args(["doc", "--no-deps", "--workspace"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    run_examples()?;
    eprintln!("==> ci passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The kiln crate's examples, run against the real engine as an embedder
/// would run them, each on a fresh store: they exit non-zero when what they
/// built, tested or were told by their events is not what they expect.
fn run_examples() -> Result<()> {
    let hello = root().join("images/hello");
    stage_busybox(&hello)?;
    for example in ["embed", "in_memory"] {
        let store = target_dir().join(format!("example-store-{example}"));
        if store.exists() {
            std::fs::remove_dir_all(&store)
                .with_context(|| format!("removing {}", store.display()))?;
        }
        run(
            &format!("example {example}"),
            cargo()
                .args(["run", "-p", "kiln", "--example", example, "--"])
                .arg(&hello)
                .arg(&store),
        )?;
    }
    Ok(())
}

fn demo() -> Result<()> {
    prerequisites::ensure_packages()?;
    ensure_dockerd()?;
    run(
        "build kiln",
        cargo().args(["build", "--release", "-p", "kiln-cli"]),
    )?;
    let kiln = target_dir().join("release/kiln");
    let store = target_dir().join("demo-store");
    let images = root().join("images/hello");
    stage_busybox(&images)?;
    run(
        "kiln release images/hello",
        Command::new(&kiln)
            .arg("release")
            .arg(&images)
            .arg("--store")
            .arg(&store),
    )?;
    run(
        "kiln images",
        Command::new(&kiln).arg("images").arg("--store").arg(&store),
    )?;
    Ok(())
}

/// The hello image copies Debian's static busybox; it is staged, not
/// committed.
fn stage_busybox(image_dir: &Path) -> Result<()> {
    let rootfs = image_dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let staged = rootfs.join("busybox");
    let fresh =
        std::fs::read("/bin/busybox").context("reading /bin/busybox (package busybox-static)")?;
    if std::fs::read(&staged).ok().as_deref() != Some(fresh.as_slice()) {
        std::fs::write(&staged, fresh)?;
    }
    Ok(())
}

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Whether the engine answers `/_ping` on its socket.
fn docker_answers() -> bool {
    let Ok(mut s) = UnixStream::connect(DOCKER_SOCKET) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Start dockerd in the background when nothing answers on its socket. A
/// `DOCKER_HOST` set by the user is theirs to run.
fn ensure_dockerd() -> Result<()> {
    if std::env::var_os("DOCKER_HOST").is_some() || docker_answers() {
        return Ok(());
    }
    eprintln!("==> starting dockerd");
    let log_path = target_dir().join("dockerd.log");
    std::fs::create_dir_all(target_dir())?;
    let log = std::fs::File::create(&log_path)?;
    Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("could not start dockerd: install docker.io or set DOCKER_HOST")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if docker_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "dockerd did not answer on {DOCKER_SOCKET} within 60s; see {}",
        log_path.display()
    )
}
