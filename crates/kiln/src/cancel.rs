//! Cancellation in the facade: where a build, test or release notices its
//! [`Cancel`] token, and how it cleans up after itself.
//!
//! Blocking work notices the token on its own: the store handle a run works
//! through carries it ([`Store::with_cancel`]), so blob writes, hashing and
//! the leak scan stop within a buffer and remove their temporary files. An
//! awaited engine or registry call is raced against the token
//! ([`until_cancelled`]); the future dropped may leave a container behind,
//! so [`settle`] removes every container of the run by its `dev.kiln.run`
//! label before the call returns, and then the temporary
//! `kiln.local/build-*` images its run layers had loaded (remembered here
//! by run id while they exist, [`remember_tag`]). A cancelled call returns
//! [`KilnError::Cancelled`] whatever error the interrupted step reported.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Mutex, PoisonError};

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

/// Temporary engine tags of the runs in progress, by run id: what a
/// cancelled run removes once its containers are gone.
static RUN_TAGS: Mutex<BTreeMap<String, BTreeSet<String>>> = Mutex::new(BTreeMap::new());

/// Remember that the run `run_id` is about to load the temporary tag `tag`
/// into the engine, so that [`settle`] removes it if the run is cancelled
/// before it removes the tag itself.
pub(crate) fn remember_tag(run_id: &str, tag: &str) {
    let mut tags = RUN_TAGS.lock().unwrap_or_else(PoisonError::into_inner);
    tags.entry(run_id.to_owned())
        .or_default()
        .insert(tag.to_owned());
}

/// The run `run_id` removed `tag` itself.
pub(crate) fn forget_tag(run_id: &str, tag: &str) {
    let mut tags = RUN_TAGS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(run) = tags.get_mut(run_id) {
        run.remove(tag);
        if run.is_empty() {
            tags.remove(run_id);
        }
    }
}

/// Remove the temporary tags the run `run_id` left (after its containers,
/// which would keep the images in use). A load dropped mid-flight may
/// still be tagging, so each is looked for again until the engine has none.
async fn remove_tags(engine: &dyn Engine, run_id: &str) -> Result<(), KilnError> {
    let left = RUN_TAGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(run_id)
        .unwrap_or_default();
    let cleanup = |source| KilnError::CancelCleanup {
        run_id: run_id.to_owned(),
        source,
    };
    for tag in left {
        for _ in 0..CLEANUP_ROUNDS {
            engine.remove_image(&tag).await.map_err(cleanup)?;
            if engine.image_id(&tag).await.map_err(cleanup)?.is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
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
                remove_tags(engine, run_id).await?;
            }
            Err(KilnError::Cancelled)
        }
        other => {
            // Whatever a finished run left is its own to remove.
            RUN_TAGS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(run_id);
            other
        }
    }
}
