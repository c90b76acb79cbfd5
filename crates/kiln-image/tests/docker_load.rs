//! `docker load` (Docker 20.10) accepts kiln's loadable archive: the image id
//! is the config digest and the layers are the diff_ids. Skipped (or failed
//! under KILN_REQUIRE_ENGINE=1 / CI=true) without a container engine.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use common::*;
use kiln_image::{
    Digest, ImageSpec, LayerRecord, RuntimeConfig, Store, assemble, load_image,
    write_docker_loadable, write_layer,
};

/// Removes the image from the engine however the test ends.
struct Rmi(String);

impl Drop for Rmi {
    fn drop(&mut self) {
        let _ = run("docker", &["rmi", "--force", &self.0]);
    }
}

#[test]
fn docker_loads_the_archive() -> TestResult {
    if !engine_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    // Two layers, so that the order of RootFS.Layers is checked too.
    let first = build_sample(&store, &dir.path().join("ctx"))?;
    let base = load_image(&store, &first.manifest.digest)?;
    let extra = write_layer(&store, vec![], EPOCH)?;
    let built = assemble(
        &store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: Some(base),
            config: RuntimeConfig {
                labels: BTreeMap::from([("layer".into(), "two".into())]),
                ..Default::default()
            },
            layers: vec![LayerRecord {
                blob: extra,
                created_by: "kiln layer empty: files".into(),
            }],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )?;
    let tag = format!("kiln-image-test:{}", &built.manifest.digest.hex()[..12]);
    let archive = dir.path().join("image.tar");
    write_docker_loadable(
        &store,
        &built.manifest.digest,
        std::slice::from_ref(&tag),
        fs::File::create(&archive)?,
    )?;

    let _cleanup = Rmi(tag.clone());
    run("docker", &["load", "-i", &archive.to_string_lossy()])?;
    let inspect = run("docker", &["image", "inspect", &tag])?;
    let v: serde_json::Value = serde_json::from_str(&inspect)?;
    assert_eq!(v[0]["Id"], built.config_digest.as_str());
    let diff_ids = load_image(&store, &built.manifest.digest)?.diff_ids;
    let layers: Vec<Digest> = serde_json::from_value(v[0]["RootFS"]["Layers"].clone())?;
    assert_eq!(layers, diff_ids);
    assert_eq!(v[0]["Config"]["Labels"]["layer"], "two");
    Ok(())
}

#[test]
fn the_archive_is_deterministic_and_complete() -> TestResult {
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &dir.path().join("ctx"))?;
    let mut one = Vec::new();
    let mut two = Vec::new();
    write_docker_loadable(&store, &built.manifest.digest, &["web:1".into()], &mut one)?;
    write_docker_loadable(&store, &built.manifest.digest, &["web:1".into()], &mut two)?;
    assert!(one == two);

    let mut names = Vec::new();
    let mut manifest_json = String::new();
    for entry in tar::Archive::new(&one[..]).entries()? {
        let mut entry = entry?;
        let name = String::from_utf8(entry.path_bytes().into_owned())?;
        if name == "manifest.json" {
            entry.read_to_string(&mut manifest_json)?;
        }
        names.push(name);
    }
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let mut expected = vec![
        "blobs/".to_owned(),
        "blobs/sha256/".to_owned(),
        blob(&built.manifest.digest),
        blob(&built.config_digest),
        blob(&built.layers[0].digest),
    ];
    expected[2..].sort();
    expected.extend([
        "index.json".to_owned(),
        "manifest.json".to_owned(),
        "oci-layout".to_owned(),
    ]);
    assert_eq!(names, expected);
    assert_eq!(
        manifest_json,
        format!(
            r#"[{{"Config":"{}","Layers":["{}"],"RepoTags":["web:1"]}}]"#,
            blob(&built.config_digest),
            blob(&built.layers[0].digest)
        )
    );
    Ok(())
}

#[test]
fn a_corrupt_blob_stops_the_export() -> TestResult {
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &dir.path().join("ctx"))?;
    let path = store.blob_path(&built.layers[0].digest);
    let mut bytes = fs::read(&path)?;
    bytes[20] ^= 1;
    fs::write(&path, bytes)?;
    let result = write_docker_loadable(&store, &built.manifest.digest, &[], std::io::sink());
    assert!(
        matches!(result, Err(kiln_image::ImageError::CorruptBlob { .. })),
        "{result:?}"
    );
    Ok(())
}
