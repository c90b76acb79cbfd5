//! The same inputs give the same bytes: wherever the context lies, whatever
//! the file times and the umask it was checked out with.

mod common;

use std::fs;
use std::io::Write;

use common::*;
use kiln_image::{
    EntryKind, ImageSpec, LayerEntry, LayerRecord, RuntimeConfig, Store, assemble, write_layer,
};

#[test]
fn two_checkouts_give_identical_images() -> TestResult {
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    make_context(&a.path().join("context"), UMASK_002)?;
    make_context(&b.path().join("somewhere/else"), umask_022())?;
    let store_a = Store::open(a.path().join("store"))?;
    let store_b = Store::open(b.path().join("other-store"))?;

    let built_a = build_sample(&store_a, &a.path().join("context"))?;
    let built_b = build_sample(&store_b, &b.path().join("somewhere/else"))?;

    assert_eq!(built_a.manifest.digest, built_b.manifest.digest);
    assert_eq!(built_a.config_digest, built_b.config_digest);
    assert_eq!(built_a.layers, built_b.layers);
    let layer = &built_a.layers[0].digest;
    assert_eq!(
        fs::read(store_a.blob_path(layer))?,
        fs::read(store_b.blob_path(layer))?
    );
    assert_eq!(
        store_a.read_blob(&built_a.manifest.digest)?,
        store_b.read_blob(&built_b.manifest.digest)?
    );
    Ok(())
}

#[test]
fn building_twice_into_one_store_is_stable() -> TestResult {
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let first = build_sample(&store, &dir.path().join("ctx"))?;
    let second = build_sample(&store, &dir.path().join("ctx"))?;
    assert_eq!(first, second);
    Ok(())
}

#[test]
fn the_entry_order_given_does_not_matter() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let entries = sample_entries(&ctx)?;
    let mut reversed = entries.clone();
    reversed.reverse();
    assert_eq!(
        write_layer(&store, entries, EPOCH)?,
        write_layer(&store, reversed, EPOCH)?
    );
    Ok(())
}

#[test]
fn the_epoch_changes_the_layer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    make_context(&ctx, UMASK_002)?;
    let store = Store::open(dir.path().join("store"))?;
    let one = write_layer(&store, sample_entries(&ctx)?, 1)?;
    let two = write_layer(&store, sample_entries(&ctx)?, 2)?;
    assert_ne!(one.diff_id, two.diff_id);
    Ok(())
}

/// The exact bytes kiln writes for a fixed layer and image. These digests
/// change only when the layer or JSON format changes: an intentional format
/// change updates them here (and changes every image digest kiln gives).
#[test]
fn snapshot_of_a_fixed_layer_and_image() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("hello.txt");
    fs::File::create(&source)?.write_all(b"hello, kiln\n")?;
    let store = Store::open(dir.path().join("store"))?;
    let entries = vec![
        LayerEntry {
            path: "/etc".into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
        LayerEntry {
            path: "/etc/hello.txt".into(),
            kind: EntryKind::File { source },
            mode: 0o640,
            uid: 1000,
            gid: 1000,
        },
        LayerEntry {
            path: "/etc/hi".into(),
            kind: EntryKind::Symlink {
                target: "hello.txt".into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
        },
        LayerEntry {
            path: "/tmp".into(),
            kind: EntryKind::Dir,
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
    ];
    let blob = write_layer(&store, entries, 0)?;
    assert_eq!(
        blob.digest.as_str(),
        "sha256:05f2acd71dfdc32e63030755b8a3d4e77c30e586efe78cae9fb6cda4c7ac200c"
    );
    assert_eq!(
        blob.diff_id.as_str(),
        "sha256:a1e6cd1c515c5d47702cae43d5f51607cc4138e017398eb9136a88d42cb3492f"
    );
    assert_eq!(blob.size, 206);

    let built = assemble(
        &store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: None,
            config: RuntimeConfig {
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            },
            layers: vec![LayerRecord {
                blob,
                created_by: "kiln layer etc: files".into(),
            }],
            created_epoch: 0,
            annotations: annotations(0),
        },
    )?;
    assert_eq!(
        built.manifest.digest.as_str(),
        "sha256:c012e95ea57907a6f085c97210d3d6f41e8322b59247a755e9ead0123b8bf16d"
    );
    Ok(())
}

/// A layer of several gzip blocks is the same whatever the number of
/// compression threads, and any gzip reader gives back the tar its diff_id
/// names.
#[test]
fn a_multi_block_layer_is_the_same_on_any_thread_count() -> TestResult {
    use std::io::Read;

    use sha2::{Digest as _, Sha256};

    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx)?;
    // 5 MiB over a few files: some compressible, some not (xorshift noise),
    // so blocks differ in how well they compress.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut entries = Vec::new();
    for i in 0..5u32 {
        let mut content = Vec::with_capacity(1 << 20);
        while content.len() < (1 << 20) + 777 * i as usize {
            if i % 2 == 0 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                content.extend_from_slice(&state.to_le_bytes());
            } else {
                content
                    .extend_from_slice(format!("line {} of file {i}\n", content.len()).as_bytes());
            }
        }
        let source = ctx.join(format!("part{i}"));
        fs::write(&source, &content)?;
        entries.push(LayerEntry {
            path: format!("/data/part{i}"),
            kind: EntryKind::File { source },
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
    }
    let store = Store::open(dir.path().join("store"))?;
    let one = kiln_image::write_layer_with_threads(&store, entries.clone(), EPOCH, 1)?;
    let two = kiln_image::write_layer_with_threads(&store, entries.clone(), EPOCH, 2)?;
    let four = kiln_image::write_layer_with_threads(&store, entries.clone(), EPOCH, 4)?;
    let default = write_layer(&store, entries, EPOCH)?;
    assert_eq!(one, two);
    assert_eq!(one, four);
    assert_eq!(one, default);
    assert!(one.size > 2 << 20, "the layer spans several blocks");

    let blob = fs::read(store.blob_path(&one.digest))?;
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&blob))),
        one.digest.as_str()
    );
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut tar)?;
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&tar))),
        one.diff_id.as_str()
    );
    Ok(())
}
