//! The registry transport against a real CNCF distribution registry
//! (Debian's `docker-registry`) on a loopback port, with skopeo as the
//! independent client: pulls by tag and digest are byte-identical, indexes
//! are followed to the host's platform or the one asked for, tampered blobs
//! and manifests are refused, lying registries leave nothing stored,
//! unknown names and unreachable registries give their own errors, pushes
//! report the digest skopeo sees, and Basic authentication works and fails
//! as it should. Skipped (or failed under KILN_REQUIRE_ENGINE=1 / CI=true)
//! without docker-registry or skopeo.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::*;
use kiln_image::{
    BuiltImage, Descriptor, Digest, ImageError, ImageSpec, LayerRecord, RegistryAuth, Remote,
    RuntimeConfig, Store, assemble, pull_registry, push_image, write_layer,
};
use kiln_testkit::{Fault, Proxy, Registry};
use serde_json::{Value, json};

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether skopeo is here (per the engine convention); the registry is
/// [`Registry::start`]'s to find.
fn tools() -> bool {
    tool_available("skopeo", &["skopeo", "--version"])
}

/// A registry of the test's own, with `htpasswd` wanting Basic
/// credentials; an error (so the test fails) when it cannot be had: the
/// callers already checked what skipping needs.
fn start(htpasswd: Option<&str>) -> Result<Registry, Box<dyn std::error::Error>> {
    Registry::start_with_auth(htpasswd).ok_or_else(|| "docker-registry is not installed".into())
}

/// The sample image in a store at `dir/src`, named `web:1`.
fn source(dir: &Path) -> Result<(Store, BuiltImage), Box<dyn std::error::Error>> {
    make_context(&dir.join("ctx"), UMASK_002)?;
    let store = Store::open(dir.join("src"))?;
    let built = build_sample(&store, &dir.join("ctx"))?;
    store.set_ref("web:1", &built.manifest)?;
    Ok((store, built))
}

fn skopeo_push(
    registry: &Registry,
    store: &Store,
    name: &str,
    target: &str,
    all: bool,
) -> TestResult {
    let src = format!("oci:{}:{name}", store.root().display());
    let dest = format!("docker://{}/{target}", registry.host);
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dest.as_str()]);
    run("skopeo", &args)?;
    Ok(())
}

/// Where the registry keeps blob `d`'s bytes.
fn stored_blob(registry: &Registry, d: &Digest) -> PathBuf {
    registry.blob_path(d.hex())
}

#[tokio::test]
async fn pulls_by_tag_and_by_digest_are_byte_identical() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    skopeo_push(&registry, &src, "web:1", "team/x:1", false)?;

    let store = Store::open(dir.path().join("store"))?;
    let by_tag = pull_registry(
        &store,
        &registry.host,
        "team/x",
        Some("1"),
        None,
        RegistryAuth::Anonymous,
    )
    .await?;
    assert_eq!(by_tag.manifest_digest, built.manifest.digest);
    assert_eq!(by_tag.layers, built.layers);
    for d in [
        &built.manifest.digest,
        &built.config_digest,
        &built.layers[0].digest,
    ] {
        assert_eq!(store.read_blob(d)?, src.read_blob(d)?, "{d}");
    }

    let fresh = Store::open(dir.path().join("fresh"))?;
    let by_digest = pull_registry(
        &fresh,
        &registry.host,
        "team/x",
        None,
        Some(&built.manifest.digest),
        RegistryAuth::Anonymous,
    )
    .await?;
    assert_eq!(by_digest, by_tag);
    Ok(())
}

#[tokio::test]
async fn unknown_names_and_unreachable_registries_are_told_apart() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, _) = source(dir.path())?;
    skopeo_push(&registry, &src, "web:1", "team/x:1", false)?;
    let store = Store::open(dir.path().join("store"))?;
    let anonymous = RegistryAuth::Anonymous;

    let unknown_tag = pull_registry(
        &store,
        &registry.host,
        "team/x",
        Some("2"),
        None,
        anonymous.clone(),
    )
    .await;
    match unknown_tag {
        Err(e @ ImageError::RegistryNotFound { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("tag 2") && message.contains("team/x"),
                "{message}"
            );
        }
        other => return Err(format!("expected RegistryNotFound, got {other:?}").into()),
    }
    let unknown_repo = pull_registry(
        &store,
        &registry.host,
        "team/nope",
        Some("1"),
        None,
        anonymous.clone(),
    )
    .await;
    assert!(
        matches!(&unknown_repo, Err(ImageError::RegistryNotFound { repository, .. }) if repository == "team/nope"),
        "{unknown_repo:?}"
    );
    let wrong = Digest::of(b"no such manifest");
    match pull_registry(
        &store,
        &registry.host,
        "team/x",
        Some("1"),
        Some(&wrong),
        anonymous.clone(),
    )
    .await
    {
        Err(e @ ImageError::RegistryNotFound { .. }) => {
            assert!(e.to_string().contains(wrong.as_str()), "{e}");
        }
        other => return Err(format!("expected RegistryNotFound, got {other:?}").into()),
    }

    let closed = format!("127.0.0.1:{}", free_port()?);
    let unreachable = pull_registry(
        &store,
        &closed,
        "team/x",
        Some("1"),
        None,
        anonymous.clone(),
    )
    .await;
    assert!(
        matches!(&unreachable, Err(ImageError::RegistryUnreachable { host, .. }) if *host == closed),
        "{unreachable:?}"
    );
    let invalid = pull_registry(&store, &registry.host, "Team/X", Some("1"), None, anonymous).await;
    assert!(
        matches!(invalid, Err(ImageError::InvalidRegistryReference { .. })),
        "{invalid:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tampered_content_is_refused_naming_the_blob() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    skopeo_push(&registry, &src, "web:1", "team/x:1", false)?;

    // Same size, one bit changed: only the digest can tell.
    let layer = &built.layers[0].digest;
    let path = stored_blob(&registry, layer);
    let mut bytes = std::fs::read(&path)?;
    bytes[100] ^= 1;
    std::fs::write(&path, bytes)?;
    let store = Store::open(dir.path().join("store"))?;
    match pull_registry(
        &store,
        &registry.host,
        "team/x",
        Some("1"),
        None,
        RegistryAuth::Anonymous,
    )
    .await
    {
        Err(ImageError::DigestMismatch {
            expected,
            source_path,
            ..
        }) => {
            assert_eq!(&expected, layer);
            assert!(source_path.to_string_lossy().ends_with(layer.as_str()));
        }
        other => return Err(format!("expected DigestMismatch, got {other:?}").into()),
    }
    assert!(
        !store.has_blob(layer),
        "a refused blob never enters the store"
    );

    let manifest = stored_blob(&registry, &built.manifest.digest);
    let text = std::fs::read_to_string(&manifest)?;
    // Still a valid manifest (the registry parses it before serving it),
    // but not the one the digest names.
    assert!(text.contains("\"1.4.2\""));
    std::fs::write(&manifest, text.replacen("\"1.4.2\"", "\"6.6.6\"", 1))?;
    for digest in [None, Some(&built.manifest.digest)] {
        match pull_registry(
            &store,
            &registry.host,
            "team/x",
            Some("1"),
            digest,
            RegistryAuth::Anonymous,
        )
        .await
        {
            Err(ImageError::DigestMismatch { expected, .. }) => {
                assert_eq!(expected, built.manifest.digest);
            }
            other => return Err(format!("expected DigestMismatch, got {other:?}").into()),
        }
    }
    Ok(())
}

/// Every blob file under `store`'s blob folder.
fn stored_blobs(store: &Store) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let dir = store.root().join("blobs/sha256");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

#[tokio::test]
async fn a_registry_that_lies_about_a_manifest_is_refused_and_nothing_is_stored() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let remote = Remote::new(&registry.host, "team/lies", RegistryAuth::Anonymous)?;
    remote.push_image(&src, &built.manifest.digest, &[]).await?;

    // An index that announces the host's manifest 10 bytes smaller than it
    // is: the registry serves the real one, bigger than announced.
    let host = kiln_image::Platform::host();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": built.manifest.media_type, "digest": built.manifest.digest,
                       "size": built.manifest.size - 10,
                       "platform": {"architecture": host.architecture, "os": host.os}}],
    }))?;
    remote
        .push_manifest("short", "application/vnd.oci.image.index.v1+json", index)
        .await?;
    let store = Store::open(dir.path().join("store"))?;
    match remote_pull(&store, &registry.host, "team/lies", "short").await {
        Err(ImageError::SizeMismatch {
            digest,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(digest, built.manifest.digest);
            assert_eq!(
                (expected, actual),
                (built.manifest.size - 10, built.manifest.size)
            );
        }
        other => return Err(format!("expected SizeMismatch, got {other:?}").into()),
    }
    assert_eq!(
        stored_blobs(&store)?,
        Vec::<String>::new(),
        "nothing is stored"
    );

    // A manifest larger than the 4 MiB kiln reads. distribution neither
    // takes nor serves one, so a registry of the test's own serves it (valid
    // JSON naming real blobs: only its size lies): refused, nothing stored.
    let config = src.read_blob(&built.config_digest)?;
    let huge = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": built.config_digest, "size": config.len()},
        "layers": [],
        "annotations": {"padding": "x".repeat(5 << 20)},
    }))?;
    let liar = serving_manifest(huge)?;
    match remote_pull(&store, &liar, "team/lies", "huge").await {
        Err(ImageError::Registry { reason, .. }) => {
            assert!(reason.contains("larger than 4194304 bytes"), "{reason}");
        }
        other => return Err(format!("expected a refused manifest, got {other:?}").into()),
    }
    assert_eq!(
        stored_blobs(&store)?,
        Vec::<String>::new(),
        "nothing is stored"
    );
    // The same store then pulls from the honest registry: the refusals
    // left nothing half-done in it.
    remote
        .push_manifest(
            "honest",
            &built.manifest.media_type,
            src.read_blob(&built.manifest.digest)?,
        )
        .await?;
    let base = remote_pull(&store, &registry.host, "team/lies", "honest").await?;
    assert_eq!(base.manifest_digest, built.manifest.digest);
    Ok(())
}

/// A lying registry on loopback: every request is answered with `body` as
/// an OCI manifest. Its host.
fn serving_manifest(body: Vec<u8>) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let host = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let Ok(mut writer) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&body);
        }
    });
    Ok(host)
}

async fn remote_pull(
    store: &Store,
    host: &str,
    repository: &str,
    tag: &str,
) -> Result<kiln_image::BaseImage, ImageError> {
    pull_registry(
        store,
        host,
        repository,
        Some(tag),
        None,
        RegistryAuth::Anonymous,
    )
    .await
}

#[tokio::test]
async fn an_index_is_followed_to_the_host_platform_or_the_one_asked_for() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, arm) = source(dir.path())?;
    // A second image, different from the first, for amd64.
    let amd = assemble(
        &src,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: None,
            config: RuntimeConfig {
                labels: BTreeMap::from([("arch".into(), "amd64".into())]),
                ..Default::default()
            },
            layers: vec![LayerRecord {
                blob: write_layer(&src, vec![], EPOCH)?,
                created_by: "kiln layer empty: files".into(),
            }],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )?;
    let entry = |d: &Descriptor, arch: &str| {
        json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size,
               "platform": {"architecture": arch, "os": "linux"}})
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm.manifest, "arm64"), entry(&amd.manifest, "amd64")],
    }))?;
    let index_digest = src.put_blob(&index)?;
    src.set_ref(
        "multi",
        &Descriptor::new(
            "application/vnd.oci.image.index.v1+json",
            index_digest.clone(),
            index.len() as u64,
        ),
    )?;
    skopeo_push(&registry, &src, "multi", "team/multi:1", true)?;

    let store = Store::open(dir.path().join("store"))?;
    let base = pull_registry(
        &store,
        &registry.host,
        "team/multi",
        Some("1"),
        None,
        RegistryAuth::Anonymous,
    )
    .await?;
    assert_eq!(base.manifest_digest, amd.manifest.digest);
    assert_eq!(base.config["config"]["Labels"]["arch"], "amd64");
    assert_eq!(
        store.read_blob(&index_digest)?,
        index,
        "the index is kept as served"
    );
    assert!(
        !store.has_blob(&arm.layers[0].digest),
        "other platforms are not pulled"
    );

    // `[image] platform = "linux/arm64"` picks the other entry.
    let arm_store = Store::open(dir.path().join("arm-store"))?;
    let arm64 = kiln_image::Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: None,
        extra: BTreeMap::new(),
    };
    let base = Remote::new_read_only(&registry.host, "team/multi", RegistryAuth::Anonymous)?
        .pull(&arm_store, Some("1"), None, &arm64)
        .await?;
    assert_eq!(base.manifest_digest, arm.manifest.digest);
    assert!(!arm_store.has_blob(&amd.layers[0].digest));
    // A platform the index lacks is refused, naming what it has.
    let s390x = kiln_image::Platform {
        architecture: "s390x".into(),
        ..arm64
    };
    let missing = Remote::new_read_only(&registry.host, "team/multi", RegistryAuth::Anonymous)?
        .pull(&arm_store, Some("1"), None, &s390x)
        .await;
    assert!(missing.is_err(), "{missing:?}");
    Ok(())
}

#[tokio::test]
async fn a_pushed_image_has_our_digest() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let digest = push_image(
        &src,
        &built.manifest.digest,
        &registry.host,
        "team/y",
        "1",
        RegistryAuth::Anonymous,
    )
    .await?;
    assert_eq!(digest, built.manifest.digest);
    let inspect: Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/team/y:1", registry.host),
        ],
    )?)?;
    assert_eq!(inspect["Digest"], built.manifest.digest.as_str());

    // Again, and under another tag: the blobs are there already.
    let again = push_image(
        &src,
        &built.manifest.digest,
        &registry.host,
        "team/y",
        "2",
        RegistryAuth::Anonymous,
    )
    .await?;
    assert_eq!(again, built.manifest.digest);
    let store = Store::open(dir.path().join("store"))?;
    let pulled = pull_registry(
        &store,
        &registry.host,
        "team/y",
        Some("2"),
        None,
        RegistryAuth::Anonymous,
    )
    .await?;
    assert_eq!(pulled.manifest_digest, built.manifest.digest);
    assert_eq!(
        store.read_blob(&built.config_digest)?,
        src.read_blob(&built.config_digest)?
    );

    // A corrupt blob in our store stops the push and is named.
    let other = Store::open(dir.path().join("other"))?;
    make_context(&dir.path().join("ctx2"), umask_022())?;
    let built2 = build_sample(&other, &dir.path().join("ctx2"))?;
    let layer = &built2.layers[0];
    let path = other.blob_path(&layer.digest);
    let mut bytes = std::fs::read(&path)?;
    bytes[40] ^= 1;
    std::fs::write(&path, bytes)?;
    let result = push_image(
        &other,
        &built2.manifest.digest,
        &registry.host,
        "team/z",
        "1",
        RegistryAuth::Anonymous,
    )
    .await;
    assert!(
        matches!(&result, Err(ImageError::CorruptBlob { digest, .. }) if digest == &layer.digest),
        "{result:?}"
    );
    Ok(())
}

/// An htpasswd line for `user`/`password`, or `None` when none can be
/// made here (the test is then skipped, or fails under
/// KILN_REQUIRE_ENGINE=1).
fn htpasswd(user: &str, password: &str) -> Option<String> {
    kiln_testkit::htpasswd(user, password)
}

#[tokio::test]
async fn basic_authentication() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let Some(line) = htpasswd("kiln", "s3cret") else {
        return Ok(());
    };
    let registry = start(Some(&line))?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let good = RegistryAuth::Basic {
        username: "kiln".into(),
        password: "s3cret".into(),
    };
    let bad = RegistryAuth::Basic {
        username: "kiln".into(),
        password: "wrong".into(),
    };
    let pushed = push_image(
        &src,
        &built.manifest.digest,
        &registry.host,
        "team/a",
        "1",
        good.clone(),
    )
    .await?;
    assert_eq!(pushed, built.manifest.digest);
    let store = Store::open(dir.path().join("store"))?;
    let pulled = pull_registry(&store, &registry.host, "team/a", Some("1"), None, good).await?;
    assert_eq!(pulled.manifest_digest, built.manifest.digest);

    for (auth, hint) in [
        (bad, "password is wrong"),
        (RegistryAuth::Anonymous, "wants credentials"),
    ] {
        match pull_registry(
            &store,
            &registry.host,
            "team/a",
            Some("1"),
            None,
            auth.clone(),
        )
        .await
        {
            Err(e @ ImageError::RegistryAccessDenied { status: 401, .. }) => {
                assert!(e.to_string().contains(hint), "{e}");
            }
            other => return Err(format!("{auth:?}: expected a 401 refusal, got {other:?}").into()),
        }
        let pushed = push_image(
            &src,
            &built.manifest.digest,
            &registry.host,
            "team/a",
            "2",
            auth,
        )
        .await;
        assert!(
            matches!(pushed, Err(ImageError::RegistryAccessDenied { .. })),
            "{pushed:?}"
        );
    }
    Ok(())
}

/// An image of one layer holding `size` bytes that do not compress, so
/// that its blob is about that large.
fn large_image(dir: &Path, size: usize) -> Result<(Store, BuiltImage), Box<dyn std::error::Error>> {
    let ctx = dir.join("large-ctx");
    std::fs::create_dir_all(&ctx)?;
    // A fixed xorshift stream: incompressible, and the same every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(ctx.join("noise.bin"), bytes)?;
    let store = Store::open(dir.join("large-store"))?;
    let entries = kiln_image::plan_copy(
        &ctx,
        &kiln_image::CopySpec {
            src: "noise.bin".into(),
            dest: "/data/noise.bin".into(),
            mode: Some(0o644),
            uid: 0,
            gid: 0,
            exclude: vec![],
            preserve: false,
        },
    )?;
    let blob = write_layer(&store, entries, EPOCH)?;
    let built = assemble(
        &store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: None,
            config: RuntimeConfig::default(),
            layers: vec![LayerRecord {
                blob,
                created_by: "kiln layer noise: files".into(),
            }],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )?;
    Ok((store, built))
}

#[tokio::test]
async fn a_connection_dropped_mid_upload_does_not_stop_the_push() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = large_image(dir.path(), 3 << 20)?;
    // Cuts the first connection mid-stream once 2.5 MiB went up.
    let proxy = Proxy::start(&registry.host, Fault::CutAfter((5 << 20) / 2));
    let mut remote = Remote::new(&proxy.host, "team/big", RegistryAuth::Anonymous)?;
    remote.set_chunk_size(1 << 20);
    let report = remote
        .push_image(&src, &built.manifest.digest, &["1".into()])
        .await?;
    assert!(
        proxy.faulted(),
        "the proxy never cut a connection: the test proves nothing"
    );
    assert_eq!(report.digest.as_ref(), Some(&built.manifest.digest));
    assert_eq!(report.uploaded.len(), 2, "{report:?}");
    // What the registry holds is exactly our layer, under our digest.
    let layer = &built.layers[0];
    assert_eq!(
        std::fs::read(stored_blob(&registry, &layer.digest))?,
        src.read_blob(&layer.digest)?
    );
    let inspect: Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/team/big:1", registry.host),
        ],
    )?)?;
    assert_eq!(inspect["Digest"], built.manifest.digest.as_str());
    Ok(())
}

#[tokio::test]
async fn a_second_push_sends_nothing_and_other_repositories_mount() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let remote = Remote::new(&registry.host, "team/first", RegistryAuth::Anonymous)?;
    let first = remote
        .push_image(&src, &built.manifest.digest, &["1".into(), "stable".into()])
        .await?;
    assert_eq!(first.uploaded.len(), 2, "{first:?}");
    assert_eq!(first.tags, ["1", "stable"]);
    let again = remote
        .push_image(&src, &built.manifest.digest, &["2".into()])
        .await?;
    assert!(
        again.uploaded.is_empty() && again.mounted.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.present.len(), 2, "{again:?}");
    for tag in ["1", "stable", "2"] {
        let served = remote.manifest(tag).await?;
        assert_eq!(served.digest, built.manifest.digest, "tag {tag}");
    }

    let other = Remote::new(&registry.host, "team/second", RegistryAuth::Anonymous)?;
    other.allow_mounts_from(&["team/first".into()]);
    let mounted = other
        .push_image(&src, &built.manifest.digest, &["1".into()])
        .await?;
    assert!(mounted.uploaded.is_empty(), "{mounted:?}");
    assert_eq!(mounted.mounted.len(), 2, "{mounted:?}");

    // Small documents go up and come back as they are (what signatures use).
    let payload = br#"{"critical":{}}"#.to_vec();
    let d = other
        .push_blob_bytes(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            payload.clone(),
        )
        .await?;
    assert_eq!(other.fetch_blob_bytes(&d).await?, payload);
    Ok(())
}

#[tokio::test]
async fn credentials_come_from_config_files() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let Some(line) = htpasswd("kiln", "s3cret") else {
        return Ok(());
    };
    let registry = start(Some(&line))?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    let docker = dir.path().join("config.json");
    let auth_file = dir.path().join("auth.json");
    use base64::Engine as _;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(
        &docker,
        json!({"auths": {registry.host.clone(): {"auth": encode("kiln:s3cret")}}}).to_string(),
    )?;
    std::fs::write(
        &auth_file,
        json!({"auths": {registry.host.clone(): {"auth": encode("kiln:hunter2-bad")}}}).to_string(),
    )?;
    let from_docker = kiln_image::CredentialFiles {
        files: vec![docker.clone()],
    }
    .lookup(&registry.host)?;
    push_image(
        &src,
        &built.manifest.digest,
        &registry.host,
        "team/c",
        "1",
        from_docker,
    )
    .await?;
    // The auth file comes first: its wrong password is used, and refused.
    let both = kiln_image::CredentialFiles {
        files: vec![auth_file, docker],
    }
    .lookup(&registry.host)?;
    let refused = push_image(
        &src,
        &built.manifest.digest,
        &registry.host,
        "team/c",
        "2",
        both,
    )
    .await;
    match refused {
        Err(e @ ImageError::RegistryAccessDenied { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&registry.host) && !text.contains("hunter2"),
                "{text}"
            );
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    Ok(())
}

/// How many times one request is tried before its fault is reported.
const ATTEMPTS: usize = 5;

#[tokio::test]
async fn busy_answers_and_resets_are_tried_again_a_bounded_number_of_times() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = source(dir.path())?;
    skopeo_push(&registry, &src, "web:1", "team/x:1", false)?;

    // 503, then 429 with Retry-After, then a reset: the fourth try passes.
    let busy = Proxy::start(&registry.host, Fault::Busy(3));
    let store = Store::open(dir.path().join("store"))?;
    let pulled = remote_pull(&store, &busy.host, "team/x", "1").await?;
    assert!(busy.faulted(), "the proxy answered nothing itself");
    assert_eq!(pulled.manifest_digest, built.manifest.digest);
    let requests = busy.requests();
    assert_eq!(
        requests[..4],
        [
            "GET /v2/team/x/manifests/1 HTTP/1.1",
            "GET /v2/team/x/manifests/1 HTTP/1.1",
            "GET /v2/team/x/manifests/1 HTTP/1.1",
            "GET /v2/team/x/manifests/1 HTTP/1.1",
        ],
        "{requests:#?}"
    );

    // A registry that stays busy: the fault is reported after the last try,
    // naming the registry, and no more requests are sent.
    let down = Proxy::start(&registry.host, Fault::Busy(1000));
    let fresh = Store::open(dir.path().join("fresh"))?;
    let refused = remote_pull(&fresh, &down.host, "team/x", "1").await;
    match refused {
        Err(e @ (ImageError::Registry { .. } | ImageError::RegistryUnreachable { .. })) => {
            assert!(e.to_string().contains(&down.host), "{e}");
        }
        other => return Err(format!("expected a registry fault, got {other:?}").into()),
    }
    assert_eq!(down.requests().len(), ATTEMPTS, "{:#?}", down.requests());
    assert_eq!(
        stored_blobs(&fresh)?,
        Vec::<String>::new(),
        "nothing is stored"
    );
    Ok(())
}

#[tokio::test]
async fn a_blob_that_will_not_go_up_is_named_with_its_image_and_how_far_it_got() -> TestResult {
    if !tools() {
        return Ok(());
    }
    let registry = start(None)?;
    let dir = tempfile::tempdir()?;
    let (src, built) = large_image(dir.path(), 3 << 20)?;
    // Every connection that starts sending a chunk is cut.
    let proxy = Proxy::start(&registry.host, Fault::CutUploads);
    let mut remote = Remote::new(&proxy.host, "team/cut", RegistryAuth::Anonymous)?;
    remote.set_chunk_size(1 << 20);
    let failed = remote
        .push_image(&src, &built.manifest.digest, &["1".into()])
        .await;
    assert!(
        proxy.faulted(),
        "no upload was cut: the test proves nothing"
    );
    let config_size = src.read_blob(&built.config_digest)?.len() as u64;
    let message = failed
        .as_ref()
        .map_or_else(ToString::to_string, |r| format!("{r:?}"));
    match failed {
        Err(ImageError::BlobPush {
            blob, what, sent, ..
        }) => {
            let image = built.manifest.digest.as_str();
            // The config goes first, alone.
            assert_eq!(blob, built.config_digest, "{message}");
            assert_eq!(what, format!("config of image {image}"), "{message}");
            assert_eq!(sent, (0, config_size), "{message}");
            assert!(
                message.contains(&format!("0 of {config_size} bytes"))
                    && message.contains(&format!("{}/team/cut", proxy.host)),
                "{message}"
            );
        }
        other => return Err(format!("expected BlobPush, got {other:?}").into()),
    }
    let patches = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH "))
        .count();
    assert_eq!(patches, ATTEMPTS, "{:#?}", proxy.requests());
    // No tag was written.
    let tagged = Remote::new(&registry.host, "team/cut", RegistryAuth::Anonymous)?
        .manifest("1")
        .await;
    assert!(
        matches!(tagged, Err(ImageError::RegistryNotFound { .. })),
        "{tagged:?}"
    );
    Ok(())
}
