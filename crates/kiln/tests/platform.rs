//! `[image] platform`: a multi-platform base (an index in an OCI layout or
//! an OCI archive) is followed to the recipe's platform (the host's by
//! default), and the built image's config records the platform. No
//! container engine: file layers only.

use std::path::Path;

use kiln::recipe::Platform as RecipePlatform;
use kiln::{BuildOptions, NoEvents, Store};
use kiln_image::Platform;
use serde_json::{Value, json};

mod support;
use support::block_on;

/// Build `recipe` (parsed with `ctx` as its folder) into `store`; return
/// the image's config as JSON.
fn build(store: &Store, ctx: &Path, recipe: &str, name: &str) -> Value {
    support::parse_and_build(store, ctx, recipe);
    let inspection = kiln::inspect(store, name).expect("inspect");
    serde_json::from_slice(&inspection.config_bytes).expect("config json")
}

/// A scratch image named `name` for `platform` whose one file `/which`
/// says `platform`; returns its manifest digest and size.
fn platform_image(store: &Store, ctx: &Path, name: &str, platform: &str) -> (String, u64) {
    std::fs::write(ctx.join("which"), platform).expect("write");
    let config = build(
        store,
        ctx,
        &format!(
            "[image]\nname = \"{name}\"\nepoch = 1700000000\nplatform = \"{platform}\"\n\
             [[layer]]\nname = \"which\"\nfiles = [{{ src = \"which\", dest = \"/which\" }}]\n"
        ),
        name,
    );
    let wanted = platform.parse::<RecipePlatform>().expect("platform");
    // On scratch the config records the recipe's platform.
    assert_eq!(config["os"], json!(wanted.os()));
    assert_eq!(config["architecture"], json!(wanted.architecture()));
    let inspection = kiln::inspect(store, name).expect("inspect");
    (
        inspection.digest.to_string(),
        inspection.manifest_bytes.len() as u64,
    )
}

/// An OCI layout in `dir` whose ref `multi` is an image index of two
/// images, one for each of `platforms`, copied from `store`.
fn multi_platform_layout(store: &Store, ctx: &Path, dir: &Path, platforms: [&str; 2]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let mut manifests = Vec::new();
    for (i, platform) in platforms.into_iter().enumerate() {
        let (digest, size) = platform_image(store, ctx, &format!("base{i}"), platform);
        let p = platform.parse::<RecipePlatform>().expect("platform");
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "platform": {"os": p.os(), "architecture": p.architecture()},
        }));
    }
    for entry in std::fs::read_dir(store.root().join("blobs/sha256")).expect("blobs") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), blobs.join(entry.file_name())).expect("copy blob");
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("index");
    let index_digest = kiln::Digest::of(&index);
    std::fs::write(blobs.join(index_digest.hex()), &index).expect("write index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest.to_string(),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("index.json");
}

/// The first layer of the image `name`: which base it was built on.
fn first_layer(store: &Store, name: &str) -> String {
    let inspection = kiln::inspect(store, name).expect("inspect");
    inspection.manifest.layers()[0].digest().to_string()
}

#[test]
fn a_multi_platform_base_gives_the_recipe_platform_else_the_hosts() {
    let (ctx, store_dir, layout, other) = multi_platform_fixture();
    let store = Store::open(store_dir.path()).expect("store");
    let base = format!("oci:{}:multi", layout.path().display());
    picks_by_platform(&store, ctx.path(), &base, other, "layout");
}

#[test]
fn an_oci_archive_holding_an_index_gives_the_recipe_platform_else_the_hosts() {
    let (ctx, store_dir, layout, other) = multi_platform_fixture();
    let store = Store::open(store_dir.path()).expect("store");
    // The same layout as an OCI archive: a tar of the layout's files, as
    // `skopeo copy ... oci-archive:` writes it.
    let archive = ctx.path().join("multi.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(layout.path())
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .expect("tar");
    assert!(status.success(), "tar failed");
    for (base, what) in [
        (format!("oci-archive:{}", archive.display()), "archive"),
        (
            format!("oci-archive:{}:multi", archive.display()),
            "archive-ref",
        ),
    ] {
        picks_by_platform(&store, ctx.path(), &base, other, what);
    }
}

/// A build folder, a store and an OCI layout in three temporary folders;
/// the layout's ref `multi` is an index of an image for the host and one
/// for another platform, which is returned too.
fn multi_platform_fixture() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    tempfile::TempDir,
    &'static str,
) {
    let host = Platform::host().to_string();
    let other = if Platform::host().architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let ctx = tempfile::tempdir().expect("tmp");
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(store_dir.path()).expect("store");
    let layout = tempfile::tempdir().expect("tmp");
    multi_platform_layout(&store, ctx.path(), layout.path(), [other, &host]);
    (ctx, store_dir, layout, other)
}

/// Build on `base` (the index [`multi_platform_fixture`] made, by some
/// transport) with `[image] platform = other`, then without the key, then
/// for a platform the index lacks; the images are named after `what`.
fn picks_by_platform(store: &Store, ctx: &Path, base: &str, other: &str, what: &str) {
    let on = |name: &str, platform: &str| {
        format!(
            "[image]\nname = \"{name}\"\nepoch = 1700000000\nbase = \"{base}\"\n{platform}\
             [config]\ncmd = [\"/bin/true\"]\n"
        )
    };
    let (picked, default) = (format!("picked-{what}"), format!("default-{what}"));

    // The key picks its platform's image, and the config says so.
    let config = build(
        store,
        ctx,
        &on(&picked, &format!("platform = \"{other}\"\n")),
        &picked,
    );
    let wanted = other.parse::<RecipePlatform>().expect("platform");
    assert_ne!(first_layer(store, "base0"), first_layer(store, "base1"));
    assert_eq!(first_layer(store, &picked), first_layer(store, "base0"));
    assert_eq!(config["architecture"], json!(wanted.architecture()));
    assert_eq!(config["os"], json!("linux"));

    // Without the key: the host's.
    let config = build(store, ctx, &on(&default, ""), &default);
    assert_eq!(first_layer(store, &default), first_layer(store, "base1"));
    assert_eq!(config["architecture"], json!(Platform::host().architecture));

    // A platform the index lacks is an error naming what it has.
    let recipe = kiln::parse_recipe(
        &on(&format!("none-{what}"), "platform = \"linux/s390x\"\n"),
        ctx,
    )
    .expect("parse");
    let err = block_on(kiln::build(
        store,
        &recipe,
        &BuildOptions::default(),
        None,
        &NoEvents,
    ))
    .expect_err("no s390x image");
    let text = kiln::Chain(&err).to_string();
    assert!(text.contains("linux/s390x"), "{text}");
}
