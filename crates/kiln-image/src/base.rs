//! Base images: importing one from an OCI image layout on disk into the
//! store, and reading one that is already there. The layout resolution here
//! (ref name, index, platform, blobs) is shared with the oci-archive
//! importer, which differs only in where blobs come from. Input is hostile until
//! proven otherwise: every blob is hashed while it is copied, every document
//! is checked for the fields kiln relies on, and nothing panics.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::descriptor::{Index, is_index, is_layer, is_manifest};
use crate::{Descriptor, Digest, ImageError, LayerPolicy, Platform, Store};

/// A base image in the store: its manifest and config as JSON (the raw
/// blobs stay in the store, byte for byte), its layers and their diff_ids.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// Digest of the manifest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Value,
    /// The config, with every field it has (known to kiln or not).
    pub config: Value,
    /// The layer descriptors as the manifest gives them.
    pub layers: Vec<Descriptor>,
    /// The config's `rootfs.diff_ids`, one per layer.
    pub diff_ids: Vec<Digest>,
}

/// Import an image from the OCI image layout in `dir` into `store`.
///
/// `reference` is a ref name of the layout's index.json
/// (`org.opencontainers.image.ref.name`); without one, the layout must hold
/// exactly one image. An image index is followed to the host platform's
/// manifest. Every blob (manifest, config, layers) is copied into the store
/// and hashed while copying; one whose bytes do not match its digest is an
/// error naming it. Layers must be gzip or plain tar, and pass
/// [`crate::validate_layer_entries`] with the default [`LayerPolicy`].
pub fn import_oci_layout(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
) -> Result<BaseImage, ImageError> {
    import_oci_layout_for(store, dir, reference, &Platform::host())
}

/// [`import_oci_layout`], following an image index to `platform`'s
/// manifest instead of the host's ([`ImageError::NoMatchingPlatform`] when
/// the index has none).
pub fn import_oci_layout_for(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<BaseImage, ImageError> {
    let layout_path = dir.join("oci-layout");
    let layout = std::fs::read(&layout_path).map_err(|e| ImageError::InvalidLayout {
        path: dir.to_path_buf(),
        reason: format!("cannot read its oci-layout file: {e}"),
    })?;
    check_oci_layout(&layout_path, &layout)?;
    let index_path = dir.join("index.json");
    let index_bytes = std::fs::read(&index_path).map_err(ImageError::io(&index_path))?;
    let index = parse_layout_index(&index_path, &index_bytes)?;
    resolve_layout(store, dir, &index, reference, platform, &|d| {
        copy_blob(store, dir, d)
    })
}

/// Check the `oci-layout` file of a layout (read from `path`, which may lie
/// inside an archive).
pub(crate) fn check_oci_layout(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let layout: Value = serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if layout.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
        return Err(ImageError::InvalidLayout {
            path: path.to_path_buf(),
            reason: "imageLayoutVersion is not \"1.0.0\"".into(),
        });
    }
    Ok(())
}

/// Parse a layout's `index.json` (read from `path`).
pub(crate) fn parse_layout_index(path: &Path, bytes: &[u8]) -> Result<Index, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Make blob `d` of the layout being imported available in the store,
/// verified, or fail naming it.
pub(crate) type FetchBlob<'a> = dyn Fn(&Descriptor) -> Result<(), ImageError> + 'a;

/// The one resolution of an OCI layout, whether it lies in a folder or came
/// out of an archive: pick the image `reference` names in `index` (the
/// layout's index.json; `origin` is the layout, for errors), follow indexes
/// to `platform`, have `fetch` bring every blob of the image into the
/// store, check the layers' entries and read the image back.
pub(crate) fn resolve_layout(
    store: &Store,
    origin: &Path,
    index: &Index,
    reference: Option<&str>,
    platform: &Platform,
    fetch: &FetchBlob<'_>,
) -> Result<BaseImage, ImageError> {
    let available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_owned))
        .collect();
    let chosen = match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| d.ref_name() == Some(r))
            .ok_or_else(|| ImageError::UnknownRef {
                reference: r.to_owned(),
                path: origin.to_path_buf(),
                available: available.clone(),
            })?,
        // A signed image's layout holds its cosign signature and
        // attestations beside it: they are not candidates.
        None => match index
            .manifests
            .iter()
            .filter(|d| !d.names_attachment())
            .collect::<Vec<_>>()
            .as_slice()
        {
            [only] => *only,
            [] => {
                return Err(ImageError::InvalidLayout {
                    path: origin.to_path_buf(),
                    reason: "its index.json lists no image".into(),
                });
            }
            _ => {
                return Err(ImageError::RefRequired {
                    path: origin.to_path_buf(),
                    available,
                });
            }
        },
    };
    let manifest = pick_manifest(store, fetch, chosen.clone(), platform)?;
    fetch(&manifest)?;
    let bytes = store.read_blob(&manifest.digest)?;
    let (config, layers) = parse_manifest(&manifest.digest, &bytes)?;
    fetch(&config)?;
    for layer in &layers {
        fetch(layer)?;
    }
    finish_import(store, &manifest.digest)
}

/// The last step of every import: check each base layer's entries
/// ([`crate::validate_layer_entries`], default policy), then read the image
/// back with all its checks.
pub(crate) fn finish_import(store: &Store, manifest: &Digest) -> Result<BaseImage, ImageError> {
    let image = load_image(store, manifest)?;
    for layer in &image.layers {
        crate::validate_layer_entries(store, layer, LayerPolicy::default())?;
    }
    Ok(image)
}

/// Follow `d` through image indexes to `platform`'s image manifest.
fn pick_manifest(
    store: &Store,
    fetch: &FetchBlob<'_>,
    mut d: Descriptor,
    platform: &Platform,
) -> Result<Descriptor, ImageError> {
    for _ in 0..4 {
        if is_manifest(&d.media_type) {
            return Ok(d);
        }
        if !is_index(&d.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                digest: d.digest,
                media_type: d.media_type,
                hint: "expected an image manifest or an image index",
            });
        }
        fetch(&d)?;
        let bytes = store.read_blob(&d.digest)?;
        d = choose_platform(&d.digest, &bytes, platform)?;
    }
    Err(ImageError::InvalidDocument {
        what: "image index",
        digest: d.digest,
        reason: "indexes nest too deep".into(),
    })
}

/// The entry of the image index `bytes` (whose digest is `digest`) for
/// `wanted`: same os and architecture, and the same variant when `wanted`
/// names one (an entry with the variant asked for wins over one without).
pub(crate) fn choose_platform(
    digest: &Digest,
    bytes: &[u8],
    wanted: &Platform,
) -> Result<Descriptor, ImageError> {
    let index: Index = serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidDocument {
        what: "image index",
        digest: digest.clone(),
        reason: e.to_string(),
    })?;
    let platform_of = |m: &Descriptor| {
        m.platform
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), Platform::to_string)
    };
    let matches = |m: &&Descriptor, exact: bool| {
        m.platform.as_ref().is_some_and(|p| {
            p.os == wanted.os
                && p.architecture == wanted.architecture
                && match (&wanted.variant, &p.variant) {
                    (None, _) => true,
                    (Some(w), Some(v)) => w == v,
                    (Some(_), None) => !exact,
                }
        })
    };
    let found = index
        .manifests
        .iter()
        .find(|m| matches(m, true))
        .or_else(|| index.manifests.iter().find(|m| matches(m, false)));
    match found {
        Some(m) => Ok(m.clone()),
        None => Err(ImageError::NoMatchingPlatform {
            digest: digest.clone(),
            wanted: wanted.to_string(),
            available: index.manifests.iter().map(platform_of).collect(),
        }),
    }
}

fn layout_blob(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(d.hex())
}

/// Copy blob `d` from the layout in `dir` into the store, hashing as it
/// goes. A blob the store already holds was verified when it was written
/// and is not copied again.
fn copy_blob(store: &Store, dir: &Path, d: &Descriptor) -> Result<(), ImageError> {
    if store.has_blob(&d.digest) {
        return Ok(());
    }
    let path = layout_blob(dir, &d.digest);
    let file = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ImageError::MissingBlob {
                digest: d.digest.clone(),
                path: path.clone(),
            }
        } else {
            ImageError::Io {
                path: path.clone(),
                source: e,
            }
        }
    })?;
    let len = file.metadata().map_err(ImageError::io(&path))?.len();
    if len != d.size {
        return Err(ImageError::SizeMismatch {
            digest: d.digest.clone(),
            path,
            expected: d.size,
            actual: len,
        });
    }
    store.put_blob_from_source(file, Some(&d.digest), &path)?;
    Ok(())
}

/// Read the image whose manifest is `manifest` from the store: the
/// manifest, the config and the layer list, all checked (digests, media
/// types, one diff_id per layer, every layer blob present).
pub fn load_image(store: &Store, manifest: &Digest) -> Result<BaseImage, ImageError> {
    let bytes = store.read_blob(manifest)?;
    let (config_desc, layers) = parse_manifest(manifest, &bytes)?;
    let manifest_value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidDocument {
            what: "manifest",
            digest: manifest.clone(),
            reason: e.to_string(),
        })?;
    let config_bytes = store.read_blob(&config_desc.digest)?;
    if config_bytes.len() as u64 != config_desc.size {
        return Err(ImageError::SizeMismatch {
            digest: config_desc.digest.clone(),
            path: store.blob_path(&config_desc.digest),
            expected: config_desc.size,
            actual: config_bytes.len() as u64,
        });
    }
    let bad_config = |reason: String| ImageError::InvalidDocument {
        what: "config",
        digest: config_desc.digest.clone(),
        reason,
    };
    let config: Value =
        serde_json::from_slice(&config_bytes).map_err(|e| bad_config(e.to_string()))?;
    if !config.is_object() {
        return Err(bad_config("it is not a JSON object".into()));
    }
    let diff_ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad_config("it has no rootfs.diff_ids list".into()))?
        .iter()
        .map(|v| v.as_str().and_then(|s| s.parse::<Digest>().ok()))
        .collect::<Option<Vec<Digest>>>()
        .ok_or_else(|| {
            bad_config("rootfs.diff_ids holds something that is not a sha256 digest".into())
        })?;
    if diff_ids.len() != layers.len() {
        return Err(bad_config(format!(
            "rootfs.diff_ids has {} entries for {} layers",
            diff_ids.len(),
            layers.len()
        )));
    }
    for layer in &layers {
        let path = store.blob_path(&layer.digest);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == layer.size => {}
            Ok(m) => {
                return Err(ImageError::SizeMismatch {
                    digest: layer.digest.clone(),
                    path,
                    expected: layer.size,
                    actual: m.len(),
                });
            }
            Err(_) => {
                return Err(ImageError::MissingBlob {
                    digest: layer.digest.clone(),
                    path,
                });
            }
        }
    }
    Ok(BaseImage {
        manifest_digest: manifest.clone(),
        manifest: manifest_value,
        config,
        layers,
        diff_ids,
    })
}

/// The config and layer descriptors of a manifest, checked.
pub(crate) fn parse_manifest(
    digest: &Digest,
    bytes: &[u8],
) -> Result<(Descriptor, Vec<Descriptor>), ImageError> {
    let bad = |reason: String| ImageError::InvalidDocument {
        what: "manifest",
        digest: digest.clone(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if value.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(bad("schemaVersion is not 2".into()));
    }
    if let Some(media_type) = value
        .get("mediaType")
        .and_then(Value::as_str)
        .filter(|m| !is_manifest(m))
    {
        return Err(ImageError::UnsupportedMediaType {
            digest: digest.clone(),
            media_type: media_type.to_owned(),
            hint: "expected an OCI or Docker image manifest",
        });
    }
    let config: Descriptor = value
        .get("config")
        .cloned()
        .ok_or_else(|| bad("it has no config".into()))
        .and_then(|c| serde_json::from_value(c).map_err(|e| bad(format!("config: {e}"))))?;
    let layers: Vec<Descriptor> = value
        .get("layers")
        .cloned()
        .ok_or_else(|| bad("it has no layers list".into()))
        .and_then(|l| serde_json::from_value(l).map_err(|e| bad(format!("layers: {e}"))))?;
    for layer in &layers {
        if !is_layer(&layer.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                hint: "layers must be gzip or plain tar (Docker 20.10 cannot run zstd layers)",
            });
        }
    }
    Ok((config, layers))
}
