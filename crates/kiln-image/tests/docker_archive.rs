//! Bases from docker-archives: `docker save` and skopeo archives import
//! with their layers byte for byte (uncompressed layers stay uncompressed),
//! a child built on one loads and runs in Docker; hand-made archives cover
//! gzip layers, symlinked `layer.tar` files, diff_id mismatches and
//! references. Tool-backed tests follow the engine convention.

mod common;

use std::path::Path;

use common::*;
use kiln_image::{
    BaseImage, BuiltImage, Digest, EntryKind, ImageError, ImageSpec, LayerEntry, LayerRecord,
    RuntimeConfig, Store, assemble, import_docker_archive, import_docker_save,
    import_engine_layers, load_image, write_docker_loadable, write_layer,
};
use serde_json::{Value, json};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Removes an image from the engine however the test ends.
struct Rmi(String);

impl Drop for Rmi {
    fn drop(&mut self) {
        let _ = run("docker", &["rmi", "--force", &self.0]);
    }
}

fn entry(path: &str, kind: EntryKind, mode: u32) -> LayerEntry {
    LayerEntry {
        path: path.into(),
        kind,
        mode,
        uid: 0,
        gid: 0,
    }
}

/// A two-layer busybox image built with kiln's own API: busybox and
/// `/bin/sh -> /bin/busybox`, then `/etc/motd`.
fn busybox_base(store: &Store, dir: &Path) -> Result<BuiltImage, Box<dyn std::error::Error>> {
    let motd = dir.join("motd");
    std::fs::write(&motd, "golden base\n")?;
    let first = write_layer(
        store,
        vec![
            entry("/bin", EntryKind::Dir, 0o755),
            entry(
                "/bin/busybox",
                EntryKind::File {
                    source: "/bin/busybox".into(),
                },
                0o755,
            ),
            entry(
                "/bin/sh",
                EntryKind::Symlink {
                    target: "/bin/busybox".into(),
                },
                0o777,
            ),
        ],
        EPOCH,
    )?;
    let second = write_layer(
        store,
        vec![
            entry("/etc", EntryKind::Dir, 0o755),
            entry("/etc/motd", EntryKind::File { source: motd }, 0o644),
        ],
        EPOCH,
    )?;
    let built = assemble(
        store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: None,
            config: RuntimeConfig {
                cmd: Some(vec!["/bin/sh".into()]),
                env: indexmap::IndexMap::from([("PATH".into(), "/bin".into())]),
                ..Default::default()
            },
            layers: vec![
                LayerRecord {
                    blob: first,
                    created_by: "kiln layer busybox: files".into(),
                },
                LayerRecord {
                    blob: second,
                    created_by: "kiln layer motd: files".into(),
                },
            ],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )?;
    store.set_ref("base:1", &built.manifest)?;
    Ok(built)
}

/// A child of `base` with one layer holding `/etc/child`.
fn child_of(
    store: &Store,
    dir: &Path,
    base: BaseImage,
) -> Result<BuiltImage, Box<dyn std::error::Error>> {
    let file = dir.join("child");
    std::fs::write(&file, "built on an imported base\n")?;
    let blob = write_layer(
        store,
        vec![
            entry("/etc", EntryKind::Dir, 0o755),
            entry("/etc/child", EntryKind::File { source: file }, 0o644),
        ],
        EPOCH,
    )?;
    Ok(assemble(
        store,
        &ImageSpec {
            platform: kiln_image::Platform::host(),
            base: Some(base),
            config: RuntimeConfig::default(),
            layers: vec![LayerRecord {
                blob,
                created_by: "kiln layer child: files".into(),
            }],
            created_epoch: EPOCH,
            annotations: annotations(EPOCH),
        },
    )?)
}

/// The imported base keeps the source's diff_ids, and each layer's media
/// type says what its bytes are.
fn check_layers(base: &BaseImage, expected_diff_ids: &[Digest]) {
    assert_eq!(base.diff_ids, expected_diff_ids);
    for (layer, diff_id) in base.layers.iter().zip(&base.diff_ids) {
        if layer.media_type == TAR {
            assert_eq!(
                &layer.digest, diff_id,
                "an uncompressed layer is its diff_id"
            );
        } else {
            assert_eq!(layer.media_type, TAR_GZIP);
            assert_ne!(&layer.digest, diff_id);
        }
    }
}

#[test]
fn a_docker_save_archive_imports_and_a_child_runs() -> TestResult {
    if !engine_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let src = Store::open(dir.path().join("src"))?;
    let built = busybox_base(&src, dir.path())?;
    let source = load_image(&src, &built.manifest.digest)?;
    let tag = format!("kiln-image-test-base:{}", built.manifest.digest.short());
    let _base_cleanup = Rmi(tag.clone());
    let loadable = dir.path().join("loadable.tar");
    write_docker_loadable(
        &src,
        &built.manifest.digest,
        std::slice::from_ref(&tag),
        std::fs::File::create(&loadable)?,
    )?;
    run("docker", &["load", "-i", &loadable.to_string_lossy()])?;
    let saved = dir.path().join("saved.tar");
    run("docker", &["save", "-o", &saved.to_string_lossy(), &tag])?;

    let store = Store::open(dir.path().join("store"))?;
    let base = import_docker_archive(&store, &saved, Some(&tag))?;
    check_layers(&base, &source.diff_ids);
    // Read once as a stream, as a `docker-daemon:` base is: the same image.
    let streamed_store = Store::open(dir.path().join("streamed"))?;
    let streamed = import_docker_save(
        &streamed_store,
        std::fs::File::open(&saved)?,
        Path::new("saved"),
    )?;
    assert_eq!(streamed.manifest_digest, base.manifest_digest);
    // Docker keeps the config bytes, so the image id is unchanged.
    assert_eq!(
        base.manifest["config"]["digest"],
        built.config_digest.as_str()
    );
    assert_eq!(
        store.read_blob(&built.config_digest)?,
        src.read_blob(&built.config_digest)?
    );
    assert!(base.layers.iter().all(|l| l.media_type == TAR));

    let child = child_of(&store, dir.path(), base.clone())?;
    let child_tag = format!("kiln-image-test-child:{}", child.manifest.digest.short());
    let _child_cleanup = Rmi(child_tag.clone());
    let child_archive = dir.path().join("child.tar");
    write_docker_loadable(
        &store,
        &child.manifest.digest,
        std::slice::from_ref(&child_tag),
        std::fs::File::create(&child_archive)?,
    )?;
    run("docker", &["load", "-i", &child_archive.to_string_lossy()])?;
    let out = run(
        "docker",
        &[
            "run",
            "--rm",
            "--network=none",
            &child_tag,
            "/bin/busybox",
            "cat",
            "/etc/motd",
            "/etc/child",
        ],
    )?;
    assert_eq!(out, "golden base\nbuilt on an imported base\n");
    let inspect: Value = serde_json::from_str(&run("docker", &["image", "inspect", &child_tag])?)?;
    let layers: Vec<Digest> = serde_json::from_value(inspect[0]["RootFS"]["Layers"].clone())?;
    let child_image = load_image(&store, &child.manifest.digest)?;
    let mut expected = base.diff_ids.clone();
    expected.push(child_image.diff_ids[2].clone());
    assert_eq!(layers, expected);
    assert_eq!(child_image.diff_ids, expected);
    Ok(())
}

#[test]
fn a_skopeo_docker_archive_imports() -> TestResult {
    if !tool_available("skopeo", &["skopeo", "--version"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let src = Store::open(dir.path().join("src"))?;
    let built = busybox_base(&src, dir.path())?;
    let source = load_image(&src, &built.manifest.digest)?;
    let archive = dir.path().join("skopeo.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:base:1", src.root().display()),
            &format!("docker-archive:{}:base:1", archive.display()),
        ],
    )?;
    let store = Store::open(dir.path().join("store"))?;
    let base = import_docker_archive(&store, &archive, Some("base:1"))?;
    check_layers(&base, &source.diff_ids);
    assert_eq!(base.config["config"], source.config["config"]);
    // The archive's name is normalised as Docker normalises it.
    let again = import_docker_archive(&store, &archive, Some("docker.io/library/base:1"))?;
    assert_eq!(again.manifest_digest, base.manifest_digest);
    Ok(())
}

/// A member of a hand-made archive.
enum Member<'a> {
    File(&'a [u8]),
    Symlink(&'a str),
}

fn archive_of(path: &Path, members: &[(&str, Member<'_>)]) -> TestResult {
    let mut builder = tar::Builder::new(std::fs::File::create(path)?);
    for (name, member) in members {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match member {
            Member::File(data) => {
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data)?;
            }
            Member::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, name, target)?;
            }
        }
    }
    builder.into_inner()?;
    Ok(())
}

/// A hand-made image: the sample layer of the common helpers (gzip, as
/// kiln writes it) and its uncompressed tar, with a config listing
/// `diff_ids`.
struct Parts {
    gzip: Vec<u8>,
    plain: Vec<u8>,
    diff_id: Digest,
    gzip_digest: Digest,
}

fn parts(dir: &Path) -> Result<Parts, Box<dyn std::error::Error>> {
    make_context(&dir.join("ctx"), UMASK_002)?;
    let store = Store::open(dir.join("parts"))?;
    let blob = write_layer(&store, sample_entries(&dir.join("ctx"))?, EPOCH)?;
    let gzip = store.read_blob(&blob.digest)?;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut plain)?;
    assert_eq!(Digest::of(&plain), blob.diff_id);
    Ok(Parts {
        gzip,
        plain,
        diff_id: blob.diff_id,
        gzip_digest: blob.digest,
    })
}

fn config(diff_ids: &[&Digest]) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap_or_default()
}

#[test]
fn gzip_layers_in_the_new_layout_stay_gzip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = parts(dir.path())?;
    let config = config(&[&p.diff_id]);
    let config_name = format!("blobs/sha256/{}", Digest::of(&config).hex());
    let layer_name = format!("blobs/sha256/{}", p.gzip_digest.hex());
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": ["web:1"], "Layers": [layer_name],
    }]))?;
    let archive = dir.path().join("new.tar");
    archive_of(
        &archive,
        &[
            ("manifest.json", Member::File(&manifest)),
            (&config_name, Member::File(&config)),
            (&layer_name, Member::File(&p.gzip)),
        ],
    )?;
    let store = Store::open(dir.path().join("store"))?;
    let base = import_docker_archive(&store, &archive, None)?;
    assert_eq!(base.layers.len(), 1);
    assert_eq!(base.layers[0].media_type, TAR_GZIP);
    assert_eq!(base.layers[0].digest, p.gzip_digest);
    assert_eq!(base.diff_ids, std::slice::from_ref(&p.diff_id));
    assert_eq!(store.read_blob(&p.gzip_digest)?, p.gzip);
    // The config is kept byte for byte (pretty-printed, as written).
    assert_eq!(store.read_blob(&Digest::of(&config))?, config);
    // The synthesised manifest is canonical JSON.
    let manifest_bytes = store.read_blob(&base.manifest_digest)?;
    assert_eq!(
        manifest_bytes,
        kiln_image::to_canonical_json(&base.manifest)?
    );
    Ok(())
}

#[test]
fn symlinked_layer_tars_of_the_classic_layout_are_followed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = parts(dir.path())?;
    // The same layer twice, as `docker save` writes a repeated layer.
    let config = config(&[&p.diff_id, &p.diff_id]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": "cfg.json", "RepoTags": ["old:1"],
        "Layers": ["aaa/layer.tar", "./bbb/layer.tar"],
    }]))?;
    let archive = dir.path().join("old.tar");
    archive_of(
        &archive,
        &[
            ("aaa/layer.tar", Member::File(&p.plain)),
            ("bbb/layer.tar", Member::Symlink("../aaa/layer.tar")),
            ("cfg.json", Member::File(&config)),
            ("manifest.json", Member::File(&manifest)),
        ],
    )?;
    let store = Store::open(dir.path().join("store"))?;
    let base = import_docker_archive(&store, &archive, Some("old:1"))?;
    assert_eq!(base.layers.len(), 2);
    assert_eq!(base.layers[0], base.layers[1]);
    assert_eq!(base.layers[0].media_type, TAR);
    assert_eq!(base.layers[0].digest, p.diff_id);
    assert_eq!(store.read_blob(&p.diff_id)?, p.plain);
    Ok(())
}

#[test]
fn a_wrong_diff_id_names_the_layer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = parts(dir.path())?;
    let wrong = Digest::of(b"another layer");
    let config = config(&[&wrong]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": "cfg.json", "RepoTags": null, "Layers": ["abc/layer.tar"],
    }]))?;
    let archive = dir.path().join("wrong.tar");
    archive_of(
        &archive,
        &[
            ("manifest.json", Member::File(&manifest)),
            ("cfg.json", Member::File(&config)),
            ("abc/layer.tar", Member::File(&p.gzip)),
        ],
    )?;
    let store = Store::open(dir.path().join("store"))?;
    match import_docker_archive(&store, &archive, None) {
        Err(ImageError::DiffIdMismatch {
            layer,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(layer, "abc/layer.tar");
            assert_eq!(expected, wrong);
            assert_eq!(actual, p.diff_id);
        }
        other => return Err(format!("expected DiffIdMismatch, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn references_and_malformed_archives() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = parts(dir.path())?;
    let config = config(&[&p.diff_id]);
    let manifest = serde_json::to_vec(&json!([
        {"Config": "cfg.json", "RepoTags": ["a:1", "a:latest"], "Layers": ["l.tar"]},
        {"Config": "cfg.json", "RepoTags": ["b:1"], "Layers": ["l.tar"]},
    ]))?;
    let archive = dir.path().join("two.tar");
    archive_of(
        &archive,
        &[
            ("manifest.json", Member::File(&manifest)),
            ("cfg.json", Member::File(&config)),
            ("l.tar", Member::File(&p.plain)),
        ],
    )?;
    let store = Store::open(dir.path().join("store"))?;
    match import_docker_archive(&store, &archive, None) {
        Err(ImageError::RefRequired { available, .. }) => {
            assert_eq!(available, ["a:1", "a:latest", "b:1"]);
        }
        other => return Err(format!("expected RefRequired, got {other:?}").into()),
    }
    match import_docker_archive(&store, &archive, Some("c:1")) {
        Err(e @ ImageError::UnknownRef { .. }) => {
            assert!(e.to_string().contains("\"c:1\""), "{e}");
            assert!(e.to_string().contains("b:1"), "{e}");
        }
        other => return Err(format!("expected UnknownRef, got {other:?}").into()),
    }
    assert!(import_docker_archive(&store, &archive, Some("a")).is_ok());
    assert!(import_docker_archive(&store, &archive, Some("b:1")).is_ok());

    let missing_layer = serde_json::to_vec(&json!([
        {"Config": "cfg.json", "RepoTags": ["a:1"], "Layers": ["gone.tar"]},
    ]))?;
    let broken = dir.path().join("broken.tar");
    archive_of(
        &broken,
        &[
            ("manifest.json", Member::File(&missing_layer)),
            ("cfg.json", Member::File(&config)),
        ],
    )?;
    match import_docker_archive(&store, &broken, None) {
        Err(e @ ImageError::InvalidArchive { .. }) => {
            assert!(e.to_string().contains("gone.tar"), "{e}");
        }
        other => return Err(format!("expected InvalidArchive, got {other:?}").into()),
    }

    let no_manifest = dir.path().join("empty.tar");
    archive_of(&no_manifest, &[("cfg.json", Member::File(&config))])?;
    match import_docker_archive(&store, &no_manifest, None) {
        Err(e @ ImageError::InvalidArchive { .. }) => {
            assert!(e.to_string().contains("no manifest.json"), "{e}");
        }
        other => return Err(format!("expected InvalidArchive, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn a_save_stream_read_once_gives_what_the_file_gives() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = parts(dir.path())?;
    // The new layout (config and layers under blobs/) and the classic one
    // (a symlinked layer.tar), each in the order `docker save` writes:
    // layers first, manifest.json last.
    let new_config = config(&[&p.diff_id]);
    let config_name = format!("blobs/sha256/{}", Digest::of(&new_config).hex());
    let layer_name = format!("blobs/sha256/{}", p.gzip_digest.hex());
    let new_manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": ["web:1"], "Layers": [layer_name],
    }]))?;
    let new_archive = dir.path().join("new.tar");
    archive_of(
        &new_archive,
        &[
            (&layer_name, Member::File(&p.gzip)),
            (&config_name, Member::File(&new_config)),
            ("manifest.json", Member::File(&new_manifest)),
        ],
    )?;
    let old_config = config(&[&p.diff_id, &p.diff_id]);
    let old_manifest = serde_json::to_vec(&json!([{
        "Config": "cfg.json", "RepoTags": ["old:1"],
        "Layers": ["aaa/layer.tar", "./bbb/layer.tar"],
    }]))?;
    let old_archive = dir.path().join("old.tar");
    archive_of(
        &old_archive,
        &[
            ("aaa/layer.tar", Member::File(&p.plain)),
            ("bbb/layer.tar", Member::Symlink("../aaa/layer.tar")),
            ("cfg.json", Member::File(&old_config)),
            ("manifest.json", Member::File(&old_manifest)),
        ],
    )?;
    for archive in [&new_archive, &old_archive] {
        let from_file = import_docker_archive(&Store::open(dir.path().join("a"))?, archive, None)?;
        let store = Store::open(dir.path().join("b"))?;
        let streamed = import_docker_save(&store, std::fs::File::open(archive)?, archive)?;
        assert_eq!(streamed.manifest_digest, from_file.manifest_digest);
        assert_eq!(streamed.layers, from_file.layers);
    }

    // Cut short (the engine failed half-way): refused, nothing named.
    let bytes = std::fs::read(&old_archive)?;
    let store = Store::open(dir.path().join("cut"))?;
    let err = import_docker_save(&store, &bytes[..bytes.len() / 2], Path::new("cut"))
        .expect_err("half a stream");
    assert!(err.to_string().contains("cut"), "names the stream: {err}");
    assert!(store.refs()?.is_empty());
    Ok(())
}

/// `plain` (an uncompressed layer tar) split as the container engine keeps
/// a layer: each regular file's bytes in the folder `files` (under names
/// of the record's choosing), and a tar-split record (`record`) of the
/// rest as segments between them.
fn split_as_the_engine_keeps_it(plain: &[u8], files: &Path, record: &Path) -> TestResult {
    use base64::Engine as _;
    use std::io::Write;
    std::fs::create_dir_all(files)?;
    let segment = |bytes: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(r#"{{"type":2,"payload":"{b64}"}}"#)
    };
    let mut lines = Vec::new();
    let (mut at, mut pending) = (0usize, Vec::new());
    while at + 512 <= plain.len() {
        let header = &plain[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size_field = String::from_utf8_lossy(&header[124..136]).into_owned();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)?;
        let padded = size.div_ceil(512) * 512;
        pending.extend_from_slice(header);
        let data = &plain[at + 512..at + 512 + size];
        if header[156] == b'0' && size > 0 {
            // A file's bytes come from the folder.
            lines.push(segment(&pending));
            pending.clear();
            let name = format!("f{}", lines.len());
            std::fs::write(files.join(&name), data)?;
            lines.push(format!(r#"{{"type":1,"name":"./{name}","size":{size}}}"#));
        } else {
            pending.extend_from_slice(data);
        }
        pending.extend_from_slice(&plain[at + 512 + size..at + 512 + padded]);
        at += 512 + padded;
    }
    pending.extend_from_slice(&plain[at..]);
    lines.push(segment(&pending));
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(record)?, flate2::Compression::fast());
    for line in lines {
        writeln!(gz, "{line}")?;
    }
    gz.finish()?;
    Ok(())
}

// A layer the engine keeps unpacked, read back through its tar-split
// record, is the tar it was made from, byte for byte: stored as a save's
// layer is, checked against the config's diff_id. A file changed under the
// record (same size) or cut short is refused.
#[test]
fn a_layer_rebuilt_from_its_files_and_tar_split_record_is_the_saved_tar() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = parts(dir.path())?;
    let files = dir.path().join("diff");
    let record = dir.path().join("tar-split.json.gz");
    split_as_the_engine_keeps_it(&p.plain, &files, &record)?;
    let config_file = dir.path().join("config");
    std::fs::write(&config_file, config(&[&p.diff_id]))?;
    let layers = [(files.clone(), record.clone())];

    let store = Store::open(dir.path().join("store"))?;
    let image = import_engine_layers(&store, &config_file, &layers, Path::new("engine"))?;
    check_layers(&image, std::slice::from_ref(&p.diff_id));
    assert_eq!(image.layers[0].media_type, TAR);
    assert_eq!(store.read_blob(&image.layers[0].digest)?, p.plain);
    // The same base as a save of it gives.
    let manifest = serde_json::to_vec(&json!([{
        "Config": "cfg.json", "RepoTags": null, "Layers": ["abc/layer.tar"],
    }]))?;
    let archive = dir.path().join("saved.tar");
    let config_bytes = std::fs::read(&config_file)?;
    archive_of(
        &archive,
        &[
            ("abc/layer.tar", Member::File(&p.plain)),
            ("cfg.json", Member::File(&config_bytes)),
            ("manifest.json", Member::File(&manifest)),
        ],
    )?;
    let saved = import_docker_archive(&Store::open(dir.path().join("saved"))?, &archive, None)?;
    assert_eq!(saved.manifest_digest, image.manifest_digest);

    // One byte of a file changed: not the layer the config names.
    let first = files.join("f1");
    let mut bytes = std::fs::read(&first)?;
    bytes[0] ^= 0xff;
    std::fs::write(&first, &bytes)?;
    let store = Store::open(dir.path().join("changed"))?;
    match import_engine_layers(&store, &config_file, &layers, Path::new("engine")) {
        Err(ImageError::DiffIdMismatch { expected, .. }) => assert_eq!(expected, p.diff_id),
        other => return Err(format!("expected DiffIdMismatch, got {other:?}").into()),
    }
    // Cut short: an error that names the file, nothing named in the store.
    std::fs::write(&first, &bytes[..bytes.len() - 1])?;
    let err = import_engine_layers(&store, &config_file, &layers, Path::new("engine"))
        .expect_err("a short file");
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain = format!("{chain}: {c}");
        cause = c.source();
    }
    assert!(chain.contains("f1 is shorter"), "{chain}");
    assert!(store.refs()?.is_empty());
    Ok(())
}
