//! The registry transport: pulling a base from, and pushing an image to, an
//! OCI distribution registry (`docker://HOST/REPO[:TAG][@DIGEST]`).
//!
//! A small client of kiln's own over reqwest (HTTP/1.1, rustls with ring)
//! rather than a registry SDK: it is a handful of endpoints, and owning them
//! lets every blob stream into the store through
//! [`Store::put_blob_from`]'s verification, keeps the manifest and config
//! bytes exactly as served, and maps each failure to the error a user can
//! act on. Plain HTTP is used only for loopback hosts (`127.0.0.0/8`,
//! `localhost`, `[::1]`); every other host is HTTPS with the system's
//! roots. Authentication answers the registry's 401 challenge: Basic, or a
//! bearer token from the registry's token service.
//!
//! These functions are `async` because the HTTP client is; they must run
//! inside a Tokio runtime (current-thread or multi-thread). Disk work runs
//! on Tokio's blocking pool.

mod auth;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode, Url};
use serde_json::Value;
use tokio::sync::mpsc;

pub use auth::RegistryAuth;

use crate::archive::config_descriptor;
use crate::base::{choose_platform, finish_import, parse_manifest};
use crate::descriptor::{
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, is_index, is_manifest,
};
use crate::digest::VerifyingReader;
use crate::{BaseImage, Descriptor, Digest, ImageError, Store, load_image};

/// The manifests kiln reads, as the `Accept` header lists them.
const MANIFEST_ACCEPT: [&str; 4] = [
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
];
/// The largest manifest or index read (containerd's limit too).
const MAX_MANIFEST: usize = 4 << 20;
/// The largest error body or token answer read.
const MAX_SMALL: usize = 1 << 20;
/// Chunks in flight between the network and the disk.
const PIPE_DEPTH: usize = 16;
const CHUNK: usize = 1 << 17;

/// Pull an image from the registry at `host` (`registry.example:5000`,
/// `127.0.0.1:5000`, `docker.io`) into `store`.
///
/// The image is named by `digest` when given (then `tag` is ignored, as
/// Docker does with `repo:tag@digest`), else by `tag`, else by `latest`. A
/// tag resolves to the digest of the manifest bytes as served (refused if
/// the registry's `Docker-Content-Digest` says otherwise); with a digest, the
/// served bytes must hash to it. An image index is followed to its
/// linux/amd64 manifest (the index is stored too). Manifest and config are
/// kept as the raw bytes served; every blob is streamed into the store and
/// refused unless it hashes to its digest ([`ImageError::DigestMismatch`],
/// naming the blob and its URL). Blobs the store already has are not
/// downloaded again. Every layer's entries are checked
/// ([`crate::validate_layer_entries`]). For `docker.io`, the host is
/// `registry-1.docker.io` and one-part repositories are under `library/`.
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
    let mut session = Session::new(host, repository, auth, "pull")?;
    let (reference, asked) = match (digest, tag) {
        (Some(d), _) => (d.to_string(), format!("manifest {d}")),
        (None, Some(t)) => {
            check_tag(t)?;
            (t.to_owned(), format!("tag {t}"))
        }
        (None, None) => ("latest".to_owned(), "tag latest".to_owned()),
    };
    let (mut bytes, mut media_type) = session.fetch_manifest(&reference, digest, &asked).await?;
    let mut manifest_digest = store.put_blob(&bytes)?;
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
        let chosen = choose_platform(&manifest_digest, &bytes)?;
        let asked = format!("manifest {}", chosen.digest);
        (bytes, media_type) = session
            .fetch_manifest(chosen.digest.as_str(), Some(&chosen.digest), &asked)
            .await?;
        if bytes.len() as u64 != chosen.size {
            return Err(ImageError::SizeMismatch {
                digest: chosen.digest.clone(),
                path: session.url(&format!("manifests/{}", chosen.digest)).into(),
                expected: chosen.size,
                actual: bytes.len() as u64,
            });
        }
        manifest_digest = store.put_blob(&bytes)?;
    }
    if !is_manifest(&media_type) {
        return Err(ImageError::InvalidDocument {
            what: "image index",
            digest: manifest_digest,
            reason: "indexes nest too deep".into(),
        });
    }
    let (config, layers) = parse_manifest(&manifest_digest, &bytes)?;
    session.fetch_blob(store, &config).await?;
    for layer in &layers {
        session.fetch_blob(store, layer).await?;
    }
    finish_import(store, &manifest_digest)
}

/// Push the image whose manifest is `manifest` from `store` to
/// `host`/`repository` under `tag`, and return the manifest digest the
/// registry reports, which must equal `manifest` (else
/// [`ImageError::DigestMismatch`]). Blobs the registry already has (checked
/// with HEAD) are not sent again; each blob sent is read from the store and
/// verified as it streams out, and the manifest is sent as its raw bytes.
/// Errors are those of [`pull_registry`].
pub async fn push_image(
    store: &Store,
    manifest: &Digest,
    host: &str,
    repository: &str,
    tag: &str,
    auth: RegistryAuth,
) -> Result<Digest, ImageError> {
    check_tag(tag)?;
    let image = load_image(store, manifest)?;
    let config = config_descriptor(&image.manifest, manifest)?;
    let descriptor = store.manifest_descriptor(manifest)?;
    let manifest_bytes = store.read_blob(manifest)?;
    let mut session = Session::new(host, repository, auth, "pull,push")?;
    let mut sent = std::collections::BTreeSet::new();
    for blob in std::iter::once(&config).chain(&image.layers) {
        if !sent.insert(blob.digest.clone()) || session.has_blob(blob).await? {
            continue;
        }
        session.upload_blob(store, blob).await?;
    }
    session
        .put_manifest(tag, &descriptor.media_type, manifest_bytes, manifest)
        .await
}

/// One conversation with one repository of one registry.
struct Session {
    http: reqwest::Client,
    /// `http://HOST` or `https://HOST`.
    base: String,
    /// The host as the caller gave it, for errors.
    host: String,
    repository: String,
    auth: RegistryAuth,
    /// `pull` or `pull,push`: the token scope's actions.
    actions: &'static str,
    /// The `Authorization` value that answered the last challenge.
    authorization: Option<String>,
}

impl Session {
    fn new(
        host: &str,
        repository: &str,
        auth: RegistryAuth,
        actions: &'static str,
    ) -> Result<Self, ImageError> {
        check_host(host)?;
        check_repository(repository)?;
        let (endpoint, repository) = docker_hub(host, repository);
        let loopback = is_loopback(&endpoint);
        let scheme = if loopback { "http" } else { "https" };
        Ok(Session {
            http: http_client(host, loopback)?,
            base: format!("{scheme}://{endpoint}"),
            host: host.to_owned(),
            repository,
            auth,
            actions,
            authorization: None,
        })
    }

    /// The URL of `path` under this repository (`manifests/1.0`).
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Send the request `make` builds, answering one 401 challenge.
    async fn send(
        &mut self,
        operation: &'static str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, ImageError> {
        let response = self.exchange(operation, make(&self.http)).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return self.allowed(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        self.authorization = Some(self.answer(operation, challenge).await?);
        let response = self.exchange(operation, make(&self.http)).await?;
        self.allowed(response)
    }

    /// Send `request` once, with the current authorization.
    async fn exchange(
        &self,
        operation: &'static str,
        mut request: reqwest::RequestBuilder,
    ) -> Result<Response, ImageError> {
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request
            .send()
            .await
            .map_err(|e| self.transport_error(operation, &e))
    }

    /// 401 and 403 become [`ImageError::RegistryAccessDenied`].
    fn allowed(&self, response: Response) -> Result<Response, ImageError> {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.denied(status.as_u16()));
        }
        Ok(response)
    }

    fn denied(&self, status: u16) -> ImageError {
        ImageError::RegistryAccessDenied {
            host: self.host.clone(),
            repository: self.repository.clone(),
            status,
            hint: match (&self.auth, status) {
                (RegistryAuth::Anonymous, _) => {
                    "the registry wants credentials: give a user name and password"
                }
                (_, 403) => "these credentials may not use this repository",
                _ => "the user name or password is wrong",
            },
        }
    }

    /// The `Authorization` value answering `challenge`.
    async fn answer(
        &self,
        operation: &'static str,
        challenge: Option<auth::Challenge>,
    ) -> Result<String, ImageError> {
        let Some(challenge) = challenge else {
            return Err(self.denied(401));
        };
        match (challenge.scheme.as_str(), &self.auth) {
            ("basic", RegistryAuth::Basic { username, password }) => Ok(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            ("bearer", _) => self.token(operation, &challenge).await,
            _ => Err(self.denied(401)),
        }
    }

    /// A bearer token from the token service the challenge names, for this
    /// repository and this session's actions.
    async fn token(
        &self,
        operation: &'static str,
        challenge: &auth::Challenge,
    ) -> Result<String, ImageError> {
        let protocol = |reason: String| ImageError::Registry {
            host: self.host.clone(),
            operation,
            reason,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| protocol("its bearer challenge names no token service".into()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| protocol(format!("its token service {realm:?} is not a URL: {e}")))?;
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        let safe = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&realm_host));
        if !safe {
            // Credentials must not travel in clear text to a host the
            // registry merely named.
            return Err(protocol(format!(
                "its token service {realm} is not HTTPS; kiln sends credentials only over HTTPS or to loopback"
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:{}", self.repository, self.actions),
            );
        }
        let mut request = self.http.get(url);
        if let RegistryAuth::Basic { username, password } = &self.auth {
            request = request.basic_auth(username, Some(password));
        }
        let response = request.send().await.map_err(|e| {
            let error = self.transport_error(operation, &e);
            match error {
                ImageError::RegistryUnreachable { reason, .. } => ImageError::RegistryUnreachable {
                    host: realm_host.clone(),
                    reason: format!("its token service: {reason}"),
                },
                other => other,
            }
        })?;
        let response = self.allowed(response)?;
        if !response.status().is_success() {
            let status = response.status();
            let body = self.read_capped(operation, response, MAX_SMALL).await?;
            return Err(protocol(format!(
                "its token service answered HTTP {status}: {}",
                error_detail(&body)
            )));
        }
        let body = self.read_capped(operation, response, MAX_SMALL).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| protocol(format!("its token service answered with no JSON: {e}")))?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| {
                answer
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
            })
            .ok_or_else(|| protocol("its token service answered with no token".into()))?;
        Ok(format!("Bearer {token}"))
    }

    /// A request error: unreachable when no connection could be made.
    fn transport_error(&self, operation: &'static str, e: &reqwest::Error) -> ImageError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        if e.is_connect() || e.is_timeout() {
            ImageError::RegistryUnreachable {
                host: self.host.clone(),
                reason,
            }
        } else {
            ImageError::Registry {
                host: self.host.clone(),
                operation,
                reason,
            }
        }
    }

    /// `response` if its status is one of `wanted`; a 404 is
    /// [`ImageError::RegistryNotFound`] for `asked`.
    async fn expect(
        &self,
        operation: &'static str,
        response: Response,
        wanted: &[StatusCode],
        asked: &str,
    ) -> Result<Response, ImageError> {
        let status = response.status();
        if wanted.contains(&status) {
            return Ok(response);
        }
        let body = self
            .read_capped(operation, response, MAX_SMALL)
            .await
            .unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            return Err(ImageError::RegistryNotFound {
                host: self.host.clone(),
                repository: self.repository.clone(),
                reference: asked.to_owned(),
                detail: error_detail(&body),
            });
        }
        Err(ImageError::Registry {
            host: self.host.clone(),
            operation,
            reason: format!("HTTP {status}: {}", error_detail(&body)),
        })
    }

    /// The whole body, refused beyond `limit` bytes.
    async fn read_capped(
        &self,
        operation: &'static str,
        mut response: Response,
        limit: usize,
    ) -> Result<Vec<u8>, ImageError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(operation, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(ImageError::Registry {
                    host: self.host.clone(),
                    operation,
                    reason: format!("the answer is larger than {limit} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The manifest (or index) `reference` names, as served, and its media
    /// type. With `digest`, the bytes must hash to it; without, they must
    /// hash to what the registry's `Docker-Content-Digest` says, if it says.
    async fn fetch_manifest(
        &mut self,
        reference: &str,
        digest: Option<&Digest>,
        asked: &str,
    ) -> Result<(Vec<u8>, String), ImageError> {
        const OPERATION: &str = "pull manifest";
        let url = self.url(&format!("manifests/{reference}"));
        let accept = MANIFEST_ACCEPT.join(", ");
        let response = self
            .send(OPERATION, |c| c.get(&url).header(ACCEPT, &accept))
            .await?;
        let response = self
            .expect(OPERATION, response, &[StatusCode::OK], asked)
            .await?;
        let headers = response.headers().clone();
        let bytes = self.read_capped(OPERATION, response, MAX_MANIFEST).await?;
        let actual = Digest::of(&bytes);
        let announced = digest
            .cloned()
            .or_else(|| header_digest(&headers, "docker-content-digest"));
        if let Some(expected) = announced.filter(|e| *e != actual) {
            return Err(ImageError::DigestMismatch {
                source_path: PathBuf::from(url),
                expected,
                actual,
            });
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidDocument {
                what: "manifest",
                digest: actual.clone(),
                reason: e.to_string(),
            })?;
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let media_type = value
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(content_type)
            .unwrap_or_else(|| {
                if value.get("manifests").is_some() {
                    MEDIA_TYPE_OCI_INDEX.to_owned()
                } else {
                    MEDIA_TYPE_OCI_MANIFEST.to_owned()
                }
            });
        Ok((bytes, media_type))
    }

    /// Stream blob `d` into the store, verified, unless it is there.
    async fn fetch_blob(&mut self, store: &Store, d: &Descriptor) -> Result<(), ImageError> {
        const OPERATION: &str = "pull blob";
        if store.has_blob(&d.digest) {
            return Ok(());
        }
        let url = self.url(&format!("blobs/{}", d.digest));
        let response = self.send(OPERATION, |c| c.get(&url)).await?;
        let mut response = self
            .expect(
                OPERATION,
                response,
                &[StatusCode::OK],
                &format!("blob {}", d.digest),
            )
            .await?;
        let source = PathBuf::from(&url);
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_DEPTH);
        let writer = {
            let store = store.clone();
            let expected = d.digest.clone();
            let source = source.clone();
            tokio::task::spawn_blocking(move || {
                store.put_blob_from_source(PipeReader::new(rx), Some(&expected), &source)
            })
        };
        let mut received = 0u64;
        let mut failure = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received > d.size {
                        failure = Some(ImageError::SizeMismatch {
                            digest: d.digest.clone(),
                            path: source.clone(),
                            expected: d.size,
                            actual: received,
                        });
                        let _ = tx.send(Err(std::io::Error::other("too long"))).await;
                        break;
                    }
                    if tx.send(Ok(chunk)).await.is_err() {
                        // The writer stopped; its result says why.
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(self.transport_error(OPERATION, &e));
                    let _ = tx.send(Err(std::io::Error::other("cut short"))).await;
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| ImageError::Registry {
            host: self.host.clone(),
            operation: OPERATION,
            reason: format!("writing the blob into the store stopped: {e}"),
        })?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        let (_, size) = written?;
        if size != d.size {
            return Err(ImageError::SizeMismatch {
                digest: d.digest.clone(),
                path: source,
                expected: d.size,
                actual: size,
            });
        }
        Ok(())
    }

    /// Whether the repository already has blob `d`.
    async fn has_blob(&mut self, d: &Descriptor) -> Result<bool, ImageError> {
        const OPERATION: &str = "check blob";
        let url = self.url(&format!("blobs/{}", d.digest));
        let response = self.send(OPERATION, |c| c.head(&url)).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(ImageError::Registry {
                host: self.host.clone(),
                operation: OPERATION,
                reason: format!("HTTP {status}"),
            }),
        }
    }

    /// Upload blob `d` from the store in one PUT, verifying it as it
    /// streams out.
    async fn upload_blob(&mut self, store: &Store, d: &Descriptor) -> Result<(), ImageError> {
        const OPERATION: &str = "push blob";
        let start = self.url("blobs/uploads/");
        let response = self
            .send(OPERATION, |c| c.post(&start).header(CONTENT_LENGTH, 0))
            .await?;
        let response = self
            .expect(
                OPERATION,
                response,
                &[StatusCode::ACCEPTED],
                "upload location",
            )
            .await?;
        let protocol = |reason: String| ImageError::Registry {
            host: self.host.clone(),
            operation: OPERATION,
            reason,
        };
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| protocol("the upload was started but no Location was given".into()))?;
        let mut target = Url::parse(&start)
            .and_then(|u| u.join(location))
            .map_err(|e| protocol(format!("the upload Location {location:?} is unusable: {e}")))?;
        target
            .query_pairs_mut()
            .append_pair("digest", d.digest.as_str());

        let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_DEPTH);
        let reader = {
            let store = store.clone();
            let d = d.clone();
            tokio::task::spawn_blocking(move || stream_blob_out(&store, &d, &tx))
        };
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let request = self
            .http
            .put(target)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, d.size)
            .body(body);
        let sent = self.exchange(OPERATION, request).await;
        let read = reader.await.map_err(|e| ImageError::Registry {
            host: self.host.clone(),
            operation: OPERATION,
            reason: format!("reading the blob from the store stopped: {e}"),
        })?;
        // A corrupt blob in the store is the cause, whatever the registry
        // made of the cut-short upload.
        read?;
        let response = self.allowed(sent?)?;
        self.expect(
            OPERATION,
            response,
            &[StatusCode::CREATED],
            &format!("upload of blob {}", d.digest),
        )
        .await?;
        Ok(())
    }

    /// PUT the manifest under `tag`; the digest the registry reports.
    async fn put_manifest(
        &mut self,
        tag: &str,
        media_type: &str,
        bytes: Vec<u8>,
        ours: &Digest,
    ) -> Result<Digest, ImageError> {
        const OPERATION: &str = "push manifest";
        let url = self.url(&format!("manifests/{tag}"));
        let bytes = Bytes::from(bytes);
        let response = self
            .send(OPERATION, |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        let response = self
            .expect(
                OPERATION,
                response,
                &[StatusCode::CREATED, StatusCode::OK],
                &format!("tag {tag}"),
            )
            .await?;
        let reported = header_digest(response.headers(), "docker-content-digest")
            .unwrap_or_else(|| ours.clone());
        if reported != *ours {
            return Err(ImageError::DigestMismatch {
                source_path: PathBuf::from(url),
                expected: ours.clone(),
                actual: reported,
            });
        }
        Ok(reported)
    }
}

/// Read blob `d` out of the store into `tx`, verifying it; the upload
/// fails if this does.
fn stream_blob_out(
    store: &Store,
    d: &Descriptor,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<(), ImageError> {
    use std::io::Read;
    let path = store.blob_path(&d.digest);
    let mut reader = VerifyingReader::new(store.open_blob(&d.digest)?, d.digest.clone(), d.size);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    // The request ended early; its result says why.
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                return Err(if e.kind() == std::io::ErrorKind::InvalidData {
                    ImageError::CorruptBlob {
                        digest: d.digest.clone(),
                        path,
                    }
                } else {
                    ImageError::Io { path, source: e }
                });
            }
        }
    }
}

/// The blocking side of the network-to-disk pipe: a reader over the chunks
/// the download sends.
struct PipeReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl PipeReader {
    fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        PipeReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(chunk)) => self.current = chunk,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The reqwest client: HTTP/1.1, rustls with ring and the platform's
/// verifier, no proxy for loopback hosts.
fn http_client(host: &str, loopback: bool) -> Result<reqwest::Client, ImageError> {
    let failed = |reason: String| ImageError::Registry {
        host: host.to_owned(),
        operation: "set up the HTTP client",
        reason,
    };
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| failed(e.to_string()))
    };
    let mut tls = match builder()?.with_platform_verifier() {
        Ok(b) => b.with_no_client_auth(),
        // Plain HTTP needs no roots: a machine without CA certificates can
        // still use a loopback registry.
        Err(_) if loopback => builder()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        Err(e) => {
            return Err(failed(format!(
                "cannot load the system's CA certificates for HTTPS ({e}); install them (Debian: ca-certificates)"
            )));
        }
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300));
    if loopback {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| failed(e.to_string()))
}

/// Docker Hub's API lives at `registry-1.docker.io`, with official images
/// under `library/`.
fn docker_hub(host: &str, repository: &str) -> (String, String) {
    if host == "docker.io" || host == "index.docker.io" {
        let repository = if repository.contains('/') {
            repository.to_owned()
        } else {
            format!("library/{repository}")
        };
        ("registry-1.docker.io".to_owned(), repository)
    } else {
        (host.to_owned(), repository.to_owned())
    }
}

/// Whether `host` (`name[:port]`, `[v6][:port]`) is a loopback host:
/// `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A digest from a response header, if it holds a valid one.
fn header_digest(headers: &HeaderMap, name: &str) -> Option<Digest> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The registry's error body (`{"errors":[{"code","message"}]}`) in one
/// line, or the start of whatever it sent.
fn error_detail(body: &[u8]) -> String {
    let parsed: Option<Vec<String>> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors")?.as_array().cloned())
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
                    format!("{} {}", field("code"), field("message"))
                        .trim()
                        .to_owned()
                })
                .collect()
        });
    match parsed {
        Some(lines) if !lines.is_empty() => lines.join("; "),
        _ if body.is_empty() => "no details given".to_owned(),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

fn invalid(reference: &str, reason: &str) -> ImageError {
    ImageError::InvalidRegistryReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A host goes into URLs: a name or address, a port, brackets for IPv6.
fn check_host(host: &str) -> Result<(), ImageError> {
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
fn check_repository(repository: &str) -> Result<(), ImageError> {
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
fn check_tag(tag: &str) -> Result<(), ImageError> {
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
    use super::*;

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
