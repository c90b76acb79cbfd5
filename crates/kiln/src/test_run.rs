//! Test one stored image: load it into the engine, boot it with the
//! recipe's `[boot]`, run its checks, keep the record, and take out of the
//! engine again what the test put there.

use std::time::{SystemTime, UNIX_EPOCH};

use kiln_check::BootPlan;
use kiln_engine::Engine;
use kiln_image::{Cancel, Digest, Store};
use kiln_promote::record::{self, CheckRecord, TestRecord};
use kiln_recipe::{BootSecretTarget, Recipe};

use crate::KilnError;
use crate::cancel::{settle, until_cancelled};
use crate::events::Events;
use crate::report::{CheckReport, TestReport};
use crate::secret::{self, SecretValue};

/// A fresh id for one test run. Every container of the run carries it as
/// the `dev.kiln.run` label, so that whoever cancels the run can remove
/// them with [`kiln_engine::Engine::remove_labelled`].
pub fn new_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("kiln-{}-{nanos:x}", std::process::id())
}

/// How to test.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// The `dev.kiln.run` label of the run's containers. A fresh id when
    /// `None`.
    pub run_id: Option<String>,
    /// Cancels the test: it stops within about a second, removes the run's
    /// containers and temporary files, keeps no test record, and returns
    /// [`KilnError::Cancelled`]. Never cancelled by default.
    pub cancel: Cancel,
}

/// Boot the stored image `digest` of `recipe` and run the recipe's checks.
/// A failed check is a report with `passed: false`, not an error. The
/// record is kept in the store either way.
///
/// The engine holds no new image afterwards, passed, failed or cancelled:
/// the image is loaded (or, when the engine holds it already, named) under
/// a name of this run's own in the store's
/// [`engine_namespace`](crate::engine_namespace), and that name is removed
/// once the container is gone. An image the engine held before is booted
/// without being sent and is still there afterwards.
pub async fn test(
    store: &Store,
    engine: &dyn Engine,
    recipe: &Recipe,
    digest: &Digest,
    options: &TestOptions,
    events: &dyn Events,
) -> Result<TestReport, KilnError> {
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let store = store.with_cancel(&options.cancel);
    let name = crate::engine_images::run_name(&store, recipe.image.name.as_str(), digest.hex());
    let work = test_run(&store, engine, recipe, digest, &run_id, &name, events);
    let result = until_cancelled(&options.cancel, work).await;
    let result = settle(result, &options.cancel, Some(engine), &run_id).await;
    // After the container (and so the image's last user) is gone.
    let unnamed = engine.remove_image(&name).await;
    let report = result?;
    unnamed?;
    Ok(report)
}

/// [`test`] with the run set up.
async fn test_run(
    store: &Store,
    engine: &dyn Engine,
    recipe: &Recipe,
    digest: &Digest,
    run_id: &str,
    engine_name: &str,
    events: &dyn Events,
) -> Result<TestReport, KilnError> {
    let name = recipe.image.name.to_string();
    // Boot secrets are read before anything starts, so a missing one stops
    // the run early.
    let mut secrets: Vec<SecretValue> = Vec::new();
    let mut env: Vec<(String, String)> = recipe
        .boot
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut files = Vec::new();
    for (secret_name, target) in &recipe.boot.secrets {
        let value = secret::read(recipe, secret_name)?;
        match target {
            BootSecretTarget::Env(var) => {
                env.push((
                    var.clone(),
                    String::from_utf8_lossy(value.expose()).into_owned(),
                ));
            }
            BootSecretTarget::File(path) => files.push((path.clone(), value.expose().to_vec())),
        }
        secrets.push(value);
    }

    events.loading_image(&name, digest);
    // An image the engine holds already is only named, not sent.
    let image =
        crate::engine_images::ensure_in_engine(store, engine, digest, engine_name.to_owned())
            .await?;
    events.boot_started(&name, digest);
    let plan = BootPlan {
        image,
        env,
        files,
        timeout: recipe.boot.timeout.as_std(),
        run_id: run_id.to_owned(),
        redaction: redaction(&secrets),
    };
    let redacting = Redacting {
        inner: events,
        redactor: crate::secret::Redactor::new(&secrets),
    };
    let suite = kiln_check::run_suite(engine, &plan, &recipe.checks, &redacting).await?;

    let checks: Vec<CheckReport> = suite
        .checks
        .iter()
        .map(|c| CheckReport {
            name: c.name.clone(),
            passed: c.passed,
            duration_ms: u64::try_from(c.duration.as_millis()).unwrap_or(u64::MAX),
            detail: secret::redact(&c.detail, &secrets),
        })
        .collect();
    let report = TestReport {
        name: name.clone(),
        digest: digest.clone(),
        passed: suite.passed,
        checks,
    };
    record::save(
        store,
        &TestRecord {
            name,
            digest: digest.clone(),
            passed: report.passed,
            checks: report
                .checks
                .iter()
                .map(|c| CheckRecord {
                    name: c.name.clone(),
                    passed: c.passed,
                    duration_ms: c.duration_ms,
                    detail: c.detail.clone(),
                })
                .collect(),
            finished_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    )?;
    events.test_finished(&report);
    Ok(report)
}

/// How kiln-check masks `secrets` in what it shows: the whole output is
/// masked before it is cut to length.
fn redaction(secrets: &[SecretValue]) -> kiln_check::Redaction {
    let lines = secrets
        .iter()
        .map(|s| s.expose().split(|&b| b == b'\n').count())
        .max()
        .unwrap_or(0);
    let redactor = crate::secret::Redactor::new(secrets);
    kiln_check::Redaction::new(move |text: &str| redactor.redact(text), lines)
}

/// The recipe kept in the store for `digest`, to test an image by reference.
pub fn recipe_of(store: &Store, name: &str, digest: &Digest) -> Result<Recipe, KilnError> {
    crate::stored_recipe::load(store, digest)?.ok_or_else(|| KilnError::NoRecipe {
        name: name.to_owned(),
        digest: digest.clone(),
    })
}

/// Forwards check events with secret values redacted from their details:
/// a check's output may echo a boot secret, and events reach terminals and
/// logs.
struct Redacting<'a> {
    inner: &'a dyn Events,
    redactor: crate::secret::Redactor,
}

impl kiln_check::CheckEvents for Redacting<'_> {
    fn check_started(&self, name: &str) {
        self.inner.check_started(name);
    }

    fn check_finished(&self, outcome: &kiln_check::CheckOutcome) {
        let mut outcome = outcome.clone();
        outcome.detail = self.redactor.redact(&outcome.detail);
        self.inner.check_finished(&outcome);
    }
}
