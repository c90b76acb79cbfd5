//! cosign 2.x for the signing tests: Debian 13 (trixie) packages it, this
//! machine runs Debian 12, so its .deb is fetched from the machine's own
//! Debian mirror through a private apt source list, state and cache under
//! the target folder, and unpacked with `dpkg -x` into
//! `<target>/tools/cosign/`. The system's apt set-up is never touched, and
//! no host name is written here: the mirror is read from apt's sources.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{debian, target_dir};

/// The variable the tests read to find cosign.
pub const ENV: &str = "KILN_COSIGN";
/// The Debian release whose cosign (2.x) is used.
const SUITE: &str = "trixie";

/// Fetch and unpack cosign unless it is there; its path.
pub fn ensure() -> Result<PathBuf> {
    let tools = target_dir().join("tools").join("cosign");
    let binary = tools.join("usr/bin/cosign");
    if binary.is_file() {
        return Ok(binary);
    }
    let apt = target_dir().join("tools").join("cosign-apt");
    for dir in ["lists/partial", "cache/archives/partial", "download"] {
        std::fs::create_dir_all(apt.join(dir))?;
    }
    let mirror = debian::mirror()?;
    let sources = apt.join("sources.list");
    std::fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {SUITE} main\n"
        ),
    )?;
    let options = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_owned(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        // Download as the calling user: _apt may not write the target folder.
        "APT::Sandbox::User=root".to_owned(),
    ];
    let apt_get = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new("apt-get");
        for option in &options {
            cmd.arg("-o").arg(option);
        }
        let status = cmd
            .args(args)
            .current_dir(apt.join("download"))
            .status()
            .context("could not start apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    eprintln!("==> cosign: apt-get download cosign from {SUITE} (private source list)");
    apt_get(&["-qq", "update"])?;
    apt_get(&["-qq", "download", "cosign"])?;
    let deb = std::fs::read_dir(apt.join("download"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cosign_"))
        })
        .context("apt-get download left no cosign_*.deb")?;
    std::fs::create_dir_all(&tools)?;
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&tools)
        .status()
        .context("could not start dpkg")?;
    if !status.success() || !binary.is_file() {
        bail!(
            "dpkg -x {} did not give {}",
            deb.display(),
            binary.display()
        );
    }
    Ok(binary)
}
