//! The one error type of this crate, so that callers can say what went wrong
//! and where: every variant carries the path, digest or name involved.

use std::path::PathBuf;

use crate::Digest;
use kiln_error_kind::ErrorKind;

/// What can go wrong while planning or writing layers, or reading and
/// writing the store, bases and archives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The work was cancelled through its [`Cancel`](crate::Cancel) token;
    /// nothing half-written was left in the store.
    #[error("cancelled")]
    Cancelled,

    /// Reading or writing a file or folder failed.
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A blob in the store whose content does not hash to its name.
    #[error("blob {digest} at {} is corrupt: its content does not match its digest; delete it and build or import again", path.display())]
    CorruptBlob {
        /// The digest the blob is stored under.
        digest: Digest,
        /// Where it lies.
        path: PathBuf,
    },

    /// A blob that should be in the store (or in a layout) is not.
    #[error("blob {digest} is missing: expected at {}", path.display())]
    MissingBlob {
        /// The digest of the missing blob.
        digest: Digest,
        /// Where it was looked for.
        path: PathBuf,
    },

    /// Content copied in does not hash to the digest it was announced under.
    #[error("content from {} has digest {actual}, expected {expected}", source_path.display())]
    DigestMismatch {
        /// Where the content came from.
        source_path: PathBuf,
        /// The digest it was announced under.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },

    /// A blob whose size is not the one its descriptor gives.
    #[error("blob {digest} from {} is {actual} bytes, its descriptor says {expected}", path.display())]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Where it came from.
        path: PathBuf,
        /// The size the descriptor gives.
        expected: u64,
        /// The size it has.
        actual: u64,
    },

    /// A copy `src` that leads outside the build context.
    #[error("src {src:?} leads outside the context: {reason}")]
    ContextEscape {
        /// The `src` as written.
        src: String,
        /// How it leaves the context.
        reason: String,
    },

    /// A copy `src` that does not exist.
    #[error("src {src:?} does not exist (looked for {})", path.display())]
    SourceMissing {
        /// The `src` as written.
        src: String,
        /// The host path looked at.
        path: PathBuf,
    },

    /// A glob `src` that matches no file.
    #[error("src {src:?} matches no file in the context {}; `*`, `?` and `[...]` stay within one folder, `**` crosses folders, and a glob selects files, not folders", context.display())]
    NoMatch {
        /// The `src` as written.
        src: String,
        /// The context folder searched.
        context: PathBuf,
    },

    /// A copy whose `src` or `dest` does not fit what is there.
    #[error("cannot copy src {src:?}: {reason}")]
    InvalidCopy {
        /// The `src` as written.
        src: String,
        /// What is wrong.
        reason: String,
    },

    /// A file in a copied folder that is neither a file, a folder nor a
    /// symlink (a socket, a fifo, a device).
    #[error("{} is not a regular file, folder or symlink: kiln does not put such files in layers", path.display())]
    UnsupportedFileType {
        /// The host path.
        path: PathBuf,
    },

    /// A host path or symlink target that is not UTF-8.
    #[error("{} is not valid UTF-8: layer paths must be", path.display())]
    NonUtf8Path {
        /// The host path.
        path: PathBuf,
    },

    /// A `exclude` glob that does not parse.
    #[error("invalid exclude pattern {pattern:?}: {reason}")]
    InvalidExclude {
        /// The pattern as written.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },

    /// A file that changed while it was read into a layer: its size, or
    /// its content since it was hashed for the layer's cache key.
    #[error("{} changed while being read into a layer: build again once it is stable", path.display())]
    SourceChanged {
        /// The host path.
        path: PathBuf,
    },

    /// A layer entry path that is not absolute and normalised.
    #[error("invalid in-image path {path:?}: {reason}")]
    InvalidEntryPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Two different entries for one path in one layer.
    #[error("{path} is given twice in one layer with different content")]
    DuplicatePath {
        /// The in-image path.
        path: String,
    },

    /// A folder that is not a usable OCI image layout.
    #[error("{} is not a usable OCI image layout: {reason}", path.display())]
    InvalidLayout {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A reference that names nothing in a layout.
    #[error("no image {reference:?} in {}; available: {}", path.display(), list(available))]
    UnknownRef {
        /// The reference asked for.
        reference: String,
        /// The layout looked in.
        path: PathBuf,
        /// The ref names it holds.
        available: Vec<String>,
    },

    /// A layout holding several images, read without saying which.
    #[error("{} holds several images: name one of {}", path.display(), list(available))]
    RefRequired {
        /// The layout.
        path: PathBuf,
        /// The ref names it holds.
        available: Vec<String>,
    },

    /// A ref name that cannot go into index.json.
    #[error("invalid ref name {name:?}: {reason}")]
    InvalidRefName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// An image index with no image for the platform asked for.
    #[error(
        "image index {digest} has no {wanted} image; it has: {} (choose one with [image] platform)",
        list(available)
    )]
    NoMatchingPlatform {
        /// The index.
        digest: Digest,
        /// The platform asked for, as `os/architecture[/variant]`.
        wanted: String,
        /// The platforms it has, as `os/architecture`.
        available: Vec<String>,
    },

    /// A manifest, index or config that is not what it should be.
    #[error("{what} {digest} is invalid: {reason}")]
    InvalidDocument {
        /// `manifest`, `image index` or `config`.
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },

    /// A media type kiln does not handle.
    #[error("{digest} has media type {media_type:?}, which kiln does not handle here: {hint}")]
    UnsupportedMediaType {
        /// The blob.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// What kiln expects instead.
        hint: &'static str,
    },

    /// A file's JSON that does not parse.
    #[error("{} is not valid JSON of the expected shape", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },

    /// A tar archive (an oci-archive or a docker-archive) that cannot be
    /// read or lacks what its format requires.
    #[error("{} is not a usable {format}: {reason}", path.display())]
    InvalidArchive {
        /// The archive file.
        path: PathBuf,
        /// `oci-archive` or `docker-archive`.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A docker-archive layer whose content does not match the diff_id its
    /// config lists for it.
    #[error("layer {layer} of {} has diff_id {actual}, but the config lists {expected}", path.display())]
    DiffIdMismatch {
        /// The archive file.
        path: PathBuf,
        /// The layer's name in the archive.
        layer: String,
        /// The diff_id the config lists.
        expected: Digest,
        /// The digest of the layer's uncompressed tar.
        actual: Digest,
    },

    /// A base layer that is not a readable (gzip or plain) tar.
    #[error("layer {layer} is not a readable tar: {reason}")]
    InvalidLayer {
        /// The layer blob.
        layer: Digest,
        /// What the reader said.
        reason: String,
    },

    /// A `rootfs:` base that is missing, is neither a folder nor a tar
    /// file, or holds a hostile entry.
    #[error("rootfs {}: {reason}", path.display())]
    InvalidRootfs {
        /// The folder or tar file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A base layer entry refused by [`crate::validate_layer_entries`].
    #[error("layer {layer}: entry {entry:?} is refused: {reason}")]
    HostileLayerEntry {
        /// The layer blob.
        layer: Digest,
        /// The entry's path as the archive spells it.
        entry: String,
        /// Why it is refused.
        reason: String,
    },

    /// A registry host, repository or tag that cannot be used.
    #[error("invalid registry reference {reference:?}: {reason}")]
    InvalidRegistryReference {
        /// The part as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },

    /// A registry that cannot be reached at all (connection refused, name
    /// not resolved, TLS handshake failed, timed out).
    #[error("registry {host} is unreachable: {reason}")]
    RegistryUnreachable {
        /// The registry host as given.
        host: String,
        /// What the network said.
        reason: String,
    },

    /// A registry that refused access (HTTP 401 or 403).
    #[error("registry {host} refused access to {repository} (HTTP {status}): {hint}")]
    RegistryAccessDenied {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// 401 or 403.
        status: u16,
        /// What to do about it.
        hint: &'static str,
    },

    /// A repository, tag, digest or blob the registry does not have.
    #[error("registry {host} has no {reference} in repository {repository}: {detail}")]
    RegistryNotFound {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// What was asked for: `tag 1.0`, `manifest sha256:...`, `blob sha256:...`.
        reference: String,
        /// What the registry said.
        detail: String,
    },

    /// Any other failure talking to a registry: an unexpected status, a
    /// malformed answer, a transfer cut short.
    #[error("registry {host}: {operation} failed: {reason}")]
    Registry {
        /// The registry host.
        host: String,
        /// What kiln was doing, e.g. `pull manifest`.
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },

    /// A blob upload that failed after its retries: which blob, of which
    /// image, and how far it got.
    #[error(
        "pushing {what} ({blob}) to {target} failed after {} of {} bytes: {reason}",
        sent.0,
        sent.1
    )]
    BlobPush {
        /// Where it went: `HOST/REPOSITORY`.
        target: String,
        /// The blob.
        blob: Digest,
        /// Which blob of which image: `layer 2 of 3 of image sha256:...`.
        what: String,
        /// Bytes the registry had accepted, and the blob's size.
        sent: (u64, u64),
        /// What went wrong last.
        reason: String,
    },

    /// A credential store that cannot be read: a malformed docker config or
    /// containers auth file, or a credential helper that failed. Never
    /// carries the credential itself.
    #[error("credentials for registry {host}: {source_name}: {reason}")]
    Credentials {
        /// The registry host.
        host: String,
        /// The file or helper program consulted.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A value that cannot be serialised as JSON.
    #[error("cannot serialise {what} as JSON")]
    Serialize {
        /// What was serialised.
        what: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

impl ImageError {
    /// Which kind of failure this is. Every variant is named here, with no
    /// wildcard: a new variant must be given its kind where it is added.
    pub fn kind(&self) -> ErrorKind {
        use ImageError as E;
        match self {
            // What the user wrote or pointed at is wrong: a `src`, an
            // exclude pattern, a base that is not a usable image.
            E::ContextEscape { .. }
            | E::InvalidRootfs { .. }
            | E::SourceMissing { .. }
            | E::NoMatch { .. }
            | E::InvalidCopy { .. }
            | E::UnsupportedFileType { .. }
            | E::NonUtf8Path { .. }
            | E::InvalidExclude { .. }
            | E::InvalidEntryPath { .. }
            | E::DuplicatePath { .. }
            | E::InvalidLayout { .. }
            | E::UnknownRef { .. }
            | E::RefRequired { .. }
            | E::InvalidRefName { .. }
            | E::NoMatchingPlatform { .. }
            | E::InvalidDocument { .. }
            | E::UnsupportedMediaType { .. }
            | E::InvalidArchive { .. }
            | E::InvalidRegistryReference { .. }
            | E::RegistryNotFound { .. } => ErrorKind::Input,
            // No registry, or no usable credentials for it: the machine
            // kiln runs on lacks something.
            E::RegistryUnreachable { .. }
            | E::RegistryAccessDenied { .. }
            | E::Credentials { .. } => ErrorKind::Environment,
            // The work failed: I/O, a corrupt store or transfer, a base
            // whose content is not what it claims, a registry's refusal.
            E::Io { .. }
            | E::CorruptBlob { .. }
            | E::MissingBlob { .. }
            | E::DigestMismatch { .. }
            | E::SizeMismatch { .. }
            | E::SourceChanged { .. }
            | E::Json { .. }
            | E::DiffIdMismatch { .. }
            | E::InvalidLayer { .. }
            | E::HostileLayerEntry { .. }
            | E::Registry { .. }
            | E::BlobPush { .. }
            | E::Serialize { .. }
            | E::Cancelled => ErrorKind::Work,
        }
    }

    /// An [`ImageError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| {
            if crate::cancel::is_cancelled_io(&source) {
                ImageError::Cancelled
            } else {
                ImageError::Io { path, source }
            }
        }
    }
}
