//! Sending blobs and manifests to a registry. A blob the repository has is
//! not sent (HEAD); one another repository of the same registry has is
//! mounted from there; anything else goes up in chunks (`PATCH` with a
//! `Content-Range`), so that a dropped connection costs one chunk at most:
//! the registry is asked how much it holds, and the upload goes on from
//! there (or starts again, if the registry dropped the upload too). The
//! bytes are hashed as they are read and the upload is committed only when
//! they match the blob's digest, so a damaged store blob is never pushed.
//! The manifest is sent last, as its exact bytes: until then no tag exists,
//! so an interrupted push leaves no half-written tag.

use std::os::unix::fs::FileExt as _;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::session::{ATTEMPTS, Session, backoff, header_digest};
use crate::{Descriptor, Digest, ImageError, Store};

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
        let mut location = match started {
            Some(url) => url,
            None => self.start_upload().await?,
        };
        // Bytes the registry holds, and bytes hashed so far (always a
        // prefix of the blob: a restarted upload does not hash again).
        let mut held = 0u64;
        let mut hasher = Sha256::new();
        let mut hashed = 0u64;
        let mut faults = 0u32;
        while held < d.size {
            let len = chunk_size.min(d.size - held);
            let bytes = read_range(&source, d, held, len).await?;
            if held <= hashed && hashed < held + len {
                let from = usize::try_from(hashed - held).unwrap_or(0);
                hasher.update(&bytes[from..]);
                hashed = held + len;
            }
            let reason = match self.patch(&location, held, bytes).await? {
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
                Some((next, now)) if now <= hashed && now <= d.size => {
                    location = next;
                    held = now;
                }
                _ => {
                    location = self.start_upload().await?;
                    held = 0;
                }
            }
        }
        if hashed != d.size || Digest::from_hasher(hasher) != d.digest {
            return Err(ImageError::CorruptBlob {
                digest: d.digest.clone(),
                path: store_path(&source, d),
            });
        }
        self.commit(&location, d)
            .await
            .map_err(|reason| failed(held, reason))
    }

    /// Send one chunk, starting at byte `start`.
    async fn patch(&self, location: &Url, start: u64, bytes: Bytes) -> Result<Patched, ImageError> {
        const OPERATION: &str = "push blob";
        let end = start + bytes.len() as u64;
        let range = format!("{start}-{}", end.saturating_sub(1));
        let response = self
            .send_tries(OPERATION, 1, |c| {
                c.patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, &range)
                    .header(CONTENT_LENGTH, bytes.len())
                    .body(bytes.clone())
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
    async fn commit(&self, location: &Url, d: &Descriptor) -> Result<(), String> {
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
                    last = format!(
                        "committing the upload: HTTP {status}: {}",
                        super::session::error_detail(&body)
                    );
                }
                Err(e) => last = format!("committing the upload: {e}"),
            }
            if let Ok(true) = self.has_blob(d).await {
                return Ok(());
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(last)
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

/// `len` bytes of `d` from byte `offset`.
async fn read_range(
    source: &BlobSource<'_>,
    d: &Descriptor,
    offset: u64,
    len: u64,
) -> Result<Bytes, ImageError> {
    let size = usize::try_from(len).unwrap_or(usize::MAX);
    match source {
        BlobSource::Bytes(bytes) => {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            bytes
                .get(start..start.saturating_add(size))
                .map(|b| bytes.slice_ref(b))
                .ok_or_else(|| ImageError::CorruptBlob {
                    digest: d.digest.clone(),
                    path: "memory".into(),
                })
        }
        BlobSource::Store(store) => {
            let store = (*store).clone();
            let digest = d.digest.clone();
            let read = tokio::task::spawn_blocking(move || {
                let path = store.blob_path(&digest);
                let file = store.open_blob(&digest)?;
                let mut buf = vec![0u8; size];
                file.read_exact_at(&mut buf, offset).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        ImageError::CorruptBlob {
                            digest: digest.clone(),
                            path: path.clone(),
                        }
                    } else {
                        ImageError::Io { path, source: e }
                    }
                })?;
                Ok(Bytes::from(buf))
            })
            .await;
            read.map_err(|e| ImageError::Io {
                path: store_path(source, d),
                source: std::io::Error::other(e.to_string()),
            })?
        }
    }
}

fn store_path(source: &BlobSource<'_>, d: &Descriptor) -> std::path::PathBuf {
    match source {
        BlobSource::Store(store) => store.blob_path(&d.digest),
        BlobSource::Bytes(_) => "memory".into(),
    }
}
