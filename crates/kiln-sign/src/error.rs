//! The one error type of kiln-sign: every variant names the key file,
//! digest or reference the user has to look at.

use std::path::PathBuf;

use kiln_image::{Digest, ImageError};

/// Why a key could not be read, a signature not made or not verified, or an
/// SBOM not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A key file is not a key kiln can use: not PEM, not the expected PEM
    /// type, not ECDSA P-256, or damaged.
    #[error("{path}: {reason}")]
    MalformedKey {
        /// The key file (or `env:NAME` for a key from the environment).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is an EC key, but of another curve than P-256.
    #[error("{path}: the key is on curve {curve}, kiln and cosign sign with ECDSA P-256 keys")]
    WrongCurve {
        /// The key file.
        path: PathBuf,
        /// The curve's OID as the key names it.
        curve: String,
    },
    /// The password does not open the encrypted private key.
    #[error(
        "{path}: the password does not decrypt this key (set COSIGN_PASSWORD to the password it was made with)"
    )]
    WrongPassword {
        /// The key file.
        path: PathBuf,
    },
    /// A key file could not be read or written (only key files: the store's
    /// failures are [`SignError::Image`]).
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file to be written exists already; kiln does not overwrite keys.
    #[error(
        "{path} exists already; kiln does not overwrite a key: remove it or choose another prefix"
    )]
    KeyExists {
        /// The file that exists.
        path: PathBuf,
    },
    /// No randomness could be had from the operating system.
    #[error("no randomness from the operating system: {reason}")]
    Random {
        /// What the OS said.
        reason: String,
    },
    /// A signature or attestation document in the store or registry is not
    /// in the form cosign writes.
    #[error("{what} {digest}: {reason}")]
    InvalidDocument {
        /// What was read (`signature manifest`, `DSSE envelope`...).
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },
    /// No signature or attestation of the image verifies with the key.
    #[error("{reference}: {failure}")]
    NotVerified {
        /// The image, as the user named it.
        reference: String,
        /// Why not.
        failure: VerifyFailure,
    },
    /// An image layer could not be read while listing its contents.
    #[error("layer {digest}: {reason}")]
    Layer {
        /// The layer blob.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
    /// The store or registry failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// JSON could not be written.
    #[error("a document could not be written as JSON")]
    Json(#[from] serde_json::Error),
}

impl SignError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SignError {
        let path = path.into();
        move |source| SignError::Io { path, source }
    }

    /// Which kind of failure this is: a key that cannot be used is the
    /// user's input (exit 2), a verification that fails is failed work
    /// (exit 1), and the store's or registry's errors keep their own kind.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        use kiln_error_kind::ErrorKind;
        match self {
            SignError::MalformedKey { .. }
            | SignError::WrongCurve { .. }
            | SignError::WrongPassword { .. }
            | SignError::KeyExists { .. }
            | SignError::Io { .. } => ErrorKind::Input,
            SignError::NotVerified { .. }
            | SignError::InvalidDocument { .. }
            | SignError::Layer { .. }
            | SignError::Json(_) => ErrorKind::Work,
            SignError::Random { .. } => ErrorKind::Environment,
            SignError::Image(e) => e.kind(),
        }
    }

    /// Whether the error is the user's input (a key that is not usable, a
    /// wrong password): a command line exits 2 for these.
    pub fn is_input(&self) -> bool {
        self.kind() == kiln_error_kind::ErrorKind::Input
    }
}

/// Why verification failed: each is exit 1, and each says which it was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// Nothing is attached: the image was never signed (or attested).
    Unsigned {
        /// The tag that was looked for (`sha256-HEX.sig`).
        tag: String,
    },
    /// Attestations exist, none of the asked type.
    NoneOfType {
        /// The asked type (`spdxjson`).
        kind: String,
        /// How many attestations there are.
        count: usize,
    },
    /// Signatures exist, none verifies with the key.
    NotByThisKey {
        /// How many were tried.
        count: usize,
        /// The public key file.
        key: PathBuf,
    },
    /// A signature verifies, but its payload is about another digest.
    OtherImage {
        /// The digest the payload names.
        claimed: String,
    },
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyFailure::Unsigned { tag } => {
                write!(f, "the image is not signed: nothing is attached as {tag}")
            }
            VerifyFailure::NoneOfType { kind, count } => {
                write!(f, "none of its {count} attestations is of type {kind}")
            }
            VerifyFailure::NotByThisKey { count, key } => write!(
                f,
                "none of its {count} signatures verifies with {}: they were made with another key, or the signed payload was altered",
                key.display()
            ),
            VerifyFailure::OtherImage { claimed } => write!(
                f,
                "a signature verifies, but its payload names {claimed}, not this image: it was moved from another image"
            ),
        }
    }
}
