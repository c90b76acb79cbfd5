//! kiln-check: boot an image in the container engine and run a recipe's
//! checks against it.
//!
//! [`run_suite`] creates one container from a [`BootPlan`] (environment,
//! secret files, every http/tcp check port published on 127.0.0.1), starts
//! it, runs the checks (all at once, since they are independent; reported
//! in recipe order) and removes the container again, on every return path. Each check ends as a [`CheckOutcome`] with a detail
//! that says what was expected and what was seen: **a failed check is an
//! outcome, not an error**. [`CheckError`] is kept for an engine that fails
//! (unreachable, or refusing requests it should carry out).
//!
//! The whole run is bounded by [`BootPlan::timeout`]; http and tcp checks
//! retry by their own [`Probe`](kiln_recipe::Probe) within it. A container
//! that exits fails the check under way and every later one, with its exit
//! code and the tail of its log, and without waiting out any deadline.
//!
//! The library never prints: progress goes to a [`CheckEvents`].
//!
//! ```no_run
//! use kiln_check::{run_suite, BootPlan, NoEvents};
//! use kiln_engine::{Docker, Engine, RUN_LABEL};
//!
//! # async fn f(checks: Vec<kiln_recipe::Check>) -> Result<(), Box<dyn std::error::Error>> {
//! let docker = Docker::connect().await?;
//! let plan = BootPlan {
//!     image: "sha256:0123...".into(),
//!     env: vec![("LOG_LEVEL".into(), "debug".into())],
//!     files: vec![("/run/secrets/db".into(), b"s3cret".to_vec())],
//!     timeout: std::time::Duration::from_secs(60),
//!     run_id: "kiln-42".into(),
//!     redaction: kiln_check::Redaction::none(),
//! };
//! let report = run_suite(&docker, &plan, &checks, &NoEvents).await?;
//! for check in &report.checks {
//!     let verdict = if check.passed { "ok" } else { "FAILED" };
//!     println!("{verdict} {} ({}): {}", check.name, check.kind, check.detail);
//! }
//! // Had the future been dropped (Ctrl-C), the container would still be
//! // found by its run label:
//! docker.remove_labelled(RUN_LABEL, &plan.run_id).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod command;
mod error;
mod excerpt;
mod file;
mod identity;
mod metadata;
mod probe;
mod suite;

use std::time::Duration;

pub use error::CheckError;
pub use excerpt::Redaction;
pub use kiln_error_kind::ErrorKind;
pub use suite::run_suite;

/// How to boot the image under test.
///
/// Its env values and file contents may be boot secrets: they are
/// overwritten with zeros when the plan is dropped (clones too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// The image as the engine knows it (its id `sha256:...`, or a tag).
    pub image: String,
    /// Environment: the recipe's `[boot] env` and the boot secrets bound to
    /// variables, already resolved by the caller.
    pub env: Vec<(String, String)>,
    /// Boot secrets bound to files: absolute path and content. Written
    /// before start with mode 0o400, owned by the image's user.
    pub files: Vec<(String, Vec<u8>)>,
    /// `[boot] timeout`: the total for boot plus every check.
    pub timeout: Duration,
    /// The value of the `dev.kiln.run` label on the container.
    pub run_id: String,
    /// How secret values are masked in check details and log excerpts,
    /// before anything is cut to length.
    pub redaction: Redaction,
}

impl Drop for BootPlan {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl BootPlan {
    /// Overwrite every env value and file content with zeros (and empty
    /// them): what `Drop` does.
    fn wipe(&mut self) {
        wipe_env(&mut self.env);
        for (_, content) in &mut self.files {
            zeroize::Zeroize::zeroize(content);
        }
    }
}

/// Overwrite every value of `env` with zeros and empty it.
pub(crate) fn wipe_env(env: &mut [(String, String)]) {
    for (_, value) in env {
        zeroize::Zeroize::zeroize(value);
    }
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The check's name from the recipe.
    pub name: String,
    /// Its kind: `"http"`, `"tcp"`, `"command"`, `"file"` or `"metadata"`.
    pub kind: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub duration: Duration,
    /// What was expected and what was seen, in one or a few lines.
    pub detail: String,
}

/// How the whole suite went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteReport {
    /// Whether the container booted and every check passed.
    pub passed: bool,
    /// One outcome per check, in recipe order.
    pub checks: Vec<CheckOutcome>,
    /// Why the container did not boot or did not stay up (also in the
    /// detail of every check it failed).
    pub boot_error: Option<String>,
}

/// Progress of a suite, for whoever shows it. Both methods have empty
/// defaults.
pub trait CheckEvents: Send + Sync {
    /// A check is about to run.
    fn check_started(&self, _name: &str) {}
    /// A check is done.
    fn check_finished(&self, _outcome: &CheckOutcome) {}
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl CheckEvents for NoEvents {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_plan_wipes_its_env_values_and_file_contents() {
        let mut plan = BootPlan {
            image: "img".into(),
            env: vec![("TOKEN".into(), "s3cret-env".into())],
            files: vec![("/run/secrets/db".into(), b"s3cret-file".to_vec())],
            timeout: Duration::from_secs(1),
            run_id: "r".into(),
            redaction: Redaction::none(),
        };
        plan.wipe();
        assert_eq!(plan.env[0].0, "TOKEN");
        assert!(plan.env[0].1.is_empty());
        assert!(plan.files[0].1.is_empty());
    }

    #[test]
    fn wipe_env_keeps_names_and_zeroes_values() {
        let mut env = vec![("A".to_owned(), "one".to_owned())];
        wipe_env(&mut env);
        assert_eq!(env, vec![("A".to_owned(), String::new())]);
    }
}
