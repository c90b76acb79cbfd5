//! The registry transport against a real CNCF distribution registry
//! (Debian's `docker-registry`) on a loopback port, with skopeo as the
//! independent client: pulls by tag and digest are byte-identical, indexes
//! are followed to linux/amd64, tampered blobs and manifests are refused,
//! unknown names and unreachable registries give their own errors, pushes
//! report the digest skopeo sees, and Basic authentication works and fails
//! as it should. Skipped (or failed under KILN_REQUIRE_ENGINE=1 / CI=true)
//! without docker-registry or skopeo.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kiln_image::{
    BuiltImage, Descriptor, Digest, ImageError, ImageSpec, LayerRecord, RegistryAuth,
    RuntimeConfig, Store, assemble, pull_registry, push_image, write_layer,
};
use serde_json::{Value, json};

/// A registry process of our own, killed (by its pid) when dropped.
struct Registry {
    child: Child,
    host: String,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the registry and skopeo are here (per the engine convention).
fn tools() -> bool {
    tool_available("docker-registry", &["docker-registry", "--version"])
        && tool_available("skopeo", &["skopeo", "--version"])
}

/// Start a registry; with `htpasswd`, it requires Basic authentication
/// against that file's content.
fn start(htpasswd: Option<&str>) -> Result<Registry, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let storage = dir.path().join("storage");
    let port = free_port()?;
    let auth = match htpasswd {
        Some(content) => {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, content)?;
            format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                file.display()
            )
        }
        None => String::new(),
    };
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            storage.display()
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("registry.log"))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let registry = Registry {
        child,
        host: format!("127.0.0.1:{port}"),
        storage,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(&registry.host).is_err() {
        if Instant::now() > deadline {
            return Err("the registry did not start listening within 15 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(registry)
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
    registry
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
        .join("data")
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

#[tokio::test]
async fn an_index_is_followed_to_linux_amd64() -> TestResult {
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

/// An htpasswd line for `user`/`password` (bcrypt, from Python's crypt
/// module).
fn htpasswd(user: &str, password: &str) -> Result<String, Box<dyn std::error::Error>> {
    let hash = run(
        "python3",
        &[
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            password,
        ],
    )?;
    Ok(format!("{user}:{}\n", hash.trim()))
}

#[tokio::test]
async fn basic_authentication() -> TestResult {
    if !tools()
        || !tool_available(
            "python3 with crypt",
            &[
                "python3",
                "-W",
                "ignore",
                "-c",
                "import crypt; assert crypt.METHOD_BLOWFISH",
            ],
        )
    {
        return Ok(());
    }
    let registry = start(Some(&htpasswd("kiln", "s3cret")?))?;
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
