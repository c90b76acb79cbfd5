//! Importing a base from a docker-archive: what `docker save` (or skopeo's
//! `docker-archive:` transport) writes. Its `manifest.json` lists, per
//! image, a `Config` file, `RepoTags` and `Layers` files: `ID/layer.tar`
//! in the classic format (sometimes symlinks to another image's
//! `layer.tar`), `blobs/sha256/HEX` in newer ones.
//!
//! Layers are kept byte for byte, never re-tarred: an uncompressed layer is
//! stored as it is (media type `application/vnd.oci.image.layer.v1.tar`,
//! its diff_id is its own digest); a gzip one stays gzip, its diff_id
//! hashed from the decompressed stream while it is copied. The config is
//! kept as raw bytes. The manifest, which the archive does not have, is
//! synthesised as canonical JSON.
//!
//! The archive is read twice, seeking over member data: once for
//! manifest.json (usually near the end), once to stream the chosen image's
//! members into the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::base::load_image;
use crate::descriptor::{
    MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_TAR,
    MEDIA_TYPE_OCI_MANIFEST,
};
use crate::digest::HashReader;
use crate::layer_policy::{LayerPolicy, Refusal, scan_entries};
use crate::oci_archive::{member_name, read_document};
use crate::tar_split::TarSplitReader;
use crate::{BaseImage, Descriptor, Digest, ImageError, Store, to_canonical_json};

const FORMAT: &str = "docker-archive";

/// One image of manifest.json.
#[derive(Debug, Deserialize)]
struct ArchiveImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// A member of the archive, as far as finding files goes.
enum Member {
    File,
    Symlink(String),
    Hardlink(String),
    Other,
}

impl Member {
    /// What the archive's member `entry` is, with a link's target.
    fn of<R: std::io::Read>(entry: &tar::Entry<'_, R>) -> Member {
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let kind = entry.header().entry_type();
        if kind.is_file() {
            Member::File
        } else if kind.is_symlink() {
            Member::Symlink(link())
        } else if kind.is_hard_link() {
            Member::Hardlink(link())
        } else {
            Member::Other
        }
    }
}

/// A layer copied into the store.
#[derive(Clone)]
struct CopiedLayer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    gzip: bool,
    /// What checking its entries while it was copied found.
    checked: Checked,
}

/// What checking a layer's entries as it was copied found; a refusal counts
/// only if the image uses the layer.
#[derive(Clone)]
enum Checked {
    Passed,
    Hostile { entry: String, reason: String },
    Unreadable(String),
}

/// Import an image from the docker-archive `file` into `store`.
///
/// `reference` is one of the image's `RepoTags` (`NAME:TAG`; `docker.io/`,
/// `library/` and a missing `:latest` are normalised away on both sides);
/// without one, the archive must hold exactly one image. Errors name the
/// archive member at fault: a layer whose diff_id is not the one the
/// config's `rootfs.diff_ids` lists is [`ImageError::DiffIdMismatch`]. Every
/// layer's entries are checked as [`crate::validate_layer_entries`] checks
/// them, while the layer is copied (one read).
///
/// [`BaseImage::manifest`] is the synthesised OCI manifest; the child's
/// manifest lists its layer descriptors unchanged.
pub fn import_docker_archive(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
) -> Result<BaseImage, ImageError> {
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: file.to_path_buf(),
        format: FORMAT,
        reason,
    };
    let bad_tar = |e: std::io::Error| invalid(e.to_string());
    let input = File::open(file).map_err(ImageError::io(file))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 17, input));

    // Pass one: the names of all members, and manifest.json.
    let mut members = BTreeMap::new();
    let mut manifest_json = None;
    for entry in archive.entries_with_seek().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let name = member_name(&entry.path_bytes());
        let member = Member::of(&entry);
        if name == "manifest.json" && matches!(member, Member::File) {
            manifest_json = Some(read_document(&mut entry, file, FORMAT, &name)?);
        }
        members.insert(name, member);
    }
    let manifest_json = manifest_json.ok_or_else(|| invalid("it has no manifest.json".into()))?;
    let images: Vec<ArchiveImage> = serde_json::from_slice(&manifest_json)
        .map_err(|e| invalid(format!("its manifest.json is not a list of images: {e}")))?;
    let image = choose_image(file, &images, reference)?;

    let resolve = |name: &str| {
        resolve_member(&members, name).ok_or_else(|| {
            invalid(format!(
                "manifest.json names {name:?}, which is not a file in the archive"
            ))
        })
    };
    let config_member = resolve(&image.config)?;
    let layer_members = image
        .layers
        .iter()
        .map(|l| resolve(l))
        .collect::<Result<Vec<String>, ImageError>>()?;
    let wanted: BTreeSet<&str> = layer_members.iter().map(String::as_str).collect();

    // Pass two: stream the chosen image's members into the store.
    let mut input = archive.into_inner();
    input
        .seek(SeekFrom::Start(0))
        .map_err(ImageError::io(file))?;
    let mut archive = tar::Archive::new(input);
    let mut config = None;
    let mut copied: BTreeMap<String, CopiedLayer> = BTreeMap::new();
    for entry in archive.entries_with_seek().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = member_name(&entry.path_bytes());
        if name == config_member && config.is_none() {
            let bytes = read_document(&mut entry, file, FORMAT, &name)?;
            config = Some((store.put_blob(&bytes)?, bytes));
        } else if wanted.contains(name.as_str()) && !copied.contains_key(&name) {
            let layer = copy_layer(store, file, &name, &mut entry)?;
            copied.insert(name, layer);
        }
    }
    let (config_digest, config_bytes) =
        config.ok_or_else(|| invalid(format!("its config {config_member:?} could not be read")))?;
    let layers = layer_members
        .iter()
        .map(|m| {
            copied
                .get(m)
                .cloned()
                .ok_or_else(|| invalid(format!("its layer {m:?} could not be read")))
        })
        .collect::<Result<Vec<CopiedLayer>, ImageError>>()?;

    store_image(store, file, image, config_digest, &config_bytes, &layers)
}

/// Import the one image of a `docker save` stream, read once from front to
/// back (no temporary file, no seeking): `docker save` writes the layers
/// before manifest.json, so every layer member (`ID/layer.tar`,
/// `blobs/sha256/HEX`) is stored as it streams by, the small documents are
/// kept in memory, and the image is assembled once manifest.json has been
/// read. `source` names the stream in errors. The archive must hold exactly
/// one image. Checked as [`import_docker_archive`] checks a file; a blob
/// stored before a failure is unreferenced until `kiln gc` removes it, and
/// nothing names the image unless the whole stream was read and checked.
pub fn import_docker_save(
    store: &Store,
    input: impl Read,
    source: &Path,
) -> Result<BaseImage, ImageError> {
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: source.to_path_buf(),
        format: FORMAT,
        reason,
    };
    let bad_tar = |e: std::io::Error| invalid(e.to_string());
    let mut archive = tar::Archive::new(input);
    let mut members = BTreeMap::new();
    let mut documents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut copied: BTreeMap<String, CopiedLayer> = BTreeMap::new();
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let name = member_name(&entry.path_bytes());
        let member = Member::of(&entry);
        if matches!(member, Member::File) {
            if name.ends_with("/layer.tar") || name.starts_with("blobs/") {
                let layer = copy_layer(store, source, &name, &mut entry)?;
                copied.insert(name.clone(), layer);
            } else {
                let bytes = read_document(&mut entry, source, FORMAT, &name)?;
                documents.insert(name.clone(), bytes);
            }
        }
        members.insert(name, member);
    }
    let manifest_json = documents
        .get("manifest.json")
        .ok_or_else(|| invalid("it has no manifest.json".into()))?;
    let images: Vec<ArchiveImage> = serde_json::from_slice(manifest_json)
        .map_err(|e| invalid(format!("its manifest.json is not a list of images: {e}")))?;
    let image = choose_image(source, &images, None)?;
    let resolve = |name: &str| {
        resolve_member(&members, name).ok_or_else(|| {
            invalid(format!(
                "manifest.json names {name:?}, which is not a file in the archive"
            ))
        })
    };
    let config_member = resolve(&image.config)?;
    // A config under blobs/ streamed by as a blob: read back, it is small.
    let config_bytes = match (documents.get(&config_member), copied.get(&config_member)) {
        (Some(bytes), _) => bytes.clone(),
        (None, Some(blob)) => store.read_blob(&blob.digest)?,
        (None, None) => {
            return Err(invalid(format!(
                "its config {config_member:?} could not be read"
            )));
        }
    };
    let config_digest = store.put_blob(&config_bytes)?;
    let layers = image
        .layers
        .iter()
        .map(|l| {
            let member = resolve(l)?;
            copied
                .get(&member)
                .cloned()
                .ok_or_else(|| invalid(format!("its layer {member:?} could not be read")))
        })
        .collect::<Result<Vec<CopiedLayer>, ImageError>>()?;
    store_image(store, source, image, config_digest, &config_bytes, &layers)
}

/// Import an image the container engine keeps on this host: its config's
/// raw bytes from the file `config`, and each layer (bottom first) as the
/// tar rebuilt from the folder of its files and its tar-split record
/// ([`TarSplitReader`]), the tar the engine's own `docker save` would send.
/// Stored and checked as [`import_docker_save`] stores and checks a save's
/// layers (each against the config's diff_ids, every entry against the
/// layer policy), so the base is the same, byte for byte, without the
/// engine writing the whole image to a folder of its own first. `source`
/// names the image in errors.
pub fn import_engine_layers(
    store: &Store,
    config: &Path,
    layers: &[(PathBuf, PathBuf)],
    source: &Path,
) -> Result<BaseImage, ImageError> {
    let config_bytes = std::fs::read(config).map_err(ImageError::io(config))?;
    let config_digest = store.put_blob(&config_bytes)?;
    let mut names = Vec::with_capacity(layers.len());
    let mut copied = Vec::with_capacity(layers.len());
    for (files, record) in layers {
        let name = files.display().to_string();
        let mut tar = TarSplitReader::open(files, record).map_err(ImageError::io(record))?;
        copied.push(copy_layer(store, source, &name, &mut tar)?);
        names.push(name);
    }
    let image = ArchiveImage {
        config: config.display().to_string(),
        repo_tags: None,
        layers: names,
    };
    store_image(store, source, &image, config_digest, &config_bytes, &copied)
}

/// Check the layers against the config's diff_ids and store the synthesised
/// manifest: the end of every import.
fn store_image(
    store: &Store,
    file: &Path,
    image: &ArchiveImage,
    config_digest: Digest,
    config_bytes: &[u8],
    layers: &[CopiedLayer],
) -> Result<BaseImage, ImageError> {
    check_diff_ids(file, &config_digest, config_bytes, &image.layers, layers)?;
    for layer in layers {
        match &layer.checked {
            Checked::Passed => {}
            Checked::Hostile { entry, reason } => {
                return Err(ImageError::HostileLayerEntry {
                    layer: layer.digest.clone(),
                    entry: entry.clone(),
                    reason: reason.clone(),
                });
            }
            Checked::Unreadable(reason) => {
                return Err(ImageError::InvalidLayer {
                    layer: layer.digest.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    let layer_descriptors: Vec<Descriptor> = layers
        .iter()
        .map(|l| {
            let media_type = if l.gzip {
                MEDIA_TYPE_OCI_LAYER_GZIP
            } else {
                MEDIA_TYPE_OCI_LAYER_TAR
            };
            Descriptor::new(media_type, l.digest.clone(), l.size)
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": Descriptor::new(MEDIA_TYPE_OCI_CONFIG, config_digest, config_bytes.len() as u64),
        "layers": layer_descriptors,
    });
    let manifest_digest = store.put_blob(&to_canonical_json(&manifest)?)?;
    // Every layer's entries were checked as it was copied (above).
    load_image(store, &manifest_digest)
}

/// The image `reference` names among `images`, or the only one.
fn choose_image<'a>(
    file: &Path,
    images: &'a [ArchiveImage],
    reference: Option<&str>,
) -> Result<&'a ArchiveImage, ImageError> {
    let tags = |i: &ArchiveImage| i.repo_tags.clone().unwrap_or_default();
    let available: Vec<String> = images.iter().flat_map(tags).collect();
    match reference {
        Some(r) => {
            let wanted = normalise_tag(r);
            images
                .iter()
                .find(|i| tags(i).iter().any(|t| normalise_tag(t) == wanted))
                .ok_or_else(|| ImageError::UnknownRef {
                    reference: r.to_owned(),
                    path: file.to_path_buf(),
                    available,
                })
        }
        None => match images {
            [only] => Ok(only),
            [] => Err(ImageError::InvalidArchive {
                path: file.to_path_buf(),
                format: FORMAT,
                reason: "its manifest.json lists no image".into(),
            }),
            _ => Err(ImageError::RefRequired {
                path: file.to_path_buf(),
                available,
            }),
        },
    }
}

/// `docker.io/library/busybox:latest`, `library/busybox` and `busybox` are
/// one name to Docker.
fn normalise_tag(tag: &str) -> String {
    let mut t = tag;
    for prefix in ["docker.io/", "index.docker.io/"] {
        t = t.strip_prefix(prefix).unwrap_or(t);
    }
    let t = t.strip_prefix("library/").unwrap_or(t);
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') {
        t.to_owned()
    } else {
        format!("{t}:latest")
    }
}

/// The regular file `name` stands for, following symlinks (relative to the
/// link's folder) and hard links (archive paths), a few hops at most.
fn resolve_member(members: &BTreeMap<String, Member>, name: &str) -> Option<String> {
    let mut current = normalise(&[], name)?;
    for _ in 0..8 {
        match members.get(&current)? {
            Member::File => return Some(current),
            Member::Symlink(target) => {
                let folder: Vec<&str> = current.split('/').collect();
                let folder = &folder[..folder.len().saturating_sub(1)];
                current = normalise(folder, target)?;
            }
            Member::Hardlink(target) => current = normalise(&[], target)?,
            Member::Other => return None,
        }
    }
    None
}

/// `target` resolved lexically from `folder` into an archive path, or
/// `None` if it climbs above the archive's root.
fn normalise(folder: &[&str], target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        folder.to_vec()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Copy one layer member into the store as it is, computing its diff_id on
/// the way (the digest itself for a plain tar, the digest of the
/// decompressed stream for gzip).
fn copy_layer(
    store: &Store,
    file: &Path,
    name: &str,
    entry: &mut impl Read,
) -> Result<CopiedLayer, ImageError> {
    let source = file.join(name);
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match entry.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io(&source)(e)),
        }
    }
    let head = &head[..filled];
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(ImageError::InvalidArchive {
            path: file.to_path_buf(),
            format: FORMAT,
            reason: format!(
                "layer {name} is zstd-compressed; base layers must be gzip or plain tar"
            ),
        });
    }
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let content = std::io::Cursor::new(head.to_vec()).chain(entry);
    // Stored as it is, and read as a tar archive in the same pass (through
    // a decompressor for gzip, hashing the diff_id): each entry is checked
    // as validate_layer_entries checks a stored layer, without reading the
    // blob a second time.
    let (digest, size, (diff_id, scanned, gzip_failure)) =
        store.put_blob_checked(content, &source, |stored| {
            if !gzip {
                let (_, scanned) = scan_entries(stored, LayerPolicy::default());
                return (None, scanned, None);
            }
            let decoded = Noting {
                inner: HashReader::new(flate2::read::MultiGzDecoder::new(stored)),
                failure: None,
            };
            let (mut decoded, scanned) = scan_entries(decoded, LayerPolicy::default());
            // The rest of the decompressed stream: the diff_id covers it.
            let rest = std::io::copy(&mut decoded, &mut std::io::sink());
            let failure = decoded.failure.take().or(rest.err());
            (Some(decoded.inner.finish()), scanned, failure)
        })?;
    if let Some(e) = gzip_failure {
        return Err(ImageError::InvalidArchive {
            path: file.to_path_buf(),
            format: FORMAT,
            reason: format!("layer {name} is not valid gzip: {e}"),
        });
    }
    let checked = match scanned {
        Ok(()) => Checked::Passed,
        Err(Refusal::Hostile { entry, reason }) => Checked::Hostile { entry, reason },
        Err(Refusal::Read(e)) => Checked::Unreadable(e.to_string()),
    };
    Ok(CopiedLayer {
        diff_id: diff_id.unwrap_or_else(|| digest.clone()),
        digest,
        size,
        gzip,
        checked,
    })
}

/// A reader that keeps the first error its inner reader gave: a gzip
/// decoder's, told apart from the tar reader's own.
struct Noting<R> {
    inner: R,
    failure: Option<std::io::Error>,
}

impl<R: Read> Read for Noting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if self.failure.is_none() && e.kind() != std::io::ErrorKind::Interrupted {
                self.failure = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

/// The config's `rootfs.diff_ids` must be the layers' diff_ids, in order.
fn check_diff_ids(
    file: &Path,
    config_digest: &Digest,
    config_bytes: &[u8],
    names: &[String],
    layers: &[CopiedLayer],
) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::InvalidDocument {
        what: "config",
        digest: config_digest.clone(),
        reason,
    };
    let config: Value = serde_json::from_slice(config_bytes).map_err(|e| bad(e.to_string()))?;
    let listed = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("it has no rootfs.diff_ids list".into()))?
        .iter()
        .map(|v| v.as_str().and_then(|s| s.parse::<Digest>().ok()))
        .collect::<Option<Vec<Digest>>>()
        .ok_or_else(|| bad("rootfs.diff_ids holds something that is not a sha256 digest".into()))?;
    if listed.len() != layers.len() {
        return Err(bad(format!(
            "rootfs.diff_ids has {} entries for the {} layers of {}",
            listed.len(),
            layers.len(),
            file.display()
        )));
    }
    for ((expected, layer), name) in listed.into_iter().zip(layers).zip(names) {
        if expected != layer.diff_id {
            return Err(ImageError::DiffIdMismatch {
                path: file.to_path_buf(),
                layer: name.clone(),
                expected,
                actual: layer.diff_id.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised() {
        for (a, b) in [
            ("busybox", "busybox:latest"),
            ("docker.io/library/busybox:1", "busybox:1"),
            ("library/busybox:1", "busybox:1"),
            ("localhost:5000/team/x", "localhost:5000/team/x:latest"),
        ] {
            assert_eq!(normalise_tag(a), normalise_tag(b), "{a} vs {b}");
        }
        assert_ne!(normalise_tag("team/x:1"), normalise_tag("team/x:2"));
    }

    #[test]
    fn members_are_followed() {
        let members = BTreeMap::from([
            ("a/layer.tar".to_owned(), Member::File),
            (
                "b/layer.tar".to_owned(),
                Member::Symlink("../a/layer.tar".into()),
            ),
            (
                "c/layer.tar".to_owned(),
                Member::Hardlink("b/layer.tar".into()),
            ),
            ("loop".to_owned(), Member::Symlink("loop".into())),
            ("out".to_owned(), Member::Symlink("../../x".into())),
        ]);
        assert_eq!(
            resolve_member(&members, "./c/layer.tar").as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(resolve_member(&members, "loop"), None);
        assert_eq!(resolve_member(&members, "out"), None);
        assert_eq!(resolve_member(&members, "missing"), None);
    }
}
