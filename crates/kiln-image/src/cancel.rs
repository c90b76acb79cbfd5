//! Cancellation: one token a caller shares with the work it started, so
//! that a build, an import or an export stops within a second of being
//! asked to and leaves nothing half-written behind.
//!
//! The token lives here, in the lowest crate that does long blocking work,
//! because the loops that must notice it (writing blobs, tar and gzip,
//! hashing inputs, scanning layers) live here and in the crates built on
//! this one. A [`Store`](crate::Store) handle carries a token
//! ([`Store::with_cancel`](crate::Store::with_cancel)): every blob written
//! through it checks the token before each write, so a cancelled write
//! fails and its temporary file is removed; loops that only read call
//! [`Cancel::check`] themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::ImageError;

/// A cancellation token: cheap to clone, every clone sees the same state.
/// Once cancelled it stays cancelled.
///
/// ```
/// let cancel = kiln_image::Cancel::new();
/// let worker = cancel.clone();
/// assert!(worker.check().is_ok());
/// cancel.cancel();
/// assert!(worker.is_cancelled());
/// assert!(matches!(worker.check(), Err(kiln_image::ImageError::Cancelled)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// A token nobody has cancelled yet.
    #[must_use]
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask every holder of this token to stop. Idempotent.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`Cancel::cancel`] was called on this token or a clone.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// [`ImageError::Cancelled`] once cancelled: what a blocking loop calls
    /// between steps.
    pub fn check(&self) -> Result<(), ImageError> {
        if self.is_cancelled() {
            Err(ImageError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Wait until the token is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a cancel between the two
            // still wakes this waiter.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A writer that refuses every write once its token is cancelled: what a
/// long copy out of the store (an archive for the engine, an export) is
/// written through so that it stops within one buffer. The refusal is an
/// I/O error that [`ImageError`] reports as [`ImageError::Cancelled`].
#[derive(Debug)]
pub struct CancelWriter<W> {
    inner: W,
    cancel: Cancel,
}

impl<W: std::io::Write> CancelWriter<W> {
    /// `inner`, checking `cancel` before each write.
    pub fn new(inner: W, cancel: Cancel) -> Self {
        CancelWriter { inner, cancel }
    }
}

impl<W: std::io::Write> std::io::Write for CancelWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            // Not `Interrupted`: `write_all` would retry that forever.
            return Err(std::io::Error::other(CancelledIo));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that refuses every read once its token is cancelled, as
/// [`CancelWriter`] does for writes: a long read of an input (a `rootfs:`
/// tar) stops within one buffer.
#[derive(Debug)]
pub(crate) struct CancelReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R> CancelReader<R> {
    /// `inner`, checking `cancel` before each read.
    pub(crate) fn new(inner: R, cancel: Cancel) -> Self {
        CancelReader { inner, cancel }
    }
}

impl<R: std::io::Read> std::io::Read for CancelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other(CancelledIo));
        }
        self.inner.read(buf)
    }
}

/// The I/O error a cancelled read or write returns inside the store; [`ImageError`]
/// turns it back into [`ImageError::Cancelled`].
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub(crate) struct CancelledIo;

/// Whether `e` is a write refused because its token was cancelled.
pub(crate) fn is_cancelled_io(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<CancelledIo>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_a_clone_cancels() {
        let cancel = Cancel::new();
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished() || cancel.is_cancelled());
        cancel.clone().cancel();
        waiter.await.expect("the waiter ends");
        // Already cancelled: returns at once.
        cancel.cancelled().await;
    }

    #[test]
    fn a_cancel_writer_refuses_writes_once_cancelled() {
        use std::io::Write;
        let cancel = Cancel::new();
        let mut out = CancelWriter::new(Vec::new(), cancel.clone());
        assert!(out.write_all(b"before").is_ok());
        cancel.cancel();
        let refused = out.write_all(b"after");
        assert!(refused.as_ref().is_err_and(is_cancelled_io));
        assert_eq!(out.inner, b"before");
    }

    /// Hands out 64 KiB at a time and cancels its token after the first.
    struct CancelAfterFirstRead {
        cancel: Cancel,
        reads: usize,
    }

    impl std::io::Read for CancelAfterFirstRead {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            if self.reads == 2 {
                self.cancel.cancel();
            }
            let n = buf.len().min(1 << 16);
            buf[..n].fill(b'x');
            Ok(n)
        }
    }

    #[test]
    fn a_blob_cancelled_mid_write_leaves_no_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = crate::Store::open(tmp.path()).expect("store");
        let cancel = Cancel::new();
        let handle = store.with_cancel(&cancel);
        let reader = CancelAfterFirstRead {
            cancel: cancel.clone(),
            reads: 0,
        };
        // An endless reader: only the token can end this write.
        let result = handle.put_blob_from(reader, None);
        assert!(
            matches!(result, Err(ImageError::Cancelled)),
            "not cancelled: {result:?}"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("blobs/sha256"))
            .expect("blobs")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left in the store: {left:?}");
        // Other handles of the store are not cancelled.
        assert!(store.put_blob(b"still works").is_ok());
    }
}
