//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run kiln's cargo-fuzz
//! targets (fuzz/) one after the other, each for N seconds (60 unless
//! told), then copy any crash into `fuzz/seeds/<target>/` so that it stays a
//! regression test under stable. Needs the nightly toolchain and
//! cargo-fuzz; says which is missing instead of failing obscurely.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run};

/// The targets in fuzz/Cargo.toml.
const TARGETS: &[&str] = &["recipe", "base_layer", "documents"];

pub fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds: u64 = 60;
    let mut targets = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = rest.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value:?} is not a whole number"))?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            other => bail!(
                "unknown fuzz argument {other:?}: give --seconds N and targets among {}",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    check_tools()?;
    let fuzz_dir = root().join("fuzz");
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let seeds = fuzz_dir.join("seeds").join(target);
        let outcome = run(
            &format!("fuzz {target} for {seconds} s"),
            Command::new("cargo")
                .args(["+nightly", "fuzz", "run", "--features", "libfuzzer", target])
                .arg(&corpus)
                .arg(&seeds)
                .args([
                    "--",
                    &format!("-max_total_time={seconds}"),
                    "-print_final_stats=1",
                ])
                .current_dir(&fuzz_dir),
        );
        keep_crashes(&fuzz_dir, target)?;
        outcome?;
    }
    Ok(())
}

/// Fail with a clear message when nightly or cargo-fuzz is missing.
fn check_tools() -> Result<()> {
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!(
            "fuzzing needs the nightly toolchain (`cargo +nightly` did not run); the kept inputs still run under stable: cargo test --manifest-path fuzz/Cargo.toml"
        );
    }
    let cargo_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_fuzz {
        bail!(
            "fuzzing needs cargo-fuzz: cargo install cargo-fuzz (from crates.io); the kept inputs still run under stable: cargo test --manifest-path fuzz/Cargo.toml"
        );
    }
    Ok(())
}

/// Copy what libFuzzer saved as a crash, leak or timeout of `target` into
/// its seeds, where the stable tests replay it.
fn keep_crashes(fuzz_dir: &Path, target: &str) -> Result<()> {
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let Ok(entries) = std::fs::read_dir(&artifacts) else {
        return Ok(());
    };
    let seeds = fuzz_dir.join("seeds").join(target);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let kept = seeds.join(&name);
        if !kept.exists() {
            std::fs::copy(entry.path(), &kept)
                .with_context(|| format!("cannot keep {}", entry.path().display()))?;
            eprintln!("kept {} as a regression input", kept.display());
        }
    }
    Ok(())
}
