//! The one error type of promotion.

use std::path::PathBuf;

use kiln_image::Digest;

/// Why a record, promotion or rollback failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// The digest has never been tested.
    #[error("{name}@{digest} has no test record: run `kiln test` on it before promoting")]
    Untested {
        /// Image name.
        name: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// The digest's latest test run failed.
    #[error("{name}@{digest} failed its checks ({failed}): only a digest that passed is promoted")]
    Failed {
        /// Image name.
        name: String,
        /// Manifest digest.
        digest: Digest,
        /// The names of the failed checks.
        failed: String,
    },
    /// The record of this digest belongs to another image.
    #[error("{digest} was tested as image {recorded:?}, not {name:?}")]
    WrongImage {
        /// The name asked for.
        name: String,
        /// The name in the record.
        recorded: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// The manifest is not in the store.
    #[error("{digest} is not in the store: build it first")]
    NotStored {
        /// Manifest digest.
        digest: Digest,
    },
    /// A channel name that is not `[a-z0-9][a-z0-9._-]*`.
    #[error("invalid channel name {0:?}: use lowercase letters, digits, '.', '_' and '-'")]
    InvalidChannel(String),
    /// An image name that is not a valid name (`[a-z0-9][a-z0-9._-]*`
    /// components separated by `/`): it would become a path.
    #[error("{0}")]
    InvalidName(String),
    /// No earlier passing digest to go back to.
    #[error("channel {channel} of {name} has no earlier passing digest to roll back to")]
    NothingToRollBack {
        /// Image name.
        name: String,
        /// Channel.
        channel: String,
    },
    /// A bookkeeping file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A bookkeeping file is not what kiln wrote.
    #[error("{path}: unreadable bookkeeping file")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] kiln_image::ImageError),
}

impl PromoteError {
    /// Which kind of failure this is. Every variant is named, with no
    /// wildcard: a new variant must be given its kind where it is added.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        use kiln_error_kind::ErrorKind;
        match self {
            // A digest the store does not hold, a channel name that cannot
            // be one: the user named the wrong thing.
            PromoteError::NotStored { .. }
            | PromoteError::InvalidChannel(_)
            | PromoteError::InvalidName(_) => ErrorKind::Input,
            // A refused promotion or rollback is the work failing, as is
            // bookkeeping that cannot be read or written.
            PromoteError::Untested { .. }
            | PromoteError::Failed { .. }
            | PromoteError::WrongImage { .. }
            | PromoteError::NothingToRollBack { .. }
            | PromoteError::Io { .. }
            | PromoteError::Corrupt { .. } => ErrorKind::Work,
            PromoteError::Store(e) => e.kind(),
        }
    }
}
