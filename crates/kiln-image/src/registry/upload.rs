//! Sending blobs and manifests to a registry. A blob the repository has is
//! not sent (HEAD); one another repository of the same registry has is
//! mounted from there; anything else goes up in chunks (`PATCH` with a
//! `Content-Range`), so that a dropped connection costs one chunk at most:
//! the registry is asked how much it holds, and the upload goes on from
//! there (or starts again, if the registry dropped the upload too). Each
//! chunk is streamed from the blob's file, read a few pieces ahead of the
//! socket, never whole into memory. The store verified the blob when it
//! stored it, so it is not hashed again here: the registry hashes what it
//! receives and refuses a commit whose digest does not match, which kiln
//! reports as a damaged store blob, so a damaged blob is never pushed.
//! The manifest is sent last, as its exact bytes: until then no tag exists,
//! so an interrupted push leaves no half-written tag.

use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::mpsc;

use super::session::{ATTEMPTS, Session, backoff, header_digest};
use crate::{Descriptor, Digest, ImageError, Store};

/// Bytes read from a store blob at a time while it is sent.
const PIECE: u64 = 1 << 20;
/// Pieces read ahead of the socket, per blob.
const READ_AHEAD: usize = 4;

/// Where the bytes of a blob being pushed come from.
#[derive(Clone)]
pub(crate) enum BlobSource<'a> {
    /// The store; read at offsets, verified against the digest on the way.
    Store(&'a Store),
    /// Bytes in memory (signature payloads and other small documents).
    Bytes(Bytes),
}

/// What pushing one blob took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobOutcome {
    /// The repository had it already: nothing was sent.
    Present,
    /// Another repository of the registry had it: mounted, nothing sent.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

/// How one PATCH went.
enum Patched {
    /// Accepted: the next location and the bytes the registry now holds.
    Accepted(Url, u64),
    /// Cut short or refused for a reason worth another try.
    Transient(String),
}

impl Session {
    /// Push blob `d` (described to the user as `what`, e.g. `layer 2 of
    /// image sha256:…`) unless the repository has it, trying a mount from
    /// each of `mount_from` first.
    pub(crate) async fn push_blob(
        &self,
        source: BlobSource<'_>,
        d: &Descriptor,
        what: &str,
        mount_from: &[String],
        chunk_size: u64,
    ) -> Result<BlobOutcome, ImageError> {
        const OPERATION: &str = "push blob";
        if self.has_blob(d).await? {
            return Ok(BlobOutcome::Present);
        }
        let mut started = None;
        for from in mount_from.iter().filter(|f| **f != self.repository) {
            let mut url = self.uploads_url(OPERATION)?;
            url.query_pairs_mut()
                .append_pair("mount", d.digest.as_str())
                .append_pair("from", from);
            let response = self
                .send(OPERATION, |c| c.post(url.clone()).header(CONTENT_LENGTH, 0))
                .await?;
            match response.status() {
                StatusCode::CREATED => return Ok(BlobOutcome::Mounted),
                // The registry could not mount and started an upload.
                StatusCode::ACCEPTED => {
                    started = Some(self.next_location(OPERATION, &response)?);
                    break;
                }
                _ => {}
            }
        }
        self.upload(source, d, what, started, chunk_size.max(1))
            .await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// `blobs/uploads/` as a URL.
    fn uploads_url(&self, operation: &'static str) -> Result<Url, ImageError> {
        let start = self.url("blobs/uploads/");
        Url::parse(&start).map_err(|e| ImageError::Registry {
            host: self.host.clone(),
            operation,
            reason: format!("{start} is not a URL: {e}"),
        })
    }

    /// The `Location` a response gives, resolved against the registry.
    fn next_location(
        &self,
        operation: &'static str,
        response: &Response,
    ) -> Result<Url, ImageError> {
        let protocol = |reason: String| ImageError::Registry {
            host: self.host.clone(),
            operation,
            reason,
        };
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| protocol("the registry gave no upload Location".into()))?;
        self.uploads_url(operation)?
            .join(location)
            .map_err(|e| protocol(format!("the upload Location {location:?} is unusable: {e}")))
    }

    /// Start an upload session; its location.
    async fn start_upload(&self) -> Result<Url, ImageError> {
        const OPERATION: &str = "push blob";
        let url = self.uploads_url(OPERATION)?;
        let response = self
            .send(OPERATION, |c| c.post(url.clone()).header(CONTENT_LENGTH, 0))
            .await?;
        let response = self
            .expect(
                OPERATION,
                response,
                &[StatusCode::ACCEPTED],
                "upload location",
            )
            .await?;
        self.next_location(OPERATION, &response)
    }

    /// Upload `d`'s bytes in chunks of `chunk_size` and commit them.
    async fn upload(
        &self,
        source: BlobSource<'_>,
        d: &Descriptor,
        what: &str,
        started: Option<Url>,
        chunk_size: u64,
    ) -> Result<(), ImageError> {
        let failed = |sent: u64, reason: String| ImageError::BlobPush {
            target: format!("{}/{}", self.host, self.repository),
            blob: d.digest.clone(),
            what: what.to_owned(),
            sent: (sent, d.size),
            reason,
        };
        let open = Open::new(&source, d).await?;
        let mut location = match started {
            Some(url) => url,
            None => self.start_upload().await?,
        };
        // Bytes the registry holds.
        let mut held = 0u64;
        let mut faults = 0u32;
        while held < d.size {
            let len = chunk_size.min(d.size - held);
            let reason = match self.patch(&location, held, len, &open).await? {
                Patched::Accepted(next, now) if now == held + len => {
                    location = next;
                    held = now;
                    continue;
                }
                Patched::Accepted(_, now) => format!(
                    "the registry holds {now} bytes after a chunk that ends at byte {}",
                    held + len
                ),
                Patched::Transient(reason) => reason,
            };
            faults += 1;
            if faults >= ATTEMPTS {
                return Err(failed(held, reason));
            }
            tokio::time::sleep(backoff(faults)).await;
            // Ask how much arrived; a registry that dropped the upload
            // (distribution does, when a chunk was cut mid-way) gets a new
            // one, from the start.
            match self.upload_status(&location).await {
                Some((next, now)) if now <= d.size => {
                    location = next;
                    held = now;
                }
                _ => {
                    location = self.start_upload().await?;
                    held = 0;
                }
            }
        }
        match self.commit(&location, d).await {
            Ok(()) => Ok(()),
            // The registry hashed what it was sent and it is not the blob:
            // the store's copy is damaged (the store verified it once, and
            // kiln does not hash it again on the way out).
            Err(Committed::DigestInvalid) => Err(ImageError::CorruptBlob {
                digest: d.digest.clone(),
                path: open.path(),
            }),
            Err(Committed::Failed(reason)) => Err(failed(held, reason)),
        }
    }

    /// Send `len` bytes of `open` from byte `start` as one chunk, streamed
    /// from the source (never read whole into memory first).
    async fn patch(
        &self,
        location: &Url,
        start: u64,
        len: u64,
        open: &Open,
    ) -> Result<Patched, ImageError> {
        const OPERATION: &str = "push blob";
        let end = start + len;
        let range = format!("{start}-{}", end.saturating_sub(1));
        let response = self
            .send_tries(OPERATION, 1, |c| {
                c.patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, &range)
                    .header(CONTENT_LENGTH, len)
                    .body(open.body(start, len))
            })
            .await;
        let response = match response {
            Ok(r) => r,
            Err(ImageError::RegistryUnreachable { reason, .. }) => {
                return Ok(Patched::Transient(reason));
            }
            Err(ImageError::Registry { reason, .. }) => return Ok(Patched::Transient(reason)),
            Err(other) => return Err(other),
        };
        if response.status() != StatusCode::ACCEPTED {
            let status = response.status();
            let body = self
                .read_capped(OPERATION, response, super::session::MAX_SMALL)
                .await
                .unwrap_or_default();
            return Ok(Patched::Transient(format!(
                "HTTP {status}: {}",
                super::session::error_detail(&body)
            )));
        }
        let next = self.next_location(OPERATION, &response)?;
        let now = held_bytes(&response).unwrap_or(end);
        Ok(Patched::Accepted(next, now))
    }

    /// Where the upload at `location` stands: its next location and the
    /// bytes held, or `None` when the registry no longer knows it.
    async fn upload_status(&self, location: &Url) -> Option<(Url, u64)> {
        const OPERATION: &str = "push blob";
        let response = self
            .send(OPERATION, |c| c.get(location.clone()))
            .await
            .ok()?;
        if response.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let next = self.next_location(OPERATION, &response).ok()?;
        Some((next, held_bytes(&response)?))
    }

    /// Commit the upload at `location` as blob `d`. A commit whose answer
    /// was lost is recognised by the blob being there.
    async fn commit(&self, location: &Url, d: &Descriptor) -> Result<(), Committed> {
        const OPERATION: &str = "push blob";
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", d.digest.as_str());
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self
                .send_tries(OPERATION, 1, |c| {
                    c.put(url.clone()).header(CONTENT_LENGTH, 0)
                })
                .await
            {
                Ok(r) if r.status() == StatusCode::CREATED => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let body = self
                        .read_capped(OPERATION, r, super::session::MAX_SMALL)
                        .await
                        .unwrap_or_default();
                    let detail = super::session::error_detail(&body);
                    if status == StatusCode::BAD_REQUEST && detail.starts_with("DIGEST_INVALID") {
                        return Err(Committed::DigestInvalid);
                    }
                    last = format!("committing the upload: HTTP {status}: {detail}");
                }
                Err(e) => last = format!("committing the upload: {e}"),
            }
            if let Ok(true) = self.has_blob(d).await {
                return Ok(());
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(Committed::Failed(last))
    }

    /// PUT a manifest's exact bytes under `reference` (a tag or its
    /// digest); the digest the registry reports, which must be `ours`.
    pub(crate) async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
        ours: &Digest,
    ) -> Result<Digest, ImageError> {
        const OPERATION: &str = "push manifest";
        let url = self.url(&format!("manifests/{reference}"));
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
                &format!("manifest {reference}"),
            )
            .await?;
        let reported = header_digest(response.headers(), "docker-content-digest")
            .unwrap_or_else(|| ours.clone());
        if reported != *ours {
            return Err(ImageError::DigestMismatch {
                source_path: url.into(),
                expected: ours.clone(),
                actual: reported,
            });
        }
        Ok(reported)
    }
}

/// The bytes a registry says it holds, from `Range: 0-N` (N+1 bytes; `0-0`
/// is read as none, which is what an empty upload reports).
fn held_bytes(response: &Response) -> Option<u64> {
    let range = response.headers().get(RANGE)?.to_str().ok()?;
    let range = range.trim().trim_start_matches("bytes=");
    let (_, end) = range.split_once('-')?;
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// Why a commit failed.
enum Committed {
    /// The registry says the bytes sent do not hash to the digest.
    DigestInvalid,
    /// Anything else, after the retries.
    Failed(String),
}

/// The bytes of one blob being pushed, ready to be streamed chunk by chunk.
enum Open {
    /// A store blob: its open file (read at offsets) and its path.
    File(Arc<std::fs::File>, PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

impl Open {
    /// Open `d` from `source`. A source whose size is not `d`'s is
    /// [`ImageError::CorruptBlob`] before anything is sent.
    async fn new(source: &BlobSource<'_>, d: &Descriptor) -> Result<Open, ImageError> {
        let corrupt = |path: PathBuf| ImageError::CorruptBlob {
            digest: d.digest.clone(),
            path,
        };
        match source {
            BlobSource::Bytes(bytes) if bytes.len() as u64 == d.size => {
                Ok(Open::Bytes(bytes.clone()))
            }
            BlobSource::Bytes(_) => Err(corrupt("memory".into())),
            BlobSource::Store(store) => {
                let store = (*store).clone();
                let digest = d.digest.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    let path = store.blob_path(&digest);
                    let file = store.open_blob(&digest)?;
                    let len = file
                        .metadata()
                        .map_err(|e| ImageError::Io {
                            path: path.clone(),
                            source: e,
                        })?
                        .len();
                    Ok::<_, ImageError>((file, path, len))
                })
                .await
                .map_err(|e| ImageError::Io {
                    path: "blob".into(),
                    source: std::io::Error::other(e.to_string()),
                })??;
                let (file, path, len) = opened;
                if len != d.size {
                    return Err(corrupt(path));
                }
                Ok(Open::File(Arc::new(file), path))
            }
        }
    }

    /// Where the bytes come from, for errors.
    fn path(&self) -> PathBuf {
        match self {
            Open::File(_, path) => path.clone(),
            Open::Bytes(_) => "memory".into(),
        }
    }

    /// A request body of `len` bytes from byte `offset`: pieces read from
    /// the file on the blocking pool a few ahead of the socket, so that
    /// disk and network overlap and memory stays at a few pieces a blob.
    fn body(&self, offset: u64, len: u64) -> reqwest::Body {
        match self {
            Open::Bytes(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                reqwest::Body::from(
                    bytes
                        .get(start..end)
                        .map_or_else(Bytes::new, |b| bytes.slice_ref(b)),
                )
            }
            Open::File(file, _) => {
                let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
                let file = Arc::clone(file);
                tokio::task::spawn_blocking(move || {
                    let end = offset + len;
                    let mut at = offset;
                    while at < end {
                        let n = usize::try_from(PIECE.min(end - at)).unwrap_or(0);
                        let mut buf = vec![0u8; n];
                        let piece = file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf));
                        let failed = piece.is_err();
                        // The request was dropped (cancelled, or the
                        // connection failed): stop reading.
                        if tx.blocking_send(piece).is_err() || failed {
                            return;
                        }
                        at += n as u64;
                    }
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|piece| (piece, rx))
                });
                reqwest::Body::wrap_stream(stream)
            }
        }
    }
}
