//! The stat cache's file: a compact binary form, read in one call and
//! decoded in one pass (a JSON form of a Debian root's ~5,000 files was
//! 1.7 MB and took longer to parse than the tree took to stat).
//!
//! Layout, integers little-endian:
//!
//! - the magic `KILNSTAT`, then the format version (u32, [`VERSION`]) and
//!   the number of entries (u64);
//! - each entry, in path order: how many leading bytes its path shares with
//!   the previous entry's (u32), the length of the rest (u32) and the rest;
//!   then size (u64), mtime and ctime in nanoseconds (i128 each), inode and
//!   device (u64 each), when it was hashed in nanoseconds (i128), and the
//!   sha256 of the content (32 bytes);
//! - the sha256 of everything before it (32 bytes).
//!
//! A file that does not check out in every byte (another version, torn by a
//! crash, written by something else) decodes to nothing: an empty cache
//! only costs hashing again, a wrong entry would give a wrong digest.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use kiln_image::Digest;
use sha2::{Digest as _, Sha256};

use crate::stat::{Entry, Stat};

const MAGIC: &[u8; 8] = b"KILNSTAT";
/// Bumped when the layout changes; a file of another version is ignored.
const VERSION: u32 = 1;
const CHECKSUM: usize = 32;

/// The bytes of `entries` in the file's form.
pub(crate) fn encode(entries: &BTreeMap<OsString, Entry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + entries.len() * 140 + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let mut previous: &[u8] = &[];
    for (path, entry) in entries {
        let path = path.as_bytes();
        let shared = path
            .iter()
            .zip(previous)
            .take_while(|(a, b)| a == b)
            .count();
        let rest = &path[shared..];
        out.extend_from_slice(&len_u32(shared).to_le_bytes());
        out.extend_from_slice(&len_u32(rest.len()).to_le_bytes());
        out.extend_from_slice(rest);
        let s = &entry.stat;
        out.extend_from_slice(&s.size.to_le_bytes());
        out.extend_from_slice(&s.mtime_ns.to_le_bytes());
        out.extend_from_slice(&s.ctime_ns.to_le_bytes());
        out.extend_from_slice(&s.ino.to_le_bytes());
        out.extend_from_slice(&s.dev.to_le_bytes());
        out.extend_from_slice(&entry.hashed_at_ns.to_le_bytes());
        let mut raw = [0u8; 32];
        // A Digest holds 64 lowercase hex digits by construction.
        if hex::decode_to_slice(entry.digest.hex(), &mut raw).is_err() {
            unreachable!("a Digest is always 64 hex digits");
        }
        out.extend_from_slice(&raw);
        previous = path;
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// A path's length as the file stores it (paths are far shorter than 4 GiB).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The entries held by `bytes`; `None` unless they are exactly what
/// [`encode`] writes.
pub(crate) fn decode(bytes: &[u8]) -> Option<BTreeMap<OsString, Entry>> {
    let body_len = bytes.len().checked_sub(CHECKSUM)?;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader { bytes: body };
    if r.take(MAGIC.len())? != MAGIC || u32::from_le_bytes(r.array()?) != VERSION {
        return None;
    }
    let count = u64::from_le_bytes(r.array()?);
    // Collected in path order, then built into the map in one pass (an
    // insert per entry compared paths all the way down the tree).
    let mut entries = Vec::with_capacity(usize::try_from(count).ok()?.min(body.len() / 100));
    let mut path: Vec<u8> = Vec::new();
    for _ in 0..count {
        let shared = usize::try_from(u32::from_le_bytes(r.array()?)).ok()?;
        let rest_len = usize::try_from(u32::from_le_bytes(r.array()?)).ok()?;
        if shared > path.len() {
            return None;
        }
        path.truncate(shared);
        path.extend_from_slice(r.take(rest_len)?);
        let stat = Stat {
            size: u64::from_le_bytes(r.array()?),
            mtime_ns: i128::from_le_bytes(r.array()?),
            ctime_ns: i128::from_le_bytes(r.array()?),
            ino: u64::from_le_bytes(r.array()?),
            dev: u64::from_le_bytes(r.array()?),
        };
        let hashed_at_ns = i128::from_le_bytes(r.array()?);
        let raw: [u8; 32] = r.array()?;
        let entry = Entry {
            stat,
            hashed_at_ns,
            digest: Digest::from_sha256(&raw),
        };
        entries.push((OsString::from_vec(path.clone()), entry));
    }
    let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
    (r.bytes.is_empty() && sorted).then(|| entries.into_iter().collect())
}

/// The bytes not decoded yet.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> Entry {
        Entry {
            stat: Stat {
                size: u64::from(i) * 1000,
                mtime_ns: -5 + i128::from(i),
                ctime_ns: i128::from(i) << 70,
                ino: u64::MAX - u64::from(i),
                dev: 42,
            },
            hashed_at_ns: 1_700_000_000_000_000_000,
            digest: Digest::of(&[i]),
        }
    }

    fn sample() -> BTreeMap<OsString, Entry> {
        ["/a/b/c", "/a/b/cd", "/a/x", "/b", "/a/b/c/ü", ""]
            .into_iter()
            .enumerate()
            .map(|(i, p)| (OsString::from(p), entry(u8::try_from(i).unwrap_or(0))))
            .collect()
    }

    #[test]
    fn entries_come_back_exactly() {
        let entries = sample();
        let decoded = decode(&encode(&entries)).expect("decodes");
        assert_eq!(decoded.len(), entries.len());
        for ((p1, e1), (p2, e2)) in entries.iter().zip(&decoded) {
            assert_eq!(p1, p2);
            assert_eq!(e1.stat, e2.stat);
            assert_eq!(e1.hashed_at_ns, e2.hashed_at_ns);
            assert_eq!(e1.digest, e2.digest);
        }
        let empty = BTreeMap::new();
        assert_eq!(decode(&encode(&empty)).map(|e| e.len()), Some(0));
    }

    #[test]
    fn any_damage_is_no_cache_at_all() {
        let bytes = encode(&sample());
        for at in [0, 9, 20, 30, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(decode(&bad).is_none(), "a flipped bit at {at} was accepted");
        }
        for len in [0, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..len]).is_none(), "a file cut at {len}");
        }
        assert!(decode(&vec![0u8; bytes.len()]).is_none(), "zeros");
        assert!(decode(b"{\"/a\":{}}").is_none(), "the old JSON form");
    }
}
