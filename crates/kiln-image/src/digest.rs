//! Content digests. A [`Digest`] can only be made by hashing or by parsing a
//! well-formed `sha256:<64 hex>` string, so one that exists is valid.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 lowercase hex>` content digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

/// A string that is not a valid sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256: followed by 64 lowercase hex digits")]
pub struct DigestParseError(pub String);

impl DigestParseError {
    /// Which kind of failure this is: a digest that does not parse came
    /// from the user or a document, so it is bad input.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        kiln_error_kind::ErrorKind::Input
    }
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher holds.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest::from_sha256(&hasher.finalize().into())
    }

    /// The digest whose 32 bytes are `sha256` (as a file stores it): one
    /// allocation, nothing to parse.
    pub fn from_sha256(sha256: &[u8; 32]) -> Self {
        let mut text = [0u8; 64];
        if hex::encode_to_slice(sha256, &mut text).is_err() {
            unreachable!("32 bytes are 64 hex digits");
        }
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        s.extend(text.iter().map(|&b| char::from(b)));
        Digest(s)
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The full `sha256:...` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Digest(s.to_owned()))
        } else {
            Err(DigestParseError(s.to_owned()))
        }
    }
}

/// A writer that hashes and counts what passes through it on its way to
/// `inner`, so that a blob's digest and size come out of the one pass that
/// writes it.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// How many bytes went through so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The inner writer, the digest and the byte count.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: std::io::Write> std::io::Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it yields from `inner`, so that content read
/// once for its own sake (a tar unpacked) also gives its digest.
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of everything read so far.
    pub(crate) fn finish(self) -> Digest {
        Digest::from_hasher(self.hasher)
    }
}

impl<R: std::io::Read> std::io::Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that hashes what it yields and, at the end, fails unless the
/// content had the expected digest and size: blobs streamed out of the store
/// are trusted only once they are read whole.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    expected: Digest,
    size: u64,
    verified: bool,
}

impl<R> VerifyingReader<R> {
    pub(crate) fn new(inner: R, expected: Digest, size: u64) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            expected,
            size,
            verified: false,
        }
    }
}

impl<R: std::io::Read> std::io::Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        let mismatch = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("blob {} does not match its digest or size", self.expected),
            )
        };
        if self.count > self.size {
            return Err(mismatch());
        }
        if n == 0 && !self.verified {
            let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
            if self.count != self.size || actual != self.expected {
                return Err(mismatch());
            }
            self.verified = true;
        }
        Ok(n)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_parses() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.as_str().parse::<Digest>(), Ok(d.clone()));
        for bad in [
            "sha256:abc",
            "md5:00",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(bad.parse::<Digest>().is_err());
        }
    }
}
