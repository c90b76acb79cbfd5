//! The one error type of this crate: every variant names the secret, source,
//! layer or digest involved, and none ever holds a secret's value.

use kiln_image::{Digest, ImageError};

/// What can go wrong while reading secrets or scanning an image for them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A secret's source could not give its value: the environment variable
    /// is unset, the file is absent or unreadable.
    #[error("secret {name} is not available from {from}: {reason}")]
    Unavailable {
        /// The secret's name in the recipe.
        name: String,
        /// Its source as the recipe writes it, e.g. `env:API_TOKEN`.
        from: String,
        /// Why it could not be read (never the value).
        reason: String,
    },

    /// The image or one of its blobs could not be read from the store.
    #[error(transparent)]
    Image(#[from] ImageError),

    /// A layer blob could not be read or is not a readable (gzip) tar.
    #[error("cannot read layer {layer} ({digest}) of the image")]
    Io {
        /// The layer's index in the manifest (the base's layers first).
        layer: usize,
        /// The layer blob's digest.
        digest: Digest,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },

    /// The needles of the secrets could not be compiled into one automaton
    /// (far more or far longer secrets than a recipe declares).
    #[error("cannot build the secret scanner: {reason}")]
    Scanner {
        /// What the automaton builder said.
        reason: String,
    },
}

impl SecretError {
    /// Which kind of failure this is. Every variant is named, with no
    /// wildcard: a new variant must be given its kind where it is added.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        use kiln_error_kind::ErrorKind;
        match self {
            // An unset variable or a missing file that the recipe names as
            // a secret's source: what the user gave kiln is wrong.
            SecretError::Unavailable { .. } => ErrorKind::Input,
            SecretError::Image(e) => e.kind(),
            SecretError::Io { .. } | SecretError::Scanner { .. } => ErrorKind::Work,
        }
    }
}
