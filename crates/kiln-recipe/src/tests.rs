//! Data-driven tests of the parser: one `check(input, expect)` helper and
//! many tiny recipes, each about one rule.

use std::path::Path;

use crate::*;

/// Parses `input` and compares the outcome with `expect`: `"ok"`, or the
/// first diagnostic as `LINE:COLUMN: message-substring`.
#[track_caller]
fn check(input: &str, expect: &str) {
    let got = kiln_parse(input);
    match (got, expect) {
        (Ok(_), "ok") => {}
        (Ok(_), _) => panic!("parsed, but expected {expect:?}\n--- input\n{input}"),
        (Err(e), "ok") => panic!("expected ok, got {e}\n--- input\n{input}"),
        (Err(e), _) => {
            let first = &e.diagnostics()[0];
            let (location, substring) = expect.split_once(": ").expect("LINE:COLUMN: message");
            let got = format!("{}:{}", first.line, first.column);
            assert!(
                got == location && first.message.contains(substring),
                "expected {expect}\n     got {got}: {}\n--- input\n{input}",
                first.message
            );
        }
    }
}

/// Every diagnostic, as `LINE:COLUMN`, in order.
#[track_caller]
fn check_all(input: &str, expect: &[&str]) {
    let e = kiln_parse(input).expect_err("the recipe should not parse");
    let got: Vec<String> = e
        .diagnostics()
        .iter()
        .map(|d| format!("{}:{}", d.line, d.column))
        .collect();
    let all: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(got, expect, "{all:#?}");
}

fn kiln_parse(input: &str) -> Result<Recipe, RecipeError> {
    parse(input, Path::new("kiln.toml"))
}

#[track_caller]
fn ok(input: &str) -> Recipe {
    kiln_parse(input).unwrap_or_else(|e| panic!("{e}\n--- input\n{input}"))
}

const IMAGE: &str = "[image]\nname = \"t\"\n";

/// `IMAGE` then `rest`: the first line of `rest` is line 3.
fn with_image(rest: &str) -> String {
    format!("{IMAGE}{rest}")
}

// ---- what parses, and the defaults

#[test]
fn minimal_recipe_gets_the_defaults() {
    let r = ok(IMAGE);
    assert_eq!(r.image.base, BaseRef::Scratch);
    assert_eq!(r.image.context, Path::new("."));
    assert_eq!((r.image.version.as_deref(), r.image.epoch), (None, None));
    assert_eq!(r.config, ConfigSection::default());
    assert!(r.layers.is_empty() && r.checks.is_empty() && r.secrets.is_empty());
    assert_eq!(r.boot.timeout, Duration::from_millis(120_000));
    assert_eq!(r.promote, Promote::default());
    assert_eq!(r.path, Path::new("kiln.toml"));
}

#[test]
fn bases_of_every_transport() {
    let base = |b: &str| {
        ok(&format!("[image]\nname = \"t\"\nbase = \"{b}\"\n"))
            .image
            .base
    };
    assert_eq!(
        base("oci:../base:v1"),
        BaseRef::Oci {
            dir: "../base".into(),
            reference: Some("v1".into())
        }
    );
    assert_eq!(base("oci-archive:base.tar").transport(), "oci-archive");
    assert_eq!(
        base("docker-archive:b.tar:web:1").transport(),
        "docker-archive"
    );
    assert_eq!(base("docker-daemon:web:1").transport(), "docker-daemon");
    assert_eq!(
        base("docker-daemon:127.0.0.1:5000/team/web:1.0").transport(),
        "docker-daemon"
    );
    // The engine would refuse these later, as a failed step (exit 1);
    // they are bad input and said so here.
    for bad in [
        "docker-daemon:Web:1",
        "docker-daemon:web:1 0",
        "docker-daemon:web_:1",
        "docker-daemon:team//web:1",
    ] {
        let e = bad.parse::<BaseRef>().expect_err(bad).to_string();
        assert!(e.contains("docker-daemon:NAME:TAG"), "{bad}: {e}");
    }
    assert_eq!(
        base("recipe:../base"),
        BaseRef::Recipe {
            path: "../base".into()
        }
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    assert!(
        matches!(base(&format!("kiln:base@{digest}")), BaseRef::Kiln { digest: Some(d), .. } if d == digest)
    );
    assert!(matches!(
        base("docker://127.0.0.1:5000/team/base:1"),
        BaseRef::Registry { tag: Some(t), .. } if t == "1"
    ));
}

#[test]
fn image_keys() {
    let r = ok(
        "[image]\nname = \"team/web\"\nversion = \"1.4.2\"\nepoch = 1_700_000_000\ncontext = \"src\"\n",
    );
    assert_eq!(r.image.name.as_str(), "team/web");
    assert_eq!(r.image.version.as_deref(), Some("1.4.2"));
    assert_eq!(r.image.epoch, Some(1_700_000_000));
    assert_eq!(r.image.context, Path::new("src"));
}

#[test]
fn platform_key() {
    let r = ok("[image]\nname = \"t\"\nplatform = \"linux/arm64\"\n");
    let platform = r.image.platform.expect("platform");
    assert_eq!((platform.os(), platform.architecture()), ("linux", "arm64"));
    assert_eq!(platform.variant(), None);
    assert_eq!(platform.to_string(), "linux/arm64");
    let r = ok("[image]\nname = \"t\"\nplatform = \"linux/arm/v7\"\n");
    assert_eq!(r.image.platform.expect("platform").variant(), Some("v7"));
    assert_eq!(ok("[image]\nname = \"t\"\n").image.platform, None);
    for bad in [
        "linux",
        "linux/",
        "Linux/arm64",
        "linux/arm/v7/x",
        "/arm64",
        "linux arm64",
    ] {
        check(
            &format!("[image]\nname = \"t\"\nplatform = {bad:?}\n"),
            "3:12: invalid platform",
        );
    }
    check(
        "[image]\nname = \"t\"\nplatform = 64\n",
        "3:12: must be a string",
    );
}

#[test]
fn config_ports_of_every_protocol() {
    let r = ok(&with_image(
        "[config]\nexpose = [80, \"53/udp\", \"9000/sctp\", \"443/tcp\"]\n",
    ));
    let shown: Vec<String> = r.config.expose.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["80/tcp", "53/udp", "9000/sctp", "443/tcp"]);
}

#[test]
fn run_layers_in_both_forms() {
    let r = ok(&with_image(
        "[secrets.tok]\nfrom = \"file:/etc/tok\"\n\
         [[layer]]\nname = \"a\"\nrun = [\"/bin/app\", \"--init\"]\nnetwork = true\nsecrets = [\"tok\"]\n\
         [[layer]]\nname = \"b\"\nrun = \"echo hi\"\n",
    ));
    let LayerKind::Run(a) = &r.layers[0].kind else {
        panic!("run layer")
    };
    assert_eq!(
        a.run,
        RunCommand::Exec(vec!["/bin/app".into(), "--init".into()])
    );
    assert!(a.network);
    assert_eq!(a.secrets, ["tok"]);
    let LayerKind::Run(b) = &r.layers[1].kind else {
        panic!("run layer")
    };
    assert_eq!(b.run, RunCommand::Shell("echo hi".into()));
    assert!(!b.network && b.secrets.is_empty() && b.env.is_empty());
    assert_eq!(r.secrets["tok"].from, SecretSource::File("/etc/tok".into()));
}

#[test]
fn file_layer_entries_in_table_syntax() {
    let r = ok(&with_image(
        "[[layer]]\nname = \"a\"\nowner = \"5:6\"\n\
         [[layer.files]]\nsrc = \"./app\"\ndest = \"/bin/app\"\nmode = 0o4755\nowner = \"0:0\"\n\
         [[layer.dirs]]\npath = \"/data\"\n\
         [[layer.symlinks]]\npath = \"/bin/a\"\ntarget = \"/bin/app\"\nowner = \"1:1\"\n",
    ));
    let LayerKind::Files(f) = &r.layers[0].kind else {
        panic!("file layer")
    };
    assert_eq!(f.owner, Owner { uid: 5, gid: 6 });
    assert_eq!(f.files[0].mode.map(Mode::bits), Some(0o4755));
    assert_eq!(f.files[0].owner, Some(Owner { uid: 0, gid: 0 }));
    assert_eq!(
        (f.dirs[0].path.as_str(), f.dirs[0].mode, f.dirs[0].owner),
        ("/data", None, None)
    );
    assert_eq!(f.symlinks[0].owner, Some(Owner { uid: 1, gid: 1 }));
}

#[test]
fn modes_in_any_radix_that_is_clearly_meant() {
    let mode = |m: &str| {
        let r = ok(&with_image(&format!(
            "[[layer]]\nname = \"a\"\ndirs = [{{ path = \"/d\", mode = {m} }}]\n"
        )));
        let LayerKind::Files(f) = &r.layers[0].kind else {
            panic!("file layer")
        };
        f.dirs[0].mode.map(Mode::bits)
    };
    assert_eq!(mode("0o755"), Some(0o755));
    assert_eq!(mode("0o7777"), Some(0o7777));
    assert_eq!(mode("0x1ed"), Some(0o755));
    assert_eq!(mode("493"), Some(0o755));
    assert_eq!(mode("0"), Some(0));
    assert_eq!(mode("64"), Some(0o100));
}

#[test]
fn http_defaults_and_given_values() {
    let r = ok(&with_image(
        "[[check]]\nname = \"a\"\nhttp = { port = 80 }\n\
         [[check]]\nname = \"b\"\nhttp = { port = 81, path = \"/x?y=1\" }\nstatus = 204\ninterval = \"1m30s\"\ndeadline = \"1h\"\ntimeout = \"250ms\"\n",
    ));
    let CheckKind::Http(a) = &r.checks[0].kind else {
        panic!("http")
    };
    assert_eq!(
        (
            a.port,
            a.path.as_str(),
            a.status,
            a.body_contains.as_deref()
        ),
        (80, "/", 200, None)
    );
    assert_eq!(a.probe, Probe::default());
    let CheckKind::Http(b) = &r.checks[1].kind else {
        panic!("http")
    };
    assert_eq!((b.port, b.path.as_str(), b.status), (81, "/x?y=1", 204));
    assert_eq!(b.probe.interval, Duration::from_millis(90_000));
    assert_eq!(b.probe.deadline, Duration::from_millis(3_600_000));
    assert_eq!(b.probe.timeout, Duration::from_millis(250));
    assert_eq!(b.probe.healthy_threshold, 1);
}

#[test]
fn command_file_and_metadata_checks() {
    let r = ok(&with_image(
        "[[check]]\nname = \"c\"\ncommand = [\"false\"]\nexit_code = 1\nstderr_contains = \"no\"\n\
         [[check]]\nname = \"f\"\nfile = \"/etc/motd\"\nmode = 0o644\nowner = \"0:0\"\n\
         [[check]]\nname = \"m\"\nmetadata = { user = \"1\", exposed = [\"53/udp\"], entrypoint = [\"/a\"], cmd = [], env = { A = \"1\" }, workdir = \"/w\", labels = { \"a.b\" = \"c\" } }\n",
    ));
    let CheckKind::Command(c) = &r.checks[0].kind else {
        panic!("command")
    };
    assert_eq!(
        (c.argv.as_slice(), c.exit_code),
        (&["false".to_owned()][..], 1)
    );
    assert_eq!(
        (c.stdout_contains.as_deref(), c.stderr_contains.as_deref()),
        (None, Some("no"))
    );
    let CheckKind::File(f) = &r.checks[1].kind else {
        panic!("file")
    };
    assert!(f.exists);
    assert_eq!(
        (f.mode.map(Mode::bits), f.owner),
        (Some(0o644), Some(Owner::default()))
    );
    let CheckKind::Metadata(m) = &r.checks[2].kind else {
        panic!("metadata")
    };
    assert_eq!(m.user.as_deref(), Some("1"));
    assert_eq!(
        m.exposed.as_ref().map(|p| p[0].to_string()).as_deref(),
        Some("53/udp")
    );
    assert_eq!(m.cmd, Some(vec![]));
    assert_eq!(
        m.env.as_ref().and_then(|e| e.get("A")).map(String::as_str),
        Some("1")
    );
    assert_eq!(m.workdir.as_deref(), Some("/w"));
    assert_eq!(
        m.labels
            .as_ref()
            .and_then(|l| l.get("a.b"))
            .map(String::as_str),
        Some("c")
    );
}

#[test]
fn boot_and_promote() {
    let r = ok(&with_image(
        "[secrets.a]\nfrom = \"env:A\"\n[secrets.b]\nfrom = \"env:B\"\n\
         [boot]\nsecrets = { a = \"env:APP_A\", b = \"file:/run/secrets/b\" }\ntimeout = \"2m\"\n\
         [promote]\nchannels = [\"stable\", \"canary-1.x\"]\nsign = \"env:KEY\"\npush = \"docker://localhost:5000/web:latest\"\n",
    ));
    assert_eq!(r.boot.secrets["a"], BootSecretTarget::Env("APP_A".into()));
    assert_eq!(
        r.boot.secrets["b"],
        BootSecretTarget::File("/run/secrets/b".into())
    );
    assert_eq!(r.boot.timeout, Duration::from_millis(120_000));
    assert_eq!(r.promote.channels, ["stable", "canary-1.x"]);
    assert_eq!(r.promote.sign, Some(SecretSource::Env("KEY".into())));
}

// ---- syntax

#[test]
fn syntax_errors() {
    check("[image\nname = \"t\"\n", "1:7: invalid TOML");
    check(
        "[image]\nname = \"t\"\nname = \"u\"\n",
        "3:1: duplicate key",
    );
    check("[image]\nname = 't\n", "2:10: invalid TOML");
    check("[image]\nname = \"t\"\nx = [1,\n", "3:8: unclosed array");
}

// ---- unknown keys: a typo anywhere is an error, with a suggestion

#[test]
fn unknown_keys() {
    check(
        "[image]\nname = \"t\"\nverison = \"1\"\n",
        "3:1: unknown key `verison` in [image]; did you mean `version`?",
    );
    check(
        "[imgae]\nname = \"t\"\n",
        "1:2: unknown key `imgae` in the recipe; did you mean `image`?",
    );
    check(&with_image("[confg]\n"), "3:2: did you mean `config`?");
    check(
        &with_image("[config]\nworkdri = \"/\"\n"),
        "4:1: did you mean `workdir`?",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nfiels = []\n"),
        "5:1: did you mean `files`?",
    );
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\nfiles = [{ src = \"a\", dest = \"/a\", exlcude = [] }]\n",
        ),
        "5:36: unknown key `exlcude` in files[0] of layer \"a\"",
    );
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\ndirs = [{ path = \"/a\", owner = \"0:0\", mdoe = 1 }]\n",
        ),
        "5:39: did you mean `mode`?",
    );
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\nsymlinks = [{ path = \"/a\", target = \"b\", mode = 0o777 }]\n",
        ),
        "5:42: unknown key `mode` in symlinks[0]",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nhttp = { port = 1, paht = \"/\" }\n"),
        "5:20: did you mean `path`?",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\ntcp = { port = 1, host = \"x\" }\n"),
        "5:19: unknown key `host` in `tcp`",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nmetadata = { usr = \"1\" }\n"),
        "5:14: did you mean `user`?",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\ncommand = [\"a\"]\nexitcode = 1\n"),
        "6:1: did you mean `exit_code`?",
    );
    check(
        &with_image("[secrets.a]\nfrom = \"env:A\"\nform = \"x\"\n"),
        "5:1: unknown key `form`",
    );
    check(
        &with_image("[boot]\ntimout = \"1s\"\n"),
        "4:1: did you mean `timeout`?",
    );
    check(
        &with_image("[promote]\nchanels = []\n"),
        "4:1: did you mean `channels`?",
    );
    check(
        &format!("whatever = 1\n{IMAGE}"),
        "1:1: unknown key `whatever` in the recipe; remove it",
    );
}

#[test]
fn a_misspelt_required_key_is_reported_once() {
    check_all("[image]\nnmae = \"t\"\n", &["2:1"]);
    check_all("[imgae]\nname = \"t\"\n", &["1:2"]);
    check_all(
        &with_image("[[layer]]\nnme = \"a\"\nrun = \"x\"\n"),
        &["4:1"],
    );
    check_all(
        &with_image("[[layer]]\nname = \"a\"\nrnu = \"x\"\n"),
        &["5:1"],
    );
    check_all(
        &with_image("[[check]]\nname = \"a\"\nhtp = { port = 1 }\n"),
        &["5:1"],
    );
    check_all(
        &with_image("[[layer]]\nname = \"a\"\nfiles = [{ scr = \"a\", dest = \"/a\" }]\n"),
        &["5:12"],
    );
}

#[test]
fn keys_in_the_wrong_place() {
    check(
        "user = \"1\"\n[image]\nname = \"t\"\n",
        "1:1: it belongs in [config]",
    );
    check(
        "version = \"1\"\n[image]\nname = \"t\"\n",
        "1:1: it belongs in [image]",
    );
    check(
        "channels = []\n[image]\nname = \"t\"\n",
        "1:1: it belongs in [promote]",
    );
}

// ---- types

#[test]
fn wrong_types() {
    check(
        "image = 1\n",
        "1:9: [image] must be a table, not an integer",
    );
    check(
        "[image]\nname = true\n",
        "2:8: must be a string, not a boolean",
    );
    check(
        "[image]\nname = \"t\"\nepoch = \"0\"\n",
        "3:9: `epoch` in [image] must be an integer, not a string",
    );
    check(
        "[image]\nname = \"t\"\nepoch = 1979-05-27T07:32:00Z\n",
        "3:9: must be an integer, not a date-time",
    );
    check(
        &with_image("[config]\ncmd = \"serve\"\n"),
        "4:7: `cmd` in [config] must be an array, not a string",
    );
    check(
        &with_image("[config]\nentrypoint = [\"/a\", 1]\n"),
        "4:21: each entry of `entrypoint` in [config] must be a string",
    );
    check(
        &with_image("[config]\nlabels = [\"a\"]\n"),
        "4:10: must be a table, not an array",
    );
    check(
        &with_image("[config]\nenv = { DEBUG = true }\n"),
        "4:17: write DEBUG = \"true\"",
    );
    check(
        &with_image("[config]\nexpose = 8080\n"),
        "4:10: must be an array",
    );
    check(
        &with_image("[config]\nexpose = [80.5]\n"),
        "4:11: a port number or a string like \"53/udp\"",
    );
    check(
        &format!("layer = 1\n{IMAGE}"),
        "1:9: `layer` must be an array of tables",
    );
    check(
        &with_image("[check]\nname = \"a\"\n"),
        "3:1: write [[check]] with double brackets",
    );
    check(
        &format!("layer = [1]\n{IMAGE}"),
        "1:10: must be a table, not an integer",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nrun = 1\n"),
        "5:7: must be a string (run with /bin/sh -c) or an array of strings",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nrun = \"x\"\nnetwork = \"yes\"\n"),
        "6:11: must be a boolean, not a string",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nfiles = { src = \"a\" }\n"),
        "5:9: must be an array, not a table",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nfiles = [\"a\"]\n"),
        "5:10: must be a table, not a string",
    );
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\nfiles = [{ src = \"a\", dest = \"/a\", exclude = \"*.tmp\" }]\n",
        ),
        "5:46: must be an array",
    );
    check(
        &with_image("[[layer]]\nname = 1\nrun = \"x\"\n"),
        "4:8: `name` in [[layer]] number 1 must be a string",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nhttp = 8080\n"),
        "5:8: must be a table, not an integer: write http = { port = 8080",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nhttp = { port = \"8080\" }\n"),
        "5:17: must be an integer, not a string: write port = 8080",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nhttp = { port = 80.0 }\n"),
        "5:17: must be an integer, not a float",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nfile = \"/a\"\nexists = \"no\"\n"),
        "6:10: must be a boolean",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\ncommand = \"app --version\"\n"),
        "5:11: must be an array (exec form",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nfile = \"/a\"\ncontains = 1\n"),
        "6:12: must be a string",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nhttp = { port = 1 }\nhealthy_threshold = \"2\"\n"),
        "6:21: must be an integer",
    );
    check(
        &with_image("[secrets]\na = \"env:A\"\n"),
        "4:5: [secrets.a] must be a table, not a string",
    );
    check(
        &with_image("[boot]\nsecrets = [\"a\"]\n"),
        "4:11: must be a table",
    );
    check(
        &with_image("[promote]\nchannels = \"stable\"\n"),
        "4:12: must be an array",
    );
}

// ---- required keys

#[test]
fn missing_keys() {
    check("", "1:1: the recipe has no [image] table");
    check("[image]\n", "1:1: [image] is missing `name`: add name = ");
    check(
        &with_image("[[layer]]\nrun = \"x\"\n"),
        "3:1: [[layer]] number 1 is missing `name`",
    );
    check(
        &with_image("[[layer]]\nname = \"\"\nrun = \"x\"\n"),
        "4:8: is empty",
    );
    check(
        &with_image("[[check]]\ntcp = { port = 1 }\n"),
        "3:1: [[check]] number 1 is missing `name`",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nfiles = [{ src = \"a\" }]\n"),
        "5:10: is missing `dest`",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nsymlinks = [{ target = \"a\" }]\n"),
        "5:13: is missing `path`",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nhttp = { path = \"/\" }\n"),
        "5:8: `http` in check \"a\" is missing `port`",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\ntcp = {}\n"),
        "5:7: is missing `port`",
    );
    check(
        &with_image("[secrets.a]\n"),
        "3:1: [secrets.a] is missing `from`",
    );
}

// ---- values

#[test]
fn bad_values() {
    check(
        "[image]\nname = \"-web\"\n",
        "2:8: invalid image name \"-web\"",
    );
    check(
        "[image]\nname = \"t\"\nbase = \"docker://host\"\n",
        "3:8: invalid base",
    );
    check(
        "[image]\nname = \"t\"\nbase = \"kiln:Web\"\n",
        "3:8: invalid image name \"Web\"",
    );
    check(
        "[image]\nname = \"t\"\nbase = \"oci:\"\n",
        "3:8: needs a location",
    );
    check(
        "[image]\nname = \"t\"\nepoch = -1\n",
        "3:9: cannot be negative",
    );
    check(
        "[image]\nname = \"t\"\nepoch = 99999999999999999999999999999999999999999\n",
        "3:9: too large",
    );
    check("[image]\nname = \"t\"\ncontext = \"\"\n", "3:11: is empty");
    check(
        "[image]\nname = \"t\"\nversion = \".1\"\n",
        "3:11: invalid version",
    );
    check(
        &with_image("[config]\nworkdir = \"www\"\n"),
        "4:11: must be an absolute path, starting with '/': write \"/www\"",
    );
    check(
        &with_image("[config]\nvolumes = [\"/data\", \"cache\"]\n"),
        "4:21: each entry of `volumes` in [config] must be an absolute path",
    );
    check(&with_image("[config]\nuser = \"\"\n"), "4:8: is empty");
    check(
        &with_image("[config]\nexpose = [65536]\n"),
        "4:11: from 1 to 65535, not 65536",
    );
    check(
        &with_image("[config]\nexpose = [\"80/tcp\", \"http\"]\n"),
        "4:21: invalid port \"http\"",
    );
    check(
        &with_image("[config]\nenv = { \"A=B\" = \"c\" }\n"),
        "4:9: not a valid variable name",
    );
    check(
        &with_image("[secrets.\"a/b\"]\nfrom = \"env:A\"\n"),
        "3:10: invalid secret name \"a/b\"",
    );
    check(
        &with_image("[secrets.a]\nfrom = \"env:\"\n"),
        "4:8: invalid secret source \"env:\"",
    );
    check(
        &with_image("[boot]\ntimeout = \"0s\"\n"),
        "4:11: must be longer than zero",
    );
    check(
        &with_image("[boot]\ntimeout = \"1d\"\n"),
        "4:11: invalid duration \"1d\"",
    );
    check(
        &with_image("[promote]\nsign = \"key.pem\"\n"),
        "4:8: invalid secret source",
    );
    check(
        &with_image(
            "[promote]\npush = \"docker://host/web@sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
        ),
        "4:8: not a digest",
    );
    check(
        &with_image("[promote]\npush = \"docker://host\"\n"),
        "4:8: invalid push",
    );
    check(
        &with_image("[promote]\nchannels = [\"\"]\n"),
        "4:13: invalid channel name",
    );
    check(
        &with_image("[promote]\nchannels = [\"a\",\n  \"a\"]\n"),
        "5:3: channel \"a\" is listed twice (first on line 4)",
    );
}

#[test]
fn modes() {
    let dir = |m: &str| {
        with_image(&format!(
            "[[layer]]\nname = \"a\"\ndirs = [{{ path = \"/d\", mode = {m} }}]\n"
        ))
    };
    check(&dir("\"0o755\""), "5:31: write mode = 0o755 (no quotes)");
    check(
        &dir("\"rwxr-xr-x\""),
        "5:31: write mode = 0o644 (no quotes)",
    );
    check(&dir("0o10000"), "5:31: must be at most 0o7777");
    check(&dir("-1"), "5:31: must be at most 0o7777");
    check(
        &dir("755"),
        "5:31: is written in decimal (755 = 0o1363); write mode = 0o755",
    );
    check(&dir("1777"), "5:31: write mode = 0o1777");
    check(
        &with_image("[[check]]\nname = \"a\"\nfile = \"/a\"\nmode = 600\n"),
        "6:8: write mode = 0o600",
    );
}

#[test]
fn owners() {
    let layer_owner = |o: &str| {
        with_image(&format!(
            "[[layer]]\nname = \"a\"\nowner = {o}\ndirs = []\n"
        ))
    };
    check(&layer_owner("\"0:0\""), "ok");
    check(&layer_owner("\"root\""), "5:9: invalid owner \"root\"");
    check(
        &layer_owner("\"1000\""),
        "5:9: write numeric ids as \"UID:GID\"",
    );
    check(
        &layer_owner("1000"),
        "5:9: must be a string, not an integer: write owner = \"1000:1000\"",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nfile = \"/a\"\nowner = \"a:b\"\n"),
        "6:9: invalid owner",
    );
}

#[test]
fn durations() {
    let interval = |d: &str| {
        with_image(&format!(
            "[[check]]\nname = \"a\"\ntcp = {{ port = 1 }}\ninterval = {d}\n"
        ))
    };
    check(&interval("\"250ms\""), "ok");
    check(&interval("\"1h30m\""), "ok");
    check(&interval("\"0s\""), "ok");
    check(&interval("\"1.5s\""), "6:12: invalid duration \"1.5s\"");
    check(&interval("\"s\""), "6:12: invalid duration");
    check(&interval("5"), "6:12: not a bare number: write \"5s\"");
    check(
        &with_image("[[check]]\nname = \"a\"\ntcp = { port = 1 }\ntimeout = \"0ms\"\n"),
        "6:11: must be longer than zero",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\ntcp = { port = 1 }\ndeadline = \"0s\"\n"),
        "6:12: must be longer than zero",
    );
}

// ---- layers

#[test]
fn layer_kinds() {
    check(&with_image("[[layer]]\nname = \"a\"\ndirs = []\n"), "ok");
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\nsymlinks = [{ path = \"/a\", target = \"b\" }]\nrun = \"x\"\n",
        ),
        "6:1: has both `symlinks` and `run`",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nowner = \"0:0\"\n"),
        "3:1: layer \"a\" has no content",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\ndirs = []\nenv = { A = \"b\" }\n"),
        "6:1: `env` is only for run layers",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\ndirs = []\nnetwork = true\n"),
        "6:1: `network` is only for run layers",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nrun = \"\"\n"),
        "5:7: is empty",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nrun = []\n"),
        "5:7: is an empty array",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nrun = [\"a\", 2]\n"),
        "5:13: must be a string",
    );
}

#[test]
fn both_kinds_still_reports_each_half() {
    check_all(
        &with_image(
            "[[layer]]\nname = \"a\"\nfiles = [{ src = \"/a\", dest = \"/a\" }]\nrun = \"x\"\nsecrets = [\"nope\"]\n",
        ),
        &["5:18", "6:1", "7:12"],
    );
}

#[test]
fn layer_names_are_unique() {
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\ndirs = []\n[[layer]]\nname = \"b\"\ndirs = []\n[[layer]]\nname = \"a\"\ndirs = []\n",
        ),
        "10:8: duplicate layer name \"a\": a layer of that name is already on line 4",
    );
}

#[test]
fn file_paths() {
    let copy = |src: &str, dest: &str| {
        with_image(&format!(
            "[[layer]]\nname = \"a\"\nfiles = [{{ src = \"{src}\", dest = \"{dest}\" }}]\n"
        ))
    };
    check(&copy("site/", "/www/"), "ok");
    check(&copy("./", "/"), "ok");
    check(&copy("a..b/c", "/c"), "ok");
    check(&copy("app", "/bin/"), "ok");
    check(&copy("a/../../b", "/b"), "5:18: has a '..' component");
    check(&copy("..", "/b"), "5:18: has a '..' component");
    check(
        &copy("/etc/passwd", "/b"),
        "5:18: not absolute: write \"etc/passwd\"",
    );
    check(&copy("", "/b"), "5:18: is empty");
    check(
        &copy("site/", "/www"),
        "5:34: src \"site/\" is a folder (it ends in '/'), so dest must be one too: write dest = \"/www/\"",
    );
    check(
        &copy("a", "./a"),
        "5:30: must be an absolute path, starting with '/': write \"/a\"",
    );
    check(
        &copy("a", "../a"),
        "5:30: an absolute path such as \"/bin/app\"",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\ndirs = [{ path = \"tmp\" }]\n"),
        "5:18: must be an absolute path",
    );
    check(
        &with_image(
            "[[layer]]\nname = \"a\"\nsymlinks = [{ path = \"sh\", target = \"busybox\" }]\n",
        ),
        "5:22: must be an absolute path",
    );
    check(
        &with_image("[[layer]]\nname = \"a\"\nsymlinks = [{ path = \"/sh\", target = \"\" }]\n"),
        "5:38: is empty",
    );
}

#[test]
fn glob_sources() {
    let copy = |src: &str, dest: &str| {
        with_image(&format!(
            "[[layer]]\nname = \"a\"\nfiles = [{{ src = \"{src}\", dest = \"{dest}\" }}]\n"
        ))
    };
    for glob in ["site/*.html", "docs/**/*.md", "a?c", "img/[ab]*.png", "*"] {
        assert!(is_glob(glob), "{glob}");
        check(&copy(glob, "/www/"), "ok");
    }
    for literal in ["site/", "site/index.html", "a{b}"] {
        assert!(!is_glob(literal), "{literal}");
    }
    // A glob copies into a folder: dest must say so, located at dest.
    check(
        &copy("site/*.html", "/www"),
        "5:40: src \"site/*.html\" is a glob, which copies its matches into a folder, so dest must be one: write dest = \"/www/\"",
    );
    // A glob selects files; one ending in '/' is refused at src.
    check(&copy("site/*/", "/www/"), "5:18: write \"site/*/**\"");
    check(&copy("../*.html", "/www/"), "5:18: has a '..' component");
    let recipe = ok(&copy("site/*.html", "/www/"));
    let LayerKind::Files(files) = &recipe.layers[0].kind else {
        panic!("a file layer");
    };
    assert_eq!(files.files[0].src, "site/*.html");
}

#[test]
fn errors_found_after_parsing_are_located_at_their_value() {
    let text = with_image(
        "[[layer]]\nname = \"a\"\nfiles = [{ src = \"x\", dest = \"/x\" }]\n\n[[layer]]\nname = \"b\"\nfiles = [\n  { src = \"y\", dest = \"/y\" },\n  { src = \"site/*.html\", dest = \"/www/\" },\n]\n",
    );
    let at = [
        KeyStep::Key("layer"),
        KeyStep::Index(1),
        KeyStep::Key("files"),
        KeyStep::Index(1),
        KeyStep::Key("src"),
    ];
    let e = RecipeError::at_value(
        Path::new("kiln.toml"),
        &text,
        &at,
        "matches no file",
        "src matches nothing".to_owned(),
    )
    .expect("the value is there");
    assert_eq!(e.to_string(), "kiln.toml:11:11: src matches nothing");
    assert_eq!(e.kind(), ErrorKind::Input);
    // A way that leads nowhere (the file changed since) locates nothing.
    let gone = [KeyStep::Key("layer"), KeyStep::Index(7)];
    assert!(RecipeError::at_value(Path::new("k"), &text, &gone, "x", "y".to_owned()).is_none());
}

#[test]
fn run_layer_secrets() {
    let decl = "[secrets.tok]\nfrom = \"env:TOK\"\n";
    check(
        &with_image(&format!(
            "{decl}[[layer]]\nname = \"a\"\nrun = \"x\"\nsecrets = [\"tok\"]\n"
        )),
        "ok",
    );
    check(
        &with_image(&format!(
            "{decl}[[layer]]\nname = \"a\"\nrun = \"x\"\nsecrets = [\"tok\", \"tok\"]\n"
        )),
        "8:19: listed twice",
    );
    check(
        &with_image(&format!(
            "{decl}[[layer]]\nname = \"a\"\nrun = \"x\"\nsecrets = [\"tk\"]\n"
        )),
        "8:12: uses secret \"tk\", which is not declared",
    );
    // A declared secret with a broken `from` is still declared: one error, not two.
    check_all(
        &with_image(
            "[secrets.tok]\nfrom = 1\n[[layer]]\nname = \"a\"\nrun = \"x\"\nsecrets = [\"tok\"]\n",
        ),
        &["4:8"],
    );
}

// ---- checks

#[test]
fn check_kinds() {
    check(
        &with_image("[[check]]\nname = \"a\"\n"),
        "3:1: check \"a\" has no kind",
    );
    check(
        &with_image(
            "[[check]]\nname = \"a\"\nfile = \"/a\"\ncommand = [\"x\"]\nmetadata = { user = \"1\" }\n",
        ),
        "6:1: has two kinds, `file` and `command`",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\ncommand = []\n"),
        "5:11: is empty",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nmetadata = {}\n"),
        "5:12: compares nothing",
    );
    check(
        &with_image("[[check]]\nname = \"a\"\nfile = \"etc/motd\"\n"),
        "5:8: write \"/etc/motd\"",
    );
}

#[test]
fn keys_of_another_kind() {
    let c =
        |kind: &str, key: &str| with_image(&format!("[[check]]\nname = \"a\"\n{kind}\n{key}\n"));
    check(
        &c("tcp = { port = 1 }", "body_contains = \"x\""),
        "6:1: `body_contains` does not apply to a tcp check (check \"a\"); it is for http checks",
    );
    check(
        &c("command = [\"x\"]", "exists = true"),
        "6:1: it is for file checks",
    );
    check(
        &c("command = [\"x\"]", "healthy_threshold = 1"),
        "6:1: it is for http and tcp checks",
    );
    check(
        &c("file = \"/a\"", "deadline = \"1s\""),
        "6:1: it is for http and tcp checks",
    );
    check(
        &c("file = \"/a\"", "exit_code = 0"),
        "6:1: it is for command checks",
    );
    check(
        &c("http = { port = 1 }", "contains = \"x\""),
        "6:1: it is for file checks",
    );
    check(
        &c("metadata = { user = \"0\" }", "stdout_contains = \"x\""),
        "6:1: does not apply to a metadata check",
    );
    check(&c("tcp = { port = 1 }", "timeout = \"1s\""), "ok");
    check(&c("http = { port = 1 }", "body_contains = \"ok\""), "ok");
}

#[test]
fn check_values() {
    let c =
        |kind: &str, key: &str| with_image(&format!("[[check]]\nname = \"a\"\n{kind}\n{key}\n"));
    check(
        &c("http = { port = 1 }", "status = 99"),
        "6:10: from 100 to 599, not 99",
    );
    check(&c("http = { port = 1 }", "status = 599"), "ok");
    check(
        &c("http = { port = 1 }", "healthy_threshold = -1"),
        "6:21: at least 1, not -1",
    );
    check(
        &c("http = { port = 0 }", ""),
        "5:17: from 1 to 65535, not 0",
    );
    check(
        &c("http = { port = 1, path = \"\" }", ""),
        "5:27: must start with '/': write path = \"/\"",
    );
    check(
        &c("command = [\"x\"]", "exit_code = 256"),
        "6:13: from 0 to 255, not 256",
    );
    check(&c("command = [\"x\"]", "exit_code = 255"), "ok");
    check(
        &c("file = \"/a\"\nexists = false", "mode = 0o644"),
        "7:1: `mode` cannot be checked when the file must not exist",
    );
    check(
        &c("file = \"/a\"\nexists = false", "owner = \"0:0\""),
        "7:1: `owner` cannot be checked",
    );
    check(&c("file = \"/a\"\nexists = true", "contains = \"x\""), "ok");
    check(
        &c("metadata = { exposed = [\"x/udp\"] }", ""),
        "5:25: invalid port \"x/udp\"",
    );
}

#[test]
fn check_names_are_unique() {
    check(
        &with_image(
            "[[check]]\nname = \"a\"\ntcp = { port = 1 }\n[[check]]\nname = \"a\"\ntcp = { port = 2 }\n",
        ),
        "7:8: duplicate check name \"a\": a check of that name is already on line 4",
    );
}

// ---- boot

#[test]
fn boot_secrets() {
    let decl = "[secrets.db]\nfrom = \"env:DB\"\n";
    let boot = |target: &str| {
        with_image(&format!(
            "{decl}[boot]\nsecrets = {{ db = \"{target}\" }}\n"
        ))
    };
    check(&boot("env:DB_PASSWORD"), "ok");
    check(&boot("file:/run/secrets/db"), "ok");
    check(&boot("env:1DB"), "6:18: write \"env:NAME\"");
    check(&boot("env:"), "6:18: invalid boot secret target");
    check(
        &boot("file:db"),
        "6:18: must be absolute: write \"file:/db\"",
    );
    check(&boot("file:/"), "6:18: must be absolute");
    check(
        &boot("/run/secrets/db"),
        "6:18: invalid boot secret target \"/run/secrets/db\"",
    );
    check(
        &with_image("[boot]\nsecrets = { db = \"env:DB\" }\n"),
        "4:13: [boot] secrets names \"db\", which is not declared",
    );
    check(
        &with_image(&format!("{decl}[boot]\nenv = {{ LOG = 1 }}\n")),
        "6:15: write LOG = \"1\"",
    );
}

// ---- many problems at once

#[test]
fn every_problem_is_reported_in_file_order() {
    let input = "[image]\nname = \"Web\"\nbase = \"ftp:x\"\n\
                 [[layer]]\nname = \"a\"\nfiles = [{ src = \"..\", dest = \"a\", mode = \"755\" }]\n\
                 [[check]]\nname = \"c\"\ntcp = { port = 0 }\nstatus = 200\n\
                 [boot]\ntimeout = \"soon\"\n";
    check_all(
        input,
        &[
            "2:8", "3:8", "6:18", "6:31", "6:43", "9:16", "10:1", "12:11",
        ],
    );
    let e = kiln_parse(input).expect_err("invalid");
    assert_eq!(e.diagnostics().len(), 8);
    assert!(
        e.to_string()
            .starts_with("kiln.toml:2:8: invalid image name \"Web\""),
        "{e}"
    );
    assert!(e.to_string().ends_with("(and 7 more errors)"), "{e}");
}

#[test]
fn diagnostics_carry_their_line_span_and_help() {
    let input = "[image]\nname = \"t\"\n\n[config]\n  expose = [8080, \"70000/udp\"]\n";
    let e = kiln_parse(input).expect_err("invalid");
    let d = &e.diagnostics()[0];
    assert_eq!((d.line, d.column), (5, 19));
    assert_eq!(d.source_line, "  expose = [8080, \"70000/udp\"]");
    assert_eq!(&input[d.span.clone()], "\"70000/udp\"");
    assert_eq!(d.path, Path::new("kiln.toml"));
    assert_eq!(d.to_string(), format!("kiln.toml:5:19: {}", d.message));

    let e = kiln_parse("[image]\nname = \"t\"\ncontxt = \".\"\n").expect_err("invalid");
    let d = &e.diagnostics()[0];
    assert_eq!(
        d.help.as_deref(),
        Some("[image] takes: name, version, base, epoch, context, platform, volatile")
    );
    assert_eq!(
        &"[image]\nname = \"t\"\ncontxt = \".\"\n"[d.span.clone()],
        "contxt"
    );
}

#[test]
fn columns_count_characters() {
    check(
        "[image]\nname = \"t\"\n[config]\nlabels = { \"ünïcödé\" = 1 }\n",
        "4:24: must be a string",
    );
}

#[test]
fn miette_renders_the_source_line_and_every_problem() {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let input = "[image]\nname = \"t\"\nverison = \"1\"\n\n[[check]]\nname = \"up\"\ntcp = { port = 8080 }\nstatus = 200\n";
    let e = parse(input, Path::new("images/web/kiln.toml")).expect_err("invalid");
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(200)
        .render_report(&mut out, &e)
        .expect("rendering succeeds");
    for expected in [
        "images/web/kiln.toml:3:1: unknown key `verison` in [image]; did you mean `version`? (and 1 more error)",
        "[images/web/kiln.toml:3:1]",
        "verison = \"1\"",
        "unknown key",
        "help: [image] takes: name, version, base, epoch, context, platform, volatile",
        "images/web/kiln.toml:8:1: `status` does not apply to a tcp check",
        "status = 200",
        "not for tcp checks",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

// ---- real distributions: rootfs bases, preserve, run user/workdir, volatile

#[test]
fn rootfs_bases_and_volatile_globs() {
    let r = ok("[image]\nname = \"t\"\nbase = \"rootfs:../debian/rootfs\"\n");
    assert_eq!(
        r.image.base,
        BaseRef::Rootfs {
            path: "../debian/rootfs".into()
        }
    );
    assert_eq!(r.image.volatile, None);
    assert!(
        r.image
            .volatile_globs()
            .contains(&"/var/log/dpkg.log".to_owned())
    );
    let r = ok("[image]\nname = \"t\"\nvolatile = [\"/stamp\", \"/var/log/**\"]\n");
    assert_eq!(
        r.image.volatile_globs(),
        ["/stamp".to_owned(), "/var/log/**".to_owned()]
    );
    check(
        "[image]\nname = \"t\"\nvolatile = [\"var/log\"]\n",
        "3:12: each glob is an absolute in-image path",
    );
    check(
        "[image]\nname = \"t\"\nbase = \"rootfs:\"\n",
        "3:8: needs a location",
    );
}

#[test]
fn preserve_on_a_file_copy() {
    let r = ok(&with_image(
        "[[layer]]\nname = \"etc\"\nfiles = [{ src = \"etc/\", dest = \"/etc/\", preserve = true }]\n",
    ));
    let LayerKind::Files(f) = &r.layers[0].kind else {
        panic!("a file layer")
    };
    assert!(f.files[0].preserve);
    check(
        &with_image(
            "[[layer]]\nname = \"etc\"\nfiles = [{ src = \"etc/\", dest = \"/etc/\", preserve = 1 }]\n",
        ),
        "5:53: must be a boolean",
    );
    check(
        &with_image(
            "[[layer]]\nname = \"e\"\nfiles = [{ src = \"a\", dest = \"/a\", mode = 0o600, preserve = true }]\n",
        ),
        "5:36: both `mode` and `preserve = true`",
    );
}

#[test]
fn run_layer_user_and_workdir() {
    let run = |extra: &str| {
        let r = ok(&with_image(&format!(
            "[[layer]]\nname = \"r\"\nrun = \"true\"\n{extra}"
        )));
        match r.layers[0].kind.clone() {
            LayerKind::Run(run) => run,
            LayerKind::Files(_) => panic!("a run layer"),
        }
    };
    let default = run("");
    assert_eq!((default.user.as_str(), default.workdir), ("0:0", None));
    let given = run("user = \"33:33\"\nworkdir = \"/srv\"\n");
    assert_eq!(
        (given.user.as_str(), given.workdir.as_deref()),
        ("33:33", Some("/srv"))
    );
    for ok_user in ["0", "www-data", "www-data:www-data", "1000:100", "_apt"] {
        assert_eq!(run(&format!("user = \"{ok_user}\"\n")).user, ok_user);
    }
    for bad in ["", "33:", ":33", "Root", "1 2", "99999999999", "a:b:c"] {
        check(
            &with_image(&format!(
                "[[layer]]\nname = \"r\"\nrun = \"true\"\nuser = \"{bad}\"\n"
            )),
            "6:8: is not a user",
        );
    }
    check(
        &with_image("[[layer]]\nname = \"r\"\nrun = \"true\"\nworkdir = \"srv\"\n"),
        "6:11: ",
    );
    check(
        &with_image("[[layer]]\nname = \"f\"\ndirs = [{ path = \"/a\" }]\nuser = \"0:0\"\n"),
        "6:1: `user` is only for run layers",
    );
}
