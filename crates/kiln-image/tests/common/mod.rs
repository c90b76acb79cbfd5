//! Helpers shared by the integration tests: a sample build context, the
//! layer and image built from it, and the "needs an outside tool" gate.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use kiln_image::{
    BuiltImage, CopySpec, EntryKind, ImageError, ImageSpec, LayerEntry, LayerRecord, RuntimeConfig,
    Store, assemble, plan_copy, rfc3339, write_layer,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The epoch the sample image is built with.
pub const EPOCH: u64 = 1_700_000_000;

/// A path component that makes the sample's long path exceed 100 bytes.
pub const LONG: &str =
    "a-folder-name-that-is-quite-long-on-purpose-so-that-the-path-exceeds-the-tar-name-field";

/// How a checkout of the sample differs from another: the file permissions
/// a different umask gives, and the file times.
#[derive(Clone, Copy)]
pub struct Variant {
    pub file_mode: u32,
    pub exec_mode: u32,
    pub mtime: SystemTime,
}

pub const UMASK_002: Variant = Variant {
    file_mode: 0o664,
    exec_mode: 0o775,
    mtime: SystemTime::UNIX_EPOCH,
};

pub fn umask_022() -> Variant {
    Variant {
        file_mode: 0o644,
        exec_mode: 0o755,
        mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890),
    }
}

fn write(path: &Path, content: &[u8], mode: u32, mtime: SystemTime) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(mtime)
}

/// Lay out the sample build context in `ctx`.
pub fn make_context(ctx: &Path, v: Variant) -> std::io::Result<()> {
    let site = ctx.join("site");
    write(
        &site.join("index.html"),
        b"<h1>hello</h1>\n",
        v.file_mode,
        v.mtime,
    )?;
    write(
        &site.join("bin/run.sh"),
        b"#!/bin/sh\necho run\n",
        v.exec_mode,
        v.mtime,
    )?;
    write(&site.join("junk.tmp"), b"excluded", v.file_mode, v.mtime)?;
    write(
        &site.join("cache/entry.tmp"),
        b"excluded too",
        v.file_mode,
        v.mtime,
    )?;
    write(
        &site.join(LONG).join(LONG).join("deep.txt"),
        b"deep\n",
        v.file_mode,
        v.mtime,
    )?;
    fs::create_dir_all(site.join("empty"))?;
    symlink("index.html", site.join("home.html"))?;
    write(
        &ctx.join("secret.conf"),
        b"password = none\n",
        v.file_mode,
        v.mtime,
    )?;
    write(
        &ctx.join("tools/su-helper"),
        b"\x7fELF not really\n",
        v.exec_mode,
        v.mtime,
    )?;
    Ok(())
}

/// The entries of the sample layer, as a facade would plan them.
pub fn sample_entries(ctx: &Path) -> Result<Vec<LayerEntry>, ImageError> {
    let mut entries = plan_copy(
        ctx,
        &CopySpec {
            src: "site/".into(),
            dest: "/www/".into(),
            mode: None,
            uid: 0,
            gid: 0,
            exclude: vec!["**/*.tmp".into()],
            preserve: false,
        },
    )?;
    entries.extend(plan_copy(
        ctx,
        &CopySpec {
            src: "secret.conf".into(),
            dest: "/etc/app/secret.conf".into(),
            mode: Some(0o640),
            uid: 1000,
            gid: 1000,
            exclude: vec![],
            preserve: false,
        },
    )?);
    entries.extend(plan_copy(
        ctx,
        &CopySpec {
            src: "tools/su-helper".into(),
            dest: "/usr/local/bin/".into(),
            mode: Some(0o4755),
            uid: 0,
            gid: 0,
            exclude: vec![],
            preserve: false,
        },
    )?);
    entries.push(LayerEntry {
        path: "/tmp".into(),
        kind: EntryKind::Dir,
        mode: 0o1777,
        uid: 0,
        gid: 0,
    });
    entries.push(LayerEntry {
        path: "/bin/sh".into(),
        kind: EntryKind::Symlink {
            target: "busybox".into(),
        },
        mode: 0o777,
        uid: 0,
        gid: 0,
    });
    Ok(entries)
}

pub fn sample_config() -> RuntimeConfig {
    RuntimeConfig {
        entrypoint: Some(vec!["/www/bin/run.sh".into()]),
        cmd: Some(vec!["--serve".into()]),
        env: indexmap::IndexMap::from([
            ("MODE".into(), "prod".into()),
            ("PATH".into(), "/bin:/usr/local/bin".into()),
        ]),
        workdir: Some("/www".into()),
        user: Some("1000:1000".into()),
        exposed_ports: vec!["8080/tcp".into()],
        labels: BTreeMap::from([(
            "org.opencontainers.image.source".into(),
            "https://example.com/web".into(),
        )]),
        stop_signal: Some("SIGTERM".into()),
        volumes: vec!["/data".into()],
    }
}

pub fn annotations(epoch: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("org.opencontainers.image.created".into(), rfc3339(epoch)),
        ("org.opencontainers.image.title".into(), "web".into()),
        ("org.opencontainers.image.version".into(), "1.4.2".into()),
    ])
}

/// Build the sample image from the context in `ctx` into `store`.
pub fn build_sample(store: &Store, ctx: &Path) -> Result<BuiltImage, ImageError> {
    let blob = write_layer(store, sample_entries(ctx)?, EPOCH)?;
    assemble(
        store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: None,
            config: sample_config(),
            layers: vec![LayerRecord {
                blob,
                created_by: "kiln layer site: files".into(),
            }],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )
}

/// Whether the outside tool `what` (checked by running `probe`) can be
/// used. Missing, the test fails when `KILN_REQUIRE_ENGINE=1` or `CI=true`,
/// and is skipped otherwise.
pub fn tool_available(what: &str, probe: &[&str]) -> bool {
    let ok = Command::new(probe[0])
        .args(&probe[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    assert!(
        !kiln_testkit::required(),
        "{what} is required (KILN_REQUIRE_ENGINE=1 or CI=true) but `{}` failed",
        probe.join(" ")
    );
    eprintln!("skipped: no {what}");
    false
}

/// The container engine, by the same convention.
pub fn engine_available() -> bool {
    if tool_available(
        "container engine",
        &["docker", "version", "--format", "{{.Server.Version}}"],
    ) {
        return true;
    }
    false
}

/// Run a command; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
