//! The one error type of the cache.

use std::path::PathBuf;

/// Why the cache could not be read or written. A cache that cannot be
/// trusted is an error, never a silent hit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A cache or input file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A cache file is not what kiln wrote.
    #[error("{path}: unreadable cache file")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_image::ImageError),
}

impl CacheError {
    /// Which kind of failure this is. Every variant is named, with no
    /// wildcard: a new variant must be given its kind where it is added.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        match self {
            CacheError::Io { .. } | CacheError::Corrupt { .. } => kiln_error_kind::ErrorKind::Work,
            CacheError::Store(e) => e.kind(),
        }
    }
}
