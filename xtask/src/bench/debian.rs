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
use std::path::{Path, PathBuf};
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
const DOCKER: &str = "/usr/bin/docker";

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

/// Run the workload and return its section of docs/benchmarks.md.
pub(super) fn section(b: &Bench) -> Result<String> {
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

    eprintln!("==> Debian: BuildKit and classic builds");
    let mut docker_ids = Vec::new();
    let mut peers = Vec::new();
    for (name, buildkit) in [("BuildKit", "1"), ("classic", "0")] {
        let build = |no_cache: bool, ids: &mut Vec<String>| -> Result<Duration> {
            let mut cmd = Command::new(DOCKER);
            cmd.env("DOCKER_BUILDKIT", buildkit)
                .args(["build", "-q", "-t", OUT_TAG])
                .args(no_cache.then_some("--no-cache"))
                .arg(&daemon);
            let s = b.time(&format!("docker build ({name})"), &mut cmd)?;
            ids.push(String::from_utf8_lossy(&s.stdout).trim().to_owned());
            Ok(s.elapsed)
        };
        let cold: Vec<Duration> = (0..ROUNDS)
            .map(|_| build(true, &mut docker_ids))
            .collect::<Result<_>>()?;
        build(false, &mut docker_ids)?;
        let cached: Vec<Duration> = (0..ROUNDS)
            .map(|_| build(false, &mut docker_ids))
            .collect::<Result<_>>()?;
        let mut changed = Vec::new();
        for round in 0..ROUNDS {
            touch_site(&[&daemon], &format!("{name} {round}"))?;
            changed.push(build(false, &mut docker_ids)?);
        }
        raw.push((format!("{name} --no-cache"), cold.clone()));
        raw.push((format!("{name} cached"), cached.clone()));
        raw.push((format!("{name}, one file changed"), changed.clone()));
        peers.push((name, median(&cold), median(&cached), median(&changed)));
    }
    let (_, bk_cold, bk_cached, bk_changed) = peers[0];

    for (label, ctx) in [("docker-daemon:", &daemon), ("rootfs:", &from_rootfs)] {
        eprintln!("==> Debian: kiln, base as {label}");
        let store = dir.join("store");
        remove_dir(&store)?;
        // A base the engine does not ship must be built once to know it
        // is supported at all.
        let first = match b.kiln_build(ctx, &store) {
            Ok(s) => s,
            Err(e) => {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or("failed").trim().to_owned();
                notes.push(format!("kiln with a `{label}` base did not build: {why}"));
                continue;
            }
        };
        let mut empty = vec![first.elapsed];
        for _ in 1..ROUNDS {
            remove_dir(&store)?;
            empty.push(b.kiln_build(ctx, &store)?.elapsed);
        }
        let stored: Vec<Duration> = (0..ROUNDS)
            .map(|_| b.kiln_build_no_cache(ctx, &store).map(|s| s.elapsed))
            .collect::<Result<_>>()?;
        let mut all_cached = true;
        let noop: Vec<Duration> = (0..ROUNDS)
            .map(|_| {
                let s = b.kiln_build(ctx, &store)?;
                all_cached &= cached_layers(&s.stdout)?.iter().all(|(_, c)| *c);
                Ok(s.elapsed)
            })
            .collect::<Result<_>>()?;
        let mut only_site = true;
        let mut changed = Vec::new();
        for round in 0..ROUNDS {
            touch_site(&[ctx], &format!("kiln {round}"))?;
            let s = b.kiln_build(ctx, &store)?;
            only_site &= cached_layers(&s.stdout)?
                .iter()
                .all(|(name, cached)| *cached == (name != "site"));
            changed.push(s.elapsed);
        }
        let m = |v: &[Duration]| median(v);
        rows.push(Row {
            scenario: format!("`{label}` cold, base already in the store"),
            kiln: m(&stored),
            peer: bk_cold,
            peer_name: "BuildKit --no-cache",
            target: 1.0,
            check: true,
        });
        rows.push(Row {
            scenario: format!("`{label}` cold, empty store"),
            kiln: m(&empty),
            peer: bk_cold,
            peer_name: "BuildKit --no-cache",
            target: 2.0,
            check: true,
        });
        rows.push(Row {
            scenario: format!("`{label}` nothing changed"),
            kiln: m(&noop),
            peer: bk_cached,
            peer_name: "BuildKit cached",
            target: 0.3,
            check: all_cached,
        });
        rows.push(Row {
            scenario: format!("`{label}` one file of the files layer changed"),
            kiln: m(&changed),
            peer: bk_changed,
            peer_name: "BuildKit",
            target: 0.3,
            check: only_site,
        });
        raw.push((format!("kiln `{label}` cold, empty store"), empty));
        raw.push((format!("kiln `{label}` --no-cache, base stored"), stored));
        raw.push((format!("kiln `{label}` nothing changed"), noop));
        raw.push((format!("kiln `{label}` one file changed"), changed));

        if label == "docker-daemon:" {
            eprintln!("==> Debian: kiln test of a held image vs docker run + exec");
            // `kiln test` takes out of the engine what it loaded, and
            // leaves alone what the engine held before: the image is put
            // there once (as a user's `docker-daemon:` export), then timed.
            b.time(
                "kiln export docker-daemon:",
                Command::new(&b.kiln)
                    .args(["export", "bench-debian:1.0.0"])
                    .arg(format!("docker-daemon:{HELD_TAG}"))
                    .arg("--store")
                    .arg(&store),
            )?;
            let kiln_test: Vec<Duration> = (0..ROUNDS)
                .map(|_| b.kiln_test(&store, "bench-debian:1.0.0").map(|s| s.elapsed))
                .collect::<Result<_>>()?;
            let image = String::from_utf8_lossy(
                &b.time(
                    "docker image inspect",
                    Command::new(DOCKER)
                        .args(["image", "inspect", "--format", "{{.Id}}", HELD_TAG]),
                )?
                .stdout,
            )
            .trim()
            .to_owned();
            let docker_run: Vec<Duration> = (0..ROUNDS)
                .map(|_| {
                    let script = format!(
                        "c=$({DOCKER} run -d --network none {image}) && {DOCKER} exec $c /usr/bin/id app >/dev/null; r=$?; {DOCKER} rm -f $c >/dev/null; exit $r"
                    );
                    b.time(
                        "docker run + exec + rm",
                        Command::new("bash").args(["-c", &script]).current_dir(&dir),
                    )
                    .map(|s| s.elapsed)
                })
                .collect::<Result<_>>()?;
            rows.push(Row {
                scenario: "`kiln test` of an image the engine holds (one command check)".into(),
                kiln: median(&kiln_test),
                peer: median(&docker_run),
                peer_name: "docker run + exec + rm",
                target: 1.2,
                check: true,
            });
            raw.push(("kiln test, image held".into(), kiln_test));
            raw.push(("docker run + exec + rm".into(), docker_run));
        }
        remove_dir(&store)?;
    }

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
    let (big_time, big_rss) = b.kiln_build_rss(&big, &big_store)?;
    remove_dir(&big_store)?;

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
    let _ = writeln!(t, "\nThe classic builder on the same Dockerfile:\n");
    let _ = writeln!(t, "| | BuildKit | classic |");
    let _ = writeln!(t, "| --- | ---: | ---: |");
    let classic = peers[1];
    for (what, bk, cl) in [
        ("--no-cache", bk_cold, classic.1),
        ("cached", bk_cached, classic.2),
        ("one file changed", bk_changed, classic.3),
    ] {
        let _ = writeln!(t, "| {what} | {} | {} |", secs(bk), secs(cl));
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

/// Append `line` to the first page of each context's site.
fn touch_site(ctxs: &[&PathBuf], line: &str) -> Result<()> {
    for ctx in ctxs {
        let page = ctx.join("site/page-00.html");
        fs::OpenOptions::new()
            .append(true)
            .open(&page)
            .and_then(|mut f| writeln!(f, "{line}"))
            .with_context(|| format!("appending to {}", page.display()))?;
    }
    Ok(())
}
