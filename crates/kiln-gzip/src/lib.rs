//! kiln-gzip compresses OCI layers with gzip on every core, and still gives
//! the same bytes every time.
//!
//! A layer's identity is the sha256 of its compressed blob: it names the
//! blob in the manifest, and the manifest's digest names the image. If the
//! compressor's output changed with the number of threads, the timing or
//! the machine, the same files would give a different image on a laptop and
//! on a CI runner, and nothing could be checked or cached by digest. Common
//! parallel gzip encoders (pigz-style ones such as `gzp`) cut their blocks
//! where the timing falls, so they are ruled out.
//!
//! [`ParallelGzEncoder`] cuts the input at fixed offsets (every
//! [`GzipOptions::block_size`] bytes, 1 MiB by default) and compresses each
//! block as raw deflate whose preset dictionary is the 32 KiB of input before
//! it. What a block turns into is thus fixed before any thread touches it,
//! so blocks compress in parallel and are written in order: one gzip member
//! whose bytes depend only on the input, the level and the block size.
//! Non-final blocks end with a sync flush (an empty stored block), which
//! byte-aligns them so they join into one deflate stream; the header carries
//! no name, no time and OS 255; the trailer holds the CRC-32 of all input,
//! combined from the blocks' CRCs. Any gzip reader reads it.
//!
//! Memory stays bounded: at most two blocks per thread are out at a time.
//! With one thread the encoder compresses on the caller's thread and starts
//! none, producing the same bytes. Deflate comes from `flate2` with the
//! `zlib-rs` backend pinned at the workspace root; another backend or a
//! zlib-rs release that changes its output changes the bytes, which the
//! crate's golden test catches.
//!
//! ```
//! use std::io::{Read, Write};
//! use kiln_gzip::{GzipOptions, ParallelGzEncoder};
//!
//! let input = b"a layer's tar stream ".repeat(100_000);
//! let compress = |threads: usize| -> std::io::Result<Vec<u8>> {
//!     let options = GzipOptions { threads, ..GzipOptions::default() };
//!     let mut encoder = ParallelGzEncoder::new(Vec::new(), options);
//!     encoder.write_all(&input)?;
//!     encoder.finish()
//! };
//! let one = compress(1)?;
//! assert_eq!(one, compress(4)?);
//!
//! let mut back = Vec::new();
//! flate2::read::GzDecoder::new(&one[..]).read_to_end(&mut back)?;
//! assert_eq!(back, input);
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

mod block;
mod encoder;
mod error;
mod member;
mod options;
mod pool;

pub use encoder::ParallelGzEncoder;
pub use error::GzipError;
pub use options::{DEFAULT_BLOCK_SIZE, GzipOptions, MAX_BLOCK_SIZE};
