//! The store: an OCI layout written atomically, blobs verified, refs kept
//! canonical.

mod common;

use std::fs;
use std::io::Read;

use common::*;
use kiln_image::{BlobState, Descriptor, Digest, ImageError, Roots, Store, to_canonical_json};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn open_creates_a_layout_and_refuses_foreign_folders() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("new"))?;
    assert_eq!(
        fs::read(store.root().join("oci-layout"))?,
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        fs::read_to_string(store.root().join("index.json"))?,
        r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
    );
    assert!(store.root().join("blobs/sha256").is_dir());
    assert_eq!(store.bookkeeping_dir(), store.root().join("kiln"));
    Store::open(store.root())?;

    let foreign = dir.path().join("home");
    fs::create_dir_all(&foreign)?;
    fs::write(foreign.join("notes.txt"), "mine")?;
    assert!(matches!(
        Store::open(&foreign),
        Err(ImageError::InvalidLayout { .. })
    ));
    Ok(())
}

#[test]
fn blobs_round_trip_and_corruption_is_caught() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let d = store.put_blob(b"hello")?;
    assert_eq!(d, Digest::of(b"hello"));
    assert!(store.has_blob(&d));
    assert_eq!(store.read_blob(&d)?, b"hello");
    let mut streamed = Vec::new();
    store.open_blob(&d)?.read_to_end(&mut streamed)?;
    assert_eq!(streamed, b"hello");

    fs::write(store.blob_path(&d), b"hellO")?;
    match store.read_blob(&d) {
        Err(ImageError::CorruptBlob { digest, path }) => {
            assert_eq!(digest, d);
            assert_eq!(path, store.blob_path(&d));
        }
        other => return Err(format!("expected CorruptBlob, got {other:?}").into()),
    }
    // Writing the same content again repairs the stored copy.
    assert_eq!(store.put_blob(b"hello")?, d);
    assert_eq!(store.read_blob(&d)?, b"hello");
    let missing = Digest::of(b"nothing");
    assert!(matches!(
        store.read_blob(&missing),
        Err(ImageError::MissingBlob { .. })
    ));
    Ok(())
}

#[test]
fn several_blobs_are_stored_whole_under_their_digests_and_a_corrupt_one_is_replaced() -> TestResult
{
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let (config, manifest) = (&b"{\"config\":1}"[..], &b"{\"manifest\":2}"[..]);
    store.put_blobs(&[config, manifest])?;
    for bytes in [config, manifest] {
        assert_eq!(store.read_blob(&Digest::of(bytes))?, bytes);
    }
    let kept = fs::metadata(store.blob_path(&Digest::of(config)))?.ino();
    fs::write(store.blob_path(&Digest::of(manifest)), b"{\"manifest\":3}")?;
    store.put_blobs(&[config, manifest])?;
    assert_eq!(
        fs::metadata(store.blob_path(&Digest::of(config)))?.ino(),
        kept,
        "a whole blob is not written again"
    );
    assert_eq!(store.read_blob(&Digest::of(manifest))?, manifest);
    let names: Vec<_> = fs::read_dir(store.root().join("blobs/sha256"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names.len(), 2, "only the two blobs: {names:?}");
    Ok(())
}

#[test]
fn streamed_blobs_are_verified_before_they_appear() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let wrong = Digest::of(b"something else");
    assert!(matches!(
        store.put_blob_from(&b"content"[..], Some(&wrong)),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert!(!store.has_blob(&wrong));
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))?.count(),
        0,
        "no temporary file is left"
    );
    let (d, size) = store.put_blob_from(&b"content"[..], Some(&Digest::of(b"content")))?;
    assert_eq!((d, size), (Digest::of(b"content"), 7));
    Ok(())
}

#[test]
fn concurrent_writers_of_one_blob_agree() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.put_blob_from(&data[..], None)))
            .collect();
        for h in handles {
            assert!(matches!(h.join(), Ok(Ok(_))));
        }
    });
    assert_eq!(store.read_blob(&Digest::of(&data))?, data);
    Ok(())
}

fn manifest(bytes: &[u8]) -> Descriptor {
    Descriptor::new(MANIFEST, Digest::of(bytes), bytes.len() as u64)
}

#[test]
fn refs_are_replaced_sorted_and_canonical() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let (one, two) = (manifest(b"one"), manifest(b"two"));
    store.set_ref("web:stable", &one)?;
    store.set_ref("web:1.4.2", &one)?;
    store.set_ref("api:2", &two)?;
    store.set_ref("web:stable", &two)?;

    let refs = store.refs()?;
    let names: Vec<&str> = refs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, ["api:2", "web:1.4.2", "web:stable"]);
    assert_eq!(
        store.resolve("web:stable")?.map(|d| d.digest),
        Some(two.digest.clone())
    );
    assert_eq!(
        store.resolve("web:1.4.2")?.map(|d| d.digest),
        Some(one.digest.clone())
    );
    assert_eq!(store.resolve("web:nope")?, None);

    let text = fs::read(store.root().join("index.json"))?;
    let value: serde_json::Value = serde_json::from_slice(&text)?;
    assert_eq!(to_canonical_json(&value)?, text, "index.json is canonical");
    assert_eq!(
        value["manifests"].as_array().map(Vec::len),
        Some(3),
        "the replaced entry is gone"
    );

    assert!(store.remove_ref("api:2")?);
    assert!(!store.remove_ref("api:2")?);
    assert_eq!(store.refs()?.len(), 2);
    assert!(matches!(
        store.set_ref("has space", &one),
        Err(ImageError::InvalidRefName { .. })
    ));
    Ok(())
}

#[test]
fn concurrent_set_ref_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let d = manifest(b"m");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, d) = (&store, &d);
            s.spawn(move || {
                for i in 0..10 {
                    assert!(store.set_ref(&format!("img{t}:{i}"), d).is_ok());
                }
            });
        }
    });
    assert_eq!(store.refs()?.len(), 40);
    Ok(())
}

#[test]
fn manifest_descriptor_reads_the_media_type() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &ctx)?;
    assert_eq!(
        store.manifest_descriptor(&built.manifest.digest)?,
        built.manifest
    );
    Ok(())
}

#[test]
fn gc_removes_only_what_no_ref_reaches() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &ctx)?;
    store.set_ref("web:1", &built.manifest)?;
    let stray = store.put_blob(b"nobody needs me")?;
    let sweep = store.sweep()?;
    let roots = Roots::default();
    let report = store.gc(&sweep, &roots)?;
    assert_eq!(report.removed, std::slice::from_ref(&stray));
    assert_eq!(report.kept, 3);
    assert!(!store.has_blob(&stray));
    assert!(store.has_blob(&built.config_digest) && store.has_blob(&built.layers[0].digest));

    store.remove_ref("web:1")?;
    assert_eq!(store.gc(&sweep, &roots)?.removed.len(), 3);
    assert_eq!(fs::read_dir(store.root().join("blobs/sha256"))?.count(), 0);
    Ok(())
}

#[test]
fn gc_keeps_roots_and_removes_leftover_temporary_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let built = build_sample(&store, &ctx)?;
    let cached = store.put_blob(b"a cached layer")?;
    let stray = store.put_blob(b"nobody needs me")?;
    let leftover = store.root().join("blobs/sha256/.tmp-killed");
    fs::write(&leftover, b"half a blob")?;
    let roots = Roots {
        manifests: [built.manifest.digest.clone()].into(),
        blobs: [cached.clone()].into(),
    };
    let sweep = store.sweep()?;
    let report = store.gc(&sweep, &roots)?;
    assert_eq!(report.removed, vec![stray]);
    assert!(
        !leftover.exists(),
        "a temporary file under the sweep is a leftover"
    );
    assert_eq!(
        report.kept, 4,
        "manifest, config, layer and the cached blob"
    );
    for d in [&built.manifest.digest, &built.config_digest, &cached] {
        assert_eq!(store.verify_blob(d)?, BlobState::Whole);
    }
    Ok(())
}

#[test]
fn verify_blob_tells_whole_from_corrupt_and_missing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let d = store.put_blob(b"content")?;
    assert_eq!(store.verify_blob(&d)?, BlobState::Whole);
    fs::write(store.blob_path(&d), b"other")?;
    assert_eq!(store.verify_blob(&d)?, BlobState::Corrupt);
    let absent = Digest::of(b"absent");
    assert_eq!(store.verify_blob(&absent)?, BlobState::Missing);
    Ok(())
}
