//! skopeo and umoci read what kiln writes: the store, exported layouts and
//! archives. Skipped (or failed under KILN_REQUIRE_ENGINE=1 / CI=true) when
//! the tools are missing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use kiln_image::{Store, write_docker_loadable, write_oci_archive, write_oci_layout_dir};

fn skopeo_digest(transport_ref: &str) -> Result<String, Box<dyn std::error::Error>> {
    let out = run("skopeo", &["inspect", transport_ref])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["Digest"]
        .as_str()
        .ok_or("no Digest in skopeo's answer")?
        .to_owned())
}

#[test]
fn skopeo_inspects_the_store() -> TestResult {
    if !tool_available("skopeo", &["skopeo", "--version"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &dir.path().join("ctx"))?;
    store.set_ref("web:1.4.2", &built.manifest)?;
    store.set_ref("web:stable", &built.manifest)?;
    let root = store.root().to_string_lossy().into_owned();
    assert_eq!(
        skopeo_digest(&format!("oci:{root}:web:1.4.2"))?,
        built.manifest.digest.as_str()
    );
    assert_eq!(
        skopeo_digest(&format!("oci:{root}:web:stable"))?,
        built.manifest.digest.as_str()
    );
    Ok(())
}

#[test]
fn umoci_unpacks_the_store() -> TestResult {
    if !tool_available("umoci", &["umoci", "--version"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &dir.path().join("ctx"))?;
    store.set_ref("web:1.4.2", &built.manifest)?;
    let bundle = dir.path().join("bundle");
    let image = format!("{}:web:1.4.2", store.root().display());
    let mut args = vec!["unpack", "--image", &image];
    let bundle_arg = bundle.to_string_lossy().into_owned();
    // umoci needs --rootless when not root; as root it keeps owners.
    let root = run("id", &["-u"]).map(|u| u.trim() == "0").unwrap_or(false);
    if !root {
        args.push("--rootless");
    }
    args.push(&bundle_arg);
    run("umoci", &args)?;

    let rootfs = bundle.join("rootfs");
    let mode =
        |p: &str| fs::symlink_metadata(rootfs.join(p)).map(|m| m.permissions().mode() & 0o7777);
    assert_eq!(
        fs::read(rootfs.join("www/index.html"))?,
        b"<h1>hello</h1>\n"
    );
    assert_eq!(
        fs::read(rootfs.join(format!("www/{LONG}/{LONG}/deep.txt")))?,
        b"deep\n"
    );
    assert_eq!(mode("www/bin/run.sh")?, 0o755);
    assert_eq!(mode("www/index.html")?, 0o644);
    assert_eq!(mode("etc/app/secret.conf")?, 0o640);
    assert_eq!(mode("tmp")?, 0o1777);
    if root {
        assert_eq!(mode("usr/local/bin/su-helper")?, 0o4755);
    }
    assert_eq!(
        fs::read_link(rootfs.join("www/home.html"))?,
        std::path::Path::new("index.html")
    );
    assert!(!rootfs.join("www/junk.tmp").exists());
    Ok(())
}

#[test]
fn exported_layouts_and_archives_are_read_by_skopeo() -> TestResult {
    if !tool_available("skopeo", &["skopeo", "--version"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &dir.path().join("ctx"))?;
    let digest = built.manifest.digest.as_str();

    let out_dir = dir.path().join("exported");
    write_oci_layout_dir(&store, &built.manifest.digest, "web:1.4.2", &out_dir)?;
    assert_eq!(
        skopeo_digest(&format!("oci:{}:web:1.4.2", out_dir.display()))?,
        digest
    );
    assert!(
        !out_dir.join("kiln").exists(),
        "no bookkeeping in exported layouts"
    );

    let archive = dir.path().join("web.tar");
    write_oci_archive(
        &store,
        &built.manifest.digest,
        "web:1.4.2",
        fs::File::create(&archive)?,
    )?;
    assert_eq!(
        skopeo_digest(&format!("oci-archive:{}:web:1.4.2", archive.display()))?,
        digest
    );

    let loadable = dir.path().join("docker.tar");
    write_docker_loadable(
        &store,
        &built.manifest.digest,
        &["web:1.4.2".into()],
        fs::File::create(&loadable)?,
    )?;
    assert_eq!(
        skopeo_digest(&format!("oci-archive:{}:web:1.4.2", loadable.display()))?,
        digest
    );
    Ok(())
}
