//! scan_image on real images in a real store, built with kiln-image's own
//! API: every place a secret can hide is planted once and must be found,
//! named, and never shown.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiln_image::{
    BuiltImage, Digest, EntryKind, ImageError, ImageSpec, LayerBlob, LayerEntry, LayerRecord,
    RuntimeConfig, Store, assemble, load_image, rfc3339, write_layer,
};
use kiln_secrets::{Encoding, Leak, LeakLocation, SecretError, SecretValue, scan_image};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TOKEN: &str = "tok-7Hq2xZ9pLm4Kw";
const PASSWORD: &str = "pw!Zebra-Quartz-81";
const EPOCH: u64 = 1_700_000_000;

fn secrets() -> Vec<SecretValue> {
    vec![
        SecretValue::new("api_token", TOKEN),
        // A file secret: the trailing newline is part of the value.
        SecretValue::new("db_password", format!("{PASSWORD}\n")),
    ]
}

/// A build context and a store in one temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Result<Fixture, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        std::fs::create_dir(dir.path().join("ctx"))?;
        Ok(Fixture { dir, store })
    }

    fn ctx(&self) -> &Path {
        self.dir.path()
    }

    /// An entry for the file at `path` in the image holding `content`.
    fn file(&self, path: &str, content: &[u8]) -> Result<LayerEntry, std::io::Error> {
        let source = self
            .ctx()
            .join("ctx")
            .join(path.trim_start_matches('/').replace('/', "_"));
        std::fs::write(&source, content)?;
        Ok(entry(path, EntryKind::File { source }))
    }

    fn layer(&self, entries: Vec<LayerEntry>, created_by: &str) -> Result<LayerRecord, ImageError> {
        Ok(LayerRecord {
            blob: write_layer(&self.store, entries, EPOCH)?,
            created_by: created_by.into(),
        })
    }

    fn image(
        &self,
        layers: Vec<LayerRecord>,
        config: RuntimeConfig,
        annotations: BTreeMap<String, String>,
    ) -> Result<BuiltImage, ImageError> {
        assemble(
            &self.store,
            &ImageSpec {
                platform: kiln_image::Platform::host(),
                base: None,
                config,
                layers,
                created_epoch: EPOCH,
                annotations,
            },
        )
    }

    /// A one-layer image of `entries` with a harmless config.
    fn simple(&self, entries: Vec<LayerEntry>) -> Result<BuiltImage, ImageError> {
        let layer = self.layer(entries, "kiln layer app: files")?;
        self.image(vec![layer], config(), annotations())
    }

    fn scan(&self, image: &BuiltImage, skip: usize) -> Result<Vec<Leak>, SecretError> {
        scan_image(&self.store, &image.manifest.digest, &secrets(), skip)
    }
}

fn entry(path: &str, kind: EntryKind) -> LayerEntry {
    let mode = match kind {
        EntryKind::Dir => 0o755,
        EntryKind::Symlink { .. } => 0o777,
        EntryKind::File { .. } | EntryKind::HardLink { .. } => 0o644,
        EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => 0o666,
    };
    LayerEntry {
        path: path.into(),
        kind,
        mode,
        uid: 0,
        gid: 0,
    }
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        entrypoint: Some(vec!["/bin/app".into()]),
        cmd: Some(vec!["--serve".into()]),
        env: [("PATH".into(), "/bin".into())].into(),
        labels: BTreeMap::from([("org.opencontainers.image.source".into(), "web".into())]),
        ..Default::default()
    }
}

fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([("org.opencontainers.image.created".into(), rfc3339(EPOCH))])
}

/// Entries that look like a real app but hold no secret.
fn clean_entries(f: &Fixture) -> Result<Vec<LayerEntry>, std::io::Error> {
    Ok(vec![
        entry("/etc", EntryKind::Dir),
        f.file(
            "/etc/app.conf",
            b"token_file = /run/secrets/api_token\nport = 8080\n",
        )?,
        f.file(
            "/bin/app",
            &[0x7f, b'E', b'L', b'F', 0, 1, 2, 3, 0xff, 0xfe],
        )?,
        entry(
            "/bin/sh",
            EntryKind::Symlink {
                target: "busybox".into(),
            },
        ),
    ])
}

/// The one leak expected, and checks that its Display names everything
/// needed and reveals nothing.
fn only_leak(leaks: &[Leak]) -> &Leak {
    assert_eq!(leaks.len(), 1, "{leaks:#?}");
    let leak = &leaks[0];
    assert_shows_no_value(leak);
    leak
}

fn assert_shows_no_value(leak: &Leak) {
    let shown = format!("{leak} {leak:?}");
    for value in [TOKEN, PASSWORD] {
        assert!(!shown.contains(value), "{shown}");
        let b64 = STANDARD.encode(value);
        assert!(!shown.contains(&b64[..b64.len() - 4]), "{shown}");
    }
    assert!(shown.contains(&leak.secret), "{shown}");
}

fn layer_digest(image: &BuiltImage, index: usize) -> Digest {
    image.layers[index].digest.clone()
}

#[test]
fn a_clean_image_has_no_leaks() -> TestResult {
    let f = Fixture::new()?;
    let image = f.simple(clean_entries(&f)?)?;
    assert_eq!(f.scan(&image, 0)?, vec![]);
    Ok(())
}

#[test]
fn a_secret_in_file_content_names_secret_layer_and_path() -> TestResult {
    let f = Fixture::new()?;
    let mut entries = clean_entries(&f)?;
    entries.push(f.file("/etc/motd", format!("welcome\nkey={TOKEN}\n").as_bytes())?);
    let image = f.simple(entries)?;
    let leaks = f.scan(&image, 0)?;
    let leak = only_leak(&leaks);
    let digest = layer_digest(&image, 0);
    assert_eq!(
        leak,
        &Leak {
            secret: "api_token".into(),
            form: Encoding::Raw,
            location: LeakLocation::LayerFile {
                layer: 0,
                digest: digest.clone(),
                path: "/etc/motd".into(),
            },
        }
    );
    let shown = leak.to_string();
    assert_eq!(
        shown,
        format!(
            "secret api_token (raw) found in layer 0 (sha256:{}…) at /etc/motd",
            digest.short()
        )
    );
    Ok(())
}

#[test]
fn a_file_secret_without_its_newline_is_found() -> TestResult {
    let f = Fixture::new()?;
    let image =
        f.simple(vec![f.file(
            "/env.sh",
            format!("export DB={PASSWORD}; run").as_bytes(),
        )?])?;
    let leak = only_leak(&f.scan(&image, 0)?).clone();
    assert_eq!(
        (leak.secret.as_str(), leak.form),
        ("db_password", Encoding::Raw)
    );
    Ok(())
}

#[test]
fn a_secret_in_a_file_name_is_reported_with_the_name_redacted() -> TestResult {
    let f = Fixture::new()?;
    let mut entries = clean_entries(&f)?;
    entries.push(f.file(&format!("/etc/cache-{TOKEN}.json"), b"{}")?);
    let image = f.simple(entries)?;
    let leaks = f.scan(&image, 0)?;
    assert_eq!(
        only_leak(&leaks).location,
        LeakLocation::LayerPath {
            layer: 0,
            digest: layer_digest(&image, 0),
            path: "/etc/cache-***.json".into(),
        }
    );
    Ok(())
}

#[test]
fn a_secret_in_a_symlink_target_is_found() -> TestResult {
    let f = Fixture::new()?;
    let mut entries = clean_entries(&f)?;
    entries.push(entry(
        "/etc/current",
        EntryKind::Symlink {
            target: format!("/opt/{PASSWORD}/bin"),
        },
    ));
    let image = f.simple(entries)?;
    let leaks = f.scan(&image, 0)?;
    let leak = only_leak(&leaks);
    assert_eq!(leak.secret, "db_password");
    assert_eq!(
        leak.location,
        LeakLocation::LayerPath {
            layer: 0,
            digest: layer_digest(&image, 0),
            path: "/etc/current".into(),
        }
    );
    Ok(())
}

#[test]
fn secrets_in_env_label_history_and_annotation_are_each_found() -> TestResult {
    let f = Fixture::new()?;
    let layer = f.layer(
        clean_entries(&f)?,
        &format!("kiln layer setup: run curl -H 'X-Token: {TOKEN}'"),
    )?;
    let mut config = config();
    config.env.insert("DB_PASSWORD".into(), PASSWORD.into());
    config
        .labels
        .insert("org.example.token".into(), format!("Bearer {TOKEN}"));
    let mut annotations = annotations();
    annotations.insert("org.example.note".into(), format!("built with {TOKEN}"));
    let image = f.image(vec![layer], config, annotations)?;

    let leaks = f.scan(&image, 0)?;
    for leak in &leaks {
        assert_shows_no_value(leak);
    }
    let found: Vec<(&str, &LeakLocation)> = leaks
        .iter()
        .map(|l| (l.secret.as_str(), &l.location))
        .collect();
    // Env keeps the order given: PATH=/bin, then DB_PASSWORD=...
    let config_at = |field: &str| LeakLocation::Config {
        field: field.into(),
    };
    assert_eq!(
        found,
        vec![
            ("db_password", &config_at("/config/Env/1")),
            ("api_token", &config_at("/config/Labels/org.example.token")),
            ("api_token", &LeakLocation::History { index: 0 }),
            (
                "api_token",
                &LeakLocation::Annotation {
                    key: "org.example.note".into()
                }
            ),
        ]
    );
    assert_eq!(
        leaks[2].to_string(),
        "secret api_token (raw) found in entry 0 of the image history"
    );
    Ok(())
}

#[test]
fn base64_of_the_value_in_a_file_is_found() -> TestResult {
    let f = Fixture::new()?;
    // HTTP basic auth puts the token 5 bytes into the encoded text.
    let auth = STANDARD.encode(format!("deploy:{TOKEN}"));
    let hex_form = hex::encode(PASSWORD);
    let image = f.simple(vec![
        f.file(
            "/root/.netrc",
            format!("Authorization: Basic {auth}\n").as_bytes(),
        )?,
        f.file("/etc/db.hex", hex_form.as_bytes())?,
    ])?;
    let leaks = f.scan(&image, 0)?;
    let found: Vec<(&str, Encoding, &LeakLocation)> = leaks
        .iter()
        .map(|l| (l.secret.as_str(), l.form, &l.location))
        .collect();
    let at = |path: &str| LeakLocation::LayerFile {
        layer: 0,
        digest: layer_digest(&image, 0),
        path: path.into(),
    };
    assert_eq!(
        found,
        vec![
            ("db_password", Encoding::Hex, &at("/etc/db.hex")),
            ("api_token", Encoding::Base64, &at("/root/.netrc")),
        ]
    );
    assert!(leaks[1].to_string().contains("(base64)"), "{}", leaks[1]);
    Ok(())
}

#[test]
fn a_secret_across_a_64_kib_boundary_in_a_large_file_is_found() -> TestResult {
    let f = Fixture::new()?;
    for start in [65_536 - 7, 2 * 65_536 - 1, 3 * 65_536 - TOKEN.len() + 1] {
        let mut content: Vec<u8> = (0..4 * 65_536u32).map(|i| b'a' + (i % 23) as u8).collect();
        content[start..start + TOKEN.len()].copy_from_slice(TOKEN.as_bytes());
        let image = f.simple(vec![f.file("/var/big.bin", &content)?])?;
        let leaks = f.scan(&image, 0)?;
        assert_eq!(only_leak(&leaks).secret, "api_token", "secret at {start}");
    }
    Ok(())
}

#[test]
fn every_leak_is_reported_once_per_secret_and_place() -> TestResult {
    let f = Fixture::new()?;
    let content = format!("{TOKEN} {TOKEN} {} {PASSWORD}\n", STANDARD.encode(TOKEN));
    let image = f.simple(vec![
        f.file("/a.txt", content.as_bytes())?,
        f.file("/b.txt", hex::encode_upper(TOKEN).as_bytes())?,
    ])?;
    let leaks = f.scan(&image, 0)?;
    let found: Vec<(&str, Encoding)> = leaks.iter().map(|l| (l.secret.as_str(), l.form)).collect();
    // /a.txt holds the token raw twice and in base64: once, as raw.
    assert_eq!(
        found,
        vec![
            ("api_token", Encoding::Raw),
            ("db_password", Encoding::Raw),
            ("api_token", Encoding::HexUpper),
        ]
    );
    Ok(())
}

#[test]
fn base_layers_are_skipped_and_indexes_count_them() -> TestResult {
    let f = Fixture::new()?;
    let base_layer = f.layer(
        vec![f.file("/etc/base-secret", TOKEN.as_bytes())?],
        "base: files",
    )?;
    let base = f.image(vec![base_layer], RuntimeConfig::default(), BTreeMap::new())?;
    let base = load_image(&f.store, &base.manifest.digest)?;
    let top_layer = f.layer(vec![f.file("/etc/top", PASSWORD.as_bytes())?], "app: files")?;
    let image = assemble(
        &f.store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: Some(base),
            config: config(),
            layers: vec![top_layer],
            created_epoch: EPOCH,
            annotations: annotations(),
        },
    )?;

    let with_base = f.scan(&image, 0)?;
    let layers: Vec<(usize, &str)> = with_base
        .iter()
        .filter_map(|l| match &l.location {
            LeakLocation::LayerFile { layer, .. } => Some((*layer, l.secret.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(layers, vec![(0, "api_token"), (1, "db_password")]);

    let leaks = f.scan(&image, 1)?;
    assert_eq!(
        only_leak(&leaks).location,
        LeakLocation::LayerFile {
            layer: 1,
            digest: layer_digest(&image, 1),
            path: "/etc/top".into(),
        }
    );
    assert!(only_leak(&leaks).to_string().contains("in layer 1 ("));
    Ok(())
}

/// A plain (uncompressed) tar layer, put into an image by hand.
fn plain_tar_image(f: &Fixture, content: &[u8]) -> Result<BuiltImage, Box<dyn std::error::Error>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "srv/data.txt", content)?;
    let tar = builder.into_inner()?;
    let digest = f.store.put_blob(&tar)?;
    let blob = LayerBlob {
        diff_id: digest.clone(),
        digest,
        size: tar.len() as u64,
    };
    Ok(f.image(
        vec![LayerRecord {
            blob,
            created_by: "plain".into(),
        }],
        config(),
        annotations(),
    )?)
}

#[test]
fn plain_tar_layers_are_read_and_corrupt_blobs_refused() -> TestResult {
    let f = Fixture::new()?;
    let image = plain_tar_image(&f, format!("x {TOKEN} x").as_bytes())?;
    let leaks = f.scan(&image, 0)?;
    assert_eq!(
        only_leak(&leaks).location,
        LeakLocation::LayerFile {
            layer: 0,
            digest: layer_digest(&image, 0),
            path: "/srv/data.txt".into(),
        }
    );

    // The same size, one byte changed inside the file's content: the tar
    // still reads, the digest no longer matches.
    let path = f.store.blob_path(&layer_digest(&image, 0));
    let mut bytes = std::fs::read(&path)?;
    let at = bytes
        .windows(TOKEN.len())
        .position(|w| w == TOKEN.as_bytes())
        .ok_or("token not in the tar")?;
    bytes[at] = b'X';
    std::fs::write(&path, bytes)?;
    match f.scan(&image, 0) {
        Err(SecretError::Image(ImageError::CorruptBlob { digest, .. })) => {
            assert_eq!(digest, layer_digest(&image, 0));
        }
        other => panic!("expected a corrupt blob error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_layer_that_is_not_a_tar_is_an_error_naming_it() -> TestResult {
    let f = Fixture::new()?;
    let junk = vec![0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8];
    let digest = f.store.put_blob(&junk)?;
    let image = f.image(
        vec![LayerRecord {
            blob: LayerBlob {
                diff_id: digest.clone(),
                digest: digest.clone(),
                size: junk.len() as u64,
            },
            created_by: "junk".into(),
        }],
        config(),
        annotations(),
    )?;
    let err = f.scan(&image, 0).err().ok_or("junk layer accepted")?;
    let shown = err.to_string();
    assert!(matches!(err, SecretError::Io { layer: 0, .. }), "{err:?}");
    assert!(shown.contains(digest.as_str()), "{shown}");
    Ok(())
}

#[test]
fn no_secrets_means_no_leaks_even_with_content() -> TestResult {
    let f = Fixture::new()?;
    let image = f.simple(vec![f.file("/t", TOKEN.as_bytes())?])?;
    assert_eq!(
        scan_image(&f.store, &image.manifest.digest, &[], 0)?,
        vec![]
    );
    let missing = Digest::of(b"no such manifest");
    assert!(matches!(
        scan_image(&f.store, &missing, &secrets(), 0),
        Err(SecretError::Image(ImageError::MissingBlob { .. }))
    ));
    Ok(())
}
