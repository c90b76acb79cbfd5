//! Bases from OCI layouts: imported blob for blob, followed through image
//! indexes, hostile input refused with errors that name the culprit.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use kiln_image::{
    BaseImage, Descriptor, Digest, EntryKind, ImageError, ImageSpec, LayerEntry, LayerRecord,
    RuntimeConfig, Store, assemble, import_oci_layout, load_image, to_canonical_json, write_layer,
};
use serde_json::{Value, json};

/// Build a base image by hand in the layout `dir` (named `base:1`): one
/// layer whose descriptor carries an annotation, and a config with fields
/// kiln does not model (`Healthcheck`, a top-level extra).
fn make_base(dir: &Path) -> Result<(Store, Descriptor, Value), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    let file = dir.join("kiln-test-busybox");
    fs::write(&file, "not really busybox\n")?;
    let blob = write_layer(
        &store,
        vec![
            LayerEntry {
                path: "/bin".into(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
            LayerEntry {
                path: "/bin/busybox".into(),
                kind: EntryKind::File {
                    source: file.clone(),
                },
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        ],
        0,
    )?;
    fs::remove_file(&file)?;
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "moby.buildkit.buildinfo.v1": "e30=",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "BASE=1"], "Cmd": ["sh"],
            "Healthcheck": {"Test": ["CMD", "/bin/busybox", "true"], "Interval": 1000000000},
            "Labels": {"base": "yes"}, "ExposedPorts": {"53/udp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": [blob.diff_id]},
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "base layer"}]
    });
    // Not canonical on purpose: a base's bytes are whatever its author wrote.
    let config_bytes = serde_json::to_vec_pretty(&config)?;
    let config_digest = store.put_blob(&config_bytes)?;
    let layer = json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": blob.digest, "size": blob.size,
        "annotations": {"org.example.origin": "hand-made"}
    });
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": [layer]
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    let descriptor = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        store.put_blob(&manifest_bytes)?,
        manifest_bytes.len() as u64,
    );
    store.set_ref("base:1", &descriptor)?;
    Ok((store, descriptor, layer))
}

fn child_of(
    store: &Store,
    base: BaseImage,
    ctx: &Path,
) -> Result<kiln_image::BuiltImage, ImageError> {
    let blob = write_layer(store, sample_entries(ctx)?, EPOCH)?;
    assemble(
        store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: Some(base),
            config: RuntimeConfig {
                entrypoint: Some(vec!["/www/bin/run.sh".into()]),
                env: indexmap::IndexMap::from([("PATH".into(), "/bin".into())]),
                exposed_ports: vec!["8080/tcp".into()],
                ..Default::default()
            },
            layers: vec![LayerRecord {
                blob,
                created_by: "kiln layer site: files".into(),
            }],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )
}

#[test]
fn child_keeps_base_layers_and_unknown_config_fields() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_layout, base_manifest, base_layer) = make_base(&dir.path().join("layout"))?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;

    let base = import_oci_layout(&store, &dir.path().join("layout"), Some("base:1"))?;
    assert_eq!(base.manifest_digest, base_manifest.digest);
    assert!(store.has_blob(&base.layers[0].digest));
    // Blobs are kept byte for byte, pretty-printed JSON included.
    assert_eq!(
        store.read_blob(&base.manifest_digest)?,
        fs::read(
            dir.path()
                .join("layout/blobs/sha256")
                .join(base.manifest_digest.hex())
        )?
    );

    let child = child_of(&store, base.clone(), &ctx)?;
    let manifest: Value = serde_json::from_slice(&store.read_blob(&child.manifest.digest)?)?;
    assert_eq!(
        manifest["layers"][0], base_layer,
        "the base layer descriptor is carried unchanged"
    );
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let config: Value = serde_json::from_slice(&store.read_blob(&child.config_digest)?)?;
    assert_eq!(config["moby.buildkit.buildinfo.v1"], "e30=");
    assert_eq!(
        config["config"]["Healthcheck"]["Test"],
        json!(["CMD", "/bin/busybox", "true"])
    );
    // The base's order; its PATH overridden in its place.
    assert_eq!(config["config"]["Env"], json!(["PATH=/bin", "BASE=1"]));
    assert_eq!(
        config["config"]["Cmd"],
        Value::Null,
        "an entrypoint without cmd clears the base's cmd"
    );
    assert_eq!(config["config"]["Labels"], json!({"base": "yes"}));
    assert_eq!(
        config["config"]["ExposedPorts"],
        json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["rootfs"]["diff_ids"][0], json!(base.diff_ids[0]));
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );
    let history: Vec<&str> = config["history"]
        .as_array()
        .ok_or("history")?
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert_eq!(history, ["base layer", "kiln layer site: files"]);
    assert_eq!(
        to_canonical_json(&config)?,
        store.read_blob(&child.config_digest)?
    );

    let loaded = load_image(&store, &child.manifest.digest)?;
    assert_eq!(loaded.layers, child.layers);
    assert_eq!(loaded.diff_ids.len(), 2);

    // Importing again changes nothing; the same child comes out.
    let again = import_oci_layout(&store, &dir.path().join("layout"), Some("base:1"))?;
    assert_eq!(child_of(&store, again, &ctx)?, child);
    Ok(())
}

#[test]
fn a_layout_with_one_image_needs_no_reference() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_layout, descriptor, _) = make_base(&dir.path().join("layout"))?;
    let store = Store::open(dir.path().join("store"))?;
    assert_eq!(
        import_oci_layout(&store, &dir.path().join("layout"), None)?.manifest_digest,
        descriptor.digest
    );
    Ok(())
}

#[test]
fn references_are_checked_and_listed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (layout, descriptor, _) = make_base(&dir.path().join("layout"))?;
    layout.set_ref("base:2", &descriptor)?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_layout(&store, layout.root(), Some("base:3")) {
        Err(ImageError::UnknownRef {
            reference,
            available,
            ..
        }) => {
            assert_eq!(reference, "base:3");
            assert_eq!(available, ["base:1", "base:2"]);
        }
        other => return Err(format!("expected UnknownRef, got {other:?}").into()),
    }
    assert!(matches!(
        import_oci_layout(&store, layout.root(), None),
        Err(ImageError::RefRequired { .. })
    ));
    Ok(())
}

#[test]
fn an_index_is_followed_to_linux_amd64() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (layout, descriptor, _) = make_base(&dir.path().join("layout"))?;
    let mut arm = descriptor.clone();
    arm.digest = Digest::of(b"an arm64 manifest that is not there");
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": arm.media_type, "digest": arm.digest, "size": 10, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": descriptor.media_type, "digest": descriptor.digest, "size": descriptor.size, "platform": {"architecture": "amd64", "os": "linux"}}
        ]
    });
    let bytes = serde_json::to_vec(&index)?;
    let index_digest = layout.put_blob(&bytes)?;
    layout.set_ref(
        "multi",
        &Descriptor::new(
            "application/vnd.oci.image.index.v1+json",
            index_digest,
            bytes.len() as u64,
        ),
    )?;
    let store = Store::open(dir.path().join("store"))?;
    let base = import_oci_layout(&store, layout.root(), Some("multi"))?;
    assert_eq!(base.manifest_digest, descriptor.digest);
    Ok(())
}

#[test]
fn a_tampered_blob_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (layout, _, layer) = make_base(&dir.path().join("layout"))?;
    let digest: Digest = layer["digest"].as_str().ok_or("digest")?.parse()?;
    let path = layout.blob_path(&digest);
    let mut bytes = fs::read(&path)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes)?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_layout(&store, layout.root(), Some("base:1")) {
        Err(ImageError::DigestMismatch {
            source_path,
            expected,
            ..
        }) => {
            assert_eq!(expected, digest);
            assert_eq!(source_path, path);
        }
        other => return Err(format!("expected DigestMismatch, got {other:?}").into()),
    }
    assert!(!store.has_blob(&digest));
    Ok(())
}

#[test]
fn a_missing_blob_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (layout, _, layer) = make_base(&dir.path().join("layout"))?;
    let digest: Digest = layer["digest"].as_str().ok_or("digest")?.parse()?;
    fs::remove_file(layout.blob_path(&digest))?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_layout(&store, layout.root(), None) {
        Err(ImageError::MissingBlob { digest: d, .. }) => assert_eq!(d, digest),
        other => return Err(format!("expected MissingBlob, got {other:?}").into()),
    }
    Ok(())
}

/// Write `manifest` into the layout and name it `bad`.
fn name_manifest(layout: &Store, manifest: &Value) -> TestResult {
    let bytes = serde_json::to_vec(manifest)?;
    let d = layout.put_blob(&bytes)?;
    layout.set_ref(
        "bad",
        &Descriptor::new(
            "application/vnd.oci.image.manifest.v1+json",
            d,
            bytes.len() as u64,
        ),
    )?;
    Ok(())
}

#[test]
fn hostile_documents_are_refused_without_panicking() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (layout, descriptor, layer) = make_base(&dir.path().join("layout"))?;
    let good: Value = serde_json::from_slice(&layout.read_blob(&descriptor.digest)?)?;
    let store = Store::open(dir.path().join("store"))?;
    let import = |m: Value| -> Result<ImageError, Box<dyn std::error::Error>> {
        name_manifest(&layout, &m)?;
        match import_oci_layout(&store, layout.root(), Some("bad")) {
            Err(e) => Ok(e),
            Ok(_) => Err(format!("accepted {m}").into()),
        }
    };

    let mut zstd = good.clone();
    zstd["layers"][0]["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+zstd");
    assert!(matches!(
        import(zstd)?,
        ImageError::UnsupportedMediaType { .. }
    ));

    let mut no_layers = good.clone();
    no_layers.as_object_mut().ok_or("object")?.remove("layers");
    assert!(matches!(
        import(no_layers)?,
        ImageError::InvalidDocument { .. }
    ));

    let mut bad_digest = good.clone();
    bad_digest["config"]["digest"] = json!("sha256:zz");
    assert!(matches!(
        import(bad_digest)?,
        ImageError::InvalidDocument { .. }
    ));

    let mut wrong_type = good.clone();
    wrong_type["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
    assert!(matches!(
        import(wrong_type)?,
        ImageError::UnsupportedMediaType { .. }
    ));

    let mut two_layers = good.clone();
    two_layers["layers"] = json!([layer, layer]);
    assert!(matches!(
        import(two_layers)?,
        ImageError::InvalidDocument { what: "config", .. }
    ));

    fs::write(layout.root().join("index.json"), "{not json")?;
    assert!(matches!(
        import_oci_layout(&store, layout.root(), None),
        Err(ImageError::Json { .. })
    ));
    fs::remove_file(layout.root().join("oci-layout"))?;
    assert!(matches!(
        import_oci_layout(&store, layout.root(), None),
        Err(ImageError::InvalidLayout { .. })
    ));
    Ok(())
}
