//! The Debian packages the tests and the demo need, installed when missing.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

/// A program the tests run, and the Debian package that ships it.
const NEEDED: &[(&str, &str)] = &[
    ("/usr/sbin/dockerd", "docker.io"),
    ("/bin/busybox", "busybox-static"),
    ("/usr/bin/skopeo", "skopeo"),
    ("/usr/bin/umoci", "umoci"),
    // A CNCF distribution registry; tests start their own on a loopback
    // port (the package's own service, where systemd runs it, is not used).
    ("/usr/bin/docker-registry", "docker-registry"),
    // Peak memory of a child kiln (store_safety's `-j` memory bound; the
    // bench's peak-memory rows).
    ("/usr/bin/time", "time"),
];

/// Install every missing package the tests need with apt-get (as root);
/// elsewhere say what to install.
pub fn ensure_packages() -> Result<()> {
    ensure(NEEDED)
}

/// Install every missing package of `needed` (path, package) with apt-get
/// (as root); elsewhere say what to install.
pub fn ensure(needed: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing packages: {}; install them with `sudo apt-get install -y {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("==> apt-get install {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .arg("update")
        .arg("-qq")
        .status()?
        .success();
    if !ok {
        bail!("apt-get update failed");
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?
        .success();
    if !ok {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
