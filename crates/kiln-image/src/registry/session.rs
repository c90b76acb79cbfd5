//! One conversation with one repository of one registry: the HTTP client,
//! answering the 401 challenge (Basic, or a bearer token that is then kept
//! for the session), retrying what is transient (a reset or timed-out
//! connection, HTTP 5xx, 429 with its `Retry-After`) with backoff, and the
//! reads every pull and push share: manifests and blobs, verified.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode, Url};
use serde_json::Value;
use tokio::sync::mpsc;

use super::auth;
use super::{RegistryAuth, check_host, check_repository};
use crate::descriptor::{
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
};
use crate::{Descriptor, Digest, ImageError, Store};

/// The manifests kiln reads, as the `Accept` header lists them.
const MANIFEST_ACCEPT: [&str; 4] = [
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
];
/// The largest manifest or index read (containerd's limit too).
pub(crate) const MAX_MANIFEST: usize = 4 << 20;
/// The largest error body or token answer read.
pub(crate) const MAX_SMALL: usize = 1 << 20;
/// Chunks in flight between the network and the disk.
const PIPE_DEPTH: usize = 16;
/// Tries of one request before its fault is reported.
pub(crate) const ATTEMPTS: u32 = 5;
/// The longest wait between tries, whatever `Retry-After` asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Hosts named in this variable (comma- or space-separated, `HOST[:PORT]`)
/// are spoken to over plain HTTP, as loopback hosts always are.
pub const INSECURE_REGISTRIES_VAR: &str = "KILN_INSECURE_REGISTRIES";

/// Whether the session may pull only, or push too (the token's scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Actions {
    Pull,
    PullPush,
}

/// One conversation with one repository of one registry. Its methods take
/// `&self`, so several blobs can move at once; the authorization that
/// answered the first challenge is kept and reused by every later request.
pub(crate) struct Session {
    http: reqwest::Client,
    /// `http://HOST` or `https://HOST`.
    base: String,
    /// The host as the caller gave it, for errors.
    pub(crate) host: String,
    pub(crate) repository: String,
    auth: RegistryAuth,
    actions: Actions,
    /// Other repositories of this registry the token must let kiln read
    /// (the sources of cross-repository mounts).
    pub(crate) mount_scopes: Mutex<Vec<String>>,
    /// The `Authorization` value that answered the last challenge.
    authorization: Mutex<Option<String>>,
}

impl Session {
    pub(crate) fn new(
        host: &str,
        repository: &str,
        auth: RegistryAuth,
        actions: Actions,
    ) -> Result<Self, ImageError> {
        check_host(host)?;
        check_repository(repository)?;
        let (endpoint, repository) = docker_hub(host, repository);
        let plain = plain_http_allowed(&endpoint);
        let scheme = if plain { "http" } else { "https" };
        Ok(Session {
            http: http_client(host, plain)?,
            base: format!("{scheme}://{endpoint}"),
            host: host.to_owned(),
            repository,
            auth,
            actions,
            mount_scopes: Mutex::new(Vec::new()),
            authorization: Mutex::new(None),
        })
    }

    /// The URL of `path` under this repository (`manifests/1.0`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Send the request `make` builds, answering one 401 challenge and
    /// retrying transient faults (connection reset or timed out, HTTP 5xx,
    /// 429) up to [`ATTEMPTS`] times with backoff, honouring `Retry-After`.
    /// A refusal (401, 403) is never retried: no storm of wrong passwords.
    pub(crate) async fn send(
        &self,
        operation: &'static str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, ImageError> {
        self.send_tries(operation, ATTEMPTS, make).await
    }

    /// [`Session::send`] with at most `tries` tries (1: a request that must
    /// not be repeated blindly, like a chunk whose fate is unknown).
    pub(crate) async fn send_tries(
        &self,
        operation: &'static str,
        tries: u32,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, ImageError> {
        let mut answered = false;
        let mut attempt = 1;
        loop {
            match self.exchange(make(&self.http)).await {
                Err(e) if attempt < tries && is_transient(&e) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(self.transport_error(operation, &e)),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !answered => {
                    answered = true;
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(auth::parse_challenge);
                    let answer = self.answer(operation, challenge).await?;
                    if let Ok(mut slot) = self.authorization.lock() {
                        *slot = Some(answer);
                    }
                    continue;
                }
                Ok(response) if attempt < tries && is_transient_status(response.status()) => {
                    let wait = retry_after(response.headers()).unwrap_or_else(|| backoff(attempt));
                    tokio::time::sleep(wait.min(MAX_WAIT)).await;
                }
                Ok(response) => return self.allowed(response),
            }
            attempt += 1;
        }
    }

    /// Send `request` once, with the current authorization.
    pub(crate) async fn exchange(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<Response, reqwest::Error> {
        let authorization = self.authorization.lock().ok().and_then(|a| a.clone());
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request.send().await
    }

    /// 401 and 403 become [`ImageError::RegistryAccessDenied`].
    pub(crate) fn allowed(&self, response: Response) -> Result<Response, ImageError> {
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
                    "the registry wants credentials: log in to it (`docker login`, `skopeo login`) or add them to $DOCKER_CONFIG/config.json or REGISTRY_AUTH_FILE"
                }
                (_, 403) => "these credentials may not use this repository",
                _ => {
                    "the user name or password is wrong: log in again (`docker login`) or fix them in $DOCKER_CONFIG/config.json or REGISTRY_AUTH_FILE"
                }
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
            let actions = match self.actions {
                Actions::Pull => "pull",
                Actions::PullPush => "pull,push",
            };
            query.append_pair(
                "scope",
                &format!("repository:{}:{actions}", self.repository),
            );
            let sources = self
                .mount_scopes
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            for source in sources {
                query.append_pair("scope", &format!("repository:{source}:pull"));
            }
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
    pub(crate) fn transport_error(
        &self,
        operation: &'static str,
        e: &reqwest::Error,
    ) -> ImageError {
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
    pub(crate) async fn expect(
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
    pub(crate) async fn read_capped(
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
    pub(crate) async fn fetch_manifest(
        &self,
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
    pub(crate) async fn fetch_blob(&self, store: &Store, d: &Descriptor) -> Result<(), ImageError> {
        const OPERATION: &str = "pull blob";
        if store.has_blob(&d.digest) {
            return Ok(());
        }
        let url = self.url(&format!("blobs/{}", d.digest));
        let mut response = self.get_blob(OPERATION, &url, d).await?;
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

    /// Blob `d` in memory, refused beyond `limit` bytes or unless it has
    /// its digest and size.
    pub(crate) async fn fetch_small_blob(
        &self,
        d: &Descriptor,
        limit: usize,
    ) -> Result<Vec<u8>, ImageError> {
        const OPERATION: &str = "pull blob";
        let url = self.url(&format!("blobs/{}", d.digest));
        if d.size > limit as u64 {
            return Err(ImageError::SizeMismatch {
                digest: d.digest.clone(),
                path: url.into(),
                expected: limit as u64,
                actual: d.size,
            });
        }
        let response = self.get_blob(OPERATION, &url, d).await?;
        let bytes = self.read_capped(OPERATION, response, limit).await?;
        if bytes.len() as u64 != d.size {
            return Err(ImageError::SizeMismatch {
                digest: d.digest.clone(),
                path: url.into(),
                expected: d.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != d.digest {
            return Err(ImageError::DigestMismatch {
                source_path: url.into(),
                expected: d.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The answer to `GET url` for blob `d`, refused unless 200.
    async fn get_blob(
        &self,
        operation: &'static str,
        url: &str,
        d: &Descriptor,
    ) -> Result<Response, ImageError> {
        let response = self.send(operation, |c| c.get(url)).await?;
        self.expect(
            operation,
            response,
            &[StatusCode::OK],
            &format!("blob {}", d.digest),
        )
        .await
    }

    /// Whether the repository already has blob `d`.
    pub(crate) async fn has_blob(&self, d: &Descriptor) -> Result<bool, ImageError> {
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
fn http_client(host: &str, plain: bool) -> Result<reqwest::Client, ImageError> {
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
        Err(_) if plain => builder()?
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
    if plain {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| failed(e.to_string()))
}

/// Docker Hub's API lives at `registry-1.docker.io`, with official images
/// under `library/`.
pub(crate) fn docker_hub(host: &str, repository: &str) -> (String, String) {
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
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A digest from a response header, if it holds a valid one.
pub(crate) fn header_digest(headers: &HeaderMap, name: &str) -> Option<Digest> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The registry's error body (`{"errors":[{"code","message"}]}`) in one
/// line, or the start of whatever it sent.
pub(crate) fn error_detail(body: &[u8]) -> String {
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

/// Plain HTTP is for loopback hosts, and for hosts the user named in
/// [`INSECURE_REGISTRIES_VAR`]; everything else is HTTPS.
pub(crate) fn plain_http_allowed(host: &str) -> bool {
    plain_http_allowed_by(
        host,
        &std::env::var(INSECURE_REGISTRIES_VAR).unwrap_or_default(),
    )
}

/// [`plain_http_allowed`] with `named` as the variable's value.
pub(crate) fn plain_http_allowed_by(host: &str, named: &str) -> bool {
    is_loopback(host)
        || named
            .split(|c: char| c == ',' || c.is_whitespace())
            .any(|h| !h.is_empty() && h.eq_ignore_ascii_case(host))
}

/// Whether a request error is worth another try: the connection was
/// refused, reset or timed out, or the body was cut short.
pub(crate) fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// Statuses a registry answers when it is busy or briefly broken.
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The wait before try `attempt + 1`: 250 ms, doubling, at most 4 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(4))
}

/// `Retry-After` in seconds (the HTTP-date form is read as "soon").
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    Some(
        value
            .parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1)),
    )
}
