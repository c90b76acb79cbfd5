//! Where the facade's blocking work runs: base imports, hashing,
//! assembling, the leak scan, archives and lock waits read and write files
//! for seconds, so they run on tokio's blocking pool, never on the async
//! worker threads that drive the other builds of a `-j` run, engine calls
//! and the Ctrl-C handler.
//!
//! The work is awaited to its end, never dropped half-way: it notices a
//! cancel itself (the store handle it works through carries the token, see
//! [`kiln_image::Store::with_cancel`]), stops within a buffer and removes
//! its temporary files before the caller sees [`KilnError::Cancelled`].

use crate::KilnError;

/// Run `work` on the blocking pool and wait for its result. A panic in it
/// resumes here, as if it had run inline.
pub(crate) async fn run<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, KilnError>
where
    T: Send + 'static,
    E: Into<KilnError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down drops a blocking task unrun.
        Err(_) => Err(KilnError::Cancelled),
    }
}
