//! Writing images out of the store: an OCI layout folder, an OCI archive
//! (the layout as a tar), and a tar that Docker 20.10's `docker load`
//! accepts (the OCI archive plus a docker-archive `manifest.json` pointing
//! into `blobs/sha256/`; see docs/field-notes.md). Archive entries are sorted and
//! their headers fixed, so the same image gives the same archive bytes.
//! Every blob is hashed as it is streamed out; a corrupt one stops the
//! export.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use tar::{EntryType, Header};

use crate::descriptor::Index;
use crate::digest::VerifyingReader;
use crate::{Descriptor, Digest, ImageError, Store, load_image, to_canonical_json};

/// Write the image `manifest` as a tar that `docker load` (Docker 20.10)
/// accepts and that skopeo still reads as an OCI archive: `oci-layout`,
/// `index.json` (one entry per tag), `blobs/sha256/*` and `manifest.json`
/// with `RepoTags` = `repo_tags` (each `NAME:TAG`). Gzip layers stay
/// compressed.
pub fn write_docker_loadable(
    store: &Store,
    manifest: &Digest,
    repo_tags: &[String],
    out: impl Write,
) -> Result<(), ImageError> {
    write_archive(store, manifest, repo_tags, Some(0), &[], out)
}

/// Write the image `manifest` for `docker load` as
/// [`write_docker_loadable`] does, but without the blobs of its first
/// `held` layers: the engine holds them already (Docker 20.10's load looks
/// each layer up by its chain id before it opens the layer's file, so a
/// held layer's file is never read). Only `manifest.json` is meant to be
/// read; the OCI index then names blobs the archive lacks. If the engine
/// no longer holds one of those layers, the load fails: send the whole
/// image then.
pub fn write_docker_loadable_holding(
    store: &Store,
    manifest: &Digest,
    repo_tags: &[String],
    held: usize,
    out: impl Write,
) -> Result<(), ImageError> {
    write_archive(store, manifest, repo_tags, Some(held), &[], out)
}

/// Write the image `manifest` as an OCI archive (an OCI image layout in a
/// tar), named `ref_name` in its index.json.
pub fn write_oci_archive(
    store: &Store,
    manifest: &Digest,
    ref_name: &str,
    out: impl Write,
) -> Result<(), ImageError> {
    write_oci_archive_with(store, manifest, ref_name, &[], out)
}

/// A manifest that travels beside an image without being one (cosign's
/// `sha256-HEX.sig` and `.att`): copied byte for byte with its config and
/// layers, whatever their media types, and named `ref_name` in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The manifest's descriptor in the store.
    pub manifest: Descriptor,
    /// Its ref name in the written index.json.
    pub ref_name: String,
}

/// Write the image `manifest` as [`write_oci_archive`] does, with the
/// `attached` manifests (and their blobs) beside it in the same layout.
pub fn write_oci_archive_with(
    store: &Store,
    manifest: &Digest,
    ref_name: &str,
    attached: &[Attached],
    out: impl Write,
) -> Result<(), ImageError> {
    write_archive(store, manifest, &[ref_name.to_owned()], None, attached, out)
}

/// Copy the `attached` manifest and the blobs it references into the OCI
/// image layout in `dir` (created if missing) and name it there; each blob
/// is verified as it is copied.
pub fn add_to_oci_layout_dir(
    store: &Store,
    attached: &Attached,
    dir: &Path,
) -> Result<(), ImageError> {
    let target = Store::open(dir)?;
    copy_blobs(store, &target, &attached_blobs(store, &attached.manifest)?)?;
    target.set_ref(&attached.ref_name, &attached.manifest)
}

/// The manifest, config and layers of an attached manifest with their
/// sizes, read from the manifest without judging its media types.
fn attached_blobs(
    store: &Store,
    manifest: &Descriptor,
) -> Result<BTreeMap<Digest, u64>, ImageError> {
    let bytes = store.read_blob(&manifest.digest)?;
    let bad = |reason: String| ImageError::InvalidDocument {
        what: "attached manifest",
        digest: manifest.digest.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let config = config_descriptor(&value, &manifest.digest)?;
    let layers: Vec<Descriptor> = match value.get("layers") {
        Some(l) => serde_json::from_value(l.clone()).map_err(|e| bad(format!("layers: {e}")))?,
        None => Vec::new(),
    };
    let mut blobs = BTreeMap::new();
    blobs.insert(manifest.digest.clone(), bytes.len() as u64);
    for d in std::iter::once(config).chain(layers) {
        blobs.insert(d.digest, d.size);
    }
    Ok(blobs)
}

/// Copy `blobs` the `target` layout lacks from `store`, each verified.
fn copy_blobs(
    store: &Store,
    target: &Store,
    blobs: &BTreeMap<Digest, u64>,
) -> Result<(), ImageError> {
    for (digest, size) in blobs {
        if target.has_blob(digest) {
            continue;
        }
        let file = store.open_blob(digest)?;
        let reader = VerifyingReader::new(file, digest.clone(), *size);
        let path = store.blob_path(digest);
        target
            .put_blob_from_source(reader, Some(digest), &path)
            .map_err(|e| corrupt_or(e, digest, &path))?;
    }
    Ok(())
}

/// Copy the image `manifest` into the OCI image layout in `dir` (created if
/// missing; an existing layout keeps its other images) and name it
/// `ref_name` there.
pub fn write_oci_layout_dir(
    store: &Store,
    manifest: &Digest,
    ref_name: &str,
    dir: &Path,
) -> Result<(), ImageError> {
    let target = Store::open(dir)?;
    copy_blobs(store, &target, &image_blobs(store, manifest)?)?;
    target.set_ref(ref_name, &store.manifest_descriptor(manifest)?)
}

/// Manifest, config and layer blobs of an image with their sizes, checked.
fn image_blobs(store: &Store, manifest: &Digest) -> Result<BTreeMap<Digest, u64>, ImageError> {
    let image = load_image(store, manifest)?;
    let config = config_descriptor(&image.manifest, manifest)?;
    let mut blobs = BTreeMap::new();
    blobs.insert(manifest.clone(), store.manifest_descriptor(manifest)?.size);
    blobs.insert(config.digest, config.size);
    for layer in &image.layers {
        blobs.insert(layer.digest.clone(), layer.size);
    }
    Ok(blobs)
}

pub(crate) fn config_descriptor(
    manifest: &serde_json::Value,
    digest: &Digest,
) -> Result<Descriptor, ImageError> {
    manifest
        .get("config")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .ok_or_else(|| ImageError::InvalidDocument {
            what: "manifest",
            digest: digest.clone(),
            reason: "its config descriptor is missing or invalid".into(),
        })
}

/// A read error caused by a blob failing verification is a corrupt blob.
fn corrupt_or(e: ImageError, digest: &Digest, path: &Path) -> ImageError {
    match e {
        ImageError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            ImageError::CorruptBlob {
                digest: digest.clone(),
                path: path.to_path_buf(),
            }
        }
        other => other,
    }
}

/// `docker_held`: `None` for an OCI archive; `Some(n)` for a docker-loadable
/// one without the blobs of its first `n` layers. `attached` manifests go
/// into the OCI index beside the image.
fn write_archive(
    store: &Store,
    manifest: &Digest,
    ref_names: &[String],
    docker_held: Option<usize>,
    attached: &[Attached],
    out: impl Write,
) -> Result<(), ImageError> {
    let docker = docker_held.is_some();
    let mut blobs = image_blobs(store, manifest)?;
    for a in attached {
        blobs.extend(attached_blobs(store, &a.manifest)?);
    }
    let image = load_image(store, manifest)?;
    if let Some(held) = docker_held.filter(|h| *h > 0) {
        // A blob also used by a layer the engine lacks is still sent.
        let needed: std::collections::BTreeSet<&Digest> =
            image.layers.iter().skip(held).map(|l| &l.digest).collect();
        for layer in image.layers.iter().take(held) {
            if !needed.contains(&layer.digest) {
                blobs.remove(&layer.digest);
            }
        }
    }
    let descriptor = store.manifest_descriptor(manifest)?;
    let mut entries: Vec<Descriptor> = if ref_names.is_empty() {
        vec![descriptor]
    } else {
        ref_names
            .iter()
            .map(|r| descriptor.with_ref_name(r))
            .collect()
    };
    entries.extend(
        attached
            .iter()
            .map(|a| a.manifest.with_ref_name(&a.ref_name)),
    );
    let index = to_canonical_json(&Index::new(entries))?;
    let blob_name = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let docker_manifest = if docker {
        let config = config_descriptor(&image.manifest, manifest)?;
        let layers: Vec<String> = image.layers.iter().map(|l| blob_name(&l.digest)).collect();
        Some(to_canonical_json(&json!([{
            "Config": blob_name(&config.digest),
            "RepoTags": ref_names,
            "Layers": layers,
        }]))?)
    } else {
        None
    };

    let output = PathBuf::from("<archive output>");
    let mut tar = tar::Builder::new(out);
    let write_err = |source: std::io::Error| ImageError::Io {
        path: output.clone(),
        source,
    };
    tar.append(&header("blobs/", EntryType::Directory, 0), std::io::empty())
        .map_err(write_err)?;
    tar.append(
        &header("blobs/sha256/", EntryType::Directory, 0),
        std::io::empty(),
    )
    .map_err(write_err)?;
    for (digest, size) in &blobs {
        let path = store.blob_path(digest);
        let reader = VerifyingReader::new(store.open_blob(digest)?, digest.clone(), *size);
        tar.append(
            &header(&blob_name(digest), EntryType::Regular, *size),
            reader,
        )
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::InvalidData {
                ImageError::CorruptBlob {
                    digest: digest.clone(),
                    path: path.clone(),
                }
            } else {
                ImageError::Io {
                    path: output.clone(),
                    source,
                }
            }
        })?;
    }
    let mut files: Vec<(&str, &[u8])> = vec![
        ("index.json", &index),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
    ];
    if let Some(m) = &docker_manifest {
        files.push(("manifest.json", m));
    }
    files.sort_by_key(|f| f.0);
    for (name, bytes) in files {
        tar.append(&header(name, EntryType::Regular, bytes.len() as u64), bytes)
            .map_err(write_err)?;
    }
    let mut out = tar.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)
}

/// A fixed header: root-owned, mtime 0, 0o644 files and 0o755 folders.
fn header(name: &str, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    let slot = &mut h.as_old_mut().name;
    let n = name.len().min(slot.len());
    slot[..n].copy_from_slice(&name.as_bytes()[..n]);
    h.set_entry_type(kind);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    h
}
