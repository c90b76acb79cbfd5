//! One block of input to one run of deflate: the unit of parallel work.
//!
//! A block's output depends only on its bytes, the 32 KiB of input before it
//! (the preset dictionary), the level and whether it is the last block, so
//! any thread may compress it and the bytes come out the same.

use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress, Status};

use crate::error::GzipError;

/// How far back deflate can refer: the dictionary each block starts with.
pub(crate) const WINDOW: usize = 32 * 1024;

/// A block compressed to raw deflate, with what the gzip trailer needs.
#[derive(Debug)]
pub(crate) struct Compressed {
    /// Raw deflate; ends byte-aligned with an empty stored block (non-final
    /// blocks) or with the final deflate block (the last one).
    pub(crate) deflate: Vec<u8>,
    /// CRC-32 of the uncompressed block (crc32fast: the CPU's carry-less
    /// multiply where it has one, about six times the speed of flate2's
    /// `Crc` here).
    pub(crate) crc: Hasher,
    /// Length of the uncompressed block.
    pub(crate) len: u64,
}

/// Compresses `data` as a piece of one deflate stream.
///
/// Non-final blocks end with a sync flush: an empty stored block that
/// byte-aligns the output without setting BFINAL, so the pieces concatenate
/// into one valid stream. The final block ends with a finish.
pub(crate) fn compress(
    index: u64,
    level: u32,
    dictionary: &[u8],
    data: &[u8],
    last: bool,
) -> Result<Compressed, GzipError> {
    compress_into(index, level, dictionary, data, last, bound(data.len()))
}

/// [`compress`] with the first output buffer `capacity` bytes long.
fn compress_into(
    index: u64,
    level: u32,
    dictionary: &[u8],
    data: &[u8],
    last: bool,
    capacity: usize,
) -> Result<Compressed, GzipError> {
    let failed = |message: String| GzipError::Deflate {
        block: index,
        message,
    };
    let mut deflate = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(|e| failed(e.to_string()))?;
    }
    // The whole block goes to deflate in one call, with the flush mode
    // known from the start, into an output buffer whose size depends on the
    // block's length only. zlib-rs's bytes depend on all three: measured
    // here, level 1 changes when finish comes after the data instead of with
    // it, level 6 when the output buffer is 32 KiB instead of ample, and
    // level 0 sizes its stored blocks by the room it is given.
    let mut out = vec![0u8; capacity];
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let (mut read, mut written) = (0usize, 0usize);
    loop {
        let status = deflate
            .compress(&data[read..], &mut out[written..], flush)
            .map_err(|e| failed(e.to_string()))?;
        let (now_read, now_written) = (as_usize(deflate.total_in()), as_usize(deflate.total_out()));
        let progressed = now_read > read || now_written > written;
        (read, written) = (now_read, now_written);
        let done = if last {
            status == Status::StreamEnd
        } else {
            // A sync flush is complete once deflate stops with room to spare.
            read == data.len() && written < out.len()
        };
        if done {
            break;
        }
        if written == out.len() {
            // `bound` should make this unreachable; growing by a rule that
            // depends only on sizes keeps the bytes deterministic anyway.
            let grown = out.len() + out.len() / 2 + 4096;
            out.resize(grown, 0);
        } else if !progressed {
            return Err(failed("deflate made no progress".to_owned()));
        }
    }
    out.truncate(written);
    let mut crc = Hasher::new();
    crc.update(data);
    Ok(Compressed {
        deflate: out,
        crc,
        len: data.len() as u64,
    })
}

/// An upper bound on deflate's output for `len` bytes of input, flush
/// markers included (zlib-ng's level-1 bound is `len + len / 8` plus block
/// headers; stored blocks cost 5 bytes per 64 KiB).
fn bound(len: usize) -> usize {
    len + len / 8 + 4096
}

fn as_usize(n: u64) -> usize {
    // Totals never exceed the block length, itself a usize.
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The dictionary for the block after `data`: the last [`WINDOW`] bytes of
/// everything up to and including `data`, given the same for the blocks
/// before it in `window`.
pub(crate) fn slide(window: &mut Vec<u8>, data: &[u8]) {
    if data.len() >= WINDOW {
        window.clear();
        window.extend_from_slice(&data[data.len() - WINDOW..]);
    } else {
        window.extend_from_slice(data);
        let excess = window.len().saturating_sub(WINDOW);
        window.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        let mut inflater = Decompress::new(false);
        inflater
            .decompress_vec(stream, &mut out, FlushDecompress::Finish)
            .expect("valid deflate");
        out
    }

    #[test]
    fn non_final_blocks_end_with_a_sync_marker_and_chain_into_one_stream() {
        let text: Vec<u8> = b"kiln layer "
            .iter()
            .cycle()
            .take(100_000)
            .copied()
            .collect();
        let (first, second) = text.split_at(70_000);
        let a = compress(0, 1, &[], first, false).expect("block 0");
        assert!(a.deflate.ends_with(&[0, 0, 0xff, 0xff]));
        let mut window = Vec::new();
        slide(&mut window, first);
        let b = compress(1, 1, &window, second, true).expect("block 1");
        let mut stream = a.deflate.clone();
        stream.extend_from_slice(&b.deflate);
        assert_eq!(inflate(&stream), text);
        // The dictionary is what lets block 1 refer back into block 0.
        let alone = compress(1, 1, &[], second, true).expect("block 1 alone");
        assert!(b.deflate.len() < alone.deflate.len());
    }

    #[test]
    fn every_level_round_trips_including_empty_input() {
        for level in 0..=9 {
            for data in [&b""[..], b"x", &[7u8; 200_000]] {
                let block = compress(0, level, &[], data, true).expect("compress");
                assert_eq!(inflate(&block.deflate), data, "level {level}");
                assert_eq!(block.len as usize, data.len());
            }
        }
    }

    #[test]
    fn an_ample_output_buffer_gives_the_same_bytes_whatever_its_size() {
        // What `bound` buys: deflate never stops for room, so the bytes do
        // not depend on the buffer. A cramped buffer (1000 bytes, grown as
        // needed) is allowed to differ, and at some levels does.
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| {
                if i % 7000 < 3000 {
                    (i % 251) as u8
                } else {
                    (i.wrapping_mul(i) >> 5) as u8
                }
            })
            .collect();
        for level in 0..=9 {
            for last in [false, true] {
                let ample =
                    compress(3, level, &data[..40_000], &data[40_000..], last).expect("compress");
                let larger =
                    compress_into(3, level, &data[..40_000], &data[40_000..], last, 4 << 20)
                        .expect("compress");
                assert_eq!(ample.deflate, larger.deflate, "level {level}, last {last}");
                let cramped = compress_into(3, level, &data[..40_000], &data[40_000..], last, 1000)
                    .expect("compress");
                let mut window = Vec::new();
                slide(&mut window, &data[..40_000]);
                let mut inflater = Decompress::new(false);
                inflater
                    .set_dictionary(&window)
                    .expect("raw inflate takes a dictionary");
                let mut out = Vec::with_capacity(data.len());
                inflater
                    .decompress_vec(&cramped.deflate, &mut out, FlushDecompress::Sync)
                    .expect("cramped output is still valid deflate");
                assert_eq!(out, &data[40_000..], "level {level}, last {last}");
            }
        }
    }

    #[test]
    fn slide_keeps_the_last_32_kib_across_small_and_large_blocks() {
        let mut window = Vec::new();
        slide(&mut window, &[1; 10]);
        assert_eq!(window, vec![1; 10]);
        slide(&mut window, &[2; WINDOW - 4]);
        assert_eq!(window.len(), WINDOW);
        assert_eq!(&window[..4], &[1; 4]);
        let big: Vec<u8> = (0..WINDOW + 100).map(|i| i as u8).collect();
        slide(&mut window, &big);
        assert_eq!(window, &big[100..]);
    }
}
