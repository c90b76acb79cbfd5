//! What every engine-backed test of this crate shares: a run id per test,
//! and removal of the run's containers whether the test passed or panicked.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use kiln_engine::{ContainerSpec, Docker, Engine, MANAGED_LABEL, RUN_LABEL};

/// A run id no other test (or test process) uses.
pub fn run_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("kiln-engine-test-{test}-{}-{nanos:x}", std::process::id())
}

/// A container spec for `image`, labelled as kiln labels its containers.
pub fn spec(image: &str, run: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.to_owned(),
        network: true,
        labels: [
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (RUN_LABEL.to_owned(), run.to_owned()),
        ]
        .into(),
        ..ContainerSpec::default()
    }
}

/// Run `body`, then remove every container of `run` and check that none is
/// left, even when `body` panicked (the panic is then passed on).
pub async fn with_cleanup(docker: &Docker, run: &str, body: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let removed = docker.remove_labelled(RUN_LABEL, run).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    removed.expect("remove the run's containers");
    let left = docker
        .containers_labelled(RUN_LABEL, run)
        .await
        .expect("list containers");
    assert!(left.is_empty(), "containers left behind: {left:?}");
}
