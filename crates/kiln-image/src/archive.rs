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
    write_archive(store, manifest, repo_tags, Some(0), out)
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
    write_archive(store, manifest, repo_tags, Some(held), out)
}

/// Write the image `manifest` as an OCI archive (an OCI image layout in a
/// tar), named `ref_name` in its index.json.
pub fn write_oci_archive(
    store: &Store,
    manifest: &Digest,
    ref_name: &str,
    out: impl Write,
) -> Result<(), ImageError> {
    write_archive(store, manifest, &[ref_name.to_owned()], None, out)
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
    let blobs = image_blobs(store, manifest)?;
    for (digest, size) in &blobs {
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
/// one without the blobs of its first `n` layers.
fn write_archive(
    store: &Store,
    manifest: &Digest,
    ref_names: &[String],
    docker_held: Option<usize>,
    out: impl Write,
) -> Result<(), ImageError> {
    let docker = docker_held.is_some();
    let mut blobs = image_blobs(store, manifest)?;
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
    let entries = if ref_names.is_empty() {
        vec![descriptor]
    } else {
        ref_names
            .iter()
            .map(|r| descriptor.with_ref_name(r))
            .collect()
    };
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
