//! What a build is done with in the engine (a run layer's container, the
//! temporary image it ran on) is removed beside the rest of the build
//! instead of before the build goes on: the removal is the engine's work
//! and the disk's (tens of milliseconds to seconds for a container that
//! wrote thousands of files), the next layers and the image are kiln's.
//!
//! A build makes a [`Removals`] handle and the future that runs what the
//! handle is given, and polls that future beside its own stages (a join):
//! it ends once the handle is dropped and every removal has run, so a build
//! returns, on every path, only after its removals are done. Before the
//! build names its image it waits for what was handed so far
//! ([`Removals::settled`]): a removal that failed fails the build before
//! any tag moves, as when removals came first. If the whole build is
//! dropped (a cancel from outside), what was not removed is found by its
//! run label ([`crate::cancel`]).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, mpsc};

use crate::KilnError;

/// One removal: the engine's work, to be awaited beside the build.
pub(crate) type Removal<'a> = BoxFuture<'a, Result<(), KilnError>>;

/// The removal of what was never made (a container whose creation
/// failed): nothing to do.
pub(crate) fn nothing<'a>() -> Removal<'a> {
    Box::pin(async { Ok(()) })
}

/// Where a build hands its removals (see the module's doc).
pub(crate) struct Removals<'a> {
    sender: mpsc::UnboundedSender<Removal<'a>>,
    state: Arc<State>,
}

/// What the handle and the future that runs the removals share.
#[derive(Default)]
struct State {
    /// Removals handed and not finished.
    outstanding: AtomicUsize,
    /// The first failure not yet reported.
    failed: Mutex<Option<KilnError>>,
    /// Told each time a removal finishes.
    finished: Notify,
}

impl State {
    /// Note that a removal finished with `outcome`.
    fn finish(&self, outcome: Result<(), KilnError>) {
        if let Err(e) = outcome {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.get_or_insert(e);
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.finished.notify_waiters();
    }

    /// The first failure, once: whoever asks first reports it.
    fn take_failure(&self) -> Result<(), KilnError> {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.take().map_or(Ok(()), Err)
    }
}

impl<'a> Removals<'a> {
    /// A handle, and the future that runs what it is given: poll that
    /// beside the build; it ends when the handle is dropped and every
    /// removal has run, with the first failure not yet reported by
    /// [`Removals::settled`].
    pub(crate) fn new() -> (
        Removals<'a>,
        impl Future<Output = Result<(), KilnError>> + 'a,
    ) {
        let (sender, received) = mpsc::unbounded_channel();
        let state = Arc::new(State::default());
        let removals = Removals {
            sender,
            state: state.clone(),
        };
        (removals, run(received, state))
    }

    /// Run `removal` beside the build from now on.
    pub(crate) fn defer(&self, removal: Removal<'a>) {
        self.state.outstanding.fetch_add(1, Ordering::SeqCst);
        // The receiving end lives until this handle is dropped (the build
        // polls it to the end), so sending cannot fail while a build runs;
        // if the whole build was dropped, what is left is found by its
        // run label.
        if self.sender.send(removal).is_err() {
            self.state.outstanding.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Wait until every removal handed so far has finished (the future
    /// from [`Removals::new`] must be polled meanwhile), with the first
    /// failure among them not yet reported.
    pub(crate) async fn settled(&self) -> Result<(), KilnError> {
        loop {
            let finished = self.state.finished.notified();
            tokio::pin!(finished);
            // Registered before the count is read: a removal finishing in
            // between still wakes this.
            finished.as_mut().enable();
            if self.state.outstanding.load(Ordering::SeqCst) == 0 {
                return self.state.take_failure();
            }
            finished.await;
        }
    }
}

/// Run every removal `received` gives, as it comes, until the sender is
/// gone and all have finished; the first failure not yet reported wins.
async fn run(
    mut received: mpsc::UnboundedReceiver<Removal<'_>>,
    state: Arc<State>,
) -> Result<(), KilnError> {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = received.recv() => match next {
                Some(removal) => running.push(removal),
                None => break,
            },
            Some(done) = running.next(), if !running.is_empty() => state.finish(done),
        }
    }
    while let Some(done) = running.next().await {
        state.finish(done);
    }
    state.take_failure()
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
    async fn settled_waits_for_what_was_handed_and_reports_its_failure_once() {
        let (removals, removing) = Removals::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let build = async move {
            removals.defer(Box::pin(async move {
                released.await.expect("released");
                Err(KilnError::Io {
                    path: "slow".into(),
                    source: std::io::Error::other("removal failed"),
                })
            }));
            let mut settled = Box::pin(removals.settled());
            // Not settled while the removal waits.
            let early = futures_util::poll!(settled.as_mut());
            assert!(early.is_pending(), "settled before the removal finished");
            let _ = release.send(());
            let outcome = settled.await;
            assert!(matches!(outcome, Err(KilnError::Io { path, .. }) if path.ends_with("slow")));
            // Reported once: nothing is left to report.
            assert!(removals.settled().await.is_ok());
        };
        let ((), removed) = futures_util::future::join(build, removing).await;
        assert!(removed.is_ok(), "the failure was reported by settled");
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
