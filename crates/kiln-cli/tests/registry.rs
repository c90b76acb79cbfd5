//! `kiln inspect docker://...` against a real CNCF registry on a loopback
//! port (with and without Basic authentication, credentials from docker's
//! config, a credsStore helper and REGISTRY_AUTH_FILE), the bound on what
//! missing or wrong credentials cost the registry (a counting proxy in
//! front of it sees every request kiln sends, for pushes, inspections,
//! `docker://` bases and the shared cache), and a release whose checks fail
//! pushing nothing. Only that last test needs the container engine.

mod support;

use std::path::{Path, PathBuf};

use kiln_image::{Digest, RegistryAuth, Remote};
use kiln_testkit::{Fault, Proxy, Registry};
use serde_json::{Value, json};
use support::{
    assert_store_never_saw, engine, hello_copy, json, kiln, kiln_with_env, ok, skopeo_inspect,
    stderr,
};

/// A folder holding an empty docker config (and so no credentials), for
/// `DOCKER_CONFIG`.
fn no_credentials(dir: &Path) -> String {
    let d = dir.join("no-credentials");
    std::fs::create_dir_all(&d).expect("mkdir");
    d.to_str().expect("utf8").to_owned()
}

/// A folder whose docker config gives `user_password` for `host`.
fn docker_config(dir: &Path, name: &str, host: &str, user_password: &str) -> String {
    use base64::Engine as _;
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    let auth = base64::engine::general_purpose::STANDARD.encode(user_password);
    std::fs::write(
        d.join("config.json"),
        json!({ "auths": { host: { "auth": auth } } }).to_string(),
    )
    .expect("write config.json");
    d.to_str().expect("utf8").to_owned()
}

/// Build a copy of hello as `version` into `store`; its digest.
fn build_hello(dir: &Path, store: &Path, version: &str, extra: &str) -> String {
    let image = hello_copy(dir, version);
    if !extra.is_empty() {
        let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read recipe");
        let toml = toml.replacen("[config]", &format!("{extra}\n\n[config]"), 1);
        std::fs::write(image.join("kiln.toml"), toml).expect("write recipe");
    }
    let out = ok(kiln(
        store,
        &["build", image.to_str().expect("utf8"), "--json"],
    ));
    let digest = json(&out)["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    std::fs::remove_dir_all(&image).expect("remove the copy");
    digest
}

/// A recipe in `dir` for `child:1.0.0`: one page on `base`. Its folder.
fn child_recipe(dir: &Path, base: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("page.html"), "a child\n").expect("write");
    std::fs::write(
        dir.join("kiln.toml"),
        format!(
            "[image]\nname = \"child\"\nversion = \"1.0.0\"\nbase = \"{base}\"\n\n\
             [[layer]]\nname = \"page\"\nfiles = [{{ src = \"page.html\", dest = \"/www/page.html\" }}]\n"
        ),
    )
    .expect("write recipe");
    dir.to_path_buf()
}

/// `kiln inspect ARGS...` with `env`, asserting success; its JSON.
fn inspect(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["inspect"];
    all.extend(args);
    json(&ok(kiln_with_env(store, &all, env)))
}

#[test]
fn inspect_reads_an_image_from_a_registry_as_from_the_store() {
    let Some(registry) = Registry::start() else {
        return;
    };
    if !support::have_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let digest = build_hello(tmp.path(), &store, "0.40.0-inspect", "");
    let repo = format!("{}/team/seen", registry.host);
    ok(kiln(
        &store,
        &[
            "export",
            "hello:0.40.0-inspect",
            &format!("docker://{repo}:1"),
        ],
    ));
    let stored = inspect(&store, &["hello:0.40.0-inspect"], &[]);
    // Another store, empty: nothing is read from it, nothing written to it.
    let elsewhere = tmp.path().join("elsewhere");
    for reference in [
        format!("docker://{repo}:1"),
        format!("docker://{repo}@{digest}"),
    ] {
        let remote = inspect(&elsewhere, &[&reference, "--json"], &[]);
        assert_eq!(remote["name"], json!(repo), "{reference}");
        assert_eq!(remote["digest"], json!(digest), "{reference}");
        assert_eq!(remote["manifest"], stored["manifest"], "{reference}");
        assert_eq!(remote["config"], stored["config"], "{reference}");
        assert!(remote.get("index").is_none(), "{remote:#}");
    }
    assert!(!elsewhere.join("blobs").exists(), "inspect stored nothing");
    // The same documents as skopeo reads them.
    let manifest = skopeo_inspect(&["--raw", "--tls-verify=false", &format!("docker://{repo}:1")]);
    assert_eq!(manifest, stored["manifest"]);
    let config = skopeo_inspect(&[
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:1"),
    ]);
    assert_eq!(config, stored["config"]);
    let history = config["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{config:#}");

    // Unknown tags are bad input; a reference that is not a registry's, a
    // registry that is not there, and --platform on a stored image too.
    let unknown = kiln(&elsewhere, &["inspect", &format!("docker://{repo}:2")]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("tag 2"), "{}", stderr(&unknown));
    let bad = kiln(&elsewhere, &["inspect", "docker://Not A Host/x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert_eq!(
        stderr(&bad).matches("Not A Host").count(),
        1,
        "the reference is named once: {}",
        stderr(&bad)
    );
    let platform_on_store = kiln(
        &store,
        &[
            "inspect",
            "hello:0.40.0-inspect",
            "--platform",
            "linux/arm64",
        ],
    );
    assert_eq!(
        platform_on_store.status.code(),
        Some(2),
        "{}",
        stderr(&platform_on_store)
    );
    let port = registry.port;
    drop(registry);
    let gone = kiln(
        &elsewhere,
        &["inspect", &format!("docker://127.0.0.1:{port}/team/seen:1")],
    );
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_follows_an_index_to_the_hosts_platform_or_the_one_asked_for() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let host_platform = kiln_image::Platform::host();
    let other = if host_platform.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let native = build_hello(tmp.path(), &store, "0.41.0-native", "");
    let foreign = build_hello(
        tmp.path(),
        &store,
        "0.41.0-foreign",
        &format!("platform = \"linux/{other}\""),
    );
    let repo = format!("{}/team/multi", registry.host);
    let mut entries = Vec::new();
    for (digest, arch) in [
        (&foreign, other),
        (&native, host_platform.architecture.as_str()),
    ] {
        // Pushed by digest only, then named by the index.
        ok(kiln(
            &store,
            &[
                "export",
                &format!("hello@{digest}"),
                &format!("docker://{repo}"),
            ],
        ));
        let manifest = std::fs::read(
            store
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .expect("stored manifest");
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .expect("index");
    let index_digest = Digest::of(&index);
    Remote::new(&registry.host, "team/multi", RegistryAuth::Anonymous)
        .expect("remote")
        .push_manifest("1", "application/vnd.oci.image.index.v1+json", index)
        .await
        .expect("push the index");

    let elsewhere = tmp.path().join("elsewhere");
    let reference = format!("docker://{repo}:1");
    let by_default = inspect(&elsewhere, &[&reference], &[]);
    assert_eq!(by_default["digest"], json!(native), "{by_default:#}");
    assert_eq!(
        by_default["index"],
        json!({"digest": index_digest, "platform": format!("linux/{}", host_platform.architecture)})
    );
    let asked = format!("linux/{other}");
    let picked = inspect(&elsewhere, &[&reference, "--platform", &asked], &[]);
    assert_eq!(picked["digest"], json!(foreign), "{picked:#}");
    assert_eq!(picked["config"]["architecture"], json!(other));
    assert_eq!(picked["index"]["platform"], json!(asked));
    // The index by its digest is followed alike.
    let by_digest = inspect(
        &elsewhere,
        &[&format!("docker://{repo}@{index_digest}")],
        &[],
    );
    assert_eq!(by_digest["digest"], json!(native));
    // A platform the index lacks is bad input naming what it has.
    let missing = kiln(
        &elsewhere,
        &["inspect", &reference, "--platform", "linux/s390x"],
    );
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("linux/s390x"),
        "{}",
        stderr(&missing)
    );
}

/// The htpasswd line for `kiln`/`s3cret`, and a registry wanting it.
fn private_registry() -> Option<Registry> {
    Registry::start_with_auth(Some(&kiln_testkit::htpasswd("kiln", "s3cret")?))
}

#[test]
fn inspect_uses_the_credentials_a_pull_uses() {
    let Some(registry) = private_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let digest = build_hello(tmp.path(), &store, "0.42.0-private", "");
    let good = docker_config(tmp.path(), "good", &registry.host, "kiln:s3cret");
    let reference = format!("docker://{}/team/private:1", registry.host);
    ok(kiln_with_env(
        &store,
        &["export", "hello:0.42.0-private", &reference],
        &[("DOCKER_CONFIG", &good), ("REGISTRY_AUTH_FILE", "")],
    ));
    let seen = inspect(
        &store,
        &[&reference],
        &[("DOCKER_CONFIG", &good), ("REGISTRY_AUTH_FILE", "")],
    );
    assert_eq!(seen["digest"], json!(digest));
    // REGISTRY_AUTH_FILE (containers-auth.json) too.
    let auth_file = PathBuf::from(docker_config(
        tmp.path(),
        "auth",
        &registry.host,
        "kiln:s3cret",
    ))
    .join("config.json");
    let nothing = no_credentials(tmp.path());
    let seen = inspect(
        &store,
        &[&reference],
        &[
            ("DOCKER_CONFIG", &nothing),
            ("REGISTRY_AUTH_FILE", auth_file.to_str().expect("utf8")),
        ],
    );
    assert_eq!(seen["digest"], json!(digest));
    // A credsStore helper on PATH (docker-credential-NAME).
    let path = kiln_testkit::credential_helper(
        &tmp.path().join("bin"),
        "kiln-store-test",
        "kiln",
        "s3cret",
    );
    let stored_creds = tmp.path().join("creds-store");
    std::fs::create_dir_all(&stored_creds).expect("mkdir");
    std::fs::write(
        stored_creds.join("config.json"),
        json!({ "credsStore": "kiln-store-test" }).to_string(),
    )
    .expect("write config.json");
    let out = ok(kiln_with_env(
        &store,
        &["inspect", &reference],
        &[
            ("DOCKER_CONFIG", stored_creds.to_str().expect("utf8")),
            ("REGISTRY_AUTH_FILE", ""),
            ("PATH", &path),
        ],
    ));
    assert_eq!(json(&out)["digest"], json!(digest));
    // The password reached neither the store nor what kiln said.
    assert!(!stderr(&out).contains("s3cret"));
    assert_store_never_saw(&store, "s3cret");

    // Without them: exit 3, naming the registry and what to set.
    let refused = kiln_with_env(
        &store,
        &["inspect", &reference],
        &[("DOCKER_CONFIG", &nothing), ("REGISTRY_AUTH_FILE", "")],
    );
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&registry.host) && err.contains("REGISTRY_AUTH_FILE"),
        "{err}"
    );
}

/// The most requests one kiln command may send a registry that refuses
/// its credentials: the first request, and the same again with the
/// credentials the challenge asked for. A retry loop, or blobs tried one
/// after another, would send many more.
const REFUSED_REQUESTS: usize = 2;

#[test]
fn missing_or_wrong_credentials_are_exit_3_after_a_bounded_number_of_requests() {
    let Some(registry) = private_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    build_hello(tmp.path(), &store, "0.43.0-storm", "");
    // Every request kiln sends goes through the proxy, which counts them.
    let proxy = Proxy::start(&registry.host, Fault::Nothing);
    let good = docker_config(tmp.path(), "good", &proxy.host, "kiln:s3cret");
    ok(kiln_with_env(
        &store,
        &[
            "export",
            "hello:0.43.0-storm",
            &format!("docker://{}/team/private:1", proxy.host),
        ],
        &[("DOCKER_CONFIG", &good), ("REGISTRY_AUTH_FILE", "")],
    ));
    let base_recipe = child_recipe(
        &tmp.path().join("child"),
        &format!("docker://{}/team/private:1", proxy.host),
    );
    // The shared cache takes the same credentials: published with them...
    let cached = hello_copy(&tmp.path().join("cached"), "0.43.0-cache");
    let cached = cached.to_str().expect("utf8");
    let cache = format!("docker://{}/team/cache", proxy.host);
    ok(kiln_with_env(
        &tmp.path().join("publisher"),
        &["build", cached, "--cache-to", &cache],
        &[("DOCKER_CONFIG", &good), ("REGISTRY_AUTH_FILE", "")],
    ));
    let taken = json(&ok(kiln_with_env(
        &tmp.path().join("taker"),
        &["build", cached, "--cache-from", &cache, "--json"],
        &[("DOCKER_CONFIG", &good), ("REGISTRY_AUTH_FILE", "")],
    )));
    let layers = taken["images"][0]["layers"].as_array().expect("layers");
    assert!(
        layers.iter().all(|l| l["cached"] == json!(true)),
        "{taken:#}"
    );
    // ... and refused without them (below), by a store that misses.
    let empty_store = tmp.path().join("empty");

    let nothing = no_credentials(tmp.path());
    let wrong = docker_config(tmp.path(), "wrong", &proxy.host, "kiln:hunter2-bad");
    let commands: [(&str, Vec<String>); 4] = [
        (
            "push",
            vec![
                "export".into(),
                "hello:0.43.0-storm".into(),
                format!("docker://{}/team/private:2", proxy.host),
            ],
        ),
        (
            "inspect",
            vec![
                "inspect".into(),
                format!("docker://{}/team/private:1", proxy.host),
            ],
        ),
        (
            "base",
            vec![
                "build".into(),
                base_recipe.to_str().expect("utf8").into(),
                "--no-cache".into(),
            ],
        ),
        (
            "cache",
            vec![
                "build".into(),
                cached.into(),
                "--cache-from".into(),
                cache.clone(),
            ],
        ),
    ];
    for (credentials, config) in [("missing", &nothing), ("wrong", &wrong)] {
        for (what, args) in &commands {
            let before = proxy.requests().len();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // The cache is asked only by a store that misses the layers.
            let out = kiln_with_env(
                if *what == "cache" {
                    &empty_store
                } else {
                    &store
                },
                &args,
                &[("DOCKER_CONFIG", config), ("REGISTRY_AUTH_FILE", "")],
            );
            let sent = &proxy.requests()[before..];
            eprintln!("{credentials} credentials, {what}: {sent:?}");
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(3), "{credentials} {what}: {err}");
            assert!(
                err.contains(&proxy.host) && err.contains("REGISTRY_AUTH_FILE"),
                "{credentials} {what}: {err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
            assert!(
                !sent.is_empty() && sent.len() <= REFUSED_REQUESTS,
                "{credentials} credentials, {what}: {} requests: {sent:#?}",
                sent.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_whose_checks_fail_pushes_nothing() {
    let Some(_engine) = engine().await else {
        return;
    };
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let image = hello_copy(tmp.path(), "0.44.0-failing");
    let repo = format!("{}/team/never", registry.host);
    let toml = std::fs::read_to_string(image.join("kiln.toml")).expect("read recipe");
    let toml = toml.replace(
        "channels = [\"stable\"]",
        &format!("channels = [\"stable\"]\npush = \"docker://{repo}\""),
    ) + "\n[[check]]\nname = \"fails\"\nfile = \"/nonexistent\"\nexists = true\n";
    std::fs::write(image.join("kiln.toml"), toml).expect("write recipe");
    let store = tmp.path().join("store");
    let _cleanup = support::EngineCleanup(store.clone());
    let out = kiln(&store, &["release", image.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(said.contains("fails"), "the check did not fail: {said}");
    // The registry never heard of the repository: no tag, no blob.
    let tags = Remote::new(&registry.host, "team/never", RegistryAuth::Anonymous)
        .expect("remote")
        .manifest("0.44.0-failing")
        .await;
    assert!(
        matches!(tags, Err(kiln_image::ImageError::RegistryNotFound { .. })),
        "{tags:?}"
    );
    assert!(
        !registry
            .storage
            .join("docker/registry/v2/repositories/team/never")
            .exists(),
        "the failed release sent something"
    );
}

#[test]
fn a_child_of_a_base_from_the_same_registry_mounts_the_base_layers() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    build_hello(tmp.path(), &store, "0.45.0-base", "");
    // Every request goes through the proxy, which writes them down.
    let proxy = Proxy::start(&registry.host, Fault::Nothing);
    ok(kiln(
        &store,
        &[
            "export",
            "hello:0.45.0-base",
            &format!("docker://{}/team/base:1", proxy.host),
        ],
    ));
    let child = child_recipe(
        &tmp.path().join("child"),
        &format!("docker://{}/team/base:1", proxy.host),
    );
    let built = json(&ok(kiln(
        &store,
        &["build", child.to_str().expect("utf8"), "--json"],
    )));
    let digest = built["images"][0]["digest"].as_str().expect("digest");
    let before = proxy.requests().len();
    ok(kiln(
        &store,
        &[
            "export",
            "child:1.0.0",
            &format!("docker://{}/team/child:1", proxy.host),
        ],
    ));
    let sent = &proxy.requests()[before..];
    let mounts = sent
        .iter()
        .filter(|r| {
            r.starts_with("POST ") && r.contains("mount=") && r.contains("from=team%2Fbase")
        })
        .count();
    let chunks = sent.iter().filter(|r| r.starts_with("PATCH ")).count();
    // Every blob the repository lacks is asked for by mount from the
    // base's repository (a refused mount starts the upload instead): the
    // base's two layers are mounted, only the config and the child's own
    // layer go up.
    assert_eq!((mounts, chunks), (4, 2), "{sent:#?}");
    let pushed = skopeo_inspect(&[
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/child:1", registry.host),
    ]);
    let stored = inspect(&store, &[&format!("child@{digest}")], &[]);
    assert_eq!(pushed, stored["manifest"]);
}
