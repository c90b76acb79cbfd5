//! The process-wide bound on layer writers: each one compresses on a gzip
//! thread per core with a megabyte block per thread in flight, so a `-j`
//! build (or an embedder running several builds) that wrote every missed
//! layer at once would hold memory and threads in proportion to its layer
//! count. Every layer writer of the process takes a permit here first, in
//! this one place; at most [`limit`] write at once, the others wait (and
//! stop waiting when their store handle is cancelled).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::{Cancel, ImageError};

/// How many layer writers run at once in this process: one per core (each
/// already keeps every core busy), at least two so that a small layer is
/// never stuck behind a large one on a one-core machine.
pub fn limit() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .max(2)
}

/// Writers holding a permit now.
static IN_USE: Mutex<usize> = Mutex::new(0);
/// Signalled when a permit is given back.
static FREED: Condvar = Condvar::new();
/// How often a waiting writer looks at its token.
const CANCEL_POLL: Duration = Duration::from_millis(50);

fn in_use() -> MutexGuard<'static, usize> {
    IN_USE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A layer writer's permit, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit(());

impl Permit {
    /// Wait for a permit; [`ImageError::Cancelled`] once `cancel` is.
    pub(crate) fn acquire(cancel: &Cancel) -> Result<Permit, ImageError> {
        let max = limit();
        let mut count = in_use();
        while *count >= max {
            cancel.check()?;
            count = FREED
                .wait_timeout(count, CANCEL_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        cancel.check()?;
        *count += 1;
        Ok(Permit(()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut count = in_use();
        *count = count.saturating_sub(1);
        FREED.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_more_writers_than_the_limit_hold_a_permit_at_once() {
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..limit() * 3)
            .map(|_| {
                let (holding, most) = (holding.clone(), most.clone());
                std::thread::spawn(move || {
                    let permit = Permit::acquire(&Cancel::new());
                    assert!(permit.is_ok());
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    holding.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert!(most.load(Ordering::SeqCst) <= limit());
        assert!(most.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn a_cancelled_waiter_stops_waiting() {
        let held: Vec<_> = (0..limit())
            .map(|_| Permit::acquire(&Cancel::new()))
            .collect();
        let cancel = Cancel::new();
        cancel.cancel();
        assert!(matches!(
            Permit::acquire(&cancel),
            Err(ImageError::Cancelled)
        ));
        drop(held);
    }
}
