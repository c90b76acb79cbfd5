//! Cancellation in the facade: where a build, test or release notices its
//! [`Cancel`] token, and how it cleans up after itself.
//!
//! Blocking work notices the token on its own: the store handle a run works
//! through carries it ([`Store::with_cancel`]), so blob writes, hashing and
//! the leak scan stop within a buffer and remove their temporary files. An
//! awaited engine or registry call is raced against the token
//! ([`until_cancelled`]); the future dropped may leave a container behind,
//! so [`settle`] removes every container of the run by its `dev.kiln.run`
//! label before the call returns. A cancelled call returns
//! [`KilnError::Cancelled`] whatever error the interrupted step reported.

use std::future::Future;

use kiln_engine::{Engine, RUN_LABEL};
use kiln_image::Cancel;

use crate::KilnError;

/// Run `work` until it ends or `cancel` is cancelled, whichever is first.
pub(crate) async fn until_cancelled<T>(
    cancel: &Cancel,
    work: impl Future<Output = Result<T, KilnError>>,
) -> Result<T, KilnError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(KilnError::Cancelled),
        result = work => result,
    }
}

/// How many times a cancelled run's containers are looked for again.
const CLEANUP_ROUNDS: usize = 20;

/// Remove every container labelled with `run_id`, until the engine lists
/// none. A request dropped mid-flight may still create a container after
/// the first removal, and a removal already in progress elsewhere returns
/// before the container is gone: so the list is asked for again, a few
/// times, until it is empty.
async fn remove_containers(engine: &dyn Engine, run_id: &str) -> Result<(), KilnError> {
    for _ in 0..CLEANUP_ROUNDS {
        let removed = engine
            .remove_labelled(RUN_LABEL, run_id)
            .await
            .map_err(|source| KilnError::CancelCleanup {
                run_id: run_id.to_owned(),
                source,
            })?;
        if removed == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The outcome of a run with `run_id`: `result` as it is, unless `cancel`
/// was cancelled and the run failed, in which case its containers are
/// removed and the answer is [`KilnError::Cancelled`]. A run that finished
/// before noticing the token keeps its result.
pub(crate) async fn settle<T>(
    result: Result<T, KilnError>,
    cancel: &Cancel,
    engine: Option<&dyn Engine>,
    run_id: &str,
) -> Result<T, KilnError> {
    match result {
        Err(_) if cancel.is_cancelled() => {
            if let Some(engine) = engine {
                remove_containers(engine, run_id).await?;
            }
            Err(KilnError::Cancelled)
        }
        other => other,
    }
}
