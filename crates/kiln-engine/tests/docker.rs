//! kiln-engine against a real Docker engine: every method of [`Engine`] on
//! tiny busybox images built by hand. Skipped without an engine unless
//! `KILN_REQUIRE_ENGINE=1` or `CI=true`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use kiln_engine::testing::{TestImage, engine_or_skip};
use kiln_engine::{
    ChangeKind, ContainerState, Docker, Engine, EngineError, NewFile, PathKind, RUN_LABEL,
};
use std::io::Read;
use support::{run_id, spec, with_cleanup};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn busybox() -> TestImage {
    TestImage::busybox().expect("/bin/busybox (busybox-static) is needed")
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A web server image: busybox httpd on 8080 serving /www.
fn web_image() -> TestImage {
    busybox()
        .file("/www/health", "ok\n", 0o644)
        .file_owned("/www/index.html", "<h1>kiln</h1>\n", 0o640, 1000, 1000)
        .file("/usr/bin/su-ish", "#!/bin/sh\n", 0o4755)
        .dir("/tmp", 0o1777)
        .symlink("/www/latest", "index.html")
        .entrypoint(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"])
        .expose("8080/tcp")
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test]
async fn an_unreachable_engine_says_so_and_what_to_do() {
    let Err(e) = Docker::connect_to("unix:///nonexistent/kiln/docker.sock").await else {
        panic!("connected to a socket that does not exist");
    };
    assert!(e.is_unreachable(), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("unix:///nonexistent/kiln/docker.sock"),
        "{message}"
    );
    assert!(
        message.contains("start dockerd") && message.contains("DOCKER_HOST"),
        "{message}"
    );

    let Err(e) = Docker::connect_to("tcp://127.0.0.1:1").await else {
        panic!("connected to port 1");
    };
    assert!(e.is_unreachable(), "{e:?}");
}

#[tokio::test]
async fn a_loaded_image_reports_its_configuration() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = busybox()
        .user("1000:1000")
        .entrypoint(&["/bin/busybox", "sleep"])
        .cmd(&["3600"])
        .workdir("/www")
        .env("MODE", "golden")
        .expose("8080/tcp")
        .expose("53/udp")
        .label(
            "org.opencontainers.image.source",
            "https://example.invalid/web",
        );
    let id = image.load(&docker).await.expect("load");
    let config = docker.image_config(&id).await.expect("inspect");
    assert_eq!(config.id, id);
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(config.entrypoint, Some(argv(&["/bin/busybox", "sleep"])));
    assert_eq!(config.cmd, Some(argv(&["3600"])));
    assert_eq!(config.workdir.as_deref(), Some("/www"));
    assert_eq!(
        config.env,
        vec![
            ("PATH".into(), "/bin".into()),
            ("MODE".into(), "golden".into())
        ]
    );
    assert_eq!(
        config.exposed,
        vec!["53/udp".to_owned(), "8080/tcp".to_owned()]
    );
    assert_eq!(
        config
            .labels
            .get("org.opencontainers.image.source")
            .map(String::as_str),
        Some("https://example.invalid/web")
    );
    assert_eq!(config.diff_ids.len(), 1);
    assert!(config.diff_ids[0].starts_with("sha256:"));

    // The tag written into the archive names the same image.
    let hex = id
        .strip_prefix("sha256:")
        .expect("an image id is sha256:HEX");
    let tag = format!("kiln-test/image:{}", &hex[..12]);
    assert_eq!(
        docker.image_config(&tag).await.expect("inspect by tag").id,
        id
    );
}

#[tokio::test]
async fn a_broken_archive_fails_with_the_engines_message() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let mut tar = tar::Builder::new(Vec::new());
    let manifest = br#"[{"Config":"missing.json","RepoTags":["kiln-test/broken:1"],"Layers":["nope/layer.tar"]}]"#;
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(manifest.len() as u64);
    tar.append_data(&mut header, "manifest.json", &manifest[..])
        .expect("tar");
    let archive = tar.into_inner().expect("tar");
    match docker
        .load_image(Box::new(std::io::Cursor::new(archive)))
        .await
    {
        Err(EngineError::LoadFailed { message }) => {
            assert!(message.contains("missing.json"), "{message}")
        }
        other => panic!("expected LoadFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_image_is_not_found() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    match docker.image_config("kiln-test/never-loaded:nope").await {
        Err(e @ EngineError::NotFound { .. }) => {
            assert!(e.to_string().contains("kiln-test/never-loaded:nope"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn a_container_boots_serves_runs_commands_and_shows_its_files() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = web_image().load(&docker).await.expect("load");
    let run = run_id("lifecycle");
    with_cleanup(&docker, &run, async {
        let mut spec = spec(&image, &run);
        spec.ports = vec![8080];
        spec.env = vec![("GREETING".into(), "hello there".into())];
        let id = docker.create_container(&spec).await.expect("create");
        assert_eq!(
            docker.state(&id).await.expect("state"),
            ContainerState::Created
        );

        // Before start: into a folder that does not exist yet, owned by the
        // image's user.
        let secret = NewFile {
            path: "/run/secrets/db",
            content: b"s3cret",
            mode: 0o400,
            uid: 1000,
            gid: 1000,
        };
        docker.put_file(&id, &secret).await.expect("put file");
        // Into an existing folder, which must keep its mode.
        let note = NewFile {
            path: "/tmp/note",
            content: b"n",
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        docker.put_file(&id, &note).await.expect("put file in /tmp");

        docker.start(&id).await.expect("start");
        assert_eq!(
            docker.state(&id).await.expect("state"),
            ContainerState::Running
        );

        let addr = docker.published_addr(&id, 8080).await.expect("published");
        assert!(addr.ip().is_loopback(), "{addr}");
        // httpd may need a moment to listen.
        let mut answer = String::new();
        for _ in 0..50 {
            answer = get(addr, "/health").await;
            if answer.contains("200 OK") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            answer.contains("200 OK") && answer.ends_with("ok\n"),
            "{answer}"
        );
        assert!(matches!(
            docker.published_addr(&id, 9999).await,
            Err(EngineError::PortNotPublished { port: 9999, .. })
        ));

        let out = docker
            .exec(
                &id,
                &argv(&["/bin/busybox", "cat", "/run/secrets/db"]),
                Duration::from_secs(10),
            )
            .await;
        let out = out.expect("exec");
        assert_eq!(
            (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
            (0, &b"s3cret"[..], &b""[..])
        );

        let out = docker
            .exec(
                &id,
                &argv(&["/bin/sh", "-c", "echo \"$GREETING\"; echo oops >&2; exit 3"]),
                Duration::from_secs(10),
            )
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, b"hello there\n");
        assert_eq!(out.stderr, b"oops\n");

        match docker
            .exec(
                &id,
                &argv(&["/bin/busybox", "sleep", "30"]),
                Duration::from_millis(300),
            )
            .await
        {
            Err(EngineError::ExecTimedOut { timeout, .. }) => {
                assert_eq!(timeout, Duration::from_millis(300))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }

        // read_path: files with content, mode (setuid too) and owner.
        let secret = docker
            .read_path(&id, "/run/secrets/db")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            (secret.kind, secret.mode, secret.uid, secret.gid),
            (PathKind::File, 0o400, 1000, 1000)
        );
        assert_eq!(secret.content.as_deref(), Some(&b"s3cret"[..]));
        let run_dir = docker
            .read_path(&id, "/run/secrets")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            (run_dir.kind, run_dir.mode, run_dir.uid),
            (PathKind::Dir, 0o755, 0)
        );
        let tmp = docker
            .read_path(&id, "/tmp")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            (tmp.kind, tmp.mode),
            (PathKind::Dir, 0o1777),
            "put_file must not touch existing folders"
        );
        let index = docker
            .read_path(&id, "/www/index.html")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            (index.mode, index.uid, index.gid, index.size),
            (0o640, 1000, 1000, 14)
        );
        let su = docker
            .read_path(&id, "/usr/bin/su-ish")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(su.mode, 0o4755);
        let link = docker
            .read_path(&id, "/www/latest")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            (link.kind, link.link_target.as_deref()),
            (PathKind::Symlink, Some("index.html"))
        );
        let busybox = docker
            .read_path(&id, "/bin/busybox")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            busybox.content.as_ref().map(Vec::len),
            usize::try_from(busybox.size).ok()
        );
        assert!(
            busybox.size > 100_000,
            "the whole binary is read: {}",
            busybox.size
        );
        // The whole root folder is a large archive: only its first header is read.
        let root = docker
            .read_path(&id, "/")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(root.kind, PathKind::Dir);
        assert_eq!(
            docker.read_path(&id, "/usr/sbin/sshd").await.expect("read"),
            None
        );
        assert_eq!(
            docker
                .read_path(&id, "/nope/deeper/still")
                .await
                .expect("read"),
            None
        );

        docker.remove_container(&id).await.expect("remove");
        docker
            .remove_container(&id)
            .await
            .expect("removing twice is fine");
        assert!(matches!(
            docker.state(&id).await,
            Err(EngineError::NotFound { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn an_exited_container_reports_its_code_and_logs() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = busybox()
        .entrypoint(&[
            "/bin/sh",
            "-c",
            // stdout and stderr reach the log through separate pipes: the pause
            // puts the stderr line last.
            "echo one; echo two; sleep 1; echo three >&2; exit 7",
        ])
        .load(&docker)
        .await
        .expect("load");
    let run = run_id("exited");
    with_cleanup(&docker, &run, async {
        let id = docker
            .create_container(&spec(&image, &run))
            .await
            .expect("create");
        docker.start(&id).await.expect("start");
        let mut state = docker.state(&id).await.expect("state");
        for _ in 0..100 {
            if state != ContainerState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            state = docker.state(&id).await.expect("state");
        }
        assert_eq!(state, ContainerState::Exited { code: 7 });
        let logs = docker.logs_tail(&id, 2).await.expect("logs");
        assert!(
            logs.contains("two\n") && logs.contains("three\n") && !logs.contains("one"),
            "{logs:?}"
        );
        // Files can still be read from a stopped container.
        assert!(
            docker
                .read_path(&id, "/bin/busybox")
                .await
                .expect("read")
                .is_some()
        );
        // exec cannot: the engine refuses, it is not gone.
        let refused = docker
            .exec(
                &id,
                &argv(&["/bin/busybox", "true"]),
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(&refused, Err(e) if e.is_rejected()), "{refused:?}");
    })
    .await;
}

#[tokio::test]
async fn a_missing_entrypoint_is_refused_on_start() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = busybox()
        .entrypoint(&["/bin/not-there"])
        .load(&docker)
        .await
        .expect("load");
    let run = run_id("bad-entrypoint");
    with_cleanup(&docker, &run, async {
        let id = docker
            .create_container(&spec(&image, &run))
            .await
            .expect("create");
        match docker.start(&id).await {
            Err(e @ EngineError::Rejected { .. }) => {
                assert!(e.to_string().contains("not-there"), "{e}")
            }
            other => panic!("expected the start to be refused, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn remove_labelled_leaves_nothing_of_the_run() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = busybox()
        .entrypoint(&["/bin/busybox", "sleep", "600"])
        .load(&docker)
        .await
        .expect("load");
    let run = run_id("labelled");
    let other_run = run_id("labelled-other");
    with_cleanup(&docker, &other_run, async {
        let running = docker
            .create_container(&spec(&image, &run))
            .await
            .expect("create");
        docker.start(&running).await.expect("start");
        let _created = docker
            .create_container(&spec(&image, &run))
            .await
            .expect("create");
        let bystander = docker
            .create_container(&spec(&image, &other_run))
            .await
            .expect("create");
        let mut no_network = spec(&image, &run);
        no_network.network = false;
        let _isolated = docker
            .create_container(&no_network)
            .await
            .expect("create without network");

        assert_eq!(
            docker
                .containers_labelled(RUN_LABEL, &run)
                .await
                .expect("list")
                .len(),
            3
        );
        assert_eq!(
            docker
                .remove_labelled(RUN_LABEL, &run)
                .await
                .expect("remove"),
            3
        );
        assert!(
            docker
                .containers_labelled(RUN_LABEL, &run)
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            docker
                .remove_labelled(RUN_LABEL, &run)
                .await
                .expect("remove again"),
            0
        );
        // Another run's container is left alone.
        assert_eq!(
            docker
                .containers_labelled(RUN_LABEL, &other_run)
                .await
                .expect("list"),
            vec![bystander]
        );
    })
    .await;
}

#[tokio::test]
async fn a_finished_container_reports_its_code_changes_and_filesystem() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = busybox()
        .file("/data/old", "old\n", 0o644)
        .file("/data/mod", "a\n", 0o644)
        .load(&docker)
        .await
        .expect("load");
    let host = tempfile::tempdir().expect("tmp");
    std::fs::write(host.path().join("token"), "t0ken").expect("write");
    let run = run_id("changes");
    with_cleanup(&docker, &run, async {
        let mut s = spec(&image, &run);
        s.network = false;
        s.entrypoint = Some(argv(&["/bin/busybox", "sh", "-c"]));
        s.cmd = Some(argv(&[
            "cp /mnt/ro/token /data/new && echo b >> /data/mod && rm /data/old \
             && ! echo x 2>/dev/null > /mnt/ro/token && exit 5",
        ]));
        s.read_only_mounts = vec![kiln_engine::ReadOnlyMount {
            source: host.path().to_owned(),
            target: "/mnt/ro".into(),
        }];
        let id = docker.create_container(&s).await.expect("create");
        docker.start(&id).await.expect("start");
        // A non-zero exit is an answer, not an error.
        assert_eq!(docker.wait(&id).await.expect("wait"), 5);

        let mut changes: Vec<(String, ChangeKind)> = docker
            .changes(&id)
            .await
            .expect("changes")
            .into_iter()
            .map(|c| (c.path, c.kind))
            .filter(|(p, _)| p.starts_with("/data"))
            .collect();
        changes.sort();
        assert_eq!(
            changes,
            vec![
                ("/data".into(), ChangeKind::Modified),
                ("/data/mod".into(), ChangeKind::Modified),
                ("/data/new".into(), ChangeKind::Added),
                ("/data/old".into(), ChangeKind::Deleted),
            ]
        );

        let export = host.path().join("export.tar");
        let size = docker.export_to_file(&id, &export).await.expect("export");
        assert_eq!(std::fs::metadata(&export).expect("export").len(), size);
        let mut archive = tar::Archive::new(std::fs::File::open(&export).expect("open"));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            if path.starts_with("data/") && path != "data/" {
                let mut content = String::new();
                entry.read_to_string(&mut content).expect("content");
                seen.push((path, content));
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("data/mod".into(), "a\nb\n".into()),
                ("data/new".into(), "t0ken".into()),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn image_id_names_what_the_engine_holds_and_nothing_else() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let id = busybox()
        .file("/id-probe", "1\n", 0o644)
        .load(&docker)
        .await
        .expect("load");
    assert_eq!(
        docker.image_id(&id).await.expect("inspect").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        docker
            .image_id("kiln-test/never-loaded:nope")
            .await
            .expect("an absent image is an answer"),
        None
    );
    // A well-formed id the engine never saw.
    let absent = format!("sha256:{}", "0".repeat(64));
    assert_eq!(docker.image_id(&absent).await.expect("inspect"), None);
}

#[tokio::test]
async fn the_upper_folder_holds_exactly_what_the_container_changed() {
    let Some(docker) = engine_or_skip().await else {
        return;
    };
    let image = busybox()
        .file("/data/keep", "keep\n", 0o644)
        .file("/data/mod", "a\n", 0o644)
        .load(&docker)
        .await
        .expect("load");
    let run = run_id("upper");
    with_cleanup(&docker, &run, async {
        let mut s = spec(&image, &run);
        s.network = false;
        s.entrypoint = Some(argv(&["/bin/busybox", "sh", "-c"]));
        s.cmd = Some(argv(&[
            "echo new > /data/new && chmod 0640 /data/new && echo b >> /data/mod",
        ]));
        let id = docker.create_container(&s).await.expect("create");
        docker.start(&id).await.expect("start");
        assert_eq!(docker.wait(&id).await.expect("wait"), 0);

        // This engine is local and its data root readable (tests run as
        // root beside dockerd): the upper folder is offered.
        let dirs = docker
            .overlay_dirs(&id)
            .await
            .expect("inspect")
            .expect("a local overlay2 engine offers the upper folder");
        let upper = dirs.upper;
        // Below it: the container's own init layer, then the image's.
        assert!(dirs.lowers.len() >= 2, "{:?}", dirs.lowers);
        assert!(dirs.lowers[0].to_string_lossy().contains("-init"));
        assert!(
            dirs.lowers[1..]
                .iter()
                .any(|l| l.join("data/keep").exists()),
            "{:?}",
            dirs.lowers
        );
        let read = |p: &str| std::fs::read_to_string(upper.join(p)).expect(p);
        assert_eq!(read("data/new"), "new\n");
        assert_eq!(read("data/mod"), "a\nb\n");
        assert!(
            !upper.join("data/keep").exists(),
            "an unchanged file is not in the upper folder"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(upper.join("data/new"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);

        // Turned off, the engine answers None: the export is the way.
        let export_only = docker.clone().with_upper_dir_reads(false);
        assert_eq!(export_only.overlay_dirs(&id).await.expect("answer"), None);
    })
    .await;
}
