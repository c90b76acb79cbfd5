//! run_suite against a real Docker engine, on busybox images built by hand:
//! every kind of check passes on a good image and fails, saying why, on a
//! bad one; a container that exits fails its checks with its exit code; no
//! container of a run is left behind. Skipped without an engine unless
//! `KILN_REQUIRE_ENGINE=1` or `CI=true`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_check::{BootPlan, NoEvents, SuiteReport, run_suite};
use kiln_engine::testing::{TestImage, engine_or_skip};
use kiln_engine::{Docker, RUN_LABEL};
use kiln_recipe::{
    Check, CheckKind, CommandCheck, Duration as RecipeDuration, FileCheck, HttpCheck,
    MetadataCheck, Mode, Owner, Probe, TcpCheck,
};

const HTTPD: [&str; 7] = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"];

fn image() -> TestImage {
    TestImage::busybox().expect("/bin/busybox (busybox-static) is needed")
}

/// The image every check passes on.
fn good_image() -> TestImage {
    image()
        .file("/www/health", "ok\n", 0o644)
        .file_owned("/www/index.html", "<h1>kiln</h1>\n", 0o644, 1000, 1000)
        .file("/etc/motd", "golden\n", 0o644)
        .dir("/tmp", 0o1777)
        .user("1000:1000")
        .entrypoint(&HTTPD)
        .expose("8080/tcp")
        .label(
            "org.opencontainers.image.source",
            "https://example.invalid/web",
        )
}

/// The same service gone wrong in every way a check can see.
fn bad_image() -> TestImage {
    image()
        .file("/www/health", "degraded\n", 0o644)
        .file("/usr/sbin/sshd", "#!/bin/sh\n", 0o755)
        .file("/etc/motd", "tarnished\n", 0o600)
        .entrypoint(&HTTPD)
}

fn run_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("kiln-check-test-{test}-{}-{nanos:x}", std::process::id())
}

fn ms(n: u64) -> RecipeDuration {
    RecipeDuration::from_millis(n)
}

fn probe(threshold: u32, deadline_ms: u64) -> Probe {
    Probe {
        healthy_threshold: threshold,
        interval: ms(100),
        timeout: ms(2000),
        deadline: ms(deadline_ms),
    }
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

fn check(name: &str, kind: CheckKind) -> Check {
    Check {
        name: name.to_owned(),
        kind,
    }
}

fn http(path: &str, body: Option<&str>, deadline_ms: u64) -> CheckKind {
    CheckKind::Http(HttpCheck {
        port: 8080,
        path: path.into(),
        status: 200,
        body_contains: body.map(str::to_owned),
        probe: probe(2, deadline_ms),
    })
}

fn command(args: &[&str], stdout: Option<&str>) -> CheckKind {
    CheckKind::Command(CommandCheck {
        argv: argv(args),
        exit_code: 0,
        stdout_contains: stdout.map(str::to_owned),
        stderr_contains: None,
    })
}

fn file(path: &str, exists: bool) -> FileCheck {
    FileCheck {
        path: path.into(),
        exists,
        contains: None,
        mode: None,
        owner: None,
    }
}

fn mode(bits: u32) -> Option<Mode> {
    Some(Mode::new(bits).expect("mode"))
}

/// One check of every kind, each of which the good image passes; the
/// readiness probes give up after `patience_ms`.
fn checks(patience_ms: u64) -> Vec<Check> {
    vec![
        check("health endpoint", http("/health", Some("ok"), patience_ms)),
        check("index", http("/", Some("kiln"), patience_ms)),
        check(
            "port open",
            CheckKind::Tcp(TcpCheck {
                port: 8080,
                probe: probe(1, patience_ms),
            }),
        ),
        check(
            "busybox answers",
            command(&["/bin/busybox", "echo", "hi"], Some("hi")),
        ),
        check(
            "boot env",
            command(
                &["/bin/sh", "-c", "echo \"level=$LOG_LEVEL\""],
                Some("level=debug"),
            ),
        ),
        check(
            "secret readable",
            command(&["/bin/busybox", "cat", "/run/secrets/db"], Some("s3cret")),
        ),
        check(
            "no ssh daemon",
            CheckKind::File(file("/usr/sbin/sshd", false)),
        ),
        check(
            "motd",
            CheckKind::File(FileCheck {
                contains: Some("golden".into()),
                mode: mode(0o644),
                owner: Some(Owner { uid: 0, gid: 0 }),
                ..file("/etc/motd", true)
            }),
        ),
        check(
            "site owner",
            CheckKind::File(FileCheck {
                owner: Some(Owner {
                    uid: 1000,
                    gid: 1000,
                }),
                ..file("/www/index.html", true)
            }),
        ),
        check(
            "secret file",
            CheckKind::File(FileCheck {
                mode: mode(0o400),
                owner: Some(Owner {
                    uid: 1000,
                    gid: 1000,
                }),
                ..file("/run/secrets/db", true)
            }),
        ),
        check(
            "runs as non-root",
            CheckKind::Metadata(MetadataCheck {
                user: Some("1000:1000".into()),
                exposed: Some(vec!["8080".parse().expect("port")]),
                entrypoint: Some(argv(&HTTPD)),
                labels: Some(BTreeMap::from([(
                    "org.opencontainers.image.source".into(),
                    "https://example.invalid/web".into(),
                )])),
                ..MetadataCheck::default()
            }),
        ),
    ]
}

fn plan(image: String, run_id: &str) -> BootPlan {
    BootPlan {
        image,
        env: vec![("LOG_LEVEL".into(), "debug".into())],
        files: vec![("/run/secrets/db".into(), b"s3cret".to_vec())],
        timeout: Duration::from_secs(60),
        run_id: run_id.to_owned(),
        redaction: kiln_check::Redaction::none(),
    }
}

/// Load `image`, run `checks` on it, and check that no container of the
/// run is left.
async fn suite(docker: &Docker, image: &TestImage, test: &str, checks: &[Check]) -> SuiteReport {
    let id = image.load(docker).await.expect("load the test image");
    let run = run_id(test);
    let report = run_suite(docker, &plan(id, &run), checks, &NoEvents).await;
    let left = docker
        .containers_labelled(RUN_LABEL, &run)
        .await
        .expect("list containers");
    assert!(
        left.is_empty(),
        "containers of run {run} left behind: {left:?}"
    );
    report.expect("the suite runs")
}

fn detail<'a>(report: &'a SuiteReport, name: &str) -> &'a str {
    &report
        .checks
        .iter()
        .find(|c| c.name == name)
        .expect(name)
        .detail
}

#[tokio::test]
async fn a_good_image_passes_every_kind_of_check() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let report = suite(&docker, &good_image(), "good", &checks(10_000)).await;
    for outcome in &report.checks {
        assert!(
            outcome.passed,
            "{} failed: {}",
            outcome.name, outcome.detail
        );
    }
    assert!(report.passed && report.boot_error.is_none());
    assert!(
        detail(&report, "health endpoint").contains(": status 200 after "),
        "{report:#?}"
    );
    assert!(
        detail(&report, "health endpoint").ends_with(", 2 in a row"),
        "{report:#?}"
    );
    assert_eq!(
        detail(&report, "motd"),
        "/etc/motd: file, mode 0o644, owner 0:0, 7 bytes, contains \"golden\""
    );
}

#[tokio::test]
async fn a_bad_image_fails_every_kind_of_check_saying_why() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let mut checks = checks(1_500);
    checks.push(check(
        "closed port",
        CheckKind::Tcp(TcpCheck {
            port: 9090,
            probe: probe(1, 1_000),
        }),
    ));
    checks.push(check("false", command(&["/bin/busybox", "false"], None)));
    let started = Instant::now();
    let report = suite(&docker, &bad_image(), "bad", &checks).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(!report.passed);
    assert_eq!(
        report.boot_error, None,
        "the container ran: only checks failed"
    );
    let d = |name| detail(&report, name);

    assert!(
        d("health endpoint")
            .contains("status 200 but the body does not contain \"ok\" (body: \"degraded\\n\")")
    );
    assert!(
        d("index").contains("status 404 (expected 200) after "),
        "{}",
        d("index")
    );
    assert!(
        d("closed port")
            .contains("(container port 9090): connection accepted, then closed at once"),
        "{}",
        d("closed port")
    );
    assert!(
        d("false").starts_with("[\"/bin/busybox\", \"false\"]: exit code 1 (expected 0)"),
        "{}",
        d("false")
    );
    assert!(
        d("no ssh daemon").starts_with("/usr/sbin/sshd: exists (file, mode 0o755"),
        "{}",
        d("no ssh daemon")
    );
    assert_eq!(
        d("motd"),
        "/etc/motd: does not contain \"golden\"; it starts \"tarnished\\n\"; mode 0o600 (expected 0o644)"
    );
    assert_eq!(d("site owner"), "/www/index.html does not exist");
    // The image runs as root, so the secret is root's.
    assert_eq!(
        d("secret file"),
        "/run/secrets/db: owner 0:0 (expected 1000:1000)"
    );
    assert_eq!(
        d("runs as non-root"),
        "user is not set, so root (expected \"1000:1000\"); 8080/tcp not exposed (the image exposes nothing); \
         label org.opencontainers.image.source is not set (expected \"https://example.invalid/web\")"
    );
    for passing in [
        "port open",
        "busybox answers",
        "boot env",
        "secret readable",
    ] {
        assert!(
            report.checks.iter().any(|c| c.name == passing && c.passed),
            "{passing}: {}",
            d(passing)
        );
    }
}

#[tokio::test]
async fn a_wrong_entrypoint_in_metadata_is_named() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let expect_sh = check(
        "entrypoint",
        CheckKind::Metadata(MetadataCheck {
            entrypoint: Some(argv(&["/bin/sh"])),
            ..MetadataCheck::default()
        }),
    );
    let report = suite(&docker, &good_image(), "entrypoint", &[expect_sh]).await;
    assert_eq!(
        report.checks[0].detail,
        format!("entrypoint {:?} (expected [\"/bin/sh\"])", HTTPD)
    );
}

#[tokio::test]
async fn a_container_that_exits_at_once_fails_with_its_exit_code() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = image().entrypoint(&["/bin/busybox", "false"]);
    let checks = [
        check("health", http("/health", None, 30_000)),
        check("motd", CheckKind::File(file("/etc/motd", false))),
    ];
    let started = Instant::now();
    let report = suite(&docker, &image, "exits", &checks).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no deadline waited out: {:?}",
        started.elapsed()
    );
    assert!(!report.passed);
    assert!(
        report
            .boot_error
            .as_deref()
            .is_some_and(|e| e.contains("exited with code 1")),
        "{report:#?}"
    );
    // The probe waits on the service and fails with the exit; the file
    // check runs beside it and may have read the file before the exit was
    // seen (a stopped container's files can still be read): it then keeps
    // its verdict.
    let [health, motd] = &report.checks[..] else {
        panic!("two outcomes: {report:#?}")
    };
    assert!(!health.passed);
    assert!(
        health.detail.starts_with("container exited with code 1"),
        "{}",
        health.detail
    );
    assert!(
        motd.passed || motd.detail.starts_with("container exited with code 1"),
        "{motd:?}"
    );
}

#[tokio::test]
async fn a_crash_during_a_check_ends_the_wait_and_shows_the_log() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = image().entrypoint(&[
        "/bin/sh",
        "-c",
        "echo booting; sleep 1; echo 'fatal: no config' >&2; exit 4",
    ]);
    let checks = [
        check("health", http("/health", None, 30_000)),
        check("echo", command(&["/bin/busybox", "true"], None)),
    ];
    let started = Instant::now();
    let report = suite(&docker, &image, "crash", &checks).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no deadline waited out: {:?}",
        started.elapsed()
    );
    // The command runs beside the probe: it passed if it finished while
    // the container was up (it keeps that verdict), else it failed with the
    // crash. The probe waiting on the crashed service fails with the exit
    // code and the log, and so does the suite.
    let [health, echo] = &report.checks[..] else {
        panic!("two outcomes: {report:#?}")
    };
    assert!(
        echo.passed || echo.detail.starts_with("container exited with code 4"),
        "{echo:?}"
    );
    assert!(!health.passed && !report.passed);
    assert!(
        health.detail.starts_with("container exited with code 4"),
        "{}",
        health.detail
    );
    assert!(
        health.detail.ends_with("booting\nfatal: no config"),
        "{}",
        health.detail
    );
}

#[tokio::test]
async fn an_entrypoint_that_does_not_exist_is_a_failed_boot() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = image().entrypoint(&["/bin/not-there"]);
    let report = suite(
        &docker,
        &image,
        "no-entrypoint",
        &[check("motd", CheckKind::File(file("/etc/motd", false)))],
    )
    .await;
    assert!(!report.passed);
    let boot_error = report.boot_error.as_deref().expect("boot error");
    assert!(
        boot_error.starts_with("the container did not start: ") && boot_error.contains("not-there"),
        "{boot_error}"
    );
    assert_eq!(report.checks[0].detail, boot_error);
}

/// A shell command that marks `/tmp/MINE`, then waits (at most about 30 s)
/// for `/tmp/OTHER` to appear, printing `met` when it does.
fn meet(mine: &str, other: &str) -> CheckKind {
    let script = format!(
        "touch /tmp/{mine}; i=0; while [ ! -e /tmp/{other} ]; do i=$((i+1)); [ $i -gt 30 ] && exit 1; sleep 1; done; echo met"
    );
    command(&["/bin/busybox", "sh", "-c", &script], Some("met"))
}

#[tokio::test]
async fn independent_checks_run_at_the_same_time_and_report_in_recipe_order() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    // Each of the two commands waits for the other's mark: both pass only
    // if each runs while the other does. Run one after the other, the
    // first would wait in vain and fail. No clock is compared.
    let checks = [
        check("left", meet("left", "right")),
        check("motd", CheckKind::File(file("/etc/motd", true))),
        check("right", meet("right", "left")),
        check("never", CheckKind::File(file("/etc/never", true))),
    ];
    let report = suite(&docker, &good_image(), "overlap", &checks).await;
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["left", "motd", "right", "never"]);
    let passed: Vec<bool> = report.checks.iter().map(|c| c.passed).collect();
    assert_eq!(passed, [true, true, true, false], "{report:#?}");
    assert!(!report.passed, "a failing check still fails the suite");
}
