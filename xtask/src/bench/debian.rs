//! The Debian workload of `cargo xtask bench` (issue 8): a debootstrap
//! minbase bookworm base, one run layer (a user added, about 60 MB copied)
//! and one files layer, built by kiln (the base as `docker-daemon:` and as
//! `rootfs:`), by BuildKit and by the classic builder (both through
//! docker.io's own client, `/usr/bin/docker`, with `DOCKER_BUILDKIT=1` and
//! `0`), side by side in one run; and `kiln test` of an image the engine
//! holds against `docker run` plus `docker exec` of the same check.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Bench, ROUNDS, cached_layers, median, ratio, remove_dir, secs, verdict};

/// The engine's name for the imported Debian root, whole (its device nodes
/// under `/dev` included, as `rootfs:` reads it); kept between runs (it is
/// the bench's input, like the staged root).
const BASE_TAG: &str = "kiln-bench/debian:bookworm";
/// The images the Docker builders write (removed at the end).
const OUT_TAG: &str = "kiln-bench/debian-out";
/// docker.io's own client: the one whose `DOCKER_BUILDKIT=1` runs the
/// engine's built-in BuildKit.
pub(super) const DOCKER: &str = "/usr/bin/docker";

/// The name the bench gives the built image in the engine for the `kiln
/// test` row (removed at the end with the builders' images).
const HELD_TAG: &str = "kiln-bench/held:bench-debian";
/// The run layer: a user, and about 60 MB copied.
const RUN: &str =
    "useradd -m app && cp -a /usr/lib/x86_64-linux-gnu /opt/lib && cp -a /usr/bin /opt/bin";
/// A run layer that writes about 1 GB (eight copies of `/usr`), for peak
/// memory.
const BIG_RUN: &str =
    "mkdir /opt/big && for i in 1 2 3 4 5 6 7 8; do cp -a /usr /opt/big/u$i; done";
/// Files of the files layer.
const SITE_FILES: usize = 20;

fn recipe(base: &str) -> String {
    format!(
        r#"# Written by cargo xtask bench: the Debian workload of issue 8.
[image]
name = "bench-debian"
version = "1.0.0"
base = "{base}"
epoch = 1700000000

[config]
entrypoint = ["/bin/sleep", "infinity"]

[[layer]]
name = "setup"
run = "{RUN}"

[[layer]]
name = "site"
files = [{{ src = "site/", dest = "/srv/site/" }}]

[[check]]
name = "the user exists"
command = ["/usr/bin/id", "app"]
"#
    )
}

fn dockerfile() -> String {
    format!("FROM {BASE_TAG}\nRUN {RUN}\nCOPY site /srv/site\n")
}

/// Which rows of the workload to run (`KILN_BENCH_ONLY`): the warm rows
/// are nothing changed and one file changed; the cold rows are the rest
/// (cold builds, `kiln test`, peak memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    All,
    Cold,
    Warm,
}

impl Part {
    fn cold(self) -> bool {
        self != Part::Warm
    }

    fn warm(self) -> bool {
        self != Part::Cold
    }
}

/// The medians of one builder on one scenario.
struct Row {
    scenario: String,
    kiln: Duration,
    peer: Duration,
    peer_name: &'static str,
    target: f64,
    check: bool,
}

/// Runs of every command, for the raw table.
type Raw = Vec<(String, Vec<Duration>)>;

/// [`ROUNDS`] runs of `one`, given the round's number.
fn rounds(mut one: impl FnMut(usize) -> Result<Duration>) -> Result<Vec<Duration>> {
    (0..ROUNDS).map(&mut one).collect()
}

/// The medians of one Docker builder; `None` where that part did not run.
#[derive(Clone, Copy)]
struct Peer {
    name: &'static str,
    cold: Option<Duration>,
    cached: Option<Duration>,
    changed: Option<Duration>,
}

impl Peer {
    fn new(name: &'static str) -> Peer {
        Peer {
            name,
            cold: None,
            cached: None,
            changed: None,
        }
    }
}

/// kiln with one of its two bases: where it builds, and every run so far
/// by scenario, in the order run.
struct KilnBase<'a> {
    label: &'static str,
    ctx: &'a Path,
    store: std::path::PathBuf,
    runs: Vec<(&'static str, Vec<Duration>)>,
}

impl KilnBase<'_> {
    fn push(&mut self, what: &'static str, elapsed: Duration) {
        match self.runs.iter_mut().find(|(w, _)| *w == what) {
            Some((_, samples)) => samples.push(elapsed),
            None => self.runs.push((what, vec![elapsed])),
        }
    }

    fn runs(&self, what: &str) -> Vec<Duration> {
        self.runs
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

/// Run `part` of the workload and return its section of docs/benchmarks.md.
pub(super) fn section(b: &Bench, part: Part) -> Result<String> {
    let rootfs = crate::debian::stage()?;
    ensure_base(&rootfs)?;
    let dir = b.dir.join("debian");
    let daemon = dir.join("daemon");
    let from_rootfs = dir.join("rootfs");
    for (ctx, base) in [
        (&daemon, format!("docker-daemon:{BASE_TAG}")),
        (&from_rootfs, format!("rootfs:{}", rootfs.display())),
    ] {
        let site = ctx.join("site");
        fs::create_dir_all(&site)?;
        for i in 0..SITE_FILES {
            fs::write(
                site.join(format!("page-{i:02}.html")),
                format!("<p>page {i}</p>\n").repeat(200),
            )?;
        }
        fs::write(ctx.join("kiln.toml"), recipe(&base))?;
    }
    fs::write(daemon.join("Dockerfile"), dockerfile())?;
    fs::write(daemon.join(".dockerignore"), "kiln.toml\n")?;

    let mut rows = Vec::new();
    let mut raw: Raw = Vec::new();
    let mut notes = Vec::new();

    // Every builder runs once per round, in turn, rather than all rounds
    // of one builder and then the next: on this machine's root filesystem
    // (ext4 without a journal) creating files is slowed for minutes by
    // files deleted just before (a run container removed, a store emptied),
    // so a builder whose rounds all came last would pay for everyone's
    // deletions (docs/benchmarks.md, "session 5").
    let mut docker_ids = Vec::new();
    let mut docker_build = |buildkit: bool, no_cache: bool| -> Result<Duration> {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_BUILDKIT", if buildkit { "1" } else { "0" })
            .args(["build", "-q", "-t", OUT_TAG])
            .args(no_cache.then_some("--no-cache"))
            .arg(&daemon);
        let name = if buildkit { "BuildKit" } else { "classic" };
        let s = b.time(&format!("docker build ({name})"), &mut cmd)?;
        docker_ids.push(String::from_utf8_lossy(&s.stdout).trim().to_owned());
        Ok(s.elapsed)
    };
    // kiln's two bases, each with its own store; a base that does not
    // build at all is left out with a note.
    let mut kilns = Vec::new();
    for (label, ctx) in [("docker-daemon:", &daemon), ("rootfs:", &from_rootfs)] {
        eprintln!("==> Debian: kiln, base as {label}, first build");
        let store = dir.join(format!("store-{}", label.trim_end_matches(':')));
        remove_dir(&store)?;
        match b.kiln_build(ctx, &store) {
            Ok(_) => kilns.push(KilnBase {
                label,
                ctx: ctx.as_path(),
                store,
                runs: Vec::new(),
            }),
            Err(e) => {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or("failed").trim().to_owned();
                notes.push(format!("kiln with a `{label}` base did not build: {why}"));
            }
        }
    }
    let mut peers = [Peer::new("BuildKit"), Peer::new("classic")];
    // Whether kiln took every layer from the cache when nothing changed,
    // and only the files layer was rebuilt when one of its files changed.
    let (mut all_cached, mut only_site) = (true, true);

    if part.cold() {
        eprintln!("==> Debian: cold builds, every builder in turn");
        let (mut bk, mut classic) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bk.push(docker_build(true, true)?);
            classic.push(docker_build(false, true)?);
            for k in &mut kilns {
                remove_dir(&k.store)?;
                let empty = b.kiln_build(k.ctx, &k.store)?.elapsed;
                let stored = b.kiln_build_no_cache(k.ctx, &k.store)?.elapsed;
                k.push("cold, empty store", empty);
                k.push("--no-cache, base stored", stored);
            }
        }
        peers[0].cold = Some(median(&bk));
        peers[1].cold = Some(median(&classic));
        raw.push(("BuildKit --no-cache".into(), bk));
        raw.push(("classic --no-cache".into(), classic));
    }
    if part.warm() {
        eprintln!("==> Debian: warm builds, every builder in turn");
        docker_build(true, false)?;
        docker_build(false, false)?;
        for k in &kilns {
            b.kiln_build(k.ctx, &k.store)?;
        }
        let (mut bk, mut classic) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bk.push(docker_build(true, false)?);
            classic.push(docker_build(false, false)?);
            for k in &mut kilns {
                let s = b.kiln_build(k.ctx, &k.store)?;
                all_cached &= cached_layers(&s.stdout)?.iter().all(|(_, c)| *c);
                k.push("nothing changed", s.elapsed);
            }
        }
        peers[0].cached = Some(median(&bk));
        peers[1].cached = Some(median(&classic));
        raw.push(("BuildKit cached".into(), bk));
        raw.push(("classic cached".into(), classic));
        let (mut bk, mut classic) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            touch_site(&daemon, &format!("BuildKit {round}"))?;
            bk.push(docker_build(true, false)?);
            touch_site(&daemon, &format!("classic {round}"))?;
            classic.push(docker_build(false, false)?);
            for k in &mut kilns {
                touch_site(k.ctx, &format!("kiln {round}"))?;
                let s = b.kiln_build(k.ctx, &k.store)?;
                only_site &= cached_layers(&s.stdout)?
                    .iter()
                    .all(|(name, cached)| *cached == (name != "site"));
                k.push("one file changed", s.elapsed);
            }
        }
        peers[0].changed = Some(median(&bk));
        peers[1].changed = Some(median(&classic));
        raw.push(("BuildKit, one file changed".into(), bk));
        raw.push(("classic, one file changed".into(), classic));
    }
    // The rows, base by base: cold (base stored, empty store), then warm.
    for k in &kilns {
        let label = k.label;
        if part.cold() {
            let bk = (peers[0].cold, "BuildKit --no-cache");
            let row = format!("`{label}` cold, base already in the store");
            kiln_row(
                &mut rows,
                &k.runs("--no-cache, base stored"),
                row,
                bk,
                1.0,
                true,
            );
            let row = format!("`{label}` cold, empty store");
            kiln_row(&mut rows, &k.runs("cold, empty store"), row, bk, 2.0, true);
        }
        if part.warm() {
            let bk = (peers[0].cached, "BuildKit cached");
            let row = format!("`{label}` nothing changed");
            kiln_row(
                &mut rows,
                &k.runs("nothing changed"),
                row,
                bk,
                0.3,
                all_cached,
            );
            let bk = (peers[0].changed, "BuildKit");
            let row = format!("`{label}` one file of the files layer changed");
            kiln_row(
                &mut rows,
                &k.runs("one file changed"),
                row,
                bk,
                0.3,
                only_site,
            );
        }
    }
    let held = kilns.iter().find(|k| k.label == "docker-daemon:");
    if let Some(k) = held.filter(|_| part.cold()) {
        let (row, kiln_test, docker_run) = held_image_test(b, &k.store, &dir)?;
        rows.push(row);
        raw.push(("kiln test, image held".into(), kiln_test));
        raw.push(("docker run + exec + rm".into(), docker_run));
    }
    for k in &kilns {
        for (what, samples) in &k.runs {
            raw.push((format!("kiln `{}` {what}", k.label), samples.clone()));
        }
        remove_dir(&k.store)?;
    }
    let big = if part.cold() {
        Some(peak_memory(b, &dir)?)
    } else {
        None
    };

    docker_ids.sort();
    docker_ids.dedup();
    let _ = Command::new(DOCKER)
        .args(["rmi", "-f", OUT_TAG, HELD_TAG])
        .args(docker_ids.iter().filter(|i| !i.is_empty()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();

    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n### Debian base, run layer and files layer\n\n\
         A debootstrap minbase bookworm root (`cargo xtask stage-debian`), \
         imported into the engine whole (device nodes too) as `{BASE_TAG}` \
         and read as a `rootfs:` folder; one run layer (`{RUN}`) and \
         one files layer of {SITE_FILES} small files. The same Dockerfile for \
         both Docker builders. {ROUNDS} rounds each, medians.\n"
    );
    let _ = writeln!(
        t,
        "| scenario | kiln | peer | kiln / peer | target | result |"
    );
    let _ = writeln!(t, "| --- | ---: | ---: | ---: | --- | --- |");
    for r in &rows {
        let q = ratio(r.kiln, r.peer);
        let _ = writeln!(
            t,
            "| {} | {} | {}: {} | {q:.2} | ≤ {:.1} | {} |",
            r.scenario,
            secs(r.kiln),
            r.peer_name,
            secs(r.peer),
            r.target,
            verdict(q <= r.target && r.check)
        );
    }
    if let Some((big_time, big_rss)) = big {
        let _ = writeln!(
            t,
            "| peak RSS of `kiln build`, a run layer writing ~1 GB (`{BIG_RUN}`, {}) | {} | | | ≤ 150 MB | {} |",
            secs(big_time),
            big_rss.map_or("not measured".into(), |k| format!(
                "{:.1} MB",
                k as f64 / 1024.0
            )),
            verdict(big_rss.is_some_and(|k| k <= 150 * 1024)),
        );
    }
    let _ = writeln!(t, "\nThe classic builder on the same Dockerfile:\n");
    let _ = writeln!(t, "| | {} | {} |", peers[0].name, peers[1].name);
    let _ = writeln!(t, "| --- | ---: | ---: |");
    let shown = |d: Option<Duration>| d.map_or_else(|| "not run".to_owned(), secs);
    for (what, pick) in [
        (
            "--no-cache",
            (|p: &Peer| p.cold) as fn(&Peer) -> Option<Duration>,
        ),
        ("cached", |p: &Peer| p.cached),
        ("one file changed", |p: &Peer| p.changed),
    ] {
        let _ = writeln!(
            t,
            "| {what} | {} | {} |",
            shown(pick(&peers[0])),
            shown(pick(&peers[1]))
        );
    }
    let _ = writeln!(t, "\nEvery round:\n\n| command | rounds |\n| --- | --- |");
    for (what, samples) in &raw {
        let all: Vec<String> = samples.iter().map(|d| secs(*d)).collect();
        let _ = writeln!(t, "| {what} | {} |", all.join(", "));
    }
    for n in notes {
        let _ = writeln!(t, "\n{n}");
    }
    Ok(t)
}

/// Add the row of kiln's `samples` in `scenario` against `peer` (its
/// median, if it ran, and its name).
fn kiln_row(
    rows: &mut Vec<Row>,
    samples: &[Duration],
    scenario: String,
    peer: (Option<Duration>, &'static str),
    target: f64,
    check: bool,
) {
    rows.push(Row {
        scenario,
        kiln: median(samples),
        peer: peer.0.unwrap_or_default(),
        peer_name: peer.1,
        target,
        check,
    });
}

/// `kiln test` of the image the engine holds against `docker run` plus
/// `docker exec` of the same check: the row and both runs' rounds.
fn held_image_test(
    b: &Bench,
    store: &Path,
    dir: &Path,
) -> Result<(Row, Vec<Duration>, Vec<Duration>)> {
    eprintln!("==> Debian: kiln test of a held image vs docker run + exec");
    // `kiln test` takes out of the engine what it loaded, and leaves alone
    // what the engine held before: the image is put there once (as a
    // user's `docker-daemon:` export), then timed.
    b.time(
        "kiln export docker-daemon:",
        Command::new(&b.kiln)
            .args(["export", "bench-debian:1.0.0"])
            .arg(format!("docker-daemon:{HELD_TAG}"))
            .arg("--store")
            .arg(store),
    )?;
    let kiln_test = rounds(|_| Ok(b.kiln_test(store, "bench-debian:1.0.0")?.elapsed))?;
    let image = String::from_utf8_lossy(
        &b.time(
            "docker image inspect",
            Command::new(DOCKER).args(["image", "inspect", "--format", "{{.Id}}", HELD_TAG]),
        )?
        .stdout,
    )
    .trim()
    .to_owned();
    let docker_run = rounds(|_| {
        let script = format!(
            "c=$({DOCKER} run -d --network none {image}) && {DOCKER} exec $c /usr/bin/id app >/dev/null; r=$?; {DOCKER} rm -f $c >/dev/null; exit $r"
        );
        let s = b.time(
            "docker run + exec + rm",
            Command::new("bash").args(["-c", &script]).current_dir(dir),
        )?;
        Ok(s.elapsed)
    })?;
    let row = Row {
        scenario: "`kiln test` of an image the engine holds (one command check)".into(),
        kiln: median(&kiln_test),
        peer: median(&docker_run),
        peer_name: "docker run + exec + rm",
        target: 1.2,
        check: true,
    };
    Ok((row, kiln_test, docker_run))
}

/// The time and peak resident set (KiB) of a build whose run layer writes
/// about 1 GB.
fn peak_memory(b: &Bench, dir: &Path) -> Result<(Duration, Option<u64>)> {
    eprintln!("==> Debian: kiln peak memory, a run layer writing ~1 GB");
    let big = dir.join("big");
    fs::create_dir_all(&big)?;
    fs::write(
        big.join("kiln.toml"),
        recipe(&format!("docker-daemon:{BASE_TAG}"))
            .replace(RUN, BIG_RUN)
            .replace("name = \"bench-debian\"", "name = \"bench-debian-big\""),
    )?;
    fs::create_dir_all(big.join("site"))?;
    fs::write(big.join("site/index.html"), "big\n")?;
    let big_store = dir.join("big-store");
    remove_dir(&big_store)?;
    let measured = b.kiln_build_rss(&big, &big_store)?;
    remove_dir(&big_store)?;
    Ok(measured)
}

/// Import the staged root into the engine as [`BASE_TAG`], once.
fn ensure_base(rootfs: &Path) -> Result<()> {
    let held = Command::new(DOCKER)
        .args(["image", "inspect", BASE_TAG])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if held {
        return Ok(());
    }
    eprintln!("==> docker import {} as {BASE_TAG}", rootfs.display());
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; tar -C '{}' -c . | {DOCKER} import - {BASE_TAG} >/dev/null",
            rootfs.display()
        ))
        .status()
        .context("could not start tar | docker import")?;
    if !status.success() {
        bail!("tar | docker import {BASE_TAG} failed ({status})");
    }
    Ok(())
}

/// Append `line` to the first page of the context's site.
fn touch_site(ctx: &Path, line: &str) -> Result<()> {
    let page = ctx.join("site/page-00.html");
    fs::OpenOptions::new()
        .append(true)
        .open(&page)
        .and_then(|mut f| writeln!(f, "{line}"))
        .with_context(|| format!("appending to {}", page.display()))
}
