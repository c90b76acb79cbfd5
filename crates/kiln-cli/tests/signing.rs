//! Signatures, attestations and SBOMs end to end, with the real cosign 2.x
//! (`KILN_COSIGN`, from `cargo xtask fetch-cosign`), a real CNCF registry
//! on a loopback port, skopeo to copy the store's refs there, and the real
//! engine for releases: cosign accepts what kiln signs and attests, kiln
//! accepts what cosign signs, keys move both ways, and neither accepts a
//! tampered payload or another key.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_image::{Digest, RegistryAuth, Remote};
use kiln_testkit::Registry;
use serde_json::Value;
use support::{
    build_digest, engine, have_tool, hello_copy, json, kiln, kiln_with_env, ok, required, stderr,
};

/// cosign's binary, or `None` after saying the test is skipped.
fn cosign() -> Option<PathBuf> {
    match std::env::var_os("KILN_COSIGN").map(PathBuf::from) {
        Some(path) if path.is_file() => Some(path),
        _ => {
            assert!(
                !required(),
                "KILN_COSIGN must name cosign 2.x (cargo xtask fetch-cosign) when real parts are required"
            );
            eprintln!("skipped: KILN_COSIGN is not set (cargo xtask fetch-cosign)");
            None
        }
    }
}

/// cosign, skopeo and a registry of our own, or `None` (after saying so).
fn cosign_and_registry() -> Option<(PathBuf, Registry)> {
    let cosign = cosign()?;
    if !have_tool("skopeo") {
        return None;
    }
    Some((cosign, Registry::start()?))
}

/// Run cosign in `dir` with `password` as COSIGN_PASSWORD.
fn run_cosign(cosign: &Path, dir: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(cosign)
        .args(args)
        .env("COSIGN_PASSWORD", password)
        .current_dir(dir)
        .output()
        .expect("cosign runs")
}

fn cosign_ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "cosign failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cosign verify` (or `verify-attestation` with a type) of `image` with
/// `key`, against a plain-HTTP loopback registry and no transparency log.
fn cosign_verify(cosign: &Path, dir: &Path, key: &str, image: &str, kind: Option<&str>) -> Output {
    let mut args = vec![];
    match kind {
        Some(kind) => args.extend(["verify-attestation", "--type", kind]),
        None => args.push("verify"),
    }
    args.extend([
        "--key",
        key,
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        image,
    ]);
    run_cosign(cosign, dir, "", &args)
}

fn skopeo_copy(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", from, to])
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(store: &Path, prefix: &Path, password: &str) {
    ok(kiln_with_env(
        store,
        &[
            "keygen",
            "--output-key-prefix",
            prefix.to_str().expect("utf8"),
        ],
        &[("COSIGN_PASSWORD", password)],
    ));
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// Every layer under `tag` rewritten by `alter` (the signature kept), as
/// an attacker with push rights would.
async fn tamper_layers(
    host: &str,
    repository: &str,
    tag: &str,
    alter: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    let remote = Remote::new(host, repository, RegistryAuth::Anonymous).expect("remote");
    let manifest = remote.manifest(tag).await.expect("attached manifest");
    let mut doc: Value = serde_json::from_slice(&manifest.bytes).expect("json");
    let layers = doc["layers"].as_array_mut().expect("layers");
    for layer in layers.iter_mut() {
        let descriptor: kiln_image::Descriptor =
            serde_json::from_value(layer.clone()).expect("descriptor");
        let content = remote.fetch_blob_bytes(&descriptor).await.expect("layer");
        let pushed = remote
            .push_blob_bytes(&descriptor.media_type, alter(content))
            .await
            .expect("push altered layer");
        layer["digest"] = Value::String(pushed.digest.to_string());
        layer["size"] = Value::from(pushed.size);
    }
    let bytes = serde_json::to_vec(&doc).expect("json");
    remote
        .push_manifest(tag, &manifest.media_type, bytes)
        .await
        .expect("push altered manifest");
}

/// Every signature payload under `tag` names another repository.
async fn tamper_payloads(host: &str, repository: &str, tag: &str) {
    tamper_layers(host, repository, tag, |payload| {
        String::from_utf8(payload)
            .expect("utf8")
            .replace(repository, "team/elsewhere")
            .into_bytes()
    })
    .await;
}

/// Every attestation under `tag` has `from` changed to `team/elsewhere`
/// inside its statement, the envelope's signature kept.
async fn tamper_statements(host: &str, repository: &str, tag: &str, from: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    tamper_layers(host, repository, tag, |envelope| {
        let mut envelope: Value = serde_json::from_slice(&envelope).expect("envelope");
        let statement = b64
            .decode(envelope["payload"].as_str().expect("payload"))
            .expect("base64");
        let altered = String::from_utf8(statement)
            .expect("utf8")
            .replace(from, "team/elsewhere");
        envelope["payload"] = Value::String(b64.encode(altered));
        serde_json::to_vec(&envelope).expect("json")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cosign_and_kiln_verify_each_others_signatures_in_a_registry() {
    let Some((cosign, registry)) = cosign_and_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let store = dir.join("store");
    let recipe = hello_copy(dir, "0.20.1");
    let digest = build_digest(&store, &recipe);
    let host = format!("127.0.0.1:{}", registry.port);
    let image = format!("{host}/team/hello@{digest}");
    skopeo_copy(
        &format!("oci:{}:hello:0.20.1", path_str(&store)),
        &format!("docker://{host}/team/hello:0.20.1"),
    );
    keygen(&store, &dir.join("kiln"), "kiln password");
    cosign_ok(run_cosign(
        &cosign,
        dir,
        "their password",
        &["generate-key-pair", "--output-key-prefix", "theirs"],
    ));

    // kiln signs in the registry; cosign accepts it with kiln's key only.
    let reference = format!("docker://{image}");
    let signed = ok(kiln_with_env(
        &store,
        &[
            "sign",
            &reference,
            "--key",
            path_str(&dir.join("kiln.key")),
            "--json",
        ],
        &[("COSIGN_PASSWORD", "kiln password")],
    ));
    assert_eq!(json(&signed)["added"], true);
    let verified = cosign_ok(cosign_verify(&cosign, dir, "kiln.pub", &image, None));
    let payloads: Value = serde_json::from_slice(&verified.stdout).expect("cosign prints JSON");
    assert_eq!(
        payloads[0]["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert!(
        !cosign_verify(&cosign, dir, "theirs.pub", &image, None)
            .status
            .success()
    );

    // cosign signs with a key kiln made, and with its own; both are
    // appended beside kiln's, and kiln verifies each with its key. (cosign
    // skips signing again with a key that signed already, so kiln's second
    // key is cosign's alone.)
    keygen(&store, &dir.join("kiln2"), "second password");
    for (key, password) in [
        ("kiln2.key", "second password"),
        ("theirs.key", "their password"),
    ] {
        cosign_ok(run_cosign(
            &cosign,
            dir,
            password,
            &[
                "sign",
                "--yes",
                "--tlog-upload=false",
                "--allow-http-registry",
                "--key",
                key,
                &image,
            ],
        ));
    }
    let count = |key: &str| {
        let out = ok(kiln(
            &store,
            &[
                "verify",
                &reference,
                "--key",
                path_str(&dir.join(key)),
                "--json",
            ],
        ));
        json(&out)["verified"].as_u64().expect("count")
    };
    for key in ["kiln.pub", "kiln2.pub", "theirs.pub"] {
        assert_eq!(count(key), 1, "{key}");
    }
    let stranger = dir.join("stranger");
    keygen(&store, &stranger, "");
    let out = kiln(
        &store,
        &[
            "verify",
            &reference,
            "--key",
            path_str(&dir.join("stranger.pub")),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("none of its 3 signatures verifies with"),
        "{}",
        stderr(&out)
    );

    // A payload altered after signing fails in both.
    let hex = digest.trim_start_matches("sha256:");
    tamper_payloads(&host, "team/hello", &format!("sha256-{hex}.sig")).await;
    assert!(
        !cosign_verify(&cosign, dir, "kiln.pub", &image, None)
            .status
            .success()
    );
    let out = kiln(
        &store,
        &[
            "verify",
            &reference,
            "--key",
            path_str(&dir.join("kiln.pub")),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("altered"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_signs_and_attests_what_cosign_verifies() {
    let Some(_engine) = engine().await else {
        return;
    };
    let Some((cosign, registry)) = cosign_and_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let store = dir.join("store");
    let recipe = hello_copy(dir, "0.20.2");
    keygen(&store, &recipe.join("release"), "release password");
    let toml_path = recipe.join("kiln.toml");
    let toml = std::fs::read_to_string(&toml_path).expect("read");
    std::fs::write(
        &toml_path,
        toml.replace(
            "channels = [\"stable\"]",
            &format!(
                "channels = [\"stable\"]\nsign = \"file:release.key\"\npush = \"docker://127.0.0.1:{}/team/hello\"",
                registry.port
            ),
        ),
    )
    .expect("write");
    let out = ok(kiln_with_env(
        &store,
        &["release", path_str(&recipe), "--json"],
        &[("COSIGN_PASSWORD", "release password")],
    ));
    let release = &json(&out)["releases"][0];
    assert_eq!(release["promoted"], serde_json::json!(["stable"]));
    let digest = release["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let public = recipe.join("release.pub");

    // kiln verifies all three in its store.
    for kind in [None, Some("slsaprovenance1"), Some("spdxjson")] {
        let mut args = vec!["verify", "hello:stable", "--key", path_str(&public)];
        if let Some(kind) = kind {
            args.extend(["--attestation", kind]);
        }
        ok(kiln(&store, &args));
    }

    // The release pushed the image with its signature and attestations,
    // and cosign accepts them there.
    let host = format!("127.0.0.1:{}", registry.port);
    let image = format!("{host}/team/hello@{digest}");
    let key = path_str(&public);
    cosign_ok(cosign_verify(&cosign, dir, key, &image, None));
    let provenance = cosign_ok(cosign_verify(
        &cosign,
        dir,
        key,
        &image,
        Some("slsaprovenance1"),
    ));
    let statement = statement_of(&provenance.stdout);
    let recipe_sha = Digest::of(&std::fs::read(&toml_path).expect("recipe"))
        .hex()
        .to_owned();
    let predicate = &statement["predicate"];
    assert_eq!(
        predicate["buildDefinition"]["externalParameters"]["recipe"]["digest"]["sha256"],
        recipe_sha
    );
    let checks: Vec<&str> = predicate["runDetails"]["byproducts"]
        .as_array()
        .expect("byproducts")
        .iter()
        .filter_map(|b| b["name"].as_str()?.strip_prefix("check "))
        .collect();
    assert!(checks.contains(&"health endpoint"), "{checks:?}");
    let layers = predicate["buildDefinition"]["internalParameters"]["layers"]
        .as_array()
        .expect("layers");
    assert!(
        layers.iter().all(|l| l["cacheKey"]
            .as_str()
            .is_some_and(|k| k.starts_with("sha256:"))),
        "{layers:?}"
    );
    let sbom = cosign_ok(cosign_verify(&cosign, dir, key, &image, Some("spdxjson")));
    let sbom = statement_of(&sbom.stdout);
    assert_eq!(sbom["predicate"]["spdxVersion"], "SPDX-2.3");
    let files: Vec<&str> = sbom["predicate"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["fileName"].as_str())
        .collect();
    assert!(
        files.contains(&"./www/index.html") && files.contains(&"./bin/busybox"),
        "{files:?}"
    );
    let other = dir.join("other");
    keygen(&store, &other, "");
    let other_key = path_str(&dir.join("other.pub")).to_owned();
    assert!(
        !cosign_verify(&cosign, dir, &other_key, &image, Some("spdxjson"))
            .status
            .success()
    );

    exports_carry_signatures_and_attestations(&cosign, dir, &store, &host, &digest, key);
    releases_append_to_signatures_in_the_registry(&cosign, dir, &store, &recipe, &image);

    // An attestation altered after signing fails in both.
    let copy = format!("{host}/team/copy@{digest}");
    let att = format!("sha256-{}.att", digest.trim_start_matches("sha256:"));
    tamper_statements(&host, "team/copy", &att, "team/hello").await;
    assert!(
        !cosign_verify(&cosign, dir, key, &copy, Some("spdxjson"))
            .status
            .success()
    );
    let out = kiln(
        &store,
        &[
            "verify",
            &format!("docker://{copy}"),
            "--key",
            key,
            "--attestation",
            "spdxjson",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("altered"), "{}", stderr(&out));

    // A release whose key does not open moves no channel.
    let toml = std::fs::read_to_string(&toml_path).expect("read");
    std::fs::write(
        &toml_path,
        toml.replace("version = \"0.20.2\"", "version = \"0.20.3\""),
    )
    .expect("write");
    let out = kiln_with_env(
        &store,
        &["release", path_str(&recipe)],
        &[("COSIGN_PASSWORD", "wrong")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("release2.key"), "{}", stderr(&out));
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    let stable: Vec<&str> = images["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|i| {
            i["channels"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "stable"))
        })
        .filter_map(|i| i["digest"].as_str())
        .collect();
    assert_eq!(stable, [digest.as_str()]);
}

/// `kiln export` of the released `hello:stable` (signed with `key`) to an
/// OCI layout, an OCI archive and another repository carries its signature
/// and attestations, which cosign accepts on the registry copy; with
/// `--no-signatures` they stay behind.
fn exports_carry_signatures_and_attestations(
    cosign: &Path,
    dir: &Path,
    store: &Path,
    host: &str,
    digest: &str,
    key: &str,
) {
    let hex = digest.trim_start_matches("sha256:");
    let sig = format!("hello:sha256-{hex}.sig");
    let att = format!("hello:sha256-{hex}.att");
    let export = |destination: &str, extra: &[&str]| {
        let mut args = vec!["export", "hello:stable", destination, "--json"];
        args.extend(extra);
        json(&ok(kiln(store, &args)))
    };

    // An OCI layout: the image and both attachments are named in it, and
    // skopeo reads the image and the signature from it.
    let layout = dir.join("exported");
    let exported = export(&format!("oci:{}", path_str(&layout)), &[]);
    assert_eq!(
        exported["attachments"],
        serde_json::json!([sig.clone(), att.clone()])
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index JSON");
    let refs = ref_names(&index);
    let names: Vec<&str> = refs.iter().filter_map(|r| r.split(' ').next()).collect();
    assert_eq!(names, [att.as_str(), sig.as_str(), "hello:stable"]);
    for name in ["hello:stable", sig.as_str()] {
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                &format!("oci:{}:{name}", path_str(&layout)),
            ])
            .output()
            .expect("skopeo runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest: Value = serde_json::from_slice(&out.stdout).expect("manifest");
        assert!(manifest["layers"].is_array(), "{manifest}");
    }

    // An OCI archive holds the same index.
    let archive = dir.join("exported.tar");
    export(&format!("oci-archive:{}", path_str(&archive)), &[]);
    let out = Command::new("tar")
        .args(["-xOf", path_str(&archive), "index.json"])
        .output()
        .expect("tar runs");
    let archived: Value = serde_json::from_slice(&out.stdout).expect("index JSON");
    assert_eq!(ref_names(&archived), refs);
    // It stays a base that needs no ref: the attachments are not images.
    let rebased = dir.join("rebased");
    std::fs::create_dir_all(&rebased).expect("mkdir");
    std::fs::write(
        rebased.join("kiln.toml"),
        format!(
            "[image]\nname = \"rebased\"\nversion = \"1\"\nbase = \"oci-archive:{}\"\n",
            path_str(&archive)
        ),
    )
    .expect("write recipe");
    build_digest(store, &rebased);

    // Another repository: cosign verifies the copy's signature and both
    // attestations there.
    export(&format!("docker://{host}/team/copy"), &[]);
    let copy = format!("{host}/team/copy@{digest}");
    cosign_ok(cosign_verify(cosign, dir, key, &copy, None));
    for kind in ["slsaprovenance1", "spdxjson"] {
        cosign_ok(cosign_verify(cosign, dir, key, &copy, Some(kind)));
    }

    // Left behind on request.
    let bare = export(&format!("docker://{host}/team/bare"), &["--no-signatures"]);
    assert_eq!(bare["attachments"], serde_json::json!([]));
    let image = format!("{host}/team/bare@{digest}");
    assert!(
        !cosign_verify(cosign, dir, key, &image, None)
            .status
            .success()
    );
}

/// The ref names an OCI index lists with their digests, sorted.
fn ref_names(index: &Value) -> Vec<String> {
    let mut names: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| {
            let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str()?;
            Some(format!("{name} {}", m["digest"].as_str()?))
        })
        .collect();
    names.sort_unstable();
    names
}

/// A second release of the same digest, with another key, onto a registry
/// where cosign signed it too, appends: cosign verifies every signer after.
fn releases_append_to_signatures_in_the_registry(
    cosign: &Path,
    dir: &Path,
    store: &Path,
    recipe: &Path,
    image: &str,
) {
    cosign_ok(run_cosign(
        cosign,
        dir,
        "their password",
        &["generate-key-pair", "--output-key-prefix", "theirs"],
    ));
    cosign_ok(run_cosign(
        cosign,
        dir,
        "their password",
        &[
            "sign",
            "--yes",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--key",
            "theirs.key",
            image,
        ],
    ));
    keygen(store, &recipe.join("release2"), "release password");
    let toml_path = recipe.join("kiln.toml");
    let toml = std::fs::read_to_string(&toml_path).expect("read");
    std::fs::write(
        &toml_path,
        toml.replace("file:release.key", "file:release2.key"),
    )
    .expect("write");
    let out = ok(kiln_with_env(
        store,
        &["release", path_str(recipe), "--json"],
        &[("COSIGN_PASSWORD", "release password")],
    ));
    assert_eq!(
        json(&out)["releases"][0]["build"]["digest"].as_str(),
        image.split('@').nth(1),
        "the second release must be of the same digest"
    );
    let theirs = dir.join("theirs.pub");
    for key in [
        recipe.join("release.pub"),
        recipe.join("release2.pub"),
        theirs,
    ] {
        cosign_ok(cosign_verify(cosign, dir, path_str(&key), image, None));
    }
    for key in [recipe.join("release.pub"), recipe.join("release2.pub")] {
        cosign_ok(cosign_verify(
            cosign,
            dir,
            path_str(&key),
            image,
            Some("slsaprovenance1"),
        ));
    }
}

/// The in-toto statement inside the first DSSE envelope cosign printed.
fn statement_of(stdout: &[u8]) -> Value {
    use base64::Engine as _;
    let line = String::from_utf8_lossy(stdout)
        .lines()
        .next()
        .expect("an envelope")
        .to_owned();
    let envelope: Value = serde_json::from_str(&line).expect("envelope JSON");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    serde_json::from_slice(&payload).expect("statement JSON")
}

/// An ECDSA P-384 private key in cosign's encrypted format, password
/// "pw" (see its use below).
const P384_ENCRYPTED_KEY: &str = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjo2NTUzNiwiciI6
OCwicCI6MX0sInNhbHQiOiJKQXA4dW5GMUN4ZzRGSEFnemR1YnRxcis4V0FvVmZw
TlV0VlNyb1Fnem53PSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJwaTZFei9lOUhyakFiTXlxZHJ0UXh6cEFHYzhsajZVTyJ9LCJj
aXBoZXJ0ZXh0IjoiVHd0bitzaFAyblZ1VnpmNjBqbVR5VTltWGRLY1lTWXdQOFB0
L1RyaFZPU005TjNnVXRBa2VUQUZBYys0VERrcmIyVC9abWwrNmZJSzJ6TFoySTNV
TDhJdDVLVUlSQlR5SjdOeThQQTJ3TzFnTk9SdXR6TXFRcEw4aFpEM3Z3QnlnSFZq
QnRZamRrWFRnUm9VWHRYdEJaS3hGMTdVKzBiZVRrV0twdDZ1QWxSZHlZMVJLdUpE
ZDhFWWdVditXMFZtRW1yR2lZVm9GZnJpUzlSQkNHamswWVd0MVdmY1lzMktDcXdX
TzN4d1Z0K0lRZEk4UitMdHNYYXhRMWEvTEdqSEFDRXFpMG81Z08ydCJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
";

#[test]
fn bad_keys_are_exit_2_naming_the_file_and_failed_verifications_exit_1() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let store = dir.join("store");
    let recipe = hello_copy(dir, "0.20.4");
    build_digest(&store, &recipe);
    keygen(&store, &dir.join("k"), "right");

    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let out = kiln(
        &store,
        &["sign", "hello:0.20.4", "--key", path_str(&garbage)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("garbage.key"), "{}", stderr(&out));

    let out = kiln_with_env(
        &store,
        &[
            "sign",
            "hello:0.20.4",
            "--key",
            path_str(&dir.join("k.key")),
        ],
        &[("COSIGN_PASSWORD", "wrong")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("k.key") && stderr(&out).contains("password"),
        "{}",
        stderr(&out)
    );

    // Unsigned: exit 1, and it says so.
    let out = kiln(
        &store,
        &[
            "verify",
            "hello:0.20.4",
            "--key",
            path_str(&dir.join("k.pub")),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not signed"), "{}", stderr(&out));

    // A P-384 key is another curve (made with `openssl ecparam -name
    // secp384r1 -genkey | openssl ec -pubout`).
    let p384 = dir.join("p384.pub");
    std::fs::write(
        &p384,
        "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAErrmoQKCEmxv4JZ1K+p9ENjrictTLgEQl
64lx9EzknIDdhXitSsVURazxPNkuvD+bxhcfDz2MbbL8N7Zy6Ci2YwhYmduoC5y0
FMUNDrC3fKFmVBT/sOQpgfhzHNoXXLQu
-----END PUBLIC KEY-----
",
    )
    .expect("write");
    let out = kiln(
        &store,
        &["verify", "hello:0.20.4", "--key", path_str(&p384)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("p384.pub") && stderr(&out).contains("P-384"),
        "{}",
        stderr(&out)
    );

    // So is an encrypted private key of that curve, sealed as cosign seals
    // its keys (password "pw"; cosign's import-key-pair refuses P-384, so
    // kiln-sign's sealing made it from `openssl ecparam -name secp384r1
    // -genkey -noout | openssl pkcs8 -topk8 -nocrypt`).
    let p384_key = dir.join("p384.key");
    std::fs::write(&p384_key, P384_ENCRYPTED_KEY).expect("write");
    let out = kiln_with_env(
        &store,
        &["sign", "hello:0.20.4", "--key", path_str(&p384_key)],
        &[("COSIGN_PASSWORD", "pw")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("p384.key") && stderr(&out).contains("P-384"),
        "{}",
        stderr(&out)
    );

    // Signed in the store: verified with its key, refused with another.
    ok(kiln_with_env(
        &store,
        &[
            "sign",
            "hello:0.20.4",
            "--key",
            path_str(&dir.join("k.key")),
        ],
        &[("COSIGN_PASSWORD", "right")],
    ));
    ok(kiln(
        &store,
        &[
            "verify",
            "hello:0.20.4",
            "--key",
            path_str(&dir.join("k.pub")),
        ],
    ));
    keygen(&store, &dir.join("other"), "");
    let out = kiln(
        &store,
        &[
            "verify",
            "hello:0.20.4",
            "--key",
            path_str(&dir.join("other.pub")),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The signature manifest is no image: listing and bare names still work.
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    assert_eq!(
        images["images"].as_array().map(Vec::len),
        Some(1),
        "{images}"
    );
    ok(kiln(&store, &["sbom", "hello"]));

    // keygen never overwrites a key.
    let out = kiln(
        &store,
        &["keygen", "--output-key-prefix", path_str(&dir.join("k"))],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_key_written_into_a_recipe_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let recipe = hello_copy(tmp.path(), "0.20.5");
    let toml_path = recipe.join("kiln.toml");
    let toml = std::fs::read_to_string(&toml_path).expect("read");
    let line = toml
        .lines()
        .position(|l| l.starts_with("channels = "))
        .expect("channels")
        + 2;
    std::fs::write(
        &toml_path,
        toml.replace(
            "channels = [\"stable\"]",
            "channels = [\"stable\"]\nsign = \"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\\nabc\\n\"",
        ),
    )
    .expect("write");
    let out = kiln(&tmp.path().join("store"), &["check", path_str(&recipe)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("inline") && err.contains(&format!("kiln.toml:{line}:")),
        "{err}"
    );
}

/// The staged debootstrap root (`KILN_DEBIAN_ROOTFS`, from `cargo xtask
/// stage-debian`), or `None` after saying the test is skipped.
fn debian_rootfs() -> Option<PathBuf> {
    match std::env::var_os("KILN_DEBIAN_ROOTFS").map(PathBuf::from) {
        Some(root) if root.join("var/lib/dpkg/status").is_file() => Some(root),
        _ => {
            assert!(
                !required(),
                "KILN_DEBIAN_ROOTFS must name a debootstrap root (cargo xtask stage-debian) when real parts are required"
            );
            eprintln!("skipped: KILN_DEBIAN_ROOTFS is not set (cargo xtask stage-debian)");
            None
        }
    }
}

#[test]
fn the_sbom_of_a_debootstrap_image_lists_every_package_with_dpkgs_version() {
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let recipe = tmp.path().join("debian-sbom");
    std::fs::create_dir_all(&recipe).expect("mkdir");
    // dpkg's database and the OS's identity, exactly as debootstrap left
    // them, are what an SBOM reads from a Debian image.
    std::fs::write(
        recipe.join("kiln.toml"),
        format!(
            "[image]\nname = \"debian-sbom\"\nversion = \"1\"\nbase = \"scratch\"\ncontext = {:?}\n\n[[layer]]\nname = \"dpkg\"\nfiles = [\n  {{ src = \"var/lib/dpkg/status\", dest = \"/var/lib/dpkg/status\" }},\n  {{ src = \"usr/lib/os-release\", dest = \"/usr/lib/os-release\" }},\n]\n",
            path_str(&rootfs)
        ),
    )
    .expect("recipe");
    let store = tmp.path().join("store");
    build_digest(&store, &recipe);
    let sbom = json(&ok(kiln(&store, &["sbom", "debian-sbom:1"])));
    let mut listed: Vec<(String, String)> = sbom["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["versionInfo"].as_str().expect("version").to_owned(),
            )
        })
        .collect();
    listed.sort();

    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            path_str(&rootfs.join("var/lib/dpkg"))
        ))
        .args(["-W", "-f", "${db:Status-Status} ${Package} ${Version}\n"])
        .output()
        .expect("dpkg-query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut installed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            if words.next() != Some("installed") {
                return None;
            }
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect();
    installed.sort();
    assert!(
        installed.len() > 50,
        "a minbase root holds dozens of packages"
    );
    assert_eq!(listed, installed);
    let purl = sbom["packages"][1]["externalRefs"][0]["referenceLocator"]
        .as_str()
        .expect("purl");
    assert!(purl.starts_with("pkg:deb/debian/"), "{purl}");
}

/// The broken-signature problems `kiln fsck --json` reports, as
/// `(detail, repaired)`; its exit code beside them.
fn signature_problems(store: &Path, args: &[&str]) -> (Option<i32>, Vec<(String, bool)>) {
    let mut all = vec!["fsck", "--json"];
    all.extend(args);
    let out = kiln(store, &all);
    let report = json(&out);
    let problems = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter(|p| p["kind"] == "broken_signature")
        .map(|p| {
            (
                p["detail"].as_str().expect("detail").to_owned(),
                p["repaired"] == true,
            )
        })
        .collect();
    (out.status.code(), problems)
}

#[test]
fn fsck_reports_broken_signatures_and_repair_keeps_every_whole_one() {
    use kiln_sign::attached::{self, Attachment, NewLayer, SIGNATURE_ANNOTATION};
    use kiln_sign::{PredicateKind, SigningKey, Statement};

    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let store_dir = dir.join("store");
    let recipe = hello_copy(dir, "0.20.5");
    let digest_text = build_digest(&store_dir, &recipe);
    let digest: Digest = digest_text.parse().expect("digest");
    let image = "hello:0.20.5";
    for key in ["one", "two"] {
        keygen(&store_dir, &dir.join(key), "");
        ok(kiln(
            &store_dir,
            &[
                "sign",
                image,
                "--key",
                path_str(&dir.join(format!("{key}.key"))),
            ],
        ));
    }
    let store = kiln_image::Store::open(&store_dir).expect("store");
    let key = SigningKey::read(&dir.join("one.key"), b"").expect("key");
    for about in [digest.clone(), Digest::of(b"another image")] {
        let statement = Statement::about_image(
            "hello",
            &about,
            PredicateKind::SpdxJson,
            serde_json::json!({}),
        );
        kiln_sign::attest_image(&store, "hello", &digest, &statement, &key).expect("attest");
    }
    let verify = |key: &str, kind: Option<&str>| {
        let key_path = dir.join(format!("{key}.pub"));
        let mut args = vec!["verify", image, "--key", path_str(&key_path), "--json"];
        if let Some(kind) = kind {
            args.extend(["--attestation", kind]);
        }
        kiln(&store_dir, &args)
    };
    ok(verify("one", None));
    ok(verify("two", None));

    // Two layers are appended: one that is no simple signing payload, and
    // one whose payload blob then goes missing.
    let sig_ref = format!("hello:{}", Attachment::Signature.tag(&digest));
    let mut head = store.resolve(&sig_ref).expect("index").expect("sig ref");
    let elsewhere = kiln_sign::payload::SimpleSigning::new("elsewhere/hello", &digest).to_bytes();
    let lost = Digest::of(&elsewhere);
    for content in [b"not a payload".to_vec(), elsewhere] {
        let layer = NewLayer {
            media_type: attached::SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            content,
            annotations: [(SIGNATURE_ANNOTATION.to_owned(), "c2ln".to_owned())].into(),
        };
        let (appended, added) =
            attached::append(&store, Some(&head.digest), Attachment::Signature, layer)
                .expect("append");
        assert!(added);
        head = appended;
    }
    store.set_ref(&sig_ref, &head).expect("set ref");
    std::fs::remove_file(store.blob_path(&lost)).expect("remove a payload");

    let (code, problems) = signature_problems(&store_dir, &[]);
    assert_eq!(code, Some(1), "{problems:?}");
    let about = |needle: &str| problems.iter().any(|(d, _)| d.contains(needle));
    assert!(
        about(&format!("layer {lost}: its blob is missing")),
        "{problems:?}"
    );
    assert!(about("not a simple signing payload"), "{problems:?}");
    assert!(
        about(&format!("its statement is not about {digest}")),
        "{problems:?}"
    );

    // Repair drops the broken layers and keeps every whole one.
    let (code, problems) = signature_problems(&store_dir, &["--repair"]);
    assert_eq!(code, Some(0), "{problems:?}");
    assert!(
        problems.iter().all(|(_, repaired)| *repaired),
        "{problems:?}"
    );
    let (code, problems) = signature_problems(&store_dir, &[]);
    assert_eq!((code, problems), (Some(0), vec![]));
    let layers = attached::read_layers(
        &store,
        &store
            .resolve(&sig_ref)
            .expect("index")
            .expect("sig ref")
            .digest,
        Attachment::Signature,
    )
    .expect("layers");
    assert_eq!(layers.len(), 2);
    for key in ["one", "two"] {
        assert_eq!(json(&ok(verify(key, None)))["verified"], 1);
    }
    ok(verify("one", Some("spdxjson")));

    // The image itself goes missing: its signatures are reported and kept,
    // and the same recipe built again gives the digest they sign.
    std::fs::remove_file(store.blob_path(&digest)).expect("remove the manifest");
    let (code, problems) = signature_problems(&store_dir, &["--repair"]);
    assert_eq!(code, Some(1), "{problems:?}");
    assert!(
        problems.len() == 2
            && problems
                .iter()
                .all(|(d, repaired)| d.contains("which is not in the store") && !repaired),
        "{problems:?}"
    );
    assert!(store.resolve(&sig_ref).expect("index").is_some());
    assert_eq!(build_digest(&store_dir, &recipe), digest_text);
    let (code, problems) = signature_problems(&store_dir, &[]);
    assert_eq!((code, problems), (Some(0), vec![]));
    ok(verify("two", None));
}
