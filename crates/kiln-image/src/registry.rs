//! The registry transport: pulling a base from, and pushing an image to, an
//! OCI distribution registry (`docker://HOST/REPO[:TAG][@DIGEST]`).
//!
//! A small client of kiln's own over reqwest (HTTP/1.1, rustls with ring)
//! rather than a registry SDK: it is a handful of endpoints, and owning them
//! lets every blob stream into the store through
//! [`Store::put_blob_from`]'s verification, keeps the manifest and config
//! bytes exactly as served (and sends kiln's exactly as stored, so the
//! registry's digest is kiln's), and maps each failure to the error a user
//! can act on. Plain HTTP is used only for loopback hosts (`127.0.0.0/8`,
//! `localhost`, `[::1]`) and hosts named in `KILN_INSECURE_REGISTRIES`;
//! every other host is HTTPS with the system's roots. Authentication
//! answers the registry's 401 challenge: Basic, or a bearer token from the
//! registry's token service, with credentials from [`CredentialFiles`].
//!
//! [`Remote`] is one repository of one registry; keep it for a whole run
//! so its token is reused. These functions are `async` because the HTTP
//! client is; they must run inside a Tokio runtime (current-thread or
//! multi-thread). Disk work runs on Tokio's blocking pool.

mod auth;
mod credentials;
mod session;
mod upload;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};

pub use auth::RegistryAuth;
pub use credentials::CredentialFiles;
pub use session::INSECURE_REGISTRIES_VAR;
pub use upload::BlobOutcome;

use crate::archive::config_descriptor;
use crate::base::{choose_platform, finish_import, parse_manifest};
use crate::descriptor::{is_index, is_manifest};
use crate::{BaseImage, Descriptor, Digest, ImageError, Platform, Store, load_image};
use session::{Actions, MAX_MANIFEST, Session};
use upload::BlobSource;

/// Chunks of a blob upload, when [`Remote::set_chunk_size`] is not used.
pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;
/// Blobs uploaded at once by [`Remote::push_image`].
const PARALLEL_BLOBS: usize = 3;

/// A manifest (or index) as a registry served it, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// Its media type (from the document, else the `Content-Type`).
    pub media_type: String,
    /// The exact bytes served.
    pub bytes: Vec<u8>,
}

/// An image in a registry, as [`Remote::describe`] read it: documents
/// only, each verified against its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteImage {
    /// The image index the reference named, when it named one (`manifest`
    /// is then the entry chosen for the platform asked for).
    pub index: Option<RemoteManifest>,
    /// The platform of the index entry followed, as the index gives it.
    pub platform: Option<Platform>,
    /// The image manifest.
    pub manifest: RemoteManifest,
    /// The config's exact bytes (they hash to the manifest's config digest).
    pub config: Vec<u8>,
}

/// The documents on the way from a reference to its image manifest.
struct Resolved {
    /// Indexes followed, outermost first.
    indexes: Vec<RemoteManifest>,
    /// The platform of the last index entry followed.
    platform: Option<Platform>,
    manifest: RemoteManifest,
}

/// What [`Remote::push_image`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// The manifest digest the registry reported: kiln's.
    pub digest: Option<Digest>,
    /// Tags written, in order.
    pub tags: Vec<String>,
    /// Blobs whose bytes were sent.
    pub uploaded: Vec<Digest>,
    /// Blobs mounted from another repository of the registry.
    pub mounted: Vec<Digest>,
    /// Blobs the repository had already.
    pub present: Vec<Digest>,
}

/// One repository of one registry, for pulling and pushing. Its
/// authorization (a bearer token, or Basic credentials) is found on the
/// first request and reused by every later one.
pub struct Remote {
    session: Session,
    chunk_size: u64,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("host", &self.session.host)
            .field("repository", &self.session.repository)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// The repository `repository` of the registry at `host`
    /// (`registry.example:5000`, `127.0.0.1:5000`, `docker.io`), for
    /// pulling and pushing with `auth`. For `docker.io`, the host is
    /// `registry-1.docker.io` and one-part repositories are under
    /// `library/`. Nothing is sent yet; a bad host or repository is
    /// [`ImageError::InvalidRegistryReference`].
    pub fn new(host: &str, repository: &str, auth: RegistryAuth) -> Result<Self, ImageError> {
        Ok(Remote {
            session: Session::new(host, repository, auth, Actions::PullPush)?,
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    }

    /// The same, asking only to read (a token for `pull` scope): for
    /// bases and caches a user may not write to.
    pub fn new_read_only(
        host: &str,
        repository: &str,
        auth: RegistryAuth,
    ) -> Result<Self, ImageError> {
        Ok(Remote {
            session: Session::new(host, repository, auth, Actions::Pull)?,
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    }

    /// The registry host as given.
    pub fn host(&self) -> &str {
        &self.session.host
    }

    /// The repository (with `library/` for Docker Hub's official images).
    pub fn repository(&self) -> &str {
        &self.session.repository
    }

    /// Upload blobs in chunks of `bytes` (at least 1): a dropped
    /// connection costs one chunk at most.
    pub fn set_chunk_size(&mut self, bytes: u64) {
        self.chunk_size = bytes.max(1);
    }

    /// Let the token read `repositories` too, so blobs can be mounted from
    /// them. Call before the first request.
    pub fn allow_mounts_from(&self, repositories: &[String]) {
        if let Ok(mut scopes) = self.session.mount_scopes.lock() {
            scopes.extend(repositories.iter().cloned());
        }
    }

    /// The manifest or index `reference` (a tag or a digest) names, as
    /// served. With a digest, the bytes must hash to it; with a tag, to the
    /// registry's `Docker-Content-Digest` if it sends one
    /// ([`ImageError::DigestMismatch`]). Larger than 4 MiB is refused.
    pub async fn manifest(&self, reference: &str) -> Result<RemoteManifest, ImageError> {
        let digest = reference.parse::<Digest>().ok();
        let asked = match &digest {
            Some(d) => format!("manifest {d}"),
            None => {
                check_tag(reference)?;
                format!("tag {reference}")
            }
        };
        let (bytes, media_type) = self
            .session
            .fetch_manifest(reference, digest.as_ref(), &asked)
            .await?;
        Ok(RemoteManifest {
            digest: Digest::of(&bytes),
            media_type,
            bytes,
        })
    }

    /// Whether the repository has blob `d`.
    pub async fn has_blob(&self, d: &Descriptor) -> Result<bool, ImageError> {
        self.session.has_blob(d).await
    }

    /// Stream blob `d` into `store`, refused unless it hashes to its digest
    /// and has its size; nothing is fetched when the store has it.
    pub async fn fetch_blob(&self, store: &Store, d: &Descriptor) -> Result<(), ImageError> {
        self.session.fetch_blob(store, d).await
    }

    /// Blob `d`'s bytes in memory (at most 4 MiB), verified: for small
    /// documents such as signature payloads and cache entries.
    pub async fn fetch_blob_bytes(&self, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        self.session.fetch_small_blob(d, MAX_MANIFEST).await
    }

    /// Push blob `d` from `store` (verified as it is read), unless the
    /// repository has it; `what` names it in errors (`layer 2 of image …`).
    pub async fn push_blob(
        &self,
        store: &Store,
        d: &Descriptor,
        what: &str,
    ) -> Result<BlobOutcome, ImageError> {
        self.session
            .push_blob(
                BlobSource::Store(store),
                d,
                what,
                &self.mounts(),
                self.chunk_size,
            )
            .await
    }

    /// Push `bytes` as a blob of `media_type`; its descriptor.
    pub async fn push_blob_bytes(
        &self,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Descriptor, ImageError> {
        let d = Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64);
        self.session
            .push_blob(
                BlobSource::Bytes(Bytes::from(bytes)),
                &d,
                media_type,
                &[],
                self.chunk_size,
            )
            .await?;
        Ok(d)
    }

    /// PUT a manifest's exact `bytes` under `reference` (a tag, or its own
    /// digest for an untagged push) as `media_type`; the registry's digest,
    /// which must equal the bytes' digest ([`ImageError::DigestMismatch`]).
    /// Every blob it references must be pushed first.
    pub async fn push_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Digest, ImageError> {
        let ours = Digest::of(&bytes);
        if reference.parse::<Digest>().is_err() {
            check_tag(reference)?;
        }
        self.session
            .put_manifest(reference, media_type, Bytes::from(bytes), &ours)
            .await
    }

    /// Push the image whose manifest is `manifest` from `store`, then tag
    /// it with each of `tags` (none: pushed by digest only). Blobs the
    /// repository has are not sent; blobs another repository of the same
    /// registry has (see [`Remote::allow_mounts_from`]) are mounted; the
    /// rest go up in chunks, a few at once, each verified as it is read.
    /// The manifest goes last, as kiln's exact bytes, so the registry's
    /// digest is kiln's and an interrupted push leaves no tag behind.
    pub async fn push_image(
        &self,
        store: &Store,
        manifest: &Digest,
        tags: &[String],
    ) -> Result<PushReport, ImageError> {
        for tag in tags {
            check_tag(tag)?;
        }
        let image = load_image(store, manifest)?;
        let config = config_descriptor(&image.manifest, manifest)?;
        let descriptor = store.manifest_descriptor(manifest)?;
        let manifest_bytes = Bytes::from(store.read_blob(manifest)?);
        let count = image.layers.len();
        let mut blobs = vec![(config, format!("config of image {manifest}"))];
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(blobs[0].0.digest.clone());
        for (i, layer) in image.layers.iter().enumerate() {
            if seen.insert(layer.digest.clone()) {
                blobs.push((
                    layer.clone(),
                    format!("layer {} of {count} of image {manifest}", i + 1),
                ));
            }
        }
        let mounts = self.mounts();
        let mut report = PushReport::default();
        // The config first, alone: it meets the auth challenge once, and
        // the layers then share the answer.
        let mut blobs = blobs.into_iter();
        let mut outcomes = Vec::new();
        if let Some((d, what)) = blobs.next() {
            let outcome = self
                .session
                .push_blob(
                    BlobSource::Store(store),
                    &d,
                    &what,
                    &mounts,
                    self.chunk_size,
                )
                .await?;
            outcomes.push((d.digest, outcome));
        }
        let rest: Vec<(Digest, BlobOutcome)> = futures_util::stream::iter(blobs)
            .map(|(d, what)| {
                let mounts = &mounts;
                async move {
                    let outcome = self
                        .session
                        .push_blob(BlobSource::Store(store), &d, &what, mounts, self.chunk_size)
                        .await?;
                    Ok::<_, ImageError>((d.digest, outcome))
                }
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .try_collect()
            .await?;
        outcomes.extend(rest);
        for (digest, outcome) in outcomes {
            match outcome {
                BlobOutcome::Present => report.present.push(digest),
                BlobOutcome::Mounted => report.mounted.push(digest),
                BlobOutcome::Uploaded => report.uploaded.push(digest),
            }
        }
        let references: Vec<String> = if tags.is_empty() {
            vec![manifest.to_string()]
        } else {
            tags.to_vec()
        };
        for reference in &references {
            let digest = self
                .session
                .put_manifest(
                    reference,
                    &descriptor.media_type,
                    manifest_bytes.clone(),
                    manifest,
                )
                .await?;
            report.digest = Some(digest);
        }
        report.tags = tags.to_vec();
        Ok(report)
    }

    /// Pull the image `reference` names (a digest wins over a tag; neither
    /// is `latest`) into `store`, following an image index to the entry
    /// for `platform`. Manifest and config are kept as the raw bytes
    /// served; every blob is streamed into the store and refused unless it
    /// hashes to its digest; blobs the store has are not downloaded again;
    /// every layer's entries are checked ([`crate::validate_layer_entries`]).
    pub async fn pull(
        &self,
        store: &Store,
        tag: Option<&str>,
        digest: Option<&Digest>,
        platform: &Platform,
    ) -> Result<BaseImage, ImageError> {
        let found = self.resolve(tag, digest, platform).await?;
        let (config, layers) = parse_manifest(&found.manifest.digest, &found.manifest.bytes)?;
        // Indexes on the way to the manifest, stored only once the manifest
        // is verified: a registry that lies about a manifest leaves nothing.
        for index in &found.indexes {
            store.put_blob(&index.bytes)?;
        }
        store.put_blob(&found.manifest.bytes)?;
        self.session.fetch_blob(store, &config).await?;
        for layer in &layers {
            self.session.fetch_blob(store, layer).await?;
        }
        finish_import(store, &found.manifest.digest)
    }

    /// The image `reference` names (as for [`Remote::pull`]: a digest wins
    /// over a tag, neither is `latest`; an index is followed to
    /// `platform`), read into memory and verified, without storing
    /// anything or fetching a layer: what `kiln inspect docker://` shows.
    pub async fn describe(
        &self,
        tag: Option<&str>,
        digest: Option<&Digest>,
        platform: &Platform,
    ) -> Result<RemoteImage, ImageError> {
        let found = self.resolve(tag, digest, platform).await?;
        let (config, _) = parse_manifest(&found.manifest.digest, &found.manifest.bytes)?;
        let config = self.session.fetch_small_blob(&config, MAX_MANIFEST).await?;
        Ok(RemoteImage {
            index: found.indexes.into_iter().next(),
            platform: found.platform,
            manifest: found.manifest,
            config,
        })
    }

    /// Fetch the manifest `tag` or `digest` names and follow indexes to
    /// `platform`'s manifest, each document verified (an index entry's
    /// size too), nothing stored.
    async fn resolve(
        &self,
        tag: Option<&str>,
        digest: Option<&Digest>,
        platform: &Platform,
    ) -> Result<Resolved, ImageError> {
        let session = &self.session;
        let (reference, asked) = match (digest, tag) {
            (Some(d), _) => (d.to_string(), format!("manifest {d}")),
            (None, Some(t)) => {
                check_tag(t)?;
                (t.to_owned(), format!("tag {t}"))
            }
            (None, None) => ("latest".to_owned(), "tag latest".to_owned()),
        };
        let (mut bytes, mut media_type) =
            session.fetch_manifest(&reference, digest, &asked).await?;
        let mut indexes = Vec::new();
        let mut chosen_platform = None;
        let mut manifest_digest = Digest::of(&bytes);
        for _ in 0..4 {
            if is_manifest(&media_type) {
                break;
            }
            if !is_index(&media_type) {
                return Err(ImageError::UnsupportedMediaType {
                    digest: manifest_digest,
                    media_type,
                    hint: "expected an image manifest or an image index",
                });
            }
            let chosen = choose_platform(&manifest_digest, &bytes, platform)?;
            let asked = format!("manifest {}", chosen.digest);
            let (next, next_type) = session
                .fetch_manifest(chosen.digest.as_str(), Some(&chosen.digest), &asked)
                .await?;
            if next.len() as u64 != chosen.size {
                return Err(ImageError::SizeMismatch {
                    digest: chosen.digest.clone(),
                    path: session.url(&format!("manifests/{}", chosen.digest)).into(),
                    expected: chosen.size,
                    actual: next.len() as u64,
                });
            }
            indexes.push(RemoteManifest {
                digest: std::mem::replace(&mut manifest_digest, Digest::of(&next)),
                media_type: std::mem::replace(&mut media_type, next_type),
                bytes: std::mem::replace(&mut bytes, next),
            });
            chosen_platform = chosen.platform;
        }
        if !is_manifest(&media_type) {
            return Err(ImageError::InvalidDocument {
                what: "image index",
                digest: manifest_digest,
                reason: "indexes nest too deep".into(),
            });
        }
        Ok(Resolved {
            indexes,
            platform: chosen_platform,
            manifest: RemoteManifest {
                digest: manifest_digest,
                media_type,
                bytes,
            },
        })
    }

    fn mounts(&self) -> Vec<String> {
        self.session
            .mount_scopes
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

/// Pull an image from the registry at `host` into `store` for the host's
/// platform: [`Remote::new_read_only`] then [`Remote::pull`].
///
/// Errors: [`ImageError::RegistryUnreachable`] when no connection can be
/// made; [`ImageError::RegistryAccessDenied`] for 401/403;
/// [`ImageError::RegistryNotFound`] for an unknown repository, tag, digest
/// or blob; [`ImageError::Registry`] for anything else the registry does
/// wrong.
pub async fn pull_registry(
    store: &Store,
    host: &str,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&Digest>,
    auth: RegistryAuth,
) -> Result<BaseImage, ImageError> {
    Remote::new_read_only(host, repository, auth)?
        .pull(store, tag, digest, &Platform::host())
        .await
}

/// Push the image whose manifest is `manifest` from `store` to
/// `host`/`repository` under `tag`, and return the manifest digest the
/// registry reports, which must equal `manifest`: [`Remote::new`] then
/// [`Remote::push_image`]. Errors are those of [`pull_registry`], and
/// [`ImageError::BlobPush`] for a blob that would not go up.
pub async fn push_image(
    store: &Store,
    manifest: &Digest,
    host: &str,
    repository: &str,
    tag: &str,
    auth: RegistryAuth,
) -> Result<Digest, ImageError> {
    let report = Remote::new(host, repository, auth)?
        .push_image(store, manifest, &[tag.to_owned()])
        .await?;
    Ok(report.digest.unwrap_or_else(|| manifest.clone()))
}

fn invalid(reference: &str, reason: &str) -> ImageError {
    ImageError::InvalidRegistryReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A host goes into URLs: a name or address, a port, brackets for IPv6.
pub(crate) fn check_host(host: &str) -> Result<(), ImageError> {
    let ok_chars = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    let bare_v6 = !host.starts_with('[') && host.matches(':').count() > 1;
    if host.is_empty() || !ok_chars || bare_v6 {
        return Err(invalid(
            host,
            "a registry host is a name or address with an optional :port (IPv6 in brackets)",
        ));
    }
    Ok(())
}

/// Repository names as the distribution spec defines them: lowercase
/// components of letters and digits joined by `.`, `_`, `__` or dashes,
/// separated by `/`.
pub(crate) fn check_repository(repository: &str) -> Result<(), ImageError> {
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
            && !c.contains("..")
            && !c.contains("___")
    };
    if repository.len() > 255 || !repository.split('/').all(component_ok) {
        return Err(invalid(
            repository,
            "a repository is lowercase letters and digits, separated by `.`, `_`, `-` or `/`",
        ));
    }
    Ok(())
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn check_tag(tag: &str) -> Result<(), ImageError> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b));
    if !ok {
        return Err(invalid(
            tag,
            "a tag is up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::session::{docker_hub, error_detail, is_loopback, plain_http_allowed_by};
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_hosts() {
        for host in ["127.0.0.1:5000", "localhost", "[::1]:5000"] {
            assert!(plain_http_allowed_by(host, ""), "{host}");
        }
        assert!(!plain_http_allowed_by("registry.example:5000", ""));
        assert!(!plain_http_allowed_by(
            "registry.example:5000",
            "registry.example"
        ));
        assert!(!plain_http_allowed_by("registry.example", "other.example"));
        for named in [
            "registry.example:5000",
            "other.example, Registry.Example:5000",
            "other.example registry.example:5000",
        ] {
            assert!(
                plain_http_allowed_by("registry.example:5000", named),
                "{named}"
            );
        }
        // What a session speaks: HTTPS unless allowed (this test's process
        // names no host in KILN_INSECURE_REGISTRIES unless a user set it).
        if std::env::var_os(INSECURE_REGISTRIES_VAR).is_none() {
            let remote = |host: &str| {
                Remote::new(host, "team/x", RegistryAuth::Anonymous)
                    .expect("remote")
                    .session
                    .url("manifests/1")
            };
            assert_eq!(
                remote("registry.example:5000"),
                "https://registry.example:5000/v2/team/x/manifests/1"
            );
            assert_eq!(
                remote("127.0.0.1:5000"),
                "http://127.0.0.1:5000/v2/team/x/manifests/1"
            );
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:5000",
            "127.9.9.9",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "registry.example",
            "localhost.example:5000",
            "[::2]:5000",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_host("registry.example:5000").is_ok());
        assert!(check_host("[::1]:5000").is_ok());
        assert!(check_host("::1").is_err());
        assert!(check_host("a/b").is_err());
        assert!(check_host("").is_err());
        assert!(check_repository("team/x").is_ok());
        assert!(check_repository("a.b_c__d--e/f").is_ok());
        assert!(check_repository("Team/x").is_err());
        assert!(check_repository("team//x").is_err());
        assert!(check_repository("../x").is_err());
        assert!(check_repository("x-").is_err());
        assert!(check_tag("1.0.0-rc_1").is_ok());
        assert!(check_tag("_x").is_ok());
        assert!(check_tag(".x").is_err());
        assert!(check_tag("a:b").is_err());
        assert!(check_tag(&"x".repeat(129)).is_err());
    }

    #[test]
    fn docker_hub_names() {
        assert_eq!(
            docker_hub("docker.io", "busybox"),
            ("registry-1.docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            docker_hub("docker.io", "team/x"),
            ("registry-1.docker.io".into(), "team/x".into())
        );
        assert_eq!(docker_hub("ghcr.io", "x"), ("ghcr.io".into(), "x".into()));
    }

    #[test]
    fn error_bodies() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_detail(body), "MANIFEST_UNKNOWN manifest unknown");
        assert_eq!(error_detail(b""), "no details given");
        assert_eq!(error_detail(b"404 page not found\n"), "404 page not found");
    }
}
