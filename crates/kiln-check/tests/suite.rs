//! run_suite's logic on a recording fake engine: how the container is
//! booted and always removed, retries and their streaks, deadlines, a
//! container that dies, and what each detail says. The http and tcp checks
//! talk to real sockets on 127.0.0.1 that stand in for the container.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kiln_check::{BootPlan, CheckEvents, CheckOutcome, NoEvents, SuiteReport, run_suite};
use kiln_engine::{ExecOutput, ImageConfig, MANAGED_LABEL, RUN_LABEL};
use kiln_recipe::{
    Check, CheckKind, CommandCheck, Duration as RecipeDuration, FileCheck, HttpCheck,
    MetadataCheck, Probe, TcpCheck,
};
use support::fake::{self, ExecScript, FakeEngine};
use support::server;

const PORT: u16 = 8080;

fn ms(n: u64) -> RecipeDuration {
    RecipeDuration::from_millis(n)
}

/// A quick probe: `threshold` in a row, attempts every 10ms, each 1s at
/// most, given up after `deadline_ms`.
fn probe(threshold: u32, deadline_ms: u64) -> Probe {
    Probe {
        healthy_threshold: threshold,
        interval: ms(10),
        timeout: ms(1000),
        deadline: ms(deadline_ms),
    }
}

fn check(name: &str, kind: CheckKind) -> Check {
    Check {
        name: name.to_owned(),
        kind,
    }
}

fn http(path: &str, body: Option<&str>, probe: Probe) -> CheckKind {
    CheckKind::Http(HttpCheck {
        port: PORT,
        path: path.to_owned(),
        status: 200,
        body_contains: body.map(str::to_owned),
        probe,
    })
}

fn command(argv: &[&str]) -> CheckKind {
    CheckKind::Command(CommandCheck {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        exit_code: 0,
        stdout_contains: None,
        stderr_contains: None,
    })
}

fn file(path: &str, exists: bool) -> CheckKind {
    CheckKind::File(FileCheck {
        path: path.to_owned(),
        exists,
        contains: None,
        mode: None,
        owner: None,
    })
}

fn plan(timeout: Duration) -> BootPlan {
    BootPlan {
        image: "sha256:feed".into(),
        env: vec![
            ("LOG_LEVEL".into(), "debug".into()),
            ("DB_PASSWORD".into(), "pw".into()),
        ],
        files: Vec::new(),
        timeout,
        run_id: "run-7".into(),
        redaction: kiln_check::Redaction::none(),
    }
}

async fn run(engine: &FakeEngine, plan: &BootPlan, checks: &[Check]) -> SuiteReport {
    let report = run_suite(engine, plan, checks, &NoEvents)
        .await
        .expect("the suite runs");
    assert_eq!(
        engine.removed(),
        vec!["fake0123456789".to_owned()],
        "the container is removed"
    );
    assert_eq!(report.checks.len(), checks.len());
    report
}

fn only(report: &SuiteReport) -> &CheckOutcome {
    assert_eq!(report.checks.len(), 1);
    &report.checks[0]
}

#[tokio::test]
async fn the_container_is_booted_from_the_plan_and_removed() {
    let engine = FakeEngine::new()
        .config(ImageConfig {
            user: Some("1000:1000".into()),
            ..ImageConfig::default()
        })
        .path("/etc/motd", fake::file("golden\n", 0o644, 0, 0));
    let mut plan = plan(Duration::from_secs(10));
    plan.files = vec![("/run/secrets/db".into(), b"s3cret".to_vec())];
    let (addr, _) = server::http(vec![(200, "ok")]).await;
    let engine = engine.port(PORT, addr).port(5432, server::silent().await);
    let checks = vec![
        check("health", http("/health", None, probe(1, 1000))),
        check(
            "db port",
            CheckKind::Tcp(TcpCheck {
                port: 5432,
                probe: probe(1, 1000),
            }),
        ),
        check("again", http("/", None, probe(1, 1000))),
        check("motd", file("/etc/motd", true)),
    ];
    let report = run(&engine, &plan, &checks).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.boot_error, None);

    let spec = &engine.created()[0];
    assert_eq!(spec.image, "sha256:feed");
    assert_eq!(
        spec.ports,
        vec![PORT, 5432],
        "each check port once, in order"
    );
    assert_eq!(spec.env, plan.env);
    assert!(spec.network, "published ports need the bridge");
    assert_eq!(
        spec.labels.get(MANAGED_LABEL).map(String::as_str),
        Some("true")
    );
    assert_eq!(
        spec.labels.get(RUN_LABEL).map(String::as_str),
        Some("run-7")
    );
    assert_eq!(
        (spec.cmd.clone(), spec.entrypoint.clone(), spec.user.clone()),
        (None, None, None)
    );

    let files = engine.files();
    assert_eq!(files.len(), 1);
    assert_eq!(
        (
            files[0].path.as_str(),
            files[0].content.as_slice(),
            files[0].mode,
            files[0].uid,
            files[0].gid
        ),
        ("/run/secrets/db", &b"s3cret"[..], 0o400, 1000, 1000),
        "a secret file belongs to the image's user"
    );
    let calls = engine.calls();
    let position = |call: &str| calls.iter().position(|c| c.starts_with(call)).expect(call);
    assert!(
        position("create") < position("put") && position("put") < position("start"),
        "{calls:?}"
    );
    assert!(
        calls.last().is_some_and(|c| c.starts_with("remove")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_secret_file_goes_to_a_named_user_as_passwd_says() {
    let engine = FakeEngine::new()
        .config(ImageConfig {
            user: Some("web".into()),
            ..ImageConfig::default()
        })
        .path(
            "/etc/passwd",
            fake::file(
                "root:x:0:0::/:/bin/sh\nweb:x:1000:1001::/www:/bin/false\n",
                0o644,
                0,
                0,
            ),
        );
    let mut plan = plan(Duration::from_secs(10));
    plan.files = vec![("/run/secrets/key".into(), b"k".to_vec())];
    let report = run(&engine, &plan, &[]).await;
    assert!(report.passed);
    assert_eq!((engine.files()[0].uid, engine.files()[0].gid), (1000, 1001));
}

#[tokio::test]
async fn an_http_streak_restarts_after_a_failure() {
    let (addr, served) = server::http(vec![
        (200, "ok"),
        (200, "ok"),
        (503, "busy"),
        (200, "ok"),
        (200, "ok"),
        (200, "ok"),
    ])
    .await;
    let engine = FakeEngine::new().port(PORT, addr);
    let checks = [check("health", http("/health", Some("ok"), probe(3, 5000)))];
    let report = run(&engine, &plan(Duration::from_secs(10)), &checks).await;
    let outcome = only(&report);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        6,
        "two successes, a failure, then three in a row"
    );
    assert_eq!(
        outcome.detail,
        format!("GET http://{addr}/health: status 200 after 6 attempts, 3 in a row")
    );
    assert_eq!(outcome.kind, "http");
}

#[tokio::test]
async fn an_http_check_gives_up_at_its_deadline_saying_what_it_saw() {
    let (addr, served) = server::http(vec![(503, "busy")]).await;
    let engine = FakeEngine::new().port(PORT, addr);
    let checks = [check("health", http("/health", None, probe(1, 300)))];
    let started = Instant::now();
    let report = run(&engine, &plan(Duration::from_secs(10)), &checks).await;
    let outcome = only(&report);
    assert!(!outcome.passed && !report.passed);
    let attempts = served.load(Ordering::SeqCst);
    assert!(
        (5..=31).contains(&attempts),
        "about one attempt per 10ms for 300ms: {attempts}"
    );
    assert_eq!(
        outcome.detail,
        format!("GET http://{addr}/health: status 503 (expected 200) after {attempts} attempts")
    );
    assert!(
        outcome.duration >= Duration::from_millis(280),
        "{:?}",
        outcome.duration
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no waiting beyond the deadline"
    );
    assert_eq!(
        report.boot_error, None,
        "a failed check is not a boot failure"
    );
}

#[tokio::test]
async fn http_failures_are_described() {
    let (wrong_body, _) = server::http(vec![(200, "<h1>maintenance</h1>")]).await;
    let engine = FakeEngine::new().port(PORT, wrong_body);
    let report = run(
        &engine,
        &plan(Duration::from_secs(10)),
        &[check("body", http("/", Some("ok"), probe(1, 50)))],
    )
    .await;
    let detail = &only(&report).detail;
    assert!(
        detail.contains(
            "status 200 but the body does not contain \"ok\" (body: \"<h1>maintenance</h1>\") after"
        ),
        "{detail}"
    );

    let refused = server::refusing().await;
    let engine = FakeEngine::new().port(PORT, refused);
    let report = run(
        &engine,
        &plan(Duration::from_secs(10)),
        &[check("up", http("/", None, probe(1, 50)))],
    )
    .await;
    let detail = &only(&report).detail;
    assert!(
        detail.starts_with(&format!("GET http://{refused}/: connection refused after ")),
        "{detail}"
    );

    let closing = server::closing().await;
    let engine = FakeEngine::new().port(PORT, closing);
    let report = run(
        &engine,
        &plan(Duration::from_secs(10)),
        &[check("up", http("/", None, probe(1, 50)))],
    )
    .await;
    let detail = &only(&report).detail;
    assert!(
        detail.contains("connection closed before a response"),
        "{detail}"
    );

    let silent = server::silent().await;
    let engine = FakeEngine::new().port(PORT, silent);
    let slow = Probe {
        healthy_threshold: 1,
        interval: ms(10),
        timeout: ms(50),
        deadline: ms(200),
    };
    let report = run(
        &engine,
        &plan(Duration::from_secs(10)),
        &[check("up", http("/", None, slow))],
    )
    .await;
    let detail = &only(&report).detail;
    assert!(
        detail.contains(": no answer within 50ms after "),
        "{detail}"
    );
}

#[tokio::test]
async fn a_threshold_never_reached_says_how_close_it_came() {
    let (addr, _) = server::http(vec![
        (200, "ok"),
        (503, ""),
        (200, "ok"),
        (503, ""),
        (200, "ok"),
        (503, ""),
    ])
    .await;
    let engine = FakeEngine::new().port(PORT, addr);
    let report = run(
        &engine,
        &plan(Duration::from_secs(10)),
        &[check("flaky", http("/", None, probe(2, 200)))],
    )
    .await;
    let detail = &only(&report).detail;
    assert!(
        detail.contains("status 503 (expected 200) after "),
        "{detail}"
    );
    assert!(
        detail.ends_with("(at best 1 of 2 successes in a row)"),
        "{detail}"
    );
}

#[tokio::test]
async fn tcp_needs_a_connection_that_stays_open() {
    let tcp = |port| {
        CheckKind::Tcp(TcpCheck {
            port,
            probe: probe(2, 300),
        })
    };
    let engine = FakeEngine::new()
        .port(1, server::silent().await)
        .port(2, server::closing().await)
        .port(3, server::refusing().await);
    let checks = [
        check("open", tcp(1)),
        check("proxy only", tcp(2)),
        check("closed", tcp(3)),
    ];
    let report = run(&engine, &plan(Duration::from_secs(10)), &checks).await;
    let [open, proxied, closed] = &report.checks[..] else {
        panic!("three outcomes")
    };
    assert!(open.passed, "{open:?}");
    assert!(
        open.detail
            .ends_with("connection accepted after 2 attempts, 2 in a row"),
        "{}",
        open.detail
    );
    assert_eq!(open.kind, "tcp");
    assert!(!proxied.passed);
    assert!(
        proxied
            .detail
            .contains("connection accepted, then closed at once"),
        "{}",
        proxied.detail
    );
    assert!(!closed.passed);
    assert!(
        closed
            .detail
            .contains("(container port 3): connection refused after"),
        "{}",
        closed.detail
    );
}

#[tokio::test]
async fn the_total_timeout_bounds_every_check_and_quick_ones_do_not_wait() {
    let (addr, _) = server::http(vec![(503, "")]).await;
    let engine = FakeEngine::new()
        .port(PORT, addr)
        .exec(&["/bin/busybox", "sleep", "60"], ExecScript::Hang)
        .exec(&["/bin/true"], ExecScript::Output(ExecOutput::default()));
    let checks = [
        check("health", http("/health", None, probe(1, 30_000))),
        check("sleep", command(&["/bin/busybox", "sleep", "60"])),
        check("motd", file("/etc/motd", false)),
        check("true", command(&["/bin/true"])),
    ];
    let started = Instant::now();
    let report = run(&engine, &plan(Duration::from_millis(300)), &checks).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 30s probe deadline did not count"
    );
    let [health, sleep, motd, cmd] = &report.checks[..] else {
        panic!("four outcomes")
    };
    assert!(
        health.detail.starts_with(&format!(
            "boot timeout of 300ms exceeded; GET http://{addr}/health: status 503"
        )),
        "{}",
        health.detail
    );
    // The command that never ends is cut off by the same total timeout.
    assert!(
        sleep.detail.starts_with("boot timeout of 300ms exceeded"),
        "{}",
        sleep.detail
    );
    // The checks run at once: the quick ones did not wait for the slow
    // ones, and keep their verdicts.
    for quick in [motd, cmd] {
        assert!(quick.passed, "{quick:?}");
    }
    assert!(
        engine
            .calls_of("exec")
            .iter()
            .any(|c| c.contains("/bin/true")),
        "the quick command ran beside the slow ones: {:?}",
        engine.calls()
    );
    assert!(!health.passed && !sleep.passed && !report.passed);
}

#[tokio::test]
async fn a_command_still_running_at_the_timeout_fails() {
    let engine = FakeEngine::new().exec(&["/bin/busybox", "sleep", "60"], ExecScript::Hang);
    let report = run(
        &engine,
        &plan(Duration::from_millis(200)),
        &[check("sleep", command(&["/bin/busybox", "sleep", "60"]))],
    )
    .await;
    let outcome = only(&report);
    assert!(!outcome.passed);
    assert_eq!(
        outcome.detail,
        "boot timeout of 200ms exceeded; [\"/bin/busybox\", \"sleep\", \"60\"] was still running"
    );
}

#[tokio::test]
async fn a_crash_fails_the_waiting_check_at_once_and_the_suite() {
    let engine = FakeEngine::new()
        .port(PORT, server::refusing().await)
        .exits(Duration::from_millis(150), 3)
        .logs("starting\nlistening on :8080\npanic: boom\n")
        .path("/etc/motd", fake::file("golden", 0o644, 0, 0));
    let checks = [
        check("health", http("/health", None, probe(1, 30_000))),
        check("motd", file("/etc/motd", true)),
        check("echo", command(&["/bin/busybox", "echo"])),
    ];
    let started = Instant::now();
    let report = run(&engine, &plan(Duration::from_secs(60)), &checks).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the crash ended the wait"
    );
    assert!(!report.passed);
    let boot_error = report.boot_error.as_deref().expect("boot_error is set");
    assert!(
        boot_error.contains("container exited with code 3"),
        "{boot_error}"
    );
    // The checks run at once: those that finished while the container ran
    // keep their verdicts; the one waiting on it fails with the crash.
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["health", "motd", "echo"], "recipe order");
    let health = &report.checks[0];
    assert!(!health.passed);
    assert!(
        health
            .detail
            .starts_with("container exited with code 3 before check \"health\" finished"),
        "{}",
        health.detail
    );
    assert!(
        health
            .detail
            .ends_with("starting\nlistening on :8080\npanic: boom"),
        "{}",
        health.detail
    );
    assert!(report.checks[1].passed, "{:?}", report.checks[1]);
    assert!(report.checks[2].passed, "{:?}", report.checks[2]);
}

#[tokio::test]
async fn a_container_that_exits_at_once_fails_every_check_with_its_code() {
    let engine = FakeEngine::new().exits(Duration::ZERO, 1);
    let checks = [
        check("motd", file("/etc/motd", true)),
        check("meta", CheckKind::Metadata(MetadataCheck::default())),
    ];
    let report = run(&engine, &plan(Duration::from_secs(10)), &checks).await;
    assert!(!report.passed);
    for outcome in &report.checks {
        assert_eq!(
            outcome.detail,
            format!(
                "container exited with code 1 before check {:?} finished; it logged nothing",
                outcome.name
            )
        );
    }
}

#[tokio::test]
async fn an_image_that_cannot_start_is_a_report_not_an_error() {
    let engine = FakeEngine::new().failing("start", fake::rejected);
    let checks = [
        check("motd", file("/etc/motd", true)),
        check("true", command(&["/bin/true"])),
    ];
    let report = run(&engine, &plan(Duration::from_secs(10)), &checks).await;
    assert!(!report.passed);
    let boot_error = report.boot_error.as_deref().expect("boot error");
    assert!(
        boot_error.starts_with("the container did not start: ") && boot_error.contains("/bin/nope"),
        "{boot_error}"
    );
    assert!(
        report
            .checks
            .iter()
            .all(|c| !c.passed && c.detail == boot_error)
    );
}

#[tokio::test]
async fn an_engine_that_fails_is_an_error_and_the_container_is_still_removed() {
    let engine = FakeEngine::new().failing("read", fake::unreachable);
    let checks = [check("motd", file("/etc/motd", true))];
    let error = run_suite(&engine, &plan(Duration::from_secs(10)), &checks, &NoEvents)
        .await
        .expect_err("an error");
    assert!(error.is_unreachable(), "{error}");
    // The message names the check; the engine's error is its source, told
    // once when the chain is shown.
    assert_eq!(error.to_string(), "check \"motd\"");
    let chain = kiln_error_kind::Chain(&error).to_string();
    assert!(
        chain.starts_with("check \"motd\": no container engine reachable"),
        "{chain}"
    );
    assert_eq!(error.kind(), kiln_error_kind::ErrorKind::Environment);
    assert_eq!(engine.removed(), vec!["fake0123456789".to_owned()]);

    let engine = FakeEngine::new().failing("create", fake::unreachable);
    let error = run_suite(&engine, &plan(Duration::from_secs(10)), &checks, &NoEvents)
        .await
        .expect_err("an error");
    assert!(error.is_unreachable());
    assert!(engine.removed().is_empty(), "nothing was created");

    let engine = FakeEngine::new().failing("remove", fake::unreachable);
    let error = run_suite(&engine, &plan(Duration::from_secs(10)), &[], &NoEvents)
        .await
        .expect_err("an error");
    assert!(
        error.to_string().contains("docker rm -f fake0123456789"),
        "{error}"
    );
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl CheckEvents for Recorder {
    fn check_started(&self, name: &str) {
        self.0.lock().expect("lock").push(format!("start {name}"));
    }
    fn check_finished(&self, outcome: &CheckOutcome) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("finish {} {}", outcome.name, outcome.passed));
    }
}

#[tokio::test]
async fn events_follow_the_checks_in_recipe_order() {
    let engine = FakeEngine::new()
        .path("/bin/sh", fake::symlink("busybox"))
        .path("/bin/busybox", fake::file("ELF", 0o755, 0, 0))
        .exec(
            &["/bin/busybox", "echo", "hi"],
            ExecScript::Output(ExecOutput {
                exit_code: 1,
                stdout: b"".to_vec(),
                stderr: b"applet not found\n".to_vec(),
            }),
        )
        .config(ImageConfig {
            user: Some("1000:1000".into()),
            exposed: vec!["8080/tcp".into()],
            labels: BTreeMap::from([("team".into(), "web".into())]),
            ..ImageConfig::default()
        });
    let checks = [
        check("shell", file("/bin/sh", true)),
        check("no ssh", file("/usr/sbin/sshd", false)),
        check("echo", command(&["/bin/busybox", "echo", "hi"])),
        check(
            "meta",
            CheckKind::Metadata(MetadataCheck {
                user: Some("1000:1000".into()),
                exposed: Some(vec!["8080".parse().expect("port")]),
                ..MetadataCheck::default()
            }),
        ),
    ];
    let events = Recorder::default();
    let report = run_suite(&engine, &plan(Duration::from_secs(10)), &checks, &events)
        .await
        .expect("runs");
    assert_eq!(
        *events.0.lock().expect("lock"),
        [
            "start shell",
            "finish shell true",
            "start no ssh",
            "finish no ssh true",
            "start echo",
            "finish echo false",
            "start meta",
            "finish meta true"
        ]
    );
    let details: Vec<&str> = report.checks.iter().map(|c| c.detail.as_str()).collect();
    assert_eq!(
        details[0],
        "/bin/sh -> /bin/busybox: file, mode 0o755, owner 0:0, 3 bytes"
    );
    assert_eq!(details[1], "/usr/sbin/sshd does not exist");
    assert_eq!(
        details[2],
        "[\"/bin/busybox\", \"echo\", \"hi\"]: exit code 1 (expected 0)\nstdout: (empty)\nstderr:\napplet not found"
    );
    assert_eq!(details[3], "user \"1000:1000\"; exposes 8080/tcp");
    let kinds: Vec<&str> = report.checks.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, ["file", "file", "command", "metadata"]);
    assert!(!report.passed);
}
