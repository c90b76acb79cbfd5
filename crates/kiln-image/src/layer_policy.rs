//! Refusing hostile base layers. kiln never unpacks a base layer onto the
//! host (layers go to the engine as blobs), so nothing here protects kiln
//! itself: it protects the tools people point at kiln's store or exports
//! (`umoci unpack`, `tar -x`, home-grown extractors), which may follow what
//! a layer says. Every importer runs it on every base layer.
//!
//! What is refused, and why:
//!
//! - an entry path that is absolute (`/etc/passwd`): extractors that honour
//!   it write outside their target folder;
//! - an entry path with a `..` component (`../etc/passwd`, `a/../../b`):
//!   the classic "zip slip" escape;
//! - a hard link whose target is absolute, or whose target leaves the
//!   layer's root through `..`: tar resolves hard link targets from the
//!   root of the archive, and a link to a host file lets a later write
//!   change that file;
//! - an entry that lies beneath a symbolic link of the same layer
//!   (`x -> /etc`, then `x/passwd`): no file system tar produces that, and
//!   an extractor would write through the link;
//! - character and block devices only when a [`LayerPolicy`] says so
//!   (`allow_devices: false`).
//!
//! Everything a real distribution root holds passes, and is reused byte
//! for byte: symlinks wherever they point (absolute ones such as
//! `/etc/alternatives/*` resolve against the image's root, and so do
//! relative ones that climb above it, as the kernel resolves `..` at `/`),
//! hard links inside the layer, device nodes under `/dev` (an image's
//! `/dev` is the runtime's own mount, and `docker import` keeps them too),
//! fifos, whiteouts (`.wh.*`) and a root entry (`./`) that is a folder.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::digest::{HashWriter, VerifyingReader};
use crate::{Descriptor, ImageError, Store};

/// What [`validate_layer_entries`] lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPolicy {
    /// Accept character and block device nodes (the default: distribution
    /// roots hold them under `/dev`).
    pub allow_devices: bool,
}

impl Default for LayerPolicy {
    fn default() -> Self {
        LayerPolicy {
            allow_devices: true,
        }
    }
}

/// Stream the base layer `layer` out of `store` (gzip or plain tar, told
/// apart by the gzip magic bytes rather than by the media type) and refuse
/// the first hostile entry, naming it; see this module's documentation for
/// exactly what is refused. The blob is hashed as it is read:
/// [`ImageError::CorruptBlob`] if it does not match its digest, and
/// [`ImageError::InvalidLayer`] if it is not a readable tar.
pub fn validate_layer_entries(
    store: &Store,
    layer: &Descriptor,
    policy: LayerPolicy,
) -> Result<(), ImageError> {
    let path = store.blob_path(&layer.digest);
    let failed = Rc::new(Cell::new(false));
    let verified = Flagged {
        inner: VerifyingReader::new(
            store.open_blob(&layer.digest)?,
            layer.digest.clone(),
            layer.size,
        ),
        failed: Rc::clone(&failed),
    };
    let mut buffered = BufReader::with_capacity(1 << 17, verified);
    // A blob that does not match its digest often breaks the gzip or tar
    // reader before the end of the blob is hashed: on any read error, the
    // blob is hashed again to tell corruption from a malformed layer.
    let read_error = |e: std::io::Error| {
        if failed.get() || !blob_matches(store, layer) {
            ImageError::CorruptBlob {
                digest: layer.digest.clone(),
                path: path.clone(),
            }
        } else {
            ImageError::InvalidLayer {
                layer: layer.digest.clone(),
                reason: e.to_string(),
            }
        }
    };
    let (gzip, zstd) = {
        let head = buffered.fill_buf().map_err(read_error)?;
        (
            head.starts_with(&[0x1f, 0x8b]),
            head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        )
    };
    if zstd {
        return Err(ImageError::UnsupportedMediaType {
            digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            hint: "the blob is zstd-compressed; base layers must be gzip or plain tar",
        });
    }
    let rest = if gzip {
        let mut decoder = scan(MultiGzDecoder::new(buffered), layer, policy, &read_error)?;
        // Read past the end-of-archive blocks, so that the whole blob is
        // hashed and trailing garbage in the gzip stream is noticed.
        std::io::copy(&mut decoder, &mut std::io::sink()).map_err(read_error)?;
        decoder.into_inner()
    } else {
        scan(buffered, layer, policy, &read_error)?
    };
    let mut rest = rest;
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(read_error)?;
    Ok(())
}

/// Whether blob `d` in the store hashes to its digest and has its size.
fn blob_matches(store: &Store, d: &Descriptor) -> bool {
    let Ok(mut file) = store.open_blob(&d.digest) else {
        return false;
    };
    let mut hasher = HashWriter::new(std::io::sink());
    if std::io::copy(&mut file, &mut hasher).is_err() {
        return false;
    }
    let (_, digest, size) = hasher.finish();
    digest == d.digest && size == d.size
}

/// Check every entry of the tar `reader` yields; give the reader back so
/// that the caller can read what follows the archive.
fn scan<R: Read>(
    reader: R,
    layer: &Descriptor,
    policy: LayerPolicy,
    read_error: &dyn Fn(std::io::Error) -> ImageError,
) -> Result<R, ImageError> {
    let (reader, scanned) = scan_entries(reader, policy);
    match scanned {
        Ok(()) => Ok(reader),
        Err(Refusal::Read(e)) => Err(read_error(e)),
        Err(Refusal::Hostile { entry, reason }) => Err(ImageError::HostileLayerEntry {
            layer: layer.digest.clone(),
            entry,
            reason,
        }),
    }
}

/// Why [`scan_entries`] refused a layer.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// An entry this module refuses, and why.
    Hostile {
        /// The entry's path as the layer writes it.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The stream could not be read as a tar archive (or reading it failed).
    Read(std::io::Error),
}

/// Check every entry of the tar stream `reader` against `policy`, up to
/// its end-of-archive blocks or the first refusal; the reader comes back
/// so that the caller can read what follows. What [`validate_layer_entries`]
/// checks in a stored blob, for a layer as it streams by.
pub(crate) fn scan_entries<R: Read>(reader: R, policy: LayerPolicy) -> (R, Result<(), Refusal>) {
    let mut archive = tar::Archive::new(reader);
    let scanned = scan_archive(&mut archive, policy);
    (archive.into_inner(), scanned)
}

fn scan_archive<R: Read>(
    archive: &mut tar::Archive<R>,
    policy: LayerPolicy,
) -> Result<(), Refusal> {
    let mut symlinks: BTreeSet<Vec<String>> = BTreeSet::new();
    for entry in archive.entries().map_err(Refusal::Read)? {
        let entry = entry.map_err(Refusal::Read)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        check_entry(&name, kind, link.as_deref(), policy, &mut symlinks).map_err(|reason| {
            Refusal::Hostile {
                entry: name,
                reason,
            }
        })?;
    }
    Ok(())
}

/// Check one entry; `symlinks` holds the symlinks seen so far in the layer
/// (as normalised component lists) and gains this one if it is a symlink.
pub(crate) fn check_entry(
    name: &str,
    kind: EntryType,
    link: Option<&str>,
    policy: LayerPolicy,
    symlinks: &mut BTreeSet<Vec<String>>,
) -> Result<(), String> {
    if name.starts_with('/') {
        return Err(
            "its path is absolute: an extractor that honours it writes outside its target folder"
                .into(),
        );
    }
    let components: Vec<String> = name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    if components.iter().any(|c| c == "..") {
        return Err("its path has a `..` component: it would be written outside the root".into());
    }
    if components.is_empty() && kind != EntryType::Directory {
        return Err("only a folder may stand for the root itself".into());
    }
    if let Some(link) = (1..components.len())
        .map(|n| &components[..n])
        .find(|prefix| symlinks.contains(*prefix))
    {
        return Err(format!(
            "it lies beneath /{}, a symlink of the same layer: an extractor would write through the link",
            link.join("/")
        ));
    }
    match kind {
        EntryType::Char | EntryType::Block if !policy.allow_devices => {
            let what = if kind == EntryType::Char {
                "character"
            } else {
                "block"
            };
            Err(format!(
                "it is a {what} device node, which base layers may not hold unless devices are allowed"
            ))
        }
        EntryType::Link => {
            let target = link.unwrap_or_default();
            if target.starts_with('/') {
                return Err(format!(
                    "it is a hard link to the absolute path {target:?}: extractors that do not strip the `/` link a host file"
                ));
            }
            // Hard link targets are archive paths: resolved from the root.
            if climbs_out(&[], target) {
                return Err(format!(
                    "it is a hard link to {target:?}, which leads out of the root"
                ));
            }
            Ok(())
        }
        EntryType::Symlink => {
            symlinks.insert(components);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether the relative path `target`, resolved lexically from `folder`,
/// climbs above the root.
fn climbs_out(folder: &[String], target: &str) -> bool {
    let mut depth = folder.len();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
}

/// A reader that remembers whether its inner reader failed, so that a
/// digest mismatch (seen through the decompressor and tar reader as a plain
/// read error) is reported as a corrupt blob.
struct Flagged<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for Flagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, kind: EntryType, link: Option<&str>) -> Result<(), String> {
        check_entry(
            name,
            kind,
            link,
            LayerPolicy::default(),
            &mut BTreeSet::new(),
        )
    }

    #[test]
    fn paths() {
        assert!(check("./", EntryType::Directory, None).is_ok());
        assert!(check("etc/passwd", EntryType::Regular, None).is_ok());
        assert!(check("./etc/.wh.passwd", EntryType::Regular, None).is_ok());
        assert!(check("/etc/passwd", EntryType::Regular, None).is_err());
        assert!(check("../etc/passwd", EntryType::Regular, None).is_err());
        assert!(check("a/../../b", EntryType::Regular, None).is_err());
        assert!(check("a/..", EntryType::Directory, None).is_err());
        assert!(check(".", EntryType::Regular, None).is_err());
    }

    #[test]
    fn links() {
        let s = EntryType::Symlink;
        let h = EntryType::Link;
        assert!(check("bin/sh", s, Some("/bin/busybox")).is_ok());
        assert!(check("bin/sh", s, Some("busybox")).is_ok());
        assert!(check("usr/bin/env", s, Some("../../bin/busybox")).is_ok());
        assert!(check("usr/bin/env", s, Some("../../../bin/busybox")).is_ok());
        assert!(check("etc/localtime", s, Some("/usr/share/zoneinfo/UTC")).is_ok());
        assert!(check("bin/ls", h, Some("bin/busybox")).is_ok());
        assert!(check("bin/ls", h, Some("bin/../bin/busybox")).is_ok());
        assert!(check("a/b/c", h, Some("../../x")).is_err());
        assert!(check("bin/ls", h, Some("/etc/shadow")).is_err());
    }

    #[test]
    fn beneath_a_symlink() {
        let mut seen = BTreeSet::new();
        let p = LayerPolicy::default();
        assert!(check_entry("x", EntryType::Symlink, Some("/etc"), p, &mut seen).is_ok());
        assert!(check_entry("x/passwd", EntryType::Regular, None, p, &mut seen).is_err());
        assert!(check_entry("xy/passwd", EntryType::Regular, None, p, &mut seen).is_ok());
    }

    #[test]
    fn devices() {
        let forbid = LayerPolicy {
            allow_devices: false,
        };
        let mut seen = BTreeSet::new();
        assert!(check("dev/null", EntryType::Char, None).is_ok());
        assert!(check("dev/sda", EntryType::Block, None).is_ok());
        assert!(check("run/fifo", EntryType::Fifo, None).is_ok());
        assert!(check_entry("dev/null", EntryType::Char, None, forbid, &mut seen).is_err());
    }
}
