//! The knobs of the encoder, and the normalisation that keeps every setting
//! valid (so that building an encoder cannot fail or panic).

use std::num::NonZeroUsize;

/// The largest block size used; larger requests are lowered to it.
///
/// A block is held in memory several times over (input, output, queue), and
/// blocks beyond this size gain nothing in ratio.
pub const MAX_BLOCK_SIZE: usize = 1 << 30;

/// Default block size: 1 MiB.
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 20;

/// Settings of a [`ParallelGzEncoder`](crate::ParallelGzEncoder).
///
/// `level` and `block_size` decide the output bytes; `threads` only decides
/// how fast they are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GzipOptions {
    /// Deflate level, 0 (stored) to 9 (smallest); higher values are lowered
    /// to 9. Default 1: layers are written often and read rarely.
    pub level: u32,
    /// Bytes of input per independently compressed block; 0 counts as 1 and
    /// values above [`MAX_BLOCK_SIZE`] are lowered to it. Default 1 MiB.
    pub block_size: usize,
    /// Compression threads; 0 counts as 1. With 1 the encoder compresses on
    /// the caller's thread and spawns nothing. Default: the machine's
    /// available parallelism.
    pub threads: usize,
}

impl Default for GzipOptions {
    fn default() -> Self {
        GzipOptions {
            level: 1,
            block_size: DEFAULT_BLOCK_SIZE,
            threads: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        }
    }
}

impl GzipOptions {
    /// The options as the encoder uses them: every field in its valid range.
    pub(crate) fn normalized(self) -> GzipOptions {
        GzipOptions {
            level: self.level.min(9),
            block_size: self.block_size.clamp(1, MAX_BLOCK_SIZE),
            threads: self.threads.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_clamps_every_field() {
        let wild = GzipOptions {
            level: 42,
            block_size: 0,
            threads: 0,
        };
        assert_eq!(
            wild.normalized(),
            GzipOptions {
                level: 9,
                block_size: 1,
                threads: 1
            }
        );
        let huge = GzipOptions {
            level: 0,
            block_size: usize::MAX,
            threads: 3,
        };
        assert_eq!(huge.normalized().block_size, MAX_BLOCK_SIZE);
        assert_eq!(huge.normalized().level, 0);
        assert_eq!(huge.normalized().threads, 3);
    }

    #[test]
    fn defaults_are_level_1_and_1_mib() {
        let options = GzipOptions::default();
        assert_eq!(options.level, 1);
        assert_eq!(options.block_size, 1 << 20);
        assert!(options.threads >= 1);
    }
}
