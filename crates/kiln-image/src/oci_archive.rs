//! Importing a base from an oci-archive: an OCI image layout inside a tar.
//! The tar is read once, front to back, and never unpacked to disk: blobs
//! stream straight into the store (each verified against the digest it is
//! named by), index.json and oci-layout are kept in memory, and the layout
//! is then resolved exactly as a layout folder is.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::base::{check_oci_layout, parse_layout_index, resolve_layout};
use crate::{BaseImage, Descriptor, Digest, ImageError, Platform, Store};

/// The largest index.json or oci-layout read into memory: real ones are a
/// few kilobytes; a hostile archive must not exhaust memory.
pub(crate) const MAX_DOCUMENT: u64 = 16 << 20;

const FORMAT: &str = "oci-archive";

/// Import an image from the oci-archive `file` into `store`.
///
/// `reference` is a ref name of the archive's index.json; without one, the
/// archive must hold exactly one image. Every `blobs/sha256/*` member is
/// streamed into the store and refused unless its content hashes to its
/// name (members the store already holds are skipped). The image is then
/// resolved as [`crate::import_oci_layout`] resolves a folder: indexes
/// followed to the host platform, documents checked, every layer's entries
/// checked ([`crate::validate_layer_entries`]). A blob the image needs that
/// the archive lacks is [`ImageError::MissingBlob`], named as
/// `FILE/blobs/sha256/HEX`.
pub fn import_oci_archive(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
) -> Result<BaseImage, ImageError> {
    import_oci_archive_for(store, file, reference, &Platform::host())
}

/// [`import_oci_archive`], following an image index to `platform`'s
/// manifest instead of the host's.
pub fn import_oci_archive_for(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<BaseImage, ImageError> {
    let bad_tar = |e: std::io::Error| ImageError::InvalidArchive {
        path: file.to_path_buf(),
        format: FORMAT,
        reason: e.to_string(),
    };
    let input = File::open(file).map_err(ImageError::io(file))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 17, input));
    let mut index = None;
    let mut layout = None;
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = member_name(&entry.path_bytes());
        match name.as_str() {
            "index.json" => index = Some(read_document(&mut entry, file, FORMAT, &name)?),
            "oci-layout" => layout = Some(read_document(&mut entry, file, FORMAT, &name)?),
            _ => {
                let Some(digest) = name
                    .strip_prefix("blobs/sha256/")
                    .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
                else {
                    continue;
                };
                if !store.has_blob(&digest) {
                    store.put_blob_from_source(&mut entry, Some(&digest), &file.join(&name))?;
                }
            }
        }
    }
    let missing = |what: &str| ImageError::InvalidLayout {
        path: file.to_path_buf(),
        reason: format!("the archive has no {what} file"),
    };
    let layout = layout.ok_or_else(|| missing("oci-layout"))?;
    check_oci_layout(&file.join("oci-layout"), &layout)?;
    let index = index.ok_or_else(|| missing("index.json"))?;
    let index = parse_layout_index(&file.join("index.json"), &index)?;
    resolve_layout(store, file, &index, reference, platform, &|d| {
        blob_from_archive(store, file, d)
    })
}

/// A blob the archive should have put into the store: there, and of the
/// size its descriptor gives.
fn blob_from_archive(store: &Store, file: &Path, d: &Descriptor) -> Result<(), ImageError> {
    let member = file.join("blobs/sha256").join(d.digest.hex());
    let size = match std::fs::metadata(store.blob_path(&d.digest)) {
        Ok(m) => m.len(),
        Err(_) => {
            return Err(ImageError::MissingBlob {
                digest: d.digest.clone(),
                path: member,
            });
        }
    };
    if size != d.size {
        return Err(ImageError::SizeMismatch {
            digest: d.digest.clone(),
            path: member,
            expected: d.size,
            actual: size,
        });
    }
    Ok(())
}

/// A member's name with any leading `./` removed (some tools write them).
pub(crate) fn member_name(raw: &[u8]) -> String {
    let mut name = String::from_utf8_lossy(raw).into_owned();
    while let Some(rest) = name.strip_prefix("./") {
        name = rest.to_owned();
    }
    name
}

/// Read a small JSON document out of an archive, refusing one over
/// [`MAX_DOCUMENT`].
pub(crate) fn read_document(
    entry: &mut impl Read,
    file: &Path,
    format: &'static str,
    name: &str,
) -> Result<Vec<u8>, ImageError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::InvalidArchive {
            path: file.to_path_buf(),
            format,
            reason: format!("cannot read {name}: {e}"),
        })?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(ImageError::InvalidArchive {
            path: file.to_path_buf(),
            format,
            reason: format!("{name} is larger than {MAX_DOCUMENT} bytes"),
        });
    }
    Ok(bytes)
}
