//! The recipe fixtures: every malformed recipe under `fixtures/recipes/bad`
//! fails with exactly the diagnostic its `.expected` file names, and the
//! contract's complete example under `fixtures/recipes/good` parses.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_recipe::{
    BaseRef, BootSecretTarget, CheckKind, Duration, LayerKind, Mode, Owner, Port, Protocol,
    RunCommand, SecretSource,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/recipes")
}

/// Parses `bad/NAME.toml` and compares its one diagnostic with
/// `bad/NAME.expected` (`LINE:COLUMN: message-substring`). Gives what went
/// wrong, so that one run lists every failing case.
fn check(name: &str) -> Result<(), String> {
    let dir = fixtures().join("bad");
    let toml = dir.join(format!("{name}.toml"));
    let expected_path = dir.join(format!("{name}.expected"));
    let expected = fs::read_to_string(&expected_path)
        .map_err(|e| format!("{name}: cannot read {}: {e}", expected_path.display()))?;
    let expected = expected.trim_end();
    let (location, substring) = expected
        .split_once(": ")
        .ok_or_else(|| format!("{name}: .expected is not `LINE:COLUMN: message`: {expected:?}"))?;
    let err = match kiln_recipe::load(&toml) {
        Ok(_) => return Err(format!("{name}: parsed, but should fail with {expected:?}")),
        Err(err) => err,
    };
    let diagnostics = err.diagnostics();
    let [first] = diagnostics else {
        let all: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        return Err(format!(
            "{name}: expected exactly one diagnostic, got {}: {all:#?}",
            all.len()
        ));
    };
    let got = format!("{}:{}", first.line, first.column);
    if got != location || !first.message.contains(substring) {
        return Err(format!(
            "{name}:\n  expected {expected}\n  got      {got}: {}",
            first.message
        ));
    }
    // The error's own Display must locate the problem too.
    let shown = err.to_string();
    let located = format!("{}:{location}: ", toml.display());
    if !shown.starts_with(&located) {
        return Err(format!(
            "{name}: Display {shown:?} does not start with {located:?}"
        ));
    }
    if first.source_line.is_empty() && first.line != 1 {
        return Err(format!("{name}: empty source line for line {}", first.line));
    }
    Ok(())
}

#[test]
fn every_bad_recipe_fails_where_and_how_expected() {
    let dir = fixtures().join("bad");
    let mut cases = Vec::new();
    let mut orphans = Vec::new();
    for entry in fs::read_dir(&dir).expect("fixtures/recipes/bad exists") {
        let path = entry.expect("readable folder entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => cases.push(stem),
            Some("expected") if !dir.join(format!("{stem}.toml")).exists() => orphans.push(stem),
            _ => {}
        }
    }
    cases.sort();
    assert!(
        orphans.is_empty(),
        ".expected files without a .toml: {orphans:?}"
    );
    assert!(
        cases.len() >= 24,
        "only {} malformed recipes; the suite needs at least 24",
        cases.len()
    );
    let failures: Vec<String> = cases.iter().filter_map(|name| check(name).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn check_reports_a_missing_expected_file() {
    let err = check("no-such-case").expect_err("a case without files fails");
    assert!(err.contains("no-such-case.expected"), "{err}");
}

#[test]
fn the_contract_example_parses() {
    let path = fixtures().join("good/full.toml");
    let r = kiln_recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.path, path);

    // [image]
    assert_eq!(r.image.name.as_str(), "web");
    assert_eq!(r.image.version.as_deref(), Some("1.4.2"));
    assert_eq!(r.image.base, BaseRef::Scratch);
    assert_eq!(r.image.epoch, Some(0));
    assert_eq!(r.image.context, Path::new("."));
    let platform = r.image.platform.as_ref().expect("platform");
    assert_eq!((platform.os(), platform.architecture()), ("linux", "amd64"));

    // [config]
    let c = &r.config;
    assert_eq!(
        c.entrypoint.as_deref(),
        Some(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"].map(String::from)[..])
    );
    assert_eq!(c.cmd, Some(vec![]));
    assert_eq!(
        c.env,
        kiln_recipe::Env::from([("PATH".to_owned(), "/bin".to_owned())])
    );
    assert_eq!(c.workdir.as_deref(), Some("/www"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        c.expose,
        [Port {
            number: 8080,
            protocol: Protocol::Tcp
        }]
    );
    assert_eq!(
        c.labels
            .get("org.opencontainers.image.source")
            .map(String::as_str),
        Some("https://example.com/web")
    );
    assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(c.volumes, ["/data"]);

    // [[layer]]
    let names: Vec<_> = r.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["busybox", "site", "motd"]);
    let LayerKind::Files(busybox) = &r.layers[0].kind else {
        panic!("busybox is a file layer")
    };
    assert_eq!(busybox.owner, Owner { uid: 0, gid: 0 });
    assert_eq!(busybox.files[0].src, "rootfs/busybox");
    assert_eq!(busybox.files[0].dest, "/bin/busybox");
    assert_eq!(busybox.files[0].mode.map(Mode::bits), Some(0o755));
    assert_eq!(busybox.files[0].owner, None);
    assert_eq!(
        (
            busybox.symlinks[0].path.as_str(),
            busybox.symlinks[0].target.as_str()
        ),
        ("/bin/sh", "busybox")
    );
    assert_eq!(
        (
            busybox.dirs[0].path.as_str(),
            busybox.dirs[0].mode.map(Mode::bits)
        ),
        ("/tmp", Some(0o1777))
    );
    let LayerKind::Files(site) = &r.layers[1].kind else {
        panic!("site is a file layer")
    };
    assert_eq!(
        site.owner,
        Owner {
            uid: 1000,
            gid: 1000
        }
    );
    assert_eq!(
        (site.files[0].src.as_str(), site.files[0].dest.as_str()),
        ("site/", "/www/")
    );
    assert_eq!(site.files[0].exclude, ["**/*.tmp"]);
    assert_eq!(site.files[0].mode, None);
    let LayerKind::Run(motd) = &r.layers[2].kind else {
        panic!("motd is a run layer")
    };
    assert_eq!(
        motd.run,
        RunCommand::Shell("echo 'golden' > /etc/motd".to_owned())
    );
    assert_eq!(motd.secrets, ["api_token"]);
    assert_eq!(motd.env.get("MODE").map(String::as_str), Some("build"));
    assert!(!motd.network);

    // [secrets]
    assert_eq!(r.secrets.len(), 2);
    assert_eq!(
        r.secrets["api_token"].from,
        SecretSource::Env("API_TOKEN".to_owned())
    );
    assert_eq!(
        r.secrets["db_password"].from,
        SecretSource::Env("TEST_DB_PASSWORD".to_owned())
    );

    // [boot]
    assert_eq!(
        r.boot.secrets["db_password"],
        BootSecretTarget::Env("DB_PASSWORD".to_owned())
    );
    assert_eq!(
        r.boot.env.get("LOG_LEVEL").map(String::as_str),
        Some("debug")
    );
    assert_eq!(r.boot.timeout, Duration::from_millis(60_000));

    // [[check]]: every kind, given values and defaults.
    let kinds: Vec<_> = r.checks.iter().map(|c| c.kind.key()).collect();
    assert_eq!(
        kinds,
        ["http", "tcp", "command", "file", "file", "metadata"]
    );
    let CheckKind::Http(http) = &r.checks[0].kind else {
        panic!("http")
    };
    assert_eq!(r.checks[0].name, "health endpoint");
    assert_eq!(
        (http.port, http.path.as_str(), http.status),
        (8080, "/health", 200)
    );
    assert_eq!(http.body_contains.as_deref(), Some("ok"));
    assert_eq!(http.probe.healthy_threshold, 2);
    assert_eq!(http.probe.interval, Duration::from_millis(500));
    assert_eq!(http.probe.timeout, Duration::from_millis(2_000));
    assert_eq!(http.probe.deadline, Duration::from_millis(30_000));
    let CheckKind::Tcp(tcp) = &r.checks[1].kind else {
        panic!("tcp")
    };
    assert_eq!(tcp.port, 8080);
    assert_eq!(tcp.probe, kiln_recipe::Probe::default());
    assert_eq!(tcp.probe.healthy_threshold, 1);
    assert_eq!(tcp.probe.interval, Duration::from_millis(1_000));
    assert_eq!(tcp.probe.timeout, Duration::from_millis(5_000));
    let CheckKind::Command(cmd) = &r.checks[2].kind else {
        panic!("command")
    };
    assert_eq!(cmd.argv, ["/bin/busybox", "echo", "hi"]);
    assert_eq!(cmd.exit_code, 0);
    assert_eq!(cmd.stdout_contains.as_deref(), Some("hi"));
    assert_eq!(cmd.stderr_contains, None);
    let CheckKind::File(no_sshd) = &r.checks[3].kind else {
        panic!("file")
    };
    assert_eq!(
        (no_sshd.path.as_str(), no_sshd.exists),
        ("/usr/sbin/sshd", false)
    );
    let CheckKind::File(motd) = &r.checks[4].kind else {
        panic!("file")
    };
    assert_eq!((motd.path.as_str(), motd.exists), ("/etc/motd", true));
    assert_eq!(motd.contains.as_deref(), Some("golden"));
    assert_eq!((motd.mode, motd.owner), (None, None));
    let CheckKind::Metadata(meta) = &r.checks[5].kind else {
        panic!("metadata")
    };
    assert_eq!(meta.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        meta.exposed,
        Some(vec![Port {
            number: 8080,
            protocol: Protocol::Tcp
        }])
    );
    assert_eq!((meta.entrypoint.as_ref(), meta.env.as_ref()), (None, None));

    // [promote]
    assert_eq!(r.promote.channels, ["stable"]);
    assert_eq!(
        r.promote.sign,
        Some(SecretSource::File("keys/release.key".into()))
    );
    assert_eq!(
        r.promote.push.as_deref(),
        Some("docker://registry.example.com/team/web")
    );
}

#[test]
fn a_folder_means_its_kiln_toml() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("kiln.toml"), "[image]\nname = \"x\"\n").expect("write recipe");
    let r = kiln_recipe::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.path, dir.path().join("kiln.toml"));
    assert_eq!(r.image.name.as_str(), "x");
}

#[test]
fn an_unreadable_recipe_names_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = kiln_recipe::load(dir.path()).expect_err("an empty folder has no recipe");
    let wanted = dir.path().join("kiln.toml");
    assert!(
        matches!(&err, kiln_recipe::RecipeError::Io { path, .. } if *path == wanted),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&wanted.display().to_string()),
        "{err}"
    );
    assert!(err.diagnostics().is_empty());
}

#[test]
fn every_example_image_parses() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
    let mut parsed = 0;
    for entry in fs::read_dir(&images).expect("images/ exists") {
        let recipe = entry
            .expect("readable folder entry")
            .path()
            .join("kiln.toml");
        if recipe.is_file() {
            kiln_recipe::load(&recipe).unwrap_or_else(|e| panic!("{e}"));
            parsed += 1;
        }
    }
    assert!(
        parsed >= 1,
        "no images/*/kiln.toml found under {}",
        images.display()
    );
}

/// A recipe kept as serde data comes back equal: every good fixture and
/// every example image, through JSON and back.
#[test]
fn every_recipe_survives_serde_unchanged() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
    let mut files = vec![fixtures().join("good/full.toml")];
    for entry in std::fs::read_dir(&images).expect("images/") {
        let file = entry.expect("entry").path().join("kiln.toml");
        if file.is_file() {
            files.push(file);
        }
    }
    assert!(files.len() > 1, "the example images are found");
    for file in files {
        let recipe = kiln_recipe::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&recipe).expect("serialise");
        let back: kiln_recipe::Recipe = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{}: {e}\n{json}", file.display()));
        assert_eq!(back, recipe, "{}", file.display());
    }
}

#[test]
fn a_stored_value_is_parsed_again() {
    let text = "[image]\nname = \"web\"\n";
    let recipe = kiln_recipe::parse(text, Path::new("kiln.toml")).expect("parse");
    let mut json = serde_json::to_value(&recipe).expect("serialise");
    json["image"]["name"] = "Not A Name".into();
    let err = serde_json::from_value::<kiln_recipe::Recipe>(json).expect_err("invalid name");
    assert!(err.to_string().contains("invalid image name"), "{err}");
}

#[test]
fn env_keeps_the_order_written_through_a_stored_round_trip() {
    let text = "[image]\nname = \"web\"\n[config]\nenv = { ZED = \"1\", ALPHA = \"2\", MID = \"3\" }\n\
                [boot]\nenv = { B = \"1\", A = \"2\" }\n\
                [[layer]]\nname = \"l\"\nrun = \"true\"\nenv = { Y = \"1\", X = \"2\" }\n";
    let recipe = kiln_recipe::parse(text, Path::new("kiln.toml")).expect("parse");
    let keys = |env: &kiln_recipe::Env| env.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&recipe.config.env), ["ZED", "ALPHA", "MID"]);
    assert_eq!(keys(&recipe.boot.env), ["B", "A"]);
    let kiln_recipe::LayerKind::Run(run) = &recipe.layers[0].kind else {
        panic!("a run layer")
    };
    assert_eq!(keys(&run.env), ["Y", "X"]);
    let json = serde_json::to_string(&recipe).expect("serialise");
    assert!(
        json.contains(r#""env":{"ZED":"1","ALPHA":"2","MID":"3"}"#),
        "{json}"
    );
    let back: kiln_recipe::Recipe = serde_json::from_str(&json).expect("parse again");
    assert_eq!(keys(&back.config.env), ["ZED", "ALPHA", "MID"]);
    assert_eq!(back, recipe);
}
