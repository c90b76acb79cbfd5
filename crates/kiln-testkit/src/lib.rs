//! What kiln's integration tests share across crates: a CNCF distribution
//! registry of their own on a loopback port ([`Registry`]), a TCP proxy in
//! front of it that counts the requests it carries and can cut or stall a
//! connection ([`Proxy`]), an htpasswd line for its Basic authentication
//! ([`htpasswd`]), a docker credential helper ([`credential_helper`]), the
//! rule for a missing outside tool ([`required`]), and the bytes the
//! process has read, which cancellation tests measure by
//! ([`bytes_read`], [`once_read`]), and a fixture tool run that must
//! succeed ([`run_ok`]).
//!
//! A dev-dependency only: no product crate depends on it
//! (ARCHITECTURE.md). Every helper panics on what a test cannot go on
//! without, and talks only to loopback addresses.

mod proxy;
mod reads;
mod registry;

pub use proxy::{Fault, Proxy};
pub use reads::{bytes_read, once_read};
pub use registry::Registry;

use std::path::Path;
use std::process::Command;

/// Write `dir/docker-credential-NAME`, a credential helper (as docker's
/// `credHelpers` and `credsStore` name them) that answers `get` with
/// `username`/`secret` for any host; the `PATH` that finds it first.
pub fn credential_helper(dir: &Path, name: &str, username: &str, secret: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).expect("mkdir the helper's folder");
    let helper = dir.join(format!("docker-credential-{name}"));
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\n[ \"$1\" = get ] && printf '{{\"ServerURL\":\"%s\",\"Username\":\"{username}\",\"Secret\":\"{secret}\"}}' \"$host\"\n"
        ),
    )
    .expect("write the helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))
        .expect("make the helper executable");
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Run `cmd` (a tool a test builds its fixture with: mknod, mkfifo...) and
/// fail the test unless it succeeds.
pub fn run_ok(cmd: &mut Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{cmd:?}: {status}");
}

/// Whether tests must fail, not skip, when a real part (the engine, the
/// registry, skopeo) is missing: `KILN_REQUIRE_ENGINE=1` or `CI=true`.
pub fn required() -> bool {
    std::env::var("KILN_REQUIRE_ENGINE").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the program at `path` is installed. Missing, the test fails
/// under [`required`], and is otherwise skipped after saying so.
pub fn have_tool_at(path: &str) -> bool {
    let found = Path::new(path).exists();
    assert!(
        found || !required(),
        "{path} is required (KILN_REQUIRE_ENGINE=1 or CI=true) but missing"
    );
    if !found {
        eprintln!("skipped: {path} is not installed");
    }
    found
}

/// An htpasswd line for `user`/`password` (bcrypt, from Python's crypt
/// module), as the registry's `auth.htpasswd` reads it; `None` (after
/// saying so, and failing under [`required`]) when python3 cannot make one.
pub fn htpasswd(user: &str, password: &str) -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            password,
        ])
        .output()
        .ok()
        .filter(|o| o.status.success());
    assert!(
        out.is_some() || !required(),
        "python3 with crypt is required to make an htpasswd file"
    );
    let Some(out) = out else {
        eprintln!("skipped: python3 cannot make a bcrypt hash");
        return None;
    };
    let hash = String::from_utf8(out.stdout).expect("a bcrypt hash is ASCII");
    Some(format!("{user}:{}\n", hash.trim()))
}
