//! What a build is done with in the engine (a run layer's container, the
//! temporary image it ran on) is removed beside the rest of the build
//! instead of before the build goes on: the removal is the engine's work
//! and the disk's (tens of milliseconds to seconds for a container that
//! wrote thousands of files), the next layers and the image are kiln's.
//!
//! A build makes a [`Removals`] handle and the future that runs what the
//! handle is given, and polls that future beside its own stages (a join):
//! it ends once the handle is dropped and every removal has run, so a build
//! returns, on every path, only after its removals are done. The first
//! failure is its result. If the whole build is dropped (a cancel from
//! outside), what was not removed is found by its run label
//! ([`crate::cancel`]).

use std::future::Future;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::KilnError;

/// One removal: the engine's work, to be awaited beside the build.
pub(crate) type Removal<'a> = BoxFuture<'a, Result<(), KilnError>>;

/// Where a build hands its removals (see the module's doc).
pub(crate) struct Removals<'a> {
    sender: mpsc::UnboundedSender<Removal<'a>>,
}

impl<'a> Removals<'a> {
    /// A handle, and the future that runs what it is given: poll that
    /// beside the build; it ends when the handle is dropped and every
    /// removal has run, with the first failure.
    pub(crate) fn new() -> (
        Removals<'a>,
        impl Future<Output = Result<(), KilnError>> + 'a,
    ) {
        let (sender, received) = mpsc::unbounded_channel();
        (Removals { sender }, run(received))
    }

    /// Run `removal` beside the build from now on.
    pub(crate) fn defer(&self, removal: Removal<'a>) {
        // The receiving end lives until this handle is dropped (the build
        // polls it to the end), so sending cannot fail while a build runs;
        // if the whole build was dropped, what is left is found by its
        // run label.
        let _ = self.sender.send(removal);
    }
}

/// Run every removal `received` gives, as it comes, until the sender is
/// gone and all have finished; the first failure wins.
async fn run(mut received: mpsc::UnboundedReceiver<Removal<'_>>) -> Result<(), KilnError> {
    let mut running = FuturesUnordered::new();
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            next = received.recv() => match next {
                Some(removal) => running.push(removal),
                None => break,
            },
            Some(done) = running.next(), if !running.is_empty() => {
                outcome = outcome.and(done);
            }
        }
    }
    while let Some(done) = running.next().await {
        outcome = outcome.and(done);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn removals_run_beside_the_build_and_all_finish_before_it_returns() {
        let done = Arc::new(AtomicUsize::new(0));
        let (removals, removing) = Removals::new();
        let (tell, told) = tokio::sync::oneshot::channel::<()>();
        let build = {
            let done = done.clone();
            async move {
                let seen = done.clone();
                // Runs while the build goes on: the build waits for it.
                removals.defer(Box::pin(async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let _ = tell.send(());
                    Ok(())
                }));
                told.await.expect("the removal ran while the build waited");
                let seen = done.clone();
                removals.defer(Box::pin(async move {
                    tokio::task::yield_now().await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }));
                "built"
            }
        };
        let (built, removed) = futures_util::future::join(build, removing).await;
        assert_eq!(built, "built");
        assert!(removed.is_ok());
        assert_eq!(
            done.load(Ordering::SeqCst),
            2,
            "both ran before the join ended"
        );
    }

    #[tokio::test]
    async fn the_first_failure_is_the_result_and_the_others_still_run() {
        let done = Arc::new(AtomicUsize::new(0));
        let (removals, removing) = Removals::new();
        let fail = |reason: &str| KilnError::Io {
            path: reason.into(),
            source: std::io::Error::other("removal failed"),
        };
        removals.defer(Box::pin(async move { Err(fail("first")) }));
        let seen = done.clone();
        removals.defer(Box::pin(async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        drop(removals);
        let outcome = removing.await;
        assert!(matches!(outcome, Err(KilnError::Io { path, .. }) if path.ends_with("first")));
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
