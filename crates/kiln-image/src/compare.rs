//! Comparing two layers entry by entry, for `kiln build
//! --check-reproducible`: a user learns which files made two builds of the
//! same step differ instead of guessing from two digests.

use std::collections::BTreeMap;

use flate2::read::MultiGzDecoder;

use crate::digest::HashWriter;
use crate::{Digest, ImageError, Store};

/// What one entry of a layer is, for comparison: type, mode, owner, group,
/// link target, device numbers and a hash of the content.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<Vec<u8>>,
    device: (u32, u32),
    content: Digest,
}

/// The in-image paths (`/etc/motd`) whose entries differ between the gzip
/// layers `a` and `b` of `store`, or that only one of them holds, sorted.
pub fn layer_differences(store: &Store, a: &Digest, b: &Digest) -> Result<Vec<String>, ImageError> {
    let left = entries(store, a)?;
    let right = entries(store, b)?;
    let mut differ: Vec<String> = left
        .iter()
        .filter(|(path, seen)| right.get(*path) != Some(seen))
        .map(|(path, _)| path.clone())
        .chain(right.keys().filter(|p| !left.contains_key(*p)).cloned())
        .collect();
    differ.sort();
    differ.dedup();
    Ok(differ)
}

fn entries(store: &Store, digest: &Digest) -> Result<BTreeMap<String, Seen>, ImageError> {
    let invalid = |e: std::io::Error| ImageError::InvalidLayer {
        layer: digest.clone(),
        reason: e.to_string(),
    };
    let blob = store.open_blob(digest)?;
    let mut archive = tar::Archive::new(MultiGzDecoder::new(std::io::BufReader::new(blob)));
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = format!("/{}", name.trim_start_matches("./").trim_end_matches('/'));
        let header = entry.header().clone();
        let mut hasher = HashWriter::new(std::io::sink());
        std::io::copy(&mut entry, &mut hasher).map_err(invalid)?;
        let (_, content, _) = hasher.finish();
        let seen = Seen {
            kind: header.entry_type().as_byte(),
            mode: header.mode().map_err(invalid)?,
            uid: header.uid().map_err(invalid)?,
            gid: header.gid().map_err(invalid)?,
            link: entry.link_name_bytes().map(|l| l.into_owned()),
            device: (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            ),
            content,
        };
        out.insert(path, seen);
    }
    Ok(out)
}
