//! One suite: boot the container, run every check at once within the
//! total timeout (reported in recipe order), and remove the container on
//! every return path.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_engine::{
    ContainerId, ContainerSpec, ContainerState, Engine, EngineError, MANAGED_LABEL, NewFile,
    RUN_LABEL,
};
use kiln_recipe::{Check, CheckKind};
use tokio::time::Instant;

use crate::excerpt::{human, tail};
use crate::{BootPlan, CheckError, CheckEvents, CheckOutcome, SuiteReport};
use crate::{command, file, identity, metadata, probe};

/// How many log lines a detail shows when the container exited.
const LOG_LINES: usize = 20;

/// A check whose engine call hangs past the total timeout is abandoned this
/// long after it: the probes stop on their own at the deadline, and this
/// margin lets them say so before being cut off.
const ABANDON_GRACE: Duration = Duration::from_millis(500);

/// Mode of the files boot secrets are written to.
const SECRET_FILE_MODE: u32 = 0o400;

/// How one check ended, before it becomes an outcome.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// It passed; what was seen.
    Pass(String),
    /// It failed; what was expected and what was seen.
    Fail(String),
    /// The container exited (with this code) while the check waited on it.
    Exited(i64),
}

/// The booted container and what the checks need to reach it.
pub(crate) struct Container<'a> {
    /// The engine it runs in.
    pub engine: &'a dyn Engine,
    /// Its id.
    pub id: ContainerId,
    /// The image it was booted from.
    pub image: &'a str,
    /// When the total timeout runs out.
    pub deadline: Instant,
    /// The total timeout, as the recipe gave it (for details).
    pub total: Duration,
    /// How secrets are masked in what is shown.
    pub redaction: &'a crate::Redaction,
}

impl Container<'_> {
    /// The exit code, if the container is no longer running.
    pub async fn exit_code(&self) -> Result<Option<i64>, EngineError> {
        Ok(match self.engine.state(&self.id).await? {
            ContainerState::Exited { code } => Some(code),
            ContainerState::Running | ContainerState::Created => None,
        })
    }

    /// The detail of a check the total timeout cut short.
    pub fn timeout_detail(&self) -> String {
        format!("boot timeout of {} exceeded", human(self.total))
    }
}

/// Boot `plan.image`, run `checks` against it (all at once; the report
/// lists them in the recipe's order), and remove the container, whatever
/// happened.
///
/// A failed check, an image that does not start and a container that exits
/// are all in the report; `Err` means the engine failed (unreachable, or
/// refusing what it should do).
///
/// **Cancellation.** Dropping the returned future (Ctrl-C) skips the
/// removal: the caller then removes the run's containers with
/// `engine.remove_labelled(kiln_engine::RUN_LABEL, &plan.run_id)`.
pub async fn run_suite(
    engine: &dyn Engine,
    plan: &BootPlan,
    checks: &[Check],
    events: &dyn CheckEvents,
) -> Result<SuiteReport, CheckError> {
    let mut container = None;
    let result = boot_and_check(engine, plan, checks, events, &mut container).await;
    // Removal happens on every path out of boot_and_check, errors included.
    let removed = match &container {
        Some(id) => engine
            .remove_container(id)
            .await
            .map_err(|source| CheckError::Cleanup {
                container: id.to_string(),
                source,
            }),
        None => Ok(()),
    };
    let report = result?;
    removed?;
    Ok(report)
}

/// The container ports the http and tcp checks reach, each once, in order.
fn check_ports(checks: &[Check]) -> Vec<u16> {
    let mut ports = Vec::new();
    for check in checks {
        let port = match &check.kind {
            CheckKind::Http(h) => h.port,
            CheckKind::Tcp(t) => t.port,
            _ => continue,
        };
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Everything but the removal; `container` is set as soon as one exists.
async fn boot_and_check(
    engine: &dyn Engine,
    plan: &BootPlan,
    checks: &[Check],
    events: &dyn CheckEvents,
    container: &mut Option<ContainerId>,
) -> Result<SuiteReport, CheckError> {
    let deadline = Instant::now() + plan.timeout;
    let boot_error = |source| CheckError::Boot {
        image: plan.image.clone(),
        source,
    };
    let labels = BTreeMap::from([
        (MANAGED_LABEL.to_owned(), "true".to_owned()),
        (RUN_LABEL.to_owned(), plan.run_id.clone()),
    ]);
    // The env may hold boot secrets: this copy is wiped when dropped too.
    let spec = WipedSpec(ContainerSpec {
        image: plan.image.clone(),
        env: plan.env.clone(),
        ports: check_ports(checks),
        labels,
        network: true,
        ..ContainerSpec::default()
    });
    let id = match engine.create_container(&spec.0).await {
        Ok(id) => id,
        Err(e @ EngineError::Rejected { .. }) => return Ok(not_booted(checks, events, &e)),
        Err(e) => return Err(boot_error(e)),
    };
    *container = Some(id.clone());

    if !plan.files.is_empty() {
        let (uid, gid) = secret_owner(engine, &id, &plan.image)
            .await
            .map_err(boot_error)?;
        for (path, content) in &plan.files {
            let file = NewFile {
                path,
                content,
                mode: SECRET_FILE_MODE,
                uid,
                gid,
            };
            match engine.put_file(&id, &file).await {
                Ok(()) => {}
                Err(e @ EngineError::Rejected { .. }) => return Ok(not_booted(checks, events, &e)),
                Err(e) => return Err(boot_error(e)),
            }
        }
    }
    match engine.start(&id).await {
        Ok(()) => {}
        Err(e @ EngineError::Rejected { .. }) => return Ok(not_booted(checks, events, &e)),
        Err(e) => return Err(boot_error(e)),
    }

    let container = Container {
        engine,
        id,
        image: &plan.image,
        deadline,
        total: plan.timeout,
        redaction: &plan.redaction,
    };
    run_checks(&container, checks, events).await
}

/// A container spec whose env values are overwritten with zeros when it is
/// dropped: they may be boot secrets.
struct WipedSpec(ContainerSpec);

impl Drop for WipedSpec {
    fn drop(&mut self) {
        crate::wipe_env(&mut self.0.env);
    }
}

/// The owner of boot secret files: the image's user, in numbers.
async fn secret_owner(
    engine: &dyn Engine,
    id: &ContainerId,
    image: &str,
) -> Result<(u32, u32), EngineError> {
    let config = engine.image_config(image).await?;
    let user = config.user.as_deref();
    if !identity::needs_lookup(user) {
        return Ok(identity::resolve_user(user, None, None));
    }
    let text = |info: Option<kiln_engine::PathInfo>| {
        info.and_then(|i| i.content)
            .map(|c| String::from_utf8_lossy(&c).into_owned())
    };
    let passwd = text(engine.read_path(id, "/etc/passwd").await?);
    let group = text(engine.read_path(id, "/etc/group").await?);
    Ok(identity::resolve_user(
        user,
        passwd.as_deref(),
        group.as_deref(),
    ))
}

/// The report of a container that never started: every check fails with
/// the engine's reason.
fn not_booted(checks: &[Check], events: &dyn CheckEvents, error: &EngineError) -> SuiteReport {
    let reason = format!(
        "the container did not start: {}",
        kiln_error_kind::Chain(error)
    );
    let outcomes = checks
        .iter()
        .map(|check| {
            events.check_started(&check.name);
            let outcome = outcome(check, false, Duration::ZERO, reason.clone());
            events.check_finished(&outcome);
            outcome
        })
        .collect();
    SuiteReport {
        passed: false,
        checks: outcomes,
        boot_error: Some(reason),
    }
}

fn outcome(check: &Check, passed: bool, duration: Duration, detail: String) -> CheckOutcome {
    CheckOutcome {
        name: check.name.clone(),
        kind: check.kind.key(),
        passed,
        duration,
        detail,
    }
}

/// The detail of every check failed by the container's exit: its code and
/// the tail of its log.
async fn exit_detail(container: &Container<'_>, code: i64, when: &str) -> String {
    // A secret of several lines cut by the engine's line limit would show
    // its last lines: fetch as many more lines as a secret spans, mask, and
    // only then keep the last LOG_LINES.
    let fetch = LOG_LINES + container.redaction.secret_lines();
    let logs = match container.engine.logs_tail(&container.id, fetch).await {
        Ok(logs) => tail(logs.as_bytes(), LOG_LINES, 4000, container.redaction),
        Err(e) => format!(
            "(its log could not be read: {})",
            kiln_error_kind::Chain(&e)
        ),
    };
    if logs.trim().is_empty() {
        format!("container exited with code {code} {when}; it logged nothing")
    } else {
        format!("container exited with code {code} {when}; last lines of its log:\n{logs}")
    }
}

/// Run every check at once, each within the total timeout: the checks are
/// independent (a readiness probe, a command and a file read need not wait
/// for one another), so the suite takes as long as its slowest check, not
/// the sum. A check that fails changes no other check's verdict. The report
/// keeps the recipe's order whatever order they finish in; `events` hear of
/// each as it starts and finishes.
async fn run_checks(
    container: &Container<'_>,
    checks: &[Check],
    events: &dyn CheckEvents,
) -> Result<SuiteReport, CheckError> {
    let runs = checks.iter().map(|check| run_one(container, check, events));
    let mut outcomes = Vec::with_capacity(checks.len());
    let mut boot_error: Option<String> = None;
    for result in futures_util::future::join_all(runs).await {
        let (outcome, exited) = result?;
        if boot_error.is_none() && exited {
            boot_error = Some(outcome.detail.lines().next().unwrap_or_default().to_owned());
        }
        outcomes.push(outcome);
    }
    Ok(SuiteReport {
        passed: boot_error.is_none() && outcomes.iter().all(|o| o.passed),
        checks: outcomes,
        boot_error,
    })
}

/// One check, from its start event to its finish event; whether the
/// container had exited under it.
async fn run_one(
    container: &Container<'_>,
    check: &Check,
    events: &dyn CheckEvents,
) -> Result<(CheckOutcome, bool), CheckError> {
    events.check_started(&check.name);
    let started = Instant::now();
    let engine_error = |source| CheckError::Engine {
        check: check.name.clone(),
        source,
    };
    let verdict = if started >= container.deadline {
        Verdict::Fail(container.timeout_detail())
    } else {
        let run = async {
            match container.exit_code().await? {
                Some(code) => Ok(Verdict::Exited(code)),
                None => run_check(container, check).await,
            }
        };
        match tokio::time::timeout_at(container.deadline + ABANDON_GRACE, run).await {
            Ok(verdict) => verdict.map_err(engine_error)?,
            Err(_) => Verdict::Fail(container.timeout_detail()),
        }
    };
    let (passed, detail, exited) = match verdict {
        Verdict::Pass(detail) => (true, detail, false),
        Verdict::Fail(detail) => (false, detail, false),
        Verdict::Exited(code) => {
            let when = format!("before check {:?} finished", check.name);
            (false, exit_detail(container, code, &when).await, true)
        }
    };
    let outcome = outcome(check, passed, started.elapsed(), detail);
    events.check_finished(&outcome);
    Ok((outcome, exited))
}

async fn run_check(container: &Container<'_>, check: &Check) -> Result<Verdict, EngineError> {
    match &check.kind {
        CheckKind::Http(http) => probe::http(container, http).await,
        CheckKind::Tcp(tcp) => probe::tcp(container, tcp).await,
        CheckKind::Command(cmd) => command::run(container, cmd).await,
        CheckKind::File(f) => file::run(container, f).await,
        CheckKind::Metadata(m) => metadata::run(container, m).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_recipe::{FileCheck, HttpCheck, Probe, TcpCheck};

    fn named(name: &str, kind: CheckKind) -> Check {
        Check {
            name: name.to_owned(),
            kind,
        }
    }

    #[test]
    fn every_http_and_tcp_port_is_published_once_in_order() {
        let http = |port| {
            CheckKind::Http(HttpCheck {
                port,
                path: "/".into(),
                status: 200,
                body_contains: None,
                probe: Probe::default(),
            })
        };
        let tcp = |port| {
            CheckKind::Tcp(TcpCheck {
                port,
                probe: Probe::default(),
            })
        };
        let file = CheckKind::File(FileCheck {
            path: "/x".into(),
            exists: true,
            contains: None,
            mode: None,
            owner: None,
        });
        let checks = vec![
            named("a", http(8080)),
            named("b", tcp(5432)),
            named("c", file),
            named("d", tcp(8080)),
            named("e", http(9090)),
        ];
        assert_eq!(check_ports(&checks), vec![8080, 5432, 9090]);
    }
}
