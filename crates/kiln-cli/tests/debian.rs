//! Real distributions, end to end: the debootstrap Debian root that `cargo
//! xtask stage-debian` (and `cargo xtask ci`) stages as
//! `KILN_DEBIAN_ROOTFS` is built into an image with `rootfs:`, unpacked
//! again with umoci as root and compared entry by entry; the same tree from
//! two folders and from a tar file gives one digest; images/web installs
//! nginx with apt as root and is built twice with `--no-cache` to one
//! digest, then tested and released; `--check-reproducible` names the file
//! a nondeterministic step writes; `--no-cache` takes an unchanged `rootfs:`
//! base as it is. Skipped without the staged root (failed
//! under KILN_REQUIRE_ENGINE=1 / CI=true).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{engine, json, kiln, ok, required, stderr};

/// The staged Debian root, or `None` after saying the test is skipped.
fn debian_rootfs() -> Option<PathBuf> {
    let found = std::env::var_os("KILN_DEBIAN_ROOTFS")
        .map(PathBuf::from)
        .filter(|p| p.join("etc/debian_version").is_file());
    assert!(
        found.is_some() || !required(),
        "KILN_DEBIAN_ROOTFS is required (KILN_REQUIRE_ENGINE=1 or CI=true) but unset or not a \
         Debian root: run `cargo xtask stage-debian` and export what it prints"
    );
    if found.is_none() {
        eprintln!("skipped: KILN_DEBIAN_ROOTFS is not set (cargo xtask stage-debian)");
    }
    found
}

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images")
}

/// A copy of images/debian in `dir`, its `rootfs` linked to `rootfs`, and
/// `extra` appended to its recipe. Returns the recipe folder.
fn debian_recipe(dir: &Path, rootfs: &Path, extra: &str) -> PathBuf {
    let recipe = dir.join("debian");
    fs::create_dir_all(&recipe).expect("mkdir");
    let text = fs::read_to_string(images().join("debian/kiln.toml")).expect("images/debian");
    fs::write(recipe.join("kiln.toml"), format!("{text}\n{extra}")).expect("write");
    std::os::unix::fs::symlink(rootfs, recipe.join("rootfs")).expect("symlink");
    recipe
}

fn digest_of(out: &std::process::Output, name: &str) -> String {
    let report = json(out);
    report["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["name"] == name)
        .and_then(|i| i["digest"].as_str())
        .unwrap_or_else(|| panic!("no image {name} in {report}"))
        .to_owned()
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// One entry of a tree, as far as an image can carry it.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    link: Option<PathBuf>,
    device: u64,
    content: Option<Vec<u8>>,
}

/// Every entry below `root` (paths relative to it), and its hard-link
/// groups (sets of paths sharing an inode, for files with several links).
fn tree(root: &Path) -> (BTreeMap<PathBuf, Node>, BTreeSet<BTreeSet<PathBuf>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<u64, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("below root").to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let t = meta.file_type();
            let kind = if t.is_dir() {
                pending.push(path.clone());
                "dir"
            } else if t.is_symlink() {
                "symlink"
            } else if t.is_file() {
                "file"
            } else if t.is_char_device() {
                "char"
            } else if t.is_block_device() {
                "block"
            } else if t.is_fifo() {
                "fifo"
            } else {
                "other"
            };
            if t.is_file() && meta.nlink() > 1 {
                inodes.entry(meta.ino()).or_default().insert(rel.clone());
            }
            let node = Node {
                kind,
                mode: if t.is_symlink() {
                    0
                } else {
                    meta.mode() & 0o7777
                },
                uid: meta.uid(),
                gid: meta.gid(),
                link: t
                    .is_symlink()
                    .then(|| fs::read_link(&path).expect("readlink")),
                device: if t.is_char_device() || t.is_block_device() {
                    meta.rdev()
                } else {
                    0
                },
                content: t.is_file().then(|| fs::read(&path).expect("read")),
            };
            nodes.insert(rel, node);
        }
    }
    (nodes, inodes.into_values().collect())
}

#[test]
fn the_debian_root_comes_back_from_the_image_exactly() {
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    if !support::have_tool("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let recipe = debian_recipe(tmp.path(), &rootfs, "");
    ok(kiln(&store, &["build", arg(&recipe), "--json"]));
    // As root, umoci restores exact owners (field notes).
    let unpacked = support::umoci::unpack(&store, "debian:12", &tmp.path().join("bundle"));
    let (want, want_links) = tree(&rootfs);
    let (got, got_links) = tree(&unpacked);
    let mut differences = Vec::new();
    for (path, node) in &want {
        match got.get(path) {
            Some(other) if other == node => {}
            Some(other) => differences.push(format!(
                "{}: {} {:o} {}:{} {:?} {} / image: {} {:o} {}:{} {:?} {}",
                path.display(),
                node.kind,
                node.mode,
                node.uid,
                node.gid,
                node.link,
                node.device,
                other.kind,
                other.mode,
                other.uid,
                other.gid,
                other.link,
                other.device
            )),
            None => differences.push(format!("{}: missing from the image", path.display())),
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        differences.push(format!("{}: only in the image", path.display()));
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert_eq!(got_links, want_links, "hard-link groups");
    // What the issue names, so that a regression reads plainly.
    let shadow = &got[Path::new("etc/shadow")];
    assert_eq!((shadow.mode, shadow.gid), (0o640, 42));
    assert_eq!(got[Path::new("tmp")].mode, 0o1777);
    assert_eq!(got[Path::new("usr/bin/su")].mode & 0o4000, 0o4000);
    assert_eq!(got[Path::new("dev/null")].kind, "char");
    assert!(!got_links.is_empty(), "debootstrap's perl hard links");
}

#[test]
fn one_tree_in_two_folders_or_a_tar_gives_one_digest() {
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("copy");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&rootfs)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(copied.success(), "cp -a");
    let tarball = tmp.path().join("root.tar.gz");
    let tarred = Command::new("tar")
        .args(["--numeric-owner", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .expect("tar");
    assert!(tarred.success(), "tar");

    let build = |from: &Path, name: &str| {
        let dir = tmp.path().join(name);
        let recipe = debian_recipe(&dir, from, "");
        digest_of(
            &ok(kiln(&dir.join("store"), &["build", arg(&recipe), "--json"])),
            "debian",
        )
    };
    let original = build(&rootfs, "a");
    assert_eq!(build(&copy, "b"), original, "a copy in another folder");
    assert_eq!(
        build(&tarball, "c"),
        original,
        "the same tree as a gzip tar"
    );
}

/// `--no-cache` rebuilds the recipe's layers and takes a `rootfs:` base as
/// it is: its layer blob is not written again (same file, same inode) while
/// the tree is unchanged, and a changed file still gives a new base.
#[test]
fn no_cache_takes_an_unchanged_rootfs_base_as_it_is() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("etc")).expect("mkdir");
    fs::write(root.join("etc/os-release"), "ID=tiny\n").expect("write");
    let dir = tmp.path().join("image");
    fs::create_dir_all(dir.join("site")).expect("mkdir");
    fs::write(dir.join("site/index.html"), "hi\n").expect("write");
    fs::write(
        dir.join("kiln.toml"),
        format!(
            "[image]\nname = \"tiny\"\nversion = \"1.0.0\"\nbase = \"rootfs:{}\"\nepoch = 1700000000\n\n\
             [[layer]]\nname = \"site\"\nfiles = [{{ src = \"site/\", dest = \"/srv/\" }}]\n",
            root.display()
        ),
    )
    .expect("write");
    let store = tmp.path().join("store");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", arg(&dir), "--json"];
        args.extend(extra);
        json(&ok(kiln(&store, &args)))["images"][0].clone()
    };
    // The inode of the base's one layer blob.
    let base_blob = |report: &serde_json::Value| {
        let digest = report["base"]["digest"].as_str().expect("base digest");
        let blob = |d: &str| store.join("blobs/sha256").join(&d["sha256:".len()..]);
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(blob(digest)).expect("manifest")).expect("json");
        let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
        fs::metadata(blob(layer)).expect("layer blob").ino()
    };
    let first = build(&[]);
    let inode = base_blob(&first);
    let again = build(&["--no-cache"]);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["layers"][0]["cached"], serde_json::Value::Bool(false));
    assert_eq!(base_blob(&again), inode, "the base layer was written again");

    fs::write(root.join("etc/os-release"), "ID=tiny2\n").expect("write");
    let changed = build(&["--no-cache"]);
    assert_ne!(changed["base"]["digest"], first["base"]["digest"]);
}

#[test]
fn a_bad_rootfs_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let recipe = |name: &str, base: &str| {
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(
            dir.join("kiln.toml"),
            format!("[image]\nname = \"{name}\"\nbase = \"rootfs:{base}\"\n"),
        )
        .expect("write");
        dir
    };
    let refused = |dir: &Path, says: &str| {
        let out = kiln(&store, &["build", arg(dir)]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    };
    refused(&recipe("missing", "nowhere"), "nowhere");
    let not_tar = recipe("nottar", "notes.txt");
    fs::write(not_tar.join("notes.txt"), "not a tar file at all").expect("write");
    refused(&not_tar, "notes.txt");

    // A tar whose entry climbs out of the root.
    let hostile = recipe("hostile", "evil.tar");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    {
        let name = b"../escape";
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
    }
    header.set_cksum();
    builder.append(&header, &b"evil"[..]).expect("append");
    fs::write(hostile.join("evil.tar"), builder.into_inner().expect("tar")).expect("write");
    refused(&hostile, "../escape");
    // Nothing was stored under those names.
    let images = kiln(&store, &["images", "--json"]);
    assert!(!String::from_utf8_lossy(&images.stdout).contains("hostile"));
}

#[tokio::test(flavor = "multi_thread")]
async fn web_installs_nginx_as_root_and_rebuilds_to_one_digest() {
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let debian = debian_recipe(tmp.path(), &rootfs, "");
    let web = tmp.path().join("web");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(images().join("web"))
        .arg(&web)
        .status()
        .expect("cp");
    assert!(copied.success());
    let store = tmp.path().join("store");
    let _cleanup = support::EngineCleanup(store.clone());

    let build = || ok(kiln(&store, &["build", arg(&web), "--no-cache", "--json"]));
    let first = build();
    let second = build();
    for name in ["debian", "web"] {
        assert_eq!(
            digest_of(&first, name),
            digest_of(&second, name),
            "{name} rebuilt with --no-cache"
        );
    }
    // The layer apt wrote holds nginx, and none of apt's or dpkg's logs.
    let report = json(&first);
    let web_report = report["images"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["name"] == "web"))
        .expect("web");
    assert_eq!(web_report["layers"][0]["name"], "nginx");

    // The base's own checks: shadow 0640 root:shadow, setuid su, dpkg.
    let tested = json(&ok(kiln(&store, &["test", arg(&debian), "--json"])));
    assert_eq!(tested["passed"], true, "{tested:#}");
    let released = json(&ok(kiln(&store, &["release", arg(&web), "--json"])));
    let mut verdicts = Vec::new();
    collect_passed(&released, &mut verdicts);
    assert!(
        !verdicts.is_empty() && verdicts.iter().all(|p| *p),
        "every check passes: {released:#}"
    );
}

/// Every `passed` field anywhere in `v`.
fn collect_passed(v: &serde_json::Value, out: &mut Vec<bool>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_bool()) {
                    ("passed", Some(p)) => out.push(p),
                    _ => collect_passed(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_passed(i, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reproducible_names_the_file_a_step_makes_differ() {
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let _cleanup = support::EngineCleanup(store.clone());
    let steady = debian_recipe(
        &tmp.path().join("steady"),
        &rootfs,
        "[[layer]]\nname = \"motd\"\nrun = \"echo golden > /etc/motd\"\n",
    );
    ok(kiln(
        &store,
        &["build", arg(&steady), "--check-reproducible"],
    ));
    let stamped = debian_recipe(
        &tmp.path().join("stamped"),
        &rootfs,
        "[[layer]]\nname = \"stamp\"\nrun = \"date +%s%N > /stamp\"\n",
    );
    let out = kiln(&store, &["build", arg(&stamped), "--check-reproducible"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("stamp") && said.contains("/stamp"),
        "names the layer and the file: {said}"
    );
    assert!(!said.contains("/etc/motd"), "{said}");
}

/// The bench's run layer (a user added, about 60 MB copied) plus a base
/// file removed and a folder replaced (whiteouts, an opaque folder).
const WORKLOAD: &str = "useradd -m app && cp -a /usr/lib/x86_64-linux-gnu /opt/lib && cp -a /usr/bin /opt/bin && rm /etc/motd && rm -rf /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d && echo kiln > /etc/apt/apt.conf.d/99kiln";

/// The paths in a gzip layer blob.
fn layer_paths(blob: &Path) -> BTreeSet<String> {
    let file = fs::File::open(blob).expect("blob");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            path.trim_end_matches('/').to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn walking_the_upper_folder_and_the_engines_change_list_give_one_layer() {
    let Some(rootfs) = debian_rootfs() else {
        return;
    };
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let recipe = debian_recipe(
        tmp.path(),
        &rootfs,
        &format!("[[layer]]\nname = \"work\"\nrun = \"{WORKLOAD}\"\n"),
    );
    let store = tmp.path().join("store");
    let _cleanup = support::EngineCleanup(store.clone());
    // The default on a local engine: kiln walks the overlay upper folder.
    let walked = ok(kiln(&store, &["build", arg(&recipe), "--json"]));
    // Forced: the engine's change list, the content from its export.
    let listed = ok(support::kiln_with_env(
        &store,
        &["build", arg(&recipe), "--json", "--no-cache"],
        &[("KILN_RUN_LAYER_CAPTURE", "export")],
    ));
    let layer = |out: &std::process::Output| {
        let report = json(out);
        report["images"][0]["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .find(|l| l["name"] == "work")
            .and_then(|l| l["digest"].as_str())
            .expect("layer digest")
            .to_owned()
    };
    assert_eq!(layer(&walked), layer(&listed), "one layer either way");
    assert_eq!(digest_of(&walked, "debian"), digest_of(&listed, "debian"));

    let digest = layer(&walked);
    let paths = layer_paths(
        &store
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").expect("sha256")),
    );
    for want in [
        "etc/.wh.motd",
        "etc/apt/apt.conf.d",
        "etc/apt/apt.conf.d/.wh.01autoremove",
        "etc/apt/apt.conf.d/99kiln",
        "etc/passwd",
        "home/app",
        "opt/lib",
        "opt/bin/dpkg",
    ] {
        assert!(paths.contains(want), "{want} missing from the layer");
    }
    // Copied up for a child's change only: not listed with its content.
    assert!(!paths.contains("etc/apt/apt.conf.d/.wh..wh..opq"));
    assert!(
        !paths.iter().any(|p| p.starts_with("usr/")),
        "nothing of /usr changed"
    );
}
