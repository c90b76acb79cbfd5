//! `cargo xtask bench`: kiln beside `docker build` and plain `tar | gzip` on
//! the same ~300 MB folder, on this machine, in one run, so that the speed
//! targets of the issue are checked against numbers rather than memory.
//!
//! Everything it prepares lives under `target/bench/` and is kept between
//! runs (preparing is the slow part); the Docker images it builds are
//! removed. The table and the machine's description go to
//! `docs/benchmarks.md`; anything below the notes marker there is kept.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, ensure_dockerd, root, run, target_dir};

mod debian;

/// Rounds of every timed command; the table shows medians.
const ROUNDS: usize = 3;
/// Size of the copied library folder.
const SMALL_BYTES: u64 = 300 << 20;
/// Copies of the library folder that make the large layer (~2 GB).
const LARGE_COPIES: usize = 7;
const SOURCE_LIBS: &str = "/usr/lib/x86_64-linux-gnu";
const DOCKER_TAG: &str = "kiln-bench";
/// Text from here on in docs/benchmarks.md is written by hand and kept.
const NOTES_MARKER: &str = "<!-- notes below are written by hand and kept by cargo xtask bench -->";

const RECIPE: &str = r#"# Written by cargo xtask bench: a small layer that a change in lib/ must
# leave cached (a layer's key includes its parent's, so it comes first),
# then the ~300 MB library folder in one layer.
[image]
name = "bench"
version = "1.0.0"
base = "scratch"
epoch = 1700000000

[[layer]]
name = "extra"
files = [{ src = "extra/", dest = "/extra/" }]

[[layer]]
name = "lib"
files = [{ src = "lib/", dest = "/lib/" }]
"#;

const DOCKERFILE: &str = "FROM scratch\nCOPY extra /extra\nCOPY lib /lib\n";

const LARGE_RECIPE: &str = r#"# Written by cargo xtask bench: ~2 GB in one layer, for peak memory.
[image]
name = "bench-large"
base = "scratch"
epoch = 1700000000

[[layer]]
name = "data"
files = [{ src = "data/", dest = "/data/" }]
"#;

/// One timed run of a command.
struct Sample {
    elapsed: Duration,
    stdout: Vec<u8>,
}

/// Where the bench works.
struct Bench {
    kiln: PathBuf,
    dir: PathBuf,
    ctx: PathBuf,
    large: PathBuf,
    log: PathBuf,
    /// Ids of the Docker images built, removed by [`Bench::docker_rmi`].
    images: RefCell<Vec<String>>,
}

pub(crate) fn bench() -> Result<()> {
    let started = Instant::now();
    let load_before = load_average();
    crate::prerequisites::ensure_packages()?;
    ensure_dockerd()?;
    run(
        "build kiln (release)",
        cargo().args(["build", "--release", "-p", "kiln-cli"]),
    )?;
    let dir = target_dir().join("bench");
    let b = Bench {
        kiln: target_dir().join("release/kiln"),
        ctx: dir.join("ctx"),
        large: dir.join("large"),
        log: dir.join("last-command.log"),
        images: RefCell::new(Vec::new()),
        dir,
    };
    // KILN_BENCH_ONLY=PART, for working on one part: it runs alone, its
    // table is printed with the load average, and nothing is written.
    let only = std::env::var("KILN_BENCH_ONLY").ok();
    let part = match only.as_deref() {
        None => None,
        Some("debian") => Some(debian::Part::All),
        Some("debian-cold") => Some(debian::Part::Cold),
        Some("debian-warm") => Some(debian::Part::Warm),
        Some("push") => {
            println!("{}", push_only(&b)?);
            return Ok(());
        }
        Some("scratch") => None,
        Some(other) => bail!(
            "KILN_BENCH_ONLY={other}: give one of scratch, debian, debian-cold, debian-warm, push"
        ),
    };
    if let Some(part) = part {
        println!(
            "Load average (1, 5, 15 min) before: {load_before}.\n{}\nLoad average after: {}.",
            debian::section(&b, part)?,
            load_average()
        );
        return Ok(());
    }
    let tar_bytes = prepare_small(&b)?;

    eprintln!("==> warm the page cache");
    b.shell("tar -cf - lib extra | sha256sum")?;

    eprintln!("==> tar | sha256sum, tar | gzip -1 -n | sha256sum");
    let tar_sha = b.rounds(|b| b.shell("tar -cf - lib extra | sha256sum"))?;
    let tar_gzip = b.rounds(|b| b.shell("tar -cf - lib extra | gzip -1 -n | sha256sum"))?;

    eprintln!("==> kiln cold builds (fresh store each round)");
    let store = b.dir.join("store");
    let kiln_cold = b.rounds(|b| {
        remove_dir(&store)?;
        b.kiln_build(&b.ctx, &store)
    })?;

    eprintln!("==> kiln no-op rebuilds");
    let mut noop_all_cached = true;
    let kiln_noop = b.rounds(|b| {
        let s = b.kiln_build(&b.ctx, &store)?;
        noop_all_cached &= cached_layers(&s.stdout)?.iter().all(|(_, cached)| *cached);
        Ok(s)
    })?;

    eprintln!("==> docker build cold (classic builder, --no-cache)");
    let docker_cold = b.rounds(|b| {
        let s = b.docker_build(true)?;
        b.docker_rmi();
        Ok(s)
    })?;

    eprintln!("==> docker build cold (BuildKit, --no-cache)");
    let buildkit_cold = b.rounds(|b| {
        let s = b.buildkit_build()?;
        b.docker_rmi();
        Ok(s)
    })?;

    eprintln!("==> docker build fully cached");
    b.docker_build(false)?;
    let docker_cached = b.rounds(|b| b.docker_build(false))?;

    eprintln!("==> one file changed: kiln, then docker");
    let changed_file = pick_changed_file(&b.ctx.join("lib"))?;
    let mut kiln_changed = Vec::new();
    let mut docker_changed = Vec::new();
    let mut only_its_layer = true;
    for round in 0..ROUNDS {
        fs::OpenOptions::new()
            .append(true)
            .open(&changed_file)
            .and_then(|mut f| writeln!(f, "kiln bench change {round}"))
            .with_context(|| format!("appending to {}", changed_file.display()))?;
        let s = b.kiln_build(&b.ctx, &store)?;
        let layers = cached_layers(&s.stdout)?;
        only_its_layer &= layers
            .iter()
            .all(|(name, cached)| *cached == (name != "lib"));
        kiln_changed.push(s.elapsed);
        docker_changed.push(b.docker_build(false)?.elapsed);
    }
    b.docker_rmi();

    eprintln!("==> push to a local registry: kiln export docker:// vs skopeo copy");
    let (kiln_push, skopeo_push) = push_rounds(&b, &store)?;
    remove_dir(&store)?;

    eprintln!("==> kiln peak memory on a ~2 GB layer");
    let large_bytes = prepare_large(&b)?;
    let large_store = b.dir.join("large-store");
    remove_dir(&large_store)?;
    let (large_time, peak_rss_kib) = b.kiln_build_rss(&b.large, &large_store)?;
    remove_dir(&large_store)?;

    let m = Measured {
        tar_bytes,
        large_bytes,
        tar_sha: median(&tar_sha),
        tar_gzip: median(&tar_gzip),
        kiln_cold: median(&kiln_cold),
        docker_cold: median(&docker_cold),
        buildkit_cold: median(&buildkit_cold),
        kiln_noop: median(&kiln_noop),
        docker_cached: median(&docker_cached),
        kiln_changed: median(&kiln_changed),
        docker_changed: median(&docker_changed),
        noop_all_cached,
        only_its_layer,
        large_time,
        peak_rss_kib,
        kiln_push: median(&kiln_push),
        skopeo_push: median(&skopeo_push),
        raw: vec![
            ("tar | sha256sum", tar_sha),
            ("tar | gzip -1 -n | sha256sum", tar_gzip),
            ("kiln build, cold", kiln_cold),
            ("docker build, cold", docker_cold),
            ("BuildKit, cold", buildkit_cold),
            ("kiln build, no-op", kiln_noop),
            ("docker build, cached", docker_cached),
            ("kiln build, one file changed", kiln_changed),
            ("docker build, one file changed", docker_changed),
            ("kiln export docker://, cold registry", kiln_push),
            ("skopeo copy oci: docker://, cold registry", skopeo_push),
        ],
    };
    let mut table = m.table();
    if only.is_some() {
        println!("Load average (1, 5, 15 min) before: {load_before}.\n{table}");
        return Ok(());
    }
    // Taken last: the machine is shared, and the later the quieter.
    table.push_str(&debian::section(&b, debian::Part::All)?);
    println!("{table}");
    let doc = root().join("docs/benchmarks.md");
    write_doc(&doc, &machine(&load_before), &table)?;
    eprintln!(
        "==> bench done in {:.0?}; wrote {}",
        started.elapsed(),
        doc.display()
    );
    Ok(())
}

impl Bench {
    fn rounds(&self, mut one: impl FnMut(&Bench) -> Result<Sample>) -> Result<Vec<Duration>> {
        (0..ROUNDS).map(|_| one(self).map(|s| s.elapsed)).collect()
    }

    /// Time `cmd` in the benchmark folder, its stdout kept and its stderr in
    /// the log (shown when it fails).
    fn time(&self, what: &str, cmd: &mut Command) -> Result<Sample> {
        let log = fs::File::create(&self.log)?;
        let start = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .stderr(log)
            .output()
            .with_context(|| format!("could not start {what}"))?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            let err = fs::read_to_string(&self.log).unwrap_or_default();
            bail!("{what} failed ({}):\n{err}", out.status);
        }
        Ok(Sample {
            elapsed,
            stdout: out.stdout,
        })
    }

    fn shell(&self, script: &str) -> Result<Sample> {
        self.time(
            script,
            Command::new("bash")
                .args(["-c", &format!("set -o pipefail; {script}")])
                .current_dir(&self.ctx),
        )
    }

    fn kiln_build(&self, recipe: &Path, store: &Path) -> Result<Sample> {
        self.time(
            "kiln build",
            Command::new(&self.kiln)
                .arg("build")
                .arg(recipe)
                .arg("--store")
                .arg(store)
                .arg("--json"),
        )
    }

    fn kiln_build_no_cache(&self, recipe: &Path, store: &Path) -> Result<Sample> {
        self.time(
            "kiln build --no-cache",
            Command::new(&self.kiln)
                .arg("build")
                .arg(recipe)
                .arg("--no-cache")
                .arg("--store")
                .arg(store)
                .arg("--json"),
        )
    }

    fn kiln_test(&self, store: &Path, image: &str) -> Result<Sample> {
        self.time(
            "kiln test",
            Command::new(&self.kiln)
                .arg("test")
                .arg(image)
                .arg("--store")
                .arg(store)
                .arg("--json"),
        )
    }

    /// A kiln build under `/usr/bin/time`, which reports the child's own
    /// peak resident set (getrusage of that child alone, in KiB).
    fn kiln_build_rss(&self, recipe: &Path, store: &Path) -> Result<(Duration, Option<u64>)> {
        let time_bin = Path::new("/usr/bin/time");
        if !time_bin.exists() {
            eprintln!("    /usr/bin/time is missing (package `time`): peak memory not measured");
            let s = self.kiln_build(recipe, store)?;
            return Ok((s.elapsed, None));
        }
        let report = self.dir.join("rss.txt");
        let s = self.time(
            "kiln build (large)",
            Command::new(time_bin)
                .arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(&report)
                .arg(&self.kiln)
                .arg("build")
                .arg(recipe)
                .arg("--store")
                .arg(store)
                .arg("--json"),
        )?;
        let kib = fs::read_to_string(&report)?
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok());
        Ok((s.elapsed, kib))
    }

    fn docker_build(&self, no_cache: bool) -> Result<Sample> {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", DOCKER_TAG])
            .args(no_cache.then_some("--no-cache"))
            .arg(&self.ctx);
        let s = self.time("docker build", &mut cmd)?;
        let id = String::from_utf8_lossy(&s.stdout).trim().to_owned();
        if !id.is_empty() {
            self.images.borrow_mut().push(id);
        }
        Ok(s)
    }

    /// The same Dockerfile built `--no-cache` by the engine's BuildKit
    /// (docker.io's own client with `DOCKER_BUILDKIT=1`).
    fn buildkit_build(&self) -> Result<Sample> {
        let mut cmd = Command::new(debian::DOCKER);
        cmd.env("DOCKER_BUILDKIT", "1")
            .args(["build", "-q", "-t", DOCKER_TAG, "--no-cache"])
            .arg(&self.ctx);
        let s = self.time("docker build (BuildKit)", &mut cmd)?;
        let id = String::from_utf8_lossy(&s.stdout).trim().to_owned();
        if !id.is_empty() {
            self.images.borrow_mut().push(id);
        }
        Ok(s)
    }

    /// Remove the images the bench built (and with them their untagged
    /// parents), and nobody else's. Failing to is not worth stopping the
    /// bench for.
    fn docker_rmi(&self) {
        let mut ids = self.images.borrow_mut();
        ids.sort();
        ids.dedup();
        let _ = Command::new("docker")
            .args(["rmi", "-f"])
            .args(ids.iter())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        ids.clear();
    }
}

/// The ~300 MB context: `lib/` (a copy of the system's libraries, regular
/// files and symlinks), `extra/`, the recipe and the Dockerfile. Returns
/// the bytes of file content in it.
/// Push the built `bench:1.0.0` from `store` to an empty local registry,
/// once with `kiln export ... docker://` and once with `skopeo copy oci:...
/// docker://`, in alternating order, each round against a fresh registry
/// (a new process on a new loopback port and storage folder) so that
/// every blob is sent.
fn push_rounds(b: &Bench, store: &Path) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut kiln = Vec::new();
    let mut skopeo = Vec::new();
    for round in 0..ROUNDS {
        for first_kiln in [round % 2 == 0, round % 2 != 0] {
            let registry = LocalRegistry::start(&b.dir.join("registry"))?;
            let elapsed = if first_kiln {
                b.time(
                    "kiln export docker://",
                    Command::new(&b.kiln)
                        .arg("export")
                        .arg("bench:1.0.0")
                        .arg(format!("docker://{}/bench/kiln:1.0.0", registry.host))
                        .arg("--store")
                        .arg(store),
                )?
                .elapsed
            } else {
                b.time(
                    "skopeo copy",
                    Command::new("skopeo")
                        .args(["copy", "--quiet", "--dest-tls-verify=false"])
                        .arg(format!("oci:{}:bench:1.0.0", store.display()))
                        .arg(format!("docker://{}/bench/skopeo:1.0.0", registry.host)),
                )?
                .elapsed
            };
            if first_kiln {
                kiln.push(elapsed);
            } else {
                skopeo.push(elapsed);
            }
        }
    }
    remove_dir(&b.dir.join("registry"))?;
    Ok((kiln, skopeo))
}

/// `KILN_BENCH_ONLY=push`: build `bench:1.0.0` once into a fresh store,
/// then time [`push_rounds`]; the push row and its rounds as Markdown, with
/// the load average before and after (the rows are timed, so the load
/// says how much to trust them).
fn push_only(b: &Bench) -> Result<String> {
    let load_before = load_average();
    prepare_small(b)?;
    let store = b.dir.join("store");
    remove_dir(&store)?;
    b.kiln_build(&b.ctx, &store)?;
    eprintln!("==> push to a local registry: kiln export docker:// vs skopeo copy");
    let (kiln, skopeo) = push_rounds(b, &store)?;
    remove_dir(&store)?;
    let rounds = |samples: &[Duration]| {
        samples
            .iter()
            .map(|d| secs(*d))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(format!(
        "Load average (1, 5, 15 min) before: {load_before}; after: {}.\n\n\
         | scenario | kiln | peer | kiln / peer | target | result |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n\
         {}\n\n\
         | command | rounds |\n\
         | --- | --- |\n\
         | kiln export docker://, cold registry | {} |\n\
         | skopeo copy oci: docker://, cold registry | {} |\n",
        load_average(),
        push_row(median(&kiln), median(&skopeo)),
        rounds(&kiln),
        rounds(&skopeo),
    ))
}

/// A CNCF distribution registry of the bench's own on a loopback port,
/// stopped (by its pid) and its storage removed when dropped.
struct LocalRegistry {
    child: std::process::Child,
    host: String,
    dir: PathBuf,
}

impl LocalRegistry {
    fn start(dir: &Path) -> Result<LocalRegistry> {
        remove_dir(dir)?;
        fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start docker-registry")?;
        let registry = LocalRegistry {
            child,
            host: format!("127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.host).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not listen on {} within 30 s",
                    registry.host
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn prepare_small(b: &Bench) -> Result<u64> {
    let done = b.dir.join("ctx-v2.complete");
    let lib = b.ctx.join("lib");
    if !done.exists() {
        eprintln!("==> copy ~300 MB of {SOURCE_LIBS} into {}", lib.display());
        remove_dir(&b.ctx)?;
        fs::create_dir_all(&lib)?;
        let mut budget = SMALL_BYTES;
        copy_limited(Path::new(SOURCE_LIBS), &lib, &mut budget)?;
        let extra = b.ctx.join("extra");
        fs::create_dir_all(&extra)?;
        fs::write(extra.join("motd"), "built by cargo xtask bench\n")?;
        fs::write(extra.join("release"), "bench 1.0.0\n")?;
        fs::write(&done, "")?;
    }
    // Rewritten every run, so a changed recipe never meets an old context.
    fs::write(b.ctx.join("kiln.toml"), RECIPE)?;
    fs::write(b.ctx.join("Dockerfile"), DOCKERFILE)?;
    // Docker would otherwise send the recipe too; kiln never reads it.
    fs::write(b.ctx.join(".dockerignore"), "kiln.toml\n")?;
    content_bytes(&b.ctx)
}

/// The ~2 GB layer: several hard-linked copies of `lib/` (kiln reads each
/// link as its own file; hard links only spare the disk).
fn prepare_large(b: &Bench) -> Result<u64> {
    let done = b.dir.join("large-v2.complete");
    if !done.exists() {
        eprintln!(
            "==> link {LARGE_COPIES} copies of lib/ into {}",
            b.large.display()
        );
        remove_dir(&b.large)?;
        let data = b.large.join("data");
        fs::create_dir_all(&data)?;
        for i in 0..LARGE_COPIES {
            run(
                "cp -al",
                Command::new("cp")
                    .arg("-al")
                    .arg(b.ctx.join("lib"))
                    .arg(data.join(format!("copy{i}"))),
            )?;
        }
        fs::write(&done, "")?;
    }
    fs::write(b.large.join("kiln.toml"), LARGE_RECIPE)?;
    content_bytes(&b.large.join("data"))
}

/// Copy regular files and symlinks from `from` into `to` until `budget`
/// bytes of file content are copied. Unreadable files are skipped: they are
/// not the point.
///
/// Files come before folders, each in name order: the top level holds the
/// shared libraries themselves, while a folder such as `dri/` is a few
/// drivers hard-linked under many names. A symlink is kept only when it
/// names a sibling that was copied (`libz.so -> libz.so.1`), and is written
/// relative: an absolute link (`/lib/x86_64-linux-gnu/...`) would lead out
/// of the context, which kiln refuses, and a dangling one proves nothing.
fn copy_limited(from: &Path, to: &Path, budget: &mut u64) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok())
        .collect();
    names.sort_by_key(|e| (e.file_type().is_ok_and(|t| t.is_dir()), e.file_name()));
    let mut links = Vec::new();
    for entry in names {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let Ok(meta) = fs::symlink_metadata(&src) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            if let Ok(target) = fs::read_link(&src) {
                links.push((dst, target));
            }
        } else if *budget == 0 {
            continue;
        } else if kind.is_file() {
            if fs::copy(&src, &dst).is_ok() {
                *budget = budget.saturating_sub(meta.len());
            }
        } else if kind.is_dir() {
            fs::create_dir_all(&dst)?;
            copy_limited(&src, &dst, budget)?;
        }
    }
    // Links to links: repeat until no more of them find their target.
    loop {
        let before = links.len();
        links.retain(|(dst, target)| {
            let Some(name) = target.file_name() else {
                return false;
            };
            let sibling = to.join(name);
            if fs::symlink_metadata(&sibling).is_err() {
                return true;
            }
            std::os::unix::fs::symlink(name, dst).is_err()
        });
        if links.len() == before {
            return Ok(());
        }
    }
}

/// Bytes of regular-file content under `dir` (hard links counted each
/// time: that is what goes into a tar).
fn content_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            total += content_bytes(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// The largest regular file directly in `lib/`: the one the change
/// scenario appends to.
fn pick_changed_file(lib: &Path) -> Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(lib)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.is_file() && best.as_ref().is_none_or(|(size, _)| meta.len() > *size) {
            best = Some((meta.len(), entry.path()));
        }
    }
    best.map(|(_, p)| p)
        .context("no regular file in the bench's lib/ folder")
}

/// `(layer name, cached)` of every layer in `kiln build --json` output.
fn cached_layers(json: &[u8]) -> Result<Vec<(String, bool)>> {
    let doc: serde_json::Value =
        serde_json::from_slice(json).context("kiln build --json printed no JSON")?;
    let mut out = Vec::new();
    for image in doc["images"].as_array().into_iter().flatten() {
        for layer in image["layers"].as_array().into_iter().flatten() {
            out.push((
                layer["name"].as_str().unwrap_or_default().to_owned(),
                layer["cached"].as_bool().unwrap_or(false),
            ));
        }
    }
    if out.is_empty() {
        bail!("kiln build --json listed no layers");
    }
    Ok(out)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Medians and checks of one bench run.
struct Measured {
    tar_bytes: u64,
    large_bytes: u64,
    tar_sha: Duration,
    tar_gzip: Duration,
    kiln_cold: Duration,
    docker_cold: Duration,
    buildkit_cold: Duration,
    kiln_noop: Duration,
    docker_cached: Duration,
    kiln_changed: Duration,
    docker_changed: Duration,
    noop_all_cached: bool,
    only_its_layer: bool,
    large_time: Duration,
    peak_rss_kib: Option<u64>,
    kiln_push: Duration,
    skopeo_push: Duration,
    raw: Vec<(&'static str, Vec<Duration>)>,
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "MISS" }
}

impl Measured {
    fn table(&self) -> String {
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Folder: {:.0} MB of files ({} rounds each, medians).\n",
            mb(self.tar_bytes),
            ROUNDS
        );
        let _ = writeln!(
            t,
            "| scenario | kiln | peer | kiln / peer | target | result |"
        );
        let _ = writeln!(t, "| --- | ---: | ---: | ---: | --- | --- |");
        let cold_docker = ratio(self.kiln_cold, self.docker_cold);
        let cold_floor = ratio(self.kiln_cold, self.tar_sha);
        let cold_buildkit = ratio(self.kiln_cold, self.buildkit_cold);
        let _ = writeln!(
            t,
            "| cold build vs `docker build --no-cache` | {} | {} | {:.2} | ≤ 0.35 | {} |",
            secs(self.kiln_cold),
            secs(self.docker_cold),
            cold_docker,
            verdict(cold_docker <= 0.35)
        );
        let _ = writeln!(
            t,
            "| cold build vs BuildKit `--no-cache` | {} | {} | {:.2} | ≤ 1.0 | {} |",
            secs(self.kiln_cold),
            secs(self.buildkit_cold),
            cold_buildkit,
            verdict(cold_buildkit <= 1.0)
        );
        let _ = writeln!(
            t,
            "| cold build vs `tar \\| sha256sum` (floor) | {} | {} | {:.2} | ≤ 2 | {} |",
            secs(self.kiln_cold),
            secs(self.tar_sha),
            cold_floor,
            verdict(cold_floor <= 2.0)
        );
        let _ = writeln!(
            t,
            "| cold build vs `tar \\| gzip -1 -n \\| sha256sum` | {} | {} | {:.2} | (reference) | |",
            secs(self.kiln_cold),
            secs(self.tar_gzip),
            ratio(self.kiln_cold, self.tar_gzip)
        );
        let noop_ratio = ratio(self.kiln_noop, self.docker_cached);
        let _ = writeln!(
            t,
            "| no-op rebuild vs `docker build` cached | {} | {} | {:.3} | ≤ 0.03 | {} |",
            secs(self.kiln_noop),
            secs(self.docker_cached),
            noop_ratio,
            verdict(noop_ratio <= 0.03)
        );
        let _ = writeln!(
            t,
            "| no-op rebuild, absolute | {} | | | < 150 ms, all layers cached | {} |",
            secs(self.kiln_noop),
            verdict(self.kiln_noop < Duration::from_millis(150) && self.noop_all_cached)
        );
        let _ = writeln!(
            t,
            "| one file of lib/ changed vs `docker build` | {} | {} | {:.2} | only its layer rebuilt | {} |",
            secs(self.kiln_changed),
            secs(self.docker_changed),
            ratio(self.kiln_changed, self.docker_changed),
            verdict(self.only_its_layer)
        );
        let _ = writeln!(t, "{}", push_row(self.kiln_push, self.skopeo_push));
        match self.peak_rss_kib {
            Some(kib) => {
                let _ = writeln!(
                    t,
                    "| peak RSS, one {:.1} GB layer ({}) | {:.1} MB | | | ≤ 100 MB | {} |",
                    mb(self.large_bytes) / 1000.0,
                    secs(self.large_time),
                    kib as f64 * 1024.0 / 1e6,
                    verdict(kib * 1024 <= 100_000_000)
                );
            }
            None => {
                let _ = writeln!(
                    t,
                    "| peak RSS, one {:.1} GB layer | not measured (no /usr/bin/time) | | | ≤ 100 MB | |",
                    mb(self.large_bytes) / 1000.0
                );
            }
        }
        let _ = writeln!(t, "\nEvery round:\n");
        let _ = writeln!(t, "| command | rounds |");
        let _ = writeln!(t, "| --- | --- |");
        for (what, samples) in &self.raw {
            let all: Vec<String> = samples.iter().map(|d| secs(*d)).collect();
            // A pipe inside a cell would end it.
            let what = what.replace('|', "\\|");
            let _ = writeln!(t, "| {what} | {} |", all.join(", "));
        }
        t
    }
}

/// The push row of the table, from the medians of kiln's and skopeo's
/// pushes.
fn push_row(kiln: Duration, skopeo: Duration) -> String {
    let push_ratio = ratio(kiln, skopeo);
    format!(
        "| push to a local registry vs `skopeo copy oci: docker://` | {} | {} | {:.2} | ≤ 1.0 | {} |",
        secs(kiln),
        secs(skopeo),
        push_ratio,
        verdict(push_ratio <= 1.0)
    )
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
fn load_average() -> String {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// nproc, memory, CPU model, kernel and Docker version, as a list.
fn machine(load_before: &str) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim())
        .to_owned();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    let kernel = output("uname", &["-sr"]);

    let docker = output("docker", &["version", "--format", "{{.Server.Version}}"]);
    let gzip = output("gzip", &["--version"]);
    let gzip = gzip.lines().next().unwrap_or("unknown");
    format!(
        "- CPUs: {nproc} ({cpu})\n- memory: {mem}\n- kernel: {kernel}\n- Docker engine: {docker} (classic builder, `DOCKER_BUILDKIT=0`)\n- gzip: {gzip}\n- load average before the bench (1, 5, 15 min; other work on the machine\n  skews every number): {load_before}\n"
    )
}

fn write_doc(path: &Path, machine: &str, table: &str) -> Result<()> {
    let kept = fs::read_to_string(path)
        .ok()
        .and_then(|old| {
            old.split_once(NOTES_MARKER)
                .map(|(_, notes)| notes.to_owned())
        })
        .unwrap_or_else(|| "\n".into());
    let mut doc = String::new();
    let _ = write!(
        doc,
        "# Benchmarks\n\n\
         Written by `cargo xtask bench` (the text after the marker at the end is\n\
         written by hand). One run measures kiln beside its peers on the same\n\
         folder, a copy of about 300 MB of `{SOURCE_LIBS}` in one layer plus a\n\
         two-file layer: `kiln build` (release) against `DOCKER_BUILDKIT=0\n\
         docker build` of `FROM scratch` + `COPY`, and against `tar` piped into\n\
         `gzip -1 -n` and `sha256sum`, the floor for any tool that reads every\n\
         byte. Cold kiln builds start from an empty store; cold Docker builds\n\
         use `--no-cache`. Peak memory is the resident set of the kiln process\n\
         alone (`/usr/bin/time`, getrusage of that child). The Debian\n\
         section puts kiln beside BuildKit and the classic builder on a\n\
         Debian base with a run layer (issue 8).\n\n\
         ## Machine\n\n{machine}\n## Results\n\n{table}\n{NOTES_MARKER}{kept}"
    );
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, doc).with_context(|| format!("writing {}", path.display()))
}
