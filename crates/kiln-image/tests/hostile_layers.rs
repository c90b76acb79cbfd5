//! Hostile base layers: hand-built tars whose entries would escape an
//! extractor's target folder, or create device nodes, are refused with an
//! error naming the entry; an ordinary layer (absolute symlink targets
//! included) passes, gzip or plain; the importers run the check.

mod common;

use std::io::Write;
use std::path::Path;

use common::TestResult;
use kiln_image::{
    Descriptor, Digest, ImageError, LayerPolicy, Store, import_docker_archive, import_docker_save,
    import_oci_layout, to_canonical_json, validate_layer_entries,
};
use serde_json::json;
use tar::{EntryType, Header};

/// One tar entry, spelled as raw as a hostile tool would write it.
struct Raw<'a> {
    name: &'a str,
    kind: EntryType,
    link: &'a str,
    data: &'a [u8],
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: EntryType::Regular,
        link: "",
        data,
    }
}

fn dir(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: EntryType::Directory,
        link: "",
        data: b"",
    }
}

fn link<'a>(name: &'a str, kind: EntryType, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind,
        link: target,
        data: b"",
    }
}

/// A tar of `entries`, headers filled byte by byte (the tar crate's own
/// setters refuse `..` and absolute paths, which is the point here).
fn tar_of(entries: &[Raw<'_>]) -> Result<Vec<u8>, std::io::Error> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        let old = h.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1)?;
            h.set_device_minor(3)?;
        }
        h.set_cksum();
        builder.append(&h, e.data)?;
    }
    builder.into_inner()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes)?;
    gz.finish()
}

/// Put `bytes` into the store as a layer blob.
fn layer(store: &Store, bytes: &[u8], gzipped: bool) -> Result<Descriptor, ImageError> {
    let media_type = if gzipped {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    Ok(Descriptor::new(
        media_type,
        store.put_blob(bytes)?,
        bytes.len() as u64,
    ))
}

/// Validate `entries` as a plain and as a gzip layer with `policy`; both
/// must give the same verdict, which is returned.
fn check(
    entries: &[Raw<'_>],
    policy: LayerPolicy,
) -> Result<Result<(), ImageError>, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let plain = tar_of(entries)?;
    let compressed = gzip(&plain)?;
    let a = validate_layer_entries(&store, &layer(&store, &plain, false)?, policy);
    let b = validate_layer_entries(&store, &layer(&store, &compressed, true)?, policy);
    assert_eq!(
        a.as_ref()
            .err()
            .map(ToString::to_string)
            .map(|m| m.split_once(": ").map(|p| p.1.to_owned())),
        b.as_ref()
            .err()
            .map(ToString::to_string)
            .map(|m| m.split_once(": ").map(|p| p.1.to_owned())),
        "plain and gzip give the same verdict"
    );
    Ok(a)
}

/// `entries` must be refused, naming `culprit`.
fn refused(entries: &[Raw<'_>], culprit: &str) -> TestResult {
    match check(entries, LayerPolicy::default())? {
        Err(ImageError::HostileLayerEntry { entry, reason, .. }) => {
            assert_eq!(entry, culprit, "{reason}");
            Ok(())
        }
        other => Err(format!("{culprit}: expected a refusal, got {other:?}").into()),
    }
}

#[test]
fn a_parent_path_is_refused() -> TestResult {
    refused(
        &[
            dir("etc/"),
            file("../etc/passwd", b"root::0:0::/:/bin/sh\n"),
        ],
        "../etc/passwd",
    )?;
    refused(&[file("a/b/../../../x", b"")], "a/b/../../../x")
}

#[test]
fn an_absolute_path_is_refused() -> TestResult {
    refused(&[file("ok", b""), file("/abs", b"x")], "/abs")
}

#[test]
fn a_hardlink_leading_out_is_refused() -> TestResult {
    refused(
        &[
            dir("a/"),
            dir("a/b/"),
            link("a/b/x", EntryType::Link, "../../x"),
        ],
        "a/b/x",
    )?;
    refused(&[link("shadow", EntryType::Link, "/etc/shadow")], "shadow")
}

#[test]
fn a_relative_symlink_climbing_above_the_root_passes() -> TestResult {
    // The kernel resolves `..` at `/` to `/`: inside the image it stays in
    // the image, and nothing is written through it within the layer.
    let verdict = check(
        &[dir("a/"), link("a/up", EntryType::Symlink, "../../../etc")],
        LayerPolicy::default(),
    )?;
    assert!(verdict.is_ok(), "{verdict:?}");
    Ok(())
}

#[test]
fn writing_through_a_symlink_is_refused() -> TestResult {
    refused(
        &[
            link("x", EntryType::Symlink, "/etc"),
            file("x/passwd", b"evil"),
        ],
        "x/passwd",
    )
}

#[test]
fn device_nodes_pass_unless_a_policy_forbids_them() -> TestResult {
    let entries = [dir("dev/"), link("dev/null", EntryType::Char, "")];
    let allowed = check(&entries, LayerPolicy::default())?;
    assert!(allowed.is_ok(), "{allowed:?}");
    let forbid = LayerPolicy {
        allow_devices: false,
    };
    let refused_here = check(&entries, forbid)?;
    assert!(
        matches!(&refused_here, Err(ImageError::HostileLayerEntry { entry, .. }) if entry == "dev/null"),
        "{refused_here:?}"
    );
    Ok(())
}

#[test]
fn an_ordinary_layer_passes() -> TestResult {
    let verdict = check(
        &[
            dir("./"),
            dir("./bin/"),
            file("./bin/busybox", b"\x7fELF"),
            link("./bin/sh", EntryType::Symlink, "/bin/busybox"),
            link("./bin/ls", EntryType::Link, "bin/busybox"),
            dir("./usr/"),
            dir("./usr/bin/"),
            link("./usr/bin/env", EntryType::Symlink, "../../bin/busybox"),
            link("./usr/bin/abs", EntryType::Symlink, "/../../etc"),
            file("./usr/.wh.old", b""),
            file("./usr/bin/.wh..wh..opq", b""),
            link("./run", EntryType::Fifo, ""),
        ],
        LayerPolicy::default(),
    )?;
    assert!(verdict.is_ok(), "{verdict:?}");
    Ok(())
}

#[test]
fn not_a_tar_and_a_corrupt_blob_are_told_apart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let garbage = layer(&store, &[7u8; 2048], false)?;
    let result = validate_layer_entries(&store, &garbage, LayerPolicy::default());
    assert!(
        matches!(result, Err(ImageError::InvalidLayer { .. })),
        "{result:?}"
    );

    let good = layer(&store, &gzip(&tar_of(&[file("a", b"hello")])?)?, true)?;
    let path = store.blob_path(&good.digest);
    let mut bytes = std::fs::read(&path)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes)?;
    let result = validate_layer_entries(&store, &good, LayerPolicy::default());
    assert!(
        matches!(result, Err(ImageError::CorruptBlob { .. })),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn the_importers_run_the_check() -> TestResult {
    let dir = tempfile::tempdir()?;
    let layout = Store::open(dir.path().join("layout"))?;
    let bad = gzip(&tar_of(&[file("../etc/passwd", b"x")])?)?;
    let diff_id = kiln_image::Digest::of(&tar_of(&[file("../etc/passwd", b"x")])?);
    let layer = layer(&layout, &bad, true)?;
    let config = to_canonical_json(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    let manifest = to_canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": Descriptor::new("application/vnd.oci.image.config.v1+json", layout.put_blob(&config)?, config.len() as u64),
        "layers": [layer],
    }))?;
    let descriptor = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        layout.put_blob(&manifest)?,
        manifest.len() as u64,
    );
    layout.set_ref("bad:1", &descriptor)?;
    let store = Store::open(dir.path().join("store"))?;
    match import_oci_layout(&store, layout.root(), Some("bad:1")) {
        Err(ImageError::HostileLayerEntry {
            layer: l, entry, ..
        }) => {
            assert_eq!(l, layer.digest);
            assert_eq!(entry, "../etc/passwd");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    Ok(())
}

/// A `docker save` stream of one image whose one layer is `layer` (plain
/// tar or gzip) with the uncompressed digest `diff_id`, in the order the
/// engine writes it: the layer, the config, manifest.json last.
fn save_stream(layer: &[u8], diff_id: &Digest) -> Result<Vec<u8>, std::io::Error> {
    let config = to_canonical_json(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .map_err(std::io::Error::other)?;
    let manifest = serde_json::to_vec(&json!([{
        "Config": "cfg.json", "RepoTags": ["save:1"], "Layers": ["aaa/layer.tar"],
    }]))?;
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("aaa/layer.tar", layer),
        ("cfg.json", &config[..]),
        ("manifest.json", &manifest[..]),
    ] {
        let mut header = Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data)?;
    }
    builder.into_inner()
}

/// Bytes this thread has read through read(2) so far (`rchar` of
/// /proc/thread-self/io): other tests' threads do not count.
fn thread_bytes_read() -> u64 {
    std::fs::read_to_string("/proc/thread-self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .expect("/proc/thread-self/io")
}

// The docker-archive importers check each layer's entries as it is copied
// into the store, plain or gzip, file or stream, with the same verdicts as
// validate_layer_entries, and never read a stored layer back to do so.
#[test]
fn docker_archive_layers_are_checked_as_they_stream_by() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let hostile = tar_of(&[dir("etc/"), file("../etc/passwd", b"x")])?;
    for bytes in [hostile.clone(), gzip(&hostile)?] {
        let stream = save_stream(&bytes, &Digest::of(&hostile))?;
        let file = tmp.path().join("hostile.tar");
        std::fs::write(&file, &stream)?;
        for streamed in [true, false] {
            let store = Store::open(tmp.path().join(format!("s-{streamed}-{}", bytes.len())))?;
            let result = if streamed {
                import_docker_save(&store, &stream[..], &file)
            } else {
                import_docker_archive(&store, &file, None)
            };
            match result {
                Err(ImageError::HostileLayerEntry { layer, entry, .. }) => {
                    assert_eq!(layer, Digest::of(&bytes));
                    assert_eq!(entry, "../etc/passwd");
                }
                other => return Err(format!("expected a refusal, got {other:?}").into()),
            }
            assert!(store.refs()?.is_empty(), "nothing is named");
        }
    }

    // Not a tar at all: an invalid layer, as the stored-layer check says.
    let garbage = [7u8; 2048];
    let stream = save_stream(&garbage, &Digest::of(&garbage))?;
    let store = Store::open(tmp.path().join("garbage"))?;
    let result = import_docker_save(&store, &stream[..], Path::new("garbage"));
    assert!(
        matches!(result, Err(ImageError::InvalidLayer { .. })),
        "{result:?}"
    );

    // A good layer of 8 MiB, plain and gzip: imported while this thread
    // reads far less than the layer from disk (the stream is in memory;
    // checking the stored blob afterwards would read all of it again).
    let big: Vec<u8> = (0..8u32 << 20)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2])
        .collect();
    let good = tar_of(&[dir("data/"), file("data/big.bin", &big)])?;
    for bytes in [good.clone(), gzip(&good)?] {
        let stream = save_stream(&bytes, &Digest::of(&good))?;
        let store = Store::open(tmp.path().join(format!("good-{}", bytes.len())))?;
        let before = thread_bytes_read();
        let image = import_docker_save(&store, &stream[..], Path::new("good"))?;
        let read = thread_bytes_read() - before;
        assert_eq!(image.diff_ids, [Digest::of(&good)]);
        assert!(
            read < (bytes.len() / 4) as u64,
            "{read} bytes read for a layer of {}",
            bytes.len()
        );
    }
    Ok(())
}
