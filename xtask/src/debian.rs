//! The shared Debian root fixture: a debootstrap minbase bookworm tree from
//! this machine's own Debian mirror, staged once under the target folder and
//! handed to the tests as `KILN_DEBIAN_ROOTFS`.
//!
//! The mirror is read from apt's sources at run time (deb822
//! `/etc/apt/sources.list.d/*.sources`, then `/etc/apt/sources.list`), so no
//! host name is ever written into the repository. The tree is reused when a
//! marker file, written only after debootstrap succeeded, is present: a
//! staging interrupted half way is started again from nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{prerequisites, target_dir};

/// The Debian release staged, and the environment variable that tells the
/// tests where its root is.
const SUITE: &str = "bookworm";
/// The variable tests read.
pub const ENV: &str = "KILN_DEBIAN_ROOTFS";

/// Where the fixture lives: `<target>/fixtures/debian-bookworm/`.
fn fixture_dir() -> PathBuf {
    target_dir()
        .join("fixtures")
        .join(format!("debian-{SUITE}"))
}

/// Stage the root (or reuse a complete one) and return its path. A root
/// already given in [`ENV`] (as the tests take it) is used as it is, so
/// that a second checkout does not debootstrap its own.
pub fn stage() -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(ENV).map(PathBuf::from)
        && given.join("etc/debian_version").is_file()
    {
        return Ok(given);
    }
    let dir = fixture_dir();
    let rootfs = dir.join("rootfs");
    let marker = dir.join("complete");
    if marker.is_file() && rootfs.join("etc/debian_version").is_file() {
        return Ok(rootfs);
    }
    if !prerequisites::is_root() {
        bail!(
            "staging the Debian root needs root (debootstrap creates device nodes and \
             owners); run `sudo cargo xtask stage-debian`"
        );
    }
    prerequisites::ensure(&[("/usr/sbin/debootstrap", "debootstrap")])?;
    let mirror = mirror()?;
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)
            .with_context(|| format!("removing the partial root {}", rootfs.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "==> debootstrap --variant=minbase {SUITE} {} {mirror}",
        rootfs.display()
    );
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&rootfs)
        .arg(&mirror)
        .status()
        .context("could not start debootstrap")?;
    if !status.success() {
        bail!(
            "debootstrap failed ({status}); see {}",
            rootfs.join("debootstrap/debootstrap.log").display()
        );
    }
    std::fs::write(&marker, format!("debootstrap --variant=minbase {SUITE}\n"))?;
    Ok(rootfs)
}

/// `cargo xtask stage-debian`: stage, link `images/debian/rootfs` to the
/// staged root (what that recipe's `rootfs:rootfs` base reads), and say how
/// to use it.
pub fn stage_command() -> Result<()> {
    let rootfs = stage()?;
    link_into_image(&rootfs)?;
    println!("{}", rootfs.display());
    eprintln!("==> export {ENV}={}", rootfs.display());
    Ok(())
}

/// Point `images/debian/rootfs` at the staged root (replacing an older
/// link; never a real folder someone put there).
fn link_into_image(rootfs: &Path) -> Result<()> {
    let link = crate::root().join("images/debian/rootfs");
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(&link)?,
        Ok(_) => bail!(
            "{} exists and is not a symlink: move it away to let stage-debian link the staged root",
            link.display()
        ),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(rootfs, &link).with_context(|| format!("linking {}", link.display()))
}

/// The first Debian mirror apt on this machine uses for the main archive.
pub(crate) fn mirror() -> Result<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == "sources") {
                found.extend(read(&path).map(|t| deb822_uris(&t)).unwrap_or_default());
            }
        }
    }
    found.extend(
        read(Path::new("/etc/apt/sources.list"))
            .map(|t| one_line_uris(&t))
            .unwrap_or_default(),
    );
    found.into_iter().next().with_context(|| {
        format!(
            "no Debian mirror for {SUITE} found in /etc/apt/sources.list.d/*.sources or \
             /etc/apt/sources.list"
        )
    })
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `URIs:` of deb822 stanzas whose `Suites:` hold the plain suite (not
/// `-security` or `-updates`, which are other archives).
fn deb822_uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut uris = Vec::new();
        let mut suite = false;
        let mut deb = true;
        for line in stanza.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "uris" => uris.extend(value.split_whitespace().map(str::to_owned)),
                "suites" => suite = value.split_whitespace().any(|s| s == SUITE),
                "types" => deb = value.split_whitespace().any(|t| t == "deb"),
                _ => {}
            }
        }
        if suite && deb {
            out.extend(uris);
        }
    }
    out
}

/// URIs of `deb [options] URI SUITE ...` lines for the plain suite.
fn one_line_uris(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?;
            (words.next()? == SUITE).then(|| uri.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_takes_the_main_suite_only() {
        let text = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\nTypes: deb\nURIs: http://mirror.invalid/debian-security\n\
                    Suites: bookworm-security\n";
        assert_eq!(deb822_uris(text), ["http://mirror.invalid/debian"]);
    }

    #[test]
    fn one_line_sources_skip_options_and_other_suites() {
        let text = "# comment\ndeb [arch=amd64] http://a.invalid/debian bookworm main\n\
                    deb http://b.invalid/debian-security bookworm-security main\n\
                    deb-src http://c.invalid/debian bookworm main\n";
        assert_eq!(one_line_uris(text), ["http://a.invalid/debian"]);
    }
}
