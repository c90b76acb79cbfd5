//! Why encoding failed, carried inside the `io::Error`s that `Write` demands.

use std::io;

/// A failure of the encoder itself (not of the writer underneath).
///
/// [`ParallelGzEncoder`](crate::ParallelGzEncoder) returns `io::Error`s, as
/// `Write` requires; those that come from the encoder rather than the inner
/// writer hold a `GzipError`, reachable with `io::Error::get_ref` and
/// `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GzipError {
    /// Deflate refused a block (this points at a bug, not at the input).
    #[error("deflate failed on block {block}: {message}")]
    Deflate {
        /// Index of the block, counting from 0.
        block: u64,
        /// What the deflate backend said.
        message: String,
    },
    /// A compression thread died while holding a block.
    #[error("compression worker stopped while compressing block {block}")]
    WorkerLost {
        /// Index of the block, counting from 0, that was lost.
        block: u64,
    },
    /// An earlier call failed; the output is incomplete and the encoder
    /// refuses to go on rather than write a stream with a hole in it.
    #[error("gzip encoder already failed; its output is incomplete")]
    Failed,
}

impl From<GzipError> for io::Error {
    fn from(error: GzipError) -> Self {
        io::Error::other(error)
    }
}
