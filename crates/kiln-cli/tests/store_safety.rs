//! One store, many kiln processes, hostile names and killed builds: the
//! store's guarantees (docs/reliability.md) proven with the real binary,
//! several processes at once, and the real engine where images are booted.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_store_never_saw, json, kiln, kiln_with_env, ok, stderr};

const SECRET: &str = "s3cr3t-store-safety-7Q";

/// A small files-only recipe `name` at `version` in `dir/name-version`:
/// busybox and a `shared/` folder that every recipe of a test has alike,
/// and a page of its own. `extra` is appended to the recipe.
fn recipe(dir: &Path, name: &str, version: &str, page: &str, extra: &str) -> PathBuf {
    let root = dir.join(format!("{name}-{version}"));
    std::fs::create_dir_all(root.join("rootfs")).expect("mkdir rootfs");
    std::fs::create_dir_all(root.join("site")).expect("mkdir site");
    std::fs::create_dir_all(root.join("shared")).expect("mkdir shared");
    std::fs::copy("/bin/busybox", root.join("rootfs/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    std::fs::write(root.join("shared/common.txt"), "the same in every image\n").expect("write");
    std::fs::write(root.join("site/index.html"), page).expect("write");
    let toml = format!(
        r#"[image]
name = "{name}"
version = "{version}"
base = "scratch"
epoch = 1700000000

[config]
entrypoint = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
env = {{ PATH = "/bin" }}
labels = {{ "test.store-safety" = "{name}-{version}" }}
expose = [8080]

[[layer]]
name = "busybox"
files = [{{ src = "rootfs/busybox", dest = "/bin/busybox", mode = 0o755 }}]

[[layer]]
name = "shared"
files = [{{ src = "shared/", dest = "/shared/" }}]

[[layer]]
name = "site"
files = [{{ src = "site/", dest = "/www/" }}]

[boot]
timeout = "240s"

[[check]]
name = "busybox answers"
command = ["/bin/busybox", "echo", "hi"]
stdout_contains = "hi"
{extra}"#
    );
    std::fs::write(root.join("kiln.toml"), toml).expect("write recipe");
    root
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn built_digest(out: &Output) -> String {
    json(out)["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned()
}

/// `kiln fsck --json` says the store is clean (and exits 0).
fn assert_fsck_clean(store: &Path) {
    let out = kiln(store, &["fsck", "--json"]);
    let report = json(&out);
    assert_eq!(
        report["problems"],
        serde_json::json!([]),
        "fsck found problems: {report:#}"
    );
    assert_eq!(report["clean"], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Every file under `dir` with its content, to show that nothing changed.
fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.parent().is_none_or(|p| !p.ends_with("locks")) {
                files.insert((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    files
}

#[test]
fn names_that_would_leave_the_store_are_refused_with_exit_2_and_nothing_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let image = recipe(tmp.path(), "names", "1.0.0", "names\n", "");
    let digest = built_digest(&ok(kiln(&store, &["build", path_str(&image), "--json"])));
    let before = snapshot(tmp.path());
    let cases: [&[&str]; 6] = [
        &["rollback", "../../etc", "--channel", "stable"],
        &["rollback", "/etc", "--channel", "stable"],
        &["rollback", "names", "--channel", "../x"],
        &["rollback", "names/../../x", "--channel", "stable"],
        &["promote", &format!("names@{digest}"), "--channel", "../x"],
        &[
            "promote",
            &format!("../names@{digest}"),
            "--channel",
            "stable",
        ],
    ];
    for args in cases {
        let out = kiln(&store, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        before == snapshot(tmp.path()),
        "a refused name wrote something"
    );
    assert!(!tmp.path().join("x.json").exists() && !tmp.path().join("x").exists());
}

#[test]
fn four_overlapping_builds_beside_a_gc_loop_all_succeed_and_fsck_is_clean() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let names = ["gca", "gcb", "gcc", "gcd"];
    let recipes: Vec<PathBuf> = names
        .iter()
        .map(|n| recipe(tmp.path(), n, "1.0.0", &format!("{n} round 0\n"), ""))
        .collect();
    // The store exists before the race so that gc has something to open.
    ok(kiln(&store, &["images"]));
    let done = Arc::new(AtomicBool::new(false));
    let gc_runs = Arc::new(AtomicUsize::new(0));
    let gc_removed = Arc::new(AtomicUsize::new(0));
    let gc_loop = {
        let (store, done) = (store.clone(), done.clone());
        let (gc_runs, gc_removed) = (gc_runs.clone(), gc_removed.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let report = json(&ok(kiln(&store, &["gc", "--json"])));
                let removed = report["removed"].as_array().map_or(0, Vec::len);
                gc_removed.fetch_add(removed, Ordering::SeqCst);
                gc_runs.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let rounds = 5;
    let builders: Vec<_> = recipes
        .iter()
        .zip(names)
        .map(|(recipe, name)| {
            let (store, recipe) = (store.clone(), recipe.clone());
            std::thread::spawn(move || {
                let mut digests = Vec::new();
                for round in 0..rounds {
                    // New content each round: new blobs, old ones unnamed.
                    std::fs::write(
                        recipe.join("site/index.html"),
                        format!("{name} round {round}\n"),
                    )
                    .expect("write page");
                    let out = ok(kiln(&store, &["build", path_str(&recipe), "--json"]));
                    digests.push(built_digest(&out));
                }
                digests
            })
        })
        .collect();
    let digests: Vec<Vec<String>> = builders
        .into_iter()
        .map(|b| b.join().expect("builder"))
        .collect();
    done.store(true, Ordering::SeqCst);
    gc_loop.join().expect("gc loop");
    let (gc_runs, gc_removed) = (
        gc_runs.load(Ordering::SeqCst),
        gc_removed.load(Ordering::SeqCst),
    );
    eprintln!(
        "store_safety: 20 builds by 4 processes beside {gc_runs} gc runs that removed {gc_removed} blobs"
    );
    assert!(gc_runs >= 1, "gc ran beside the builds");
    for (name, digests) in names.iter().zip(&digests) {
        assert_eq!(digests.len(), rounds);
        let unique: BTreeSet<&String> = digests.iter().collect();
        assert_eq!(unique.len(), rounds, "{name}: each round is a new image");
        // The last build's image is whole: export streams and verifies
        // every blob.
        let archive = tmp.path().join(format!("{name}.tar"));
        ok(kiln(
            &store,
            &[
                "export",
                &format!("{name}:1.0.0"),
                &format!("oci-archive:{}", archive.display()),
            ],
        ));
        let images = json(&ok(kiln(&store, &["inspect", &format!("{name}:1.0.0")])));
        assert_eq!(
            images["digest"].as_str(),
            digests.last().map(String::as_str)
        );
    }
    assert_fsck_clean(&store);
    // And gc after the race removes the rounds nothing names, still clean.
    ok(kiln(&store, &["gc"]));
    assert_fsck_clean(&store);
}

#[test]
fn leaking_builds_beside_good_builds_sharing_their_layers_leave_the_good_images_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let secret_decl = "\n[secrets.api_token]\nfrom = \"env:KILN_STORE_SAFETY_SECRET\"\n";
    let mut runs = Vec::new();
    for i in 0..3 {
        let good = recipe(
            tmp.path(),
            &format!("good{i}"),
            "1.0.0",
            &format!("good {i}\n"),
            secret_decl,
        );
        let bad = recipe(
            tmp.path(),
            &format!("leaky{i}"),
            "1.0.0",
            &format!("leaky {i}: token={SECRET}\n"),
            secret_decl,
        );
        runs.push((good, true));
        runs.push((bad, false));
    }
    ok(kiln(&store, &["images"]));
    let threads: Vec<_> = runs
        .into_iter()
        .map(|(recipe, good)| {
            let store = store.clone();
            std::thread::spawn(move || {
                let out = kiln_with_env(
                    &store,
                    &["build", path_str(&recipe), "--json"],
                    &[("KILN_STORE_SAFETY_SECRET", SECRET)],
                );
                (recipe, good, out)
            })
        })
        .collect();
    for thread in threads {
        let (recipe, good, out) = thread.join().expect("build thread");
        if good {
            ok(out);
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("secret api_token"),
                "{}",
                stderr(&out)
            );
            assert!(!stderr(&out).contains(SECRET));
        }
        let _ = recipe;
    }
    for i in 0..3 {
        let archive = tmp.path().join(format!("good{i}.tar"));
        ok(kiln(
            &store,
            &[
                "export",
                &format!("good{i}:1.0.0"),
                &format!("oci-archive:{}", archive.display()),
            ],
        ));
        assert!(archive.is_file());
    }
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    let names: BTreeSet<&str> = images["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["good0", "good1", "good2"]));
    assert_store_never_saw(&store, SECRET);
    assert_fsck_clean(&store);
}

/// The history file of a channel and where its ref in index.json points.
fn channel_state(store: &Path, name: &str, channel: &str) -> (Vec<Value>, Option<String>) {
    let history: Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("kiln/channels/{name}/{channel}.json")))
            .expect("history"),
    )
    .expect("history JSON");
    let index: Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).expect("index"))
            .expect("index JSON");
    let ref_name = format!("{name}:{channel}");
    let in_index = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == ref_name.as_str())
        .and_then(|m| m["digest"].as_str().map(str::to_owned));
    (
        history["events"].as_array().expect("events").clone(),
        in_index,
    )
}

/// Replays a history as kiln-promote does: a promotion pushes, a rollback
/// pops back to its digest.
fn replay(events: &[Value]) -> Option<String> {
    let mut stack: Vec<&str> = Vec::new();
    for e in events {
        let digest = e["digest"].as_str().expect("digest");
        if e["action"] == "promote" {
            stack.push(digest);
        } else {
            while stack.last().is_some_and(|top| *top != digest) {
                stack.pop();
            }
        }
    }
    stack.last().map(|s| (*s).to_owned())
}

#[tokio::test]
async fn twelve_releases_racing_twelve_rollbacks_keep_channel_and_index_in_agreement() {
    if support::engine().await.is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let promote = "\n[promote]\nchannels = [\"stable\"]\n";
    let name = "racer";
    // Two releases first, so that rollbacks have somewhere to go.
    for v in ["0.0.1", "0.0.2"] {
        let r = recipe(tmp.path(), name, v, &format!("{v}\n"), promote);
        ok(kiln(&store, &["release", path_str(&r), "--json"]));
    }
    let releases: Vec<PathBuf> = (1..=12)
        .map(|i| {
            let v = format!("1.0.{i}");
            recipe(tmp.path(), name, &v, &format!("{v}\n"), promote)
        })
        .collect();
    // Each release is followed at once by a rollback, while the other
    // releases are still building, booting and promoting: rollbacks race
    // the promotions and each other.
    let pairs: Vec<_> = releases
        .into_iter()
        .map(|r| {
            let store = store.clone();
            std::thread::spawn(move || {
                let release = kiln(&store, &["release", path_str(&r)]);
                let rollback = kiln(&store, &["rollback", name, "--channel", "stable"]);
                (release, rollback)
            })
        })
        .collect();
    let mut rollbacks_done = 0;
    for pair in pairs {
        let (release, rollback) = pair.join().expect("release thread");
        ok(release);
        if rollback.status.success() {
            rollbacks_done += 1;
        } else {
            // Only "nothing to roll back to" may refuse a rollback.
            assert_eq!(rollback.status.code(), Some(1), "{}", stderr(&rollback));
            assert!(
                stderr(&rollback).contains("roll back"),
                "{}",
                stderr(&rollback)
            );
        }
    }
    eprintln!("store_safety: 12 releases raced 12 rollbacks, {rollbacks_done} rollbacks moved");
    let (events, in_index) = channel_state(&store, name, "stable");
    let promotions = events.iter().filter(|e| e["action"] == "promote").count();
    let rollbacks = events.iter().filter(|e| e["action"] == "rollback").count();
    assert_eq!(promotions, 14, "no promotion was lost");
    assert_eq!(rollbacks, rollbacks_done, "no rollback was lost");
    assert!(rollbacks_done >= 1, "some rollbacks ran");
    assert_eq!(replay(&events), in_index, "index.json follows the history");
    assert_fsck_clean(&store);
    // gc --keep 1 never drops what a channel's history names: every
    // promoted image stays whole and a rollback still finds its target.
    ok(kiln(&store, &["gc", "--keep", "1"]));
    for e in &events {
        let digest = e["digest"].as_str().expect("digest");
        let blob = store.join("blobs/sha256").join(&digest["sha256:".len()..]);
        assert!(
            blob.is_file(),
            "{digest} of the history survived gc --keep 1"
        );
    }
    assert_fsck_clean(&store);
    ok(kiln(&store, &["rollback", name, "--channel", "stable"]));
    let (events, in_index) = channel_state(&store, name, "stable");
    assert_eq!(replay(&events), in_index);

    // A ref moved behind kiln's back: fsck says so, --repair follows the
    // history again.
    let index_path = store.join("index.json");
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("JSON");
    let first = events
        .iter()
        .map(|e| e["digest"].clone())
        .find(|d| d.as_str() != in_index.as_deref())
        .expect("a digest the channel does not name now");
    for m in index["manifests"].as_array_mut().expect("manifests") {
        if m["annotations"]["org.opencontainers.image.ref.name"] == format!("{name}:stable") {
            m["digest"] = first.clone();
        }
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("JSON")).expect("write");
    let out = kiln(&store, &["fsck", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let kinds: Vec<Value> = json(&out)["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![Value::from("channel_ref_mismatch")]);
    ok(kiln(&store, &["fsck", "--repair"]));
    assert_fsck_clean(&store);
    let (events, repaired) = channel_state(&store, name, "stable");
    assert_eq!(replay(&events), repaired);
    assert_eq!(repaired, in_index);
}

/// A file of `mib` MiB whose bytes gzip cannot shrink much, so that the
/// build spends real time hashing and compressing it.
fn noise(path: &Path, mib: usize) {
    noise_seeded(path, mib, 0);
}

/// [`noise`] of its own for each `seed`.
fn noise_seeded(path: &Path, mib: usize, seed: u64) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut bytes = Vec::with_capacity(mib << 20);
    while bytes.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write noise");
}

#[test]
fn a_build_killed_at_twenty_moments_leaves_a_store_fsck_accepts_and_the_next_build_agrees() {
    let tmp = tempfile::tempdir().expect("tmp");
    let extra = "\n[[layer]]\nname = \"big\"\nfiles = [{ src = \"big/\", dest = \"/big/\" }]\n";
    let image = recipe(tmp.path(), "killed", "1.0.0", "killed\n", extra);
    std::fs::create_dir_all(image.join("big")).expect("mkdir");
    noise(&image.join("big/a.bin"), 24);
    noise(&image.join("big/b.bin"), 24);
    // The digest a build that is never disturbed gives.
    let reference_store = tmp.path().join("reference");
    let started = Instant::now();
    let expected = built_digest(&ok(kiln(
        &reference_store,
        &["build", path_str(&image), "--json"],
    )));
    let duration = started.elapsed();

    let store = tmp.path().join("store");
    ok(kiln(&store, &["images"]));
    let mut killed = 0;
    let mut repaired = 0;
    for moment in 0..20u32 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["build", path_str(&image), "--no-cache"])
            .args(["--store", path_str(&store)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn build");
        std::thread::sleep(duration * moment / 20 + Duration::from_millis(5));
        if child.try_wait().expect("try_wait").is_none() {
            killed += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().expect("wait");
        let out = kiln(&store, &["fsck", "--json"]);
        if !out.status.success() {
            // Only what a killed write leaves may be wrong.
            for p in json(&out)["problems"].as_array().expect("problems") {
                assert_eq!(p["kind"], "leftover_temporary", "{p}");
            }
            ok(kiln(&store, &["fsck", "--repair"]));
            repaired += 1;
        }
        assert_fsck_clean(&store);
        let out = ok(kiln(&store, &["build", path_str(&image), "--json"]));
        assert_eq!(
            built_digest(&out),
            expected,
            "after the kill at moment {moment}"
        );
    }
    eprintln!("store_safety: {killed} of 20 builds killed mid-way, {repaired} stores repaired");
    assert!(killed >= 10, "most kills landed during a build ({killed})");
}

#[test]
fn fsck_finds_a_corrupt_layer_and_repair_removes_only_what_is_broken() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let one = recipe(tmp.path(), "fsone", "1.0.0", "one\n", "");
    let two = recipe(tmp.path(), "fstwo", "1.0.0", "two\n", "");
    let digest_one = built_digest(&ok(kiln(&store, &["build", path_str(&one), "--json"])));
    ok(kiln(&store, &["build", path_str(&two), "--json"]));
    assert_fsck_clean(&store);
    // Corrupt the layer only fsone has, and leave a killed write behind.
    let inspection = json(&ok(kiln(&store, &["inspect", "fsone:1.0.0"])));
    let site = inspection["manifest"]["layers"][2]["digest"]
        .as_str()
        .expect("site layer")
        .to_owned();
    let site_path = store.join("blobs/sha256").join(&site["sha256:".len()..]);
    std::fs::write(&site_path, b"not what was stored").expect("corrupt");
    std::fs::write(store.join("blobs/sha256/.tmp-killed"), b"half").expect("tmp");

    let out = kiln(&store, &["fsck", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let kinds: BTreeSet<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "broken_cache_entry",
            "broken_ref",
            "corrupt_blob",
            "leftover_temporary"
        ]),
        "{report:#}"
    );

    let out = ok(kiln(&store, &["fsck", "--repair", "--json"]));
    let repaired = json(&out);
    assert!(
        repaired["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .all(|p| p["repaired"] == true),
        "{repaired:#}"
    );
    assert_fsck_clean(&store);
    // fstwo, referenced and whole, is untouched and exports whole.
    let archive = tmp.path().join("two.tar");
    ok(kiln(
        &store,
        &[
            "export",
            "fstwo:1.0.0",
            &format!("oci-archive:{}", archive.display()),
        ],
    ));
    // fsone builds again, to the same digest.
    let again = built_digest(&ok(kiln(&store, &["build", path_str(&one), "--json"])));
    assert_eq!(again, digest_one);
    assert_fsck_clean(&store);
}

#[test]
fn gc_keep_drops_the_oldest_unpromoted_images_of_a_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let mut digests = Vec::new();
    for v in ["1.0.1", "1.0.2", "1.0.3", "1.0.4"] {
        let r = recipe(tmp.path(), "keeper", v, &format!("{v}\n"), "");
        digests.push(built_digest(&ok(kiln(
            &store,
            &["build", path_str(&r), "--json"],
        ))));
    }
    let other = recipe(tmp.path(), "other", "1.0.0", "other\n", "");
    ok(kiln(&store, &["build", path_str(&other)]));
    let out = json(&ok(kiln(&store, &["gc", "--keep", "2", "--json"])));
    let dropped: Vec<String> = out["dropped_images"]
        .as_array()
        .expect("dropped")
        .iter()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    let mut expected = vec![
        format!("keeper@{}", digests[0]),
        format!("keeper@{}", digests[1]),
    ];
    expected.sort();
    assert_eq!(dropped, expected);
    let images = json(&ok(kiln(&store, &["images", "--json"])));
    let left: BTreeSet<String> = images["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| {
            format!(
                "{}@{}",
                i["name"].as_str().unwrap_or(""),
                i["digest"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(left.contains(&format!("keeper@{}", digests[2])));
    assert!(left.contains(&format!("keeper@{}", digests[3])));
    assert_eq!(left.len(), 3, "two keepers and other: {left:?}");
    for gone in &digests[..2] {
        let blob = store.join("blobs/sha256").join(&gone["sha256:".len()..]);
        assert!(!blob.exists(), "{gone} was removed");
    }
    assert_fsck_clean(&store);
}

#[test]
fn one_process_building_leaking_and_good_recipes_with_j_neither_hangs_nor_loses_the_good() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let secret_decl = "\n[secrets.api_token]\nfrom = \"env:KILN_STORE_SAFETY_SECRET\"\n";
    let mut args = vec!["build".to_owned(), "-j".to_owned(), "4".to_owned()];
    for i in 0..2 {
        let good = recipe(
            tmp.path(),
            &format!("jgood{i}"),
            "1.0.0",
            &format!("good {i}\n"),
            secret_decl,
        );
        let bad = recipe(
            tmp.path(),
            &format!("jleaky{i}"),
            "1.0.0",
            &format!("leaky {i}: token={SECRET}\n"),
            secret_decl,
        );
        args.push(path_str(&good).to_owned());
        args.push(path_str(&bad).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kiln_with_env(&store, &args, &[("KILN_STORE_SAFETY_SECRET", SECRET)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("secret api_token"),
        "{}",
        stderr(&out)
    );
    for i in 0..2 {
        let archive = tmp.path().join(format!("jgood{i}.tar"));
        let built = kiln(
            &store,
            &[
                "export",
                &format!("jgood{i}:1.0.0"),
                &format!("oci-archive:{}", archive.display()),
            ],
        );
        // The builds of one level run to their end side by side: the good
        // ones are tagged and whole although their neighbours leaked.
        ok(built);
        assert!(archive.is_file());
    }
    assert_store_never_saw(&store, SECRET);
    assert_fsck_clean(&store);
}

/// Size of each layer in [`layer_writers_keep_memory_bounded_with_j`]: four
/// gzip blocks, enough to fill a writer's pipeline on two cores.
const LAYER_MIB: usize = 4;

/// `recipes` recipes named `PREFIX{i}`, each with `layers` file layers of
/// [`LAYER_MIB`] MiB of noise, all content distinct; their folders.
fn big_layer_recipes(dir: &Path, prefix: &str, recipes: usize, layers: usize) -> Vec<PathBuf> {
    (0..recipes)
        .map(|i| {
            let root = dir.join(format!("{prefix}{i}"));
            std::fs::create_dir_all(&root).expect("mkdir");
            let mut toml = format!(
                "[image]\nname = \"{prefix}{i}\"\nversion = \"1.0.0\"\nbase = \"scratch\"\n"
            );
            for k in 0..layers {
                let seed = u64::try_from(i * 1000 + k + 1).expect("seed");
                noise_seeded(&root.join(format!("big{k}.bin")), LAYER_MIB, seed);
                toml.push_str(&format!(
                    "\n[[layer]]\nname = \"big{k}\"\nfiles = [{{ src = \"big{k}.bin\", dest = \"/big{k}.bin\" }}]\n"
                ));
            }
            std::fs::write(root.join("kiln.toml"), toml).expect("write recipe");
            root
        })
        .collect()
}

/// Peak resident memory, in MiB, of `kiln build -j 4 RECIPES...` into a
/// fresh store (measured by /usr/bin/time, the child alone).
fn peak_build_mib(dir: &Path, store: &str, recipes: &[PathBuf]) -> u64 {
    let report = dir.join(format!("{store}.rss"));
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "-j", "4", "--store"])
        .arg(dir.join(store))
        .args(recipes)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run /usr/bin/time kiln build");
    ok(out);
    let kib: u64 = std::fs::read_to_string(&report)
        .expect("time's report")
        .trim()
        .parse()
        .expect("max RSS in KiB");
    kib / 1024
}

#[test]
fn layer_writers_keep_memory_bounded_with_j() {
    if !kiln_testkit::have_tool_at("/usr/bin/time") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let limit = kiln_image::writers::limit();
    // Few layers, then many more than the writer limit, built four
    // recipes at once: with unbounded writers all of the second run's
    // layers would compress at once.
    let few = big_layer_recipes(tmp.path(), "few", 4, 1);
    let many_layers = 2 * limit.max(4);
    let many = big_layer_recipes(tmp.path(), "many", 4, many_layers);
    let writers = 4 * many_layers;
    let baseline = peak_build_mib(tmp.path(), "few-store", &few);
    let peak = peak_build_mib(tmp.path(), "many-store", &many);
    // One writer holds its layer's blocks in flight, input and compressed
    // output: about twice the layer. Unbounded, the writers of the second
    // run start together, so at least half of them would overlap; bounded,
    // only `limit` do.
    let per_writer = 2 * LAYER_MIB as u64;
    let bound = baseline + (writers as u64 / 2) * per_writer;
    eprintln!(
        "peak RSS: {baseline} MiB for 4 layers, {peak} MiB for {writers} layers \
         (bound {bound} MiB, writer limit {limit})"
    );
    assert!(
        peak <= bound,
        "kiln build -j 4 of {writers} layers peaked at {peak} MiB, over {bound} MiB \
         ({baseline} MiB for 4 layers + {} writers x {per_writer} MiB): layer writers are not bounded",
        writers / 2
    );
}

/// Whether any thread of process `pid` sleeps waiting for a file lock
/// (flock(2) waits in the kernel's `locks_lock_inode_wait`).
fn waits_for_a_lock(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("lock")))
}

/// Run `kiln ARGS --store STORE` to its end, or until it waits for a file
/// lock (then it is killed): whether it finished, and its output.
fn run_unless_locked(store: &Path, args: &[&str]) -> (bool, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .arg("--store")
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln");
    loop {
        if child.try_wait().expect("wait").is_some() {
            return (true, child.wait_with_output().expect("output"));
        }
        if waits_for_a_lock(child.id()) {
            child.kill().expect("kill");
            return (false, child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn readers_answer_while_gc_holds_the_sweep() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let image = recipe(tmp.path(), "readers", "1.0.0", "read me\n", "");
    let digest = built_digest(&ok(kiln(&store, &["build", path_str(&image), "--json"])));
    // This process holds the sweep, as a running gc does.
    let handle = kiln_image::Store::open(&store).expect("store");
    let sweep = handle.sweep().expect("sweep");
    for args in [vec!["images", "--json"], vec!["inspect", "readers:1.0.0"]] {
        let (finished, out) = run_unless_locked(&store, &args);
        assert!(finished, "kiln {args:?} waited for the store's lock");
        let out = ok(out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&digest),
            "kiln {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // What writes does wait: the check above would see it.
    let (finished, _) = run_unless_locked(&store, &["build", path_str(&image)]);
    assert!(!finished, "a build ran while the sweep was held");
    drop(sweep);
    assert_fsck_clean(&store);
}
