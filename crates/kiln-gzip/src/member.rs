//! The single gzip member around the deflate blocks: a header fixed by the
//! level alone and a trailer built from the blocks' CRCs and lengths.

use std::io::{self, Write};

use crc32fast::Hasher;

use crate::block::Compressed;

/// Writes one gzip member to `W` as compressed blocks arrive in order.
#[derive(Debug)]
pub(crate) struct Member<W> {
    /// `None` only once [`Member::take_inner`] has run.
    inner: Option<W>,
    header: [u8; 10],
    header_written: bool,
    crc: Hasher,
    size: u64,
}

impl<W: Write> Member<W> {
    pub(crate) fn new(inner: W, level: u32) -> Self {
        Member {
            inner: Some(inner),
            header: header(level),
            header_written: false,
            crc: Hasher::new(),
            size: 0,
        }
    }

    pub(crate) fn inner(&self) -> Option<&W> {
        self.inner.as_ref()
    }

    fn writer(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other(crate::GzipError::Failed))
    }

    fn write_header_once(&mut self) -> io::Result<()> {
        if !self.header_written {
            let header = self.header;
            self.writer()?.write_all(&header)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Appends the next block, which must follow the previous one.
    pub(crate) fn push(&mut self, block: &Compressed) -> io::Result<()> {
        self.write_header_once()?;
        self.writer()?.write_all(&block.deflate)?;
        self.crc.combine(&block.crc);
        self.size += block.len;
        Ok(())
    }

    /// Flushes the writer underneath.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }

    /// Writes the trailer (CRC-32 and length mod 2^32) after the last block.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.write_header_once()?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952): truncation meant.
        trailer[4..].copy_from_slice(&(self.size as u32).to_le_bytes());
        let writer = self.writer()?;
        writer.write_all(&trailer)?;
        writer.flush()
    }

    pub(crate) fn take_inner(&mut self) -> Option<W> {
        self.inner.take()
    }
}

/// The 10-byte header: no file name, no comment, MTIME 0 and OS 255
/// ("unknown"), so neither the host nor the clock reaches the digest.
fn header(level: u32) -> [u8; 10] {
    // XFL as gzip and flate2 set it: 2 for the slowest level, 4 for the
    // fastest, 0 otherwise. It follows from the level alone.
    let xfl = match level {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_no_name_no_time_and_unknown_os() {
        assert_eq!(header(1), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        assert_eq!(header(6)[8], 0);
        assert_eq!(header(9)[8], 2);
        assert_eq!(header(0)[8], 4);
    }

    #[test]
    fn an_empty_member_still_has_header_and_trailer() {
        let mut member = Member::new(Vec::new(), 1);
        member.finish().expect("write to a Vec");
        let bytes = member.take_inner().expect("writer still there");
        assert_eq!(bytes.len(), 18);
        assert_eq!(&bytes[10..], &[0; 8]);
    }
}
