//! Bases from oci-archives: skopeo's and kiln's own archives import blob for
//! blob; references are checked; tampered, missing and malformed content is
//! refused naming the culprit.

mod common;

use std::io::Read;
use std::path::Path;

use common::*;
use kiln_image::{
    BuiltImage, ImageError, Store, import_oci_archive, write_docker_loadable, write_oci_archive,
};

/// The sample image in a store of its own at `dir/src`, named `web:1`.
fn source(dir: &Path) -> Result<(Store, BuiltImage), Box<dyn std::error::Error>> {
    make_context(&dir.join("ctx"), UMASK_002)?;
    let store = Store::open(dir.join("src"))?;
    let built = build_sample(&store, &dir.join("ctx"))?;
    store.set_ref("web:1", &built.manifest)?;
    Ok((store, built))
}

/// The members of a tar, as (name, bytes).
fn members(bytes: &[u8]) -> Result<Vec<(String, tar::Header, Vec<u8>)>, std::io::Error> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(bytes).entries()? {
        let mut entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push((name, header, data));
    }
    Ok(out)
}

fn tar_of(members: &[(String, tar::Header, Vec<u8>)]) -> Result<Vec<u8>, std::io::Error> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, header, data) in members {
        let mut header = header.clone();
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, &data[..])?;
    }
    builder.into_inner()
}

#[test]
fn a_skopeo_archive_imports_blob_for_blob() -> TestResult {
    if !tool_available("skopeo", &["skopeo", "--version"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let archive = dir.path().join("web.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:web:1", src.root().display()),
            &format!("oci-archive:{}:web:1", archive.display()),
        ],
    )?;
    let store = Store::open(dir.path().join("store"))?;
    let base = import_oci_archive(&store, &archive, Some("web:1"))?;
    assert_eq!(base.layers, built.layers);
    assert_eq!(base.manifest_digest, built.manifest.digest);
    assert_eq!(
        store.read_blob(&built.config_digest)?,
        src.read_blob(&built.config_digest)?
    );
    assert_eq!(
        store.read_blob(&built.layers[0].digest)?,
        src.read_blob(&built.layers[0].digest)?
    );
    Ok(())
}

#[test]
fn kiln_archives_round_trip_and_import_twice() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let archive = dir.path().join("web.tar");
    write_oci_archive(
        &src,
        &built.manifest.digest,
        "web:1",
        std::fs::File::create(&archive)?,
    )?;
    let store = Store::open(dir.path().join("store"))?;
    let one = import_oci_archive(&store, &archive, None)?;
    let two = import_oci_archive(&store, &archive, Some("web:1"))?;
    assert_eq!(one, two);
    assert_eq!(one.manifest_digest, built.manifest.digest);
    assert_eq!(one.layers, built.layers);
    Ok(())
}

#[test]
fn references_are_checked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let archive = dir.path().join("two.tar");
    // Two ref names for one image: a reference is required.
    write_docker_loadable(
        &src,
        &built.manifest.digest,
        &["web:1".into(), "web:latest".into()],
        std::fs::File::create(&archive)?,
    )?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_archive(&store, &archive, None) {
        Err(ImageError::RefRequired { available, .. }) => {
            assert_eq!(available, ["web:1", "web:latest"]);
        }
        other => return Err(format!("expected RefRequired, got {other:?}").into()),
    }
    match import_oci_archive(&store, &archive, Some("web:2")) {
        Err(e @ ImageError::UnknownRef { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("web:2") && message.contains("web:latest"),
                "{message}"
            );
        }
        other => return Err(format!("expected UnknownRef, got {other:?}").into()),
    }
    assert!(import_oci_archive(&store, &archive, Some("web:latest")).is_ok());
    Ok(())
}

#[test]
fn a_tampered_blob_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let mut bytes = Vec::new();
    write_oci_archive(&src, &built.manifest.digest, "web:1", &mut bytes)?;
    let mut parts = members(&bytes)?;
    let layer = format!("blobs/sha256/{}", built.layers[0].digest.hex());
    let (_, _, data) = parts
        .iter_mut()
        .find(|(name, _, _)| *name == layer)
        .ok_or("the layer is in the archive")?;
    data[30] ^= 1;
    let archive = dir.path().join("tampered.tar");
    std::fs::write(&archive, tar_of(&parts)?)?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_archive(&store, &archive, None) {
        Err(ImageError::DigestMismatch {
            source_path,
            expected,
            ..
        }) => {
            assert_eq!(expected, built.layers[0].digest);
            assert!(source_path.ends_with(&layer), "{}", source_path.display());
        }
        other => return Err(format!("expected DigestMismatch, got {other:?}").into()),
    }
    assert!(!store.has_blob(&built.layers[0].digest));
    Ok(())
}

#[test]
fn a_missing_blob_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let mut bytes = Vec::new();
    write_oci_archive(&src, &built.manifest.digest, "web:1", &mut bytes)?;
    let config = format!("blobs/sha256/{}", built.config_digest.hex());
    let parts: Vec<_> = members(&bytes)?
        .into_iter()
        .filter(|(name, _, _)| *name != config)
        .collect();
    let archive = dir.path().join("incomplete.tar");
    std::fs::write(&archive, tar_of(&parts)?)?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_archive(&store, &archive, None) {
        Err(ImageError::MissingBlob { digest, path }) => {
            assert_eq!(digest, built.config_digest);
            assert!(path.starts_with(&archive) && path.ends_with(&config));
        }
        other => return Err(format!("expected MissingBlob, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn malformed_archives_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("store"))?;

    let not_tar = dir.path().join("not.tar");
    std::fs::write(&not_tar, vec![b'x'; 1536])?;
    let result = import_oci_archive(&store, &not_tar, None);
    assert!(
        matches!(
            result,
            Err(ImageError::InvalidArchive {
                format: "oci-archive",
                ..
            })
        ),
        "{result:?}"
    );

    let (src, built) = source(dir.path())?;
    let mut bytes = Vec::new();
    write_oci_archive(&src, &built.manifest.digest, "web:1", &mut bytes)?;
    let parts: Vec<_> = members(&bytes)?
        .into_iter()
        .filter(|(name, _, _)| name != "oci-layout")
        .collect();
    let no_layout = dir.path().join("no-layout.tar");
    std::fs::write(&no_layout, tar_of(&parts)?)?;
    match import_oci_archive(&store, &no_layout, None) {
        Err(e @ ImageError::InvalidLayout { .. }) => {
            assert!(e.to_string().contains("no oci-layout"), "{e}");
        }
        other => return Err(format!("expected InvalidLayout, got {other:?}").into()),
    }
    let missing = import_oci_archive(&store, &dir.path().join("absent.tar"), None);
    assert!(matches!(missing, Err(ImageError::Io { .. })), "{missing:?}");
    Ok(())
}
