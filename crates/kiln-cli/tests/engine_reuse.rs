//! What the container engine already holds is never moved again (issue 8):
//! a `docker-daemon:` base is read out of the engine once per image id
//! (where the engine keeps its layers, or saved: the same base), an image
//! the engine holds is tested without a load and left there, one it does
//! not hold is loaded and removed again after the test, a base that
//! changed under the same tag is noticed and rebuilt, and a first step
//! runs on the engine's image while its base is imported. Checked against
//! the real engine through its event log (`docker events`), which records
//! every `save`, `load` and container `create`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{engine, json, kiln, kiln_with_env, ok};

/// The environment that makes kiln read a `docker-daemon:` base with
/// `docker save`, as it does when it cannot read where the engine keeps
/// the image (and run layers' changes from the engine's export).
const SAVED: (&str, &str) = ("KILN_RUN_LAYER_CAPTURE", "export");

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// The engine's clock now, as `docker events --since` reads it.
fn now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// `ACTION ID` of every image event of the engine since `since`.
fn image_events(since: &str) -> Vec<String> {
    events(since, &["type=image"], "{{.Action}} {{.Actor.ID}}")
}

/// The image each container created since `since` was created from, as the
/// engine's event log names it (kiln gives an id or a name).
fn containers_created_from(since: &str) -> Vec<String> {
    events(
        since,
        &["type=container", "event=create"],
        "{{.Actor.Attributes.image}}",
    )
}

/// The engine's events since `since` that pass every filter of
/// `filters`, one line each as `format` writes it.
fn events(since: &str, filters: &[&str], format: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["events", "--since", since, "--until", &now()])
        .args(filters.iter().flat_map(|f| ["--filter", f]))
        .args(["--format", format])
        .output()
        .expect("docker events");
    assert!(out.status.success(), "docker events failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A busybox root at `root` holding `/version` = `version`.
fn busybox_root(root: &Path, version: &str) {
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
    write(&root.join("version"), &format!("{version}\n"));
}

/// Import a busybox root holding `/version` = `version` into the engine as
/// `tag`; its image id.
fn import_base(dir: &Path, tag: &str, version: &str) -> String {
    let root = dir.join(format!("root-{version}"));
    busybox_root(&root, version);
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - '{tag}' >/dev/null",
            root.display()
        ))
        .status()
        .expect("docker import");
    assert!(status.success(), "docker import");
    docker(&["image", "inspect", tag, "--format", "{{.Id}}"])
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_engine_holds_is_never_moved_again() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let unique = format!("{}-{}", std::process::id(), now().replace('.', ""));
    let base_tag = format!("kiln-test/speed-base:{unique}");
    let base_v1 = import_base(tmp.path(), &base_tag, "v1");
    let name = "speedreuse";
    let recipe = recipe_on(
        &tmp.path().join("image"),
        name,
        &base_tag,
        "cat /version > /built && echo ran >> /built && echo path=$PATH >> /built",
        r#"
[[check]]
name = "the run layer saw the base"
file = "/built"
contains = "v1\nran"

[[check]]
name = "the run layer ran with the config's env"
file = "/built"
contains = "path=/bin"
"#,
    );
    let store = tmp.path().join("store");

    let first = json(&ok(kiln(&store, &["build", &recipe, "--json"])));
    let digest = first["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let base_digest = first["images"][0]["base"]["digest"].clone();

    // Built again from scratch: the same bytes, and the base is not read
    // out of the engine again (no `save` of its id; saving is how a base is
    // read when kiln is not to read the engine's folders).
    let since = now();
    let again = json(&ok(kiln_with_env(
        &store,
        &["build", &recipe, "--json", "--no-cache"],
        &[SAVED],
    )));
    assert_eq!(again["images"][0]["digest"].as_str(), Some(digest.as_str()));
    let saves: Vec<String> = image_events(&since)
        .into_iter()
        .filter(|e| e.starts_with("save") && e.contains(&base_v1))
        .collect();
    assert!(saves.is_empty(), "the base was saved again: {saves:?}");

    // A fresh store reads the base out of the engine anew and runs the run
    // layer on it: the same image, byte for byte, as the one built on the
    // base found by engine id, whether the base's layers were read where
    // the engine keeps them (no save) or saved.
    let since = now();
    let fresh = json(&ok(kiln(
        &tmp.path().join("fresh-store"),
        &["build", &recipe, "--json"],
    )));
    assert_eq!(fresh["images"][0]["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(fresh["images"][0]["base"]["digest"], base_digest);
    let saved_since = |since: &str| {
        image_events(since)
            .into_iter()
            .filter(|e| e.starts_with("save") && e.contains(&base_v1))
            .count()
    };
    assert_eq!(saved_since(&since), 0, "read where the engine keeps it");
    let since = now();
    let saved = json(&ok(kiln_with_env(
        &tmp.path().join("saved-store"),
        &["build", &recipe, "--json"],
        &[SAVED],
    )));
    assert_eq!(saved["images"][0]["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(saved["images"][0]["base"]["digest"], base_digest);
    assert_eq!(saved_since(&since), 1, "saved");

    // Tested: loaded under a name of the run's own, gone afterwards.
    let report = json(&ok(kiln(
        &store,
        &["test", &format!("{name}:1.0.0"), "--json"],
    )));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    assert_eq!(support::engine_names(&store), Vec::<String>::new());

    // Put into the engine by its user: tested without a load, and still
    // there afterwards under the user's name.
    let tag = format!("kiln-test/speedreuse-held:{unique}");
    ok(kiln(
        &store,
        &[
            "export",
            &format!("{name}:1.0.0"),
            &format!("docker-daemon:{tag}"),
        ],
    ));
    let image_id = docker(&["image", "inspect", &tag, "--format", "{{.Id}}"]);

    // That image, of three layers, as the base of another recipe: read
    // where the engine keeps it (each layer found by its chain id), it is
    // the same base as saved.
    let child = recipe_on(
        &tmp.path().join("child"),
        "speedchild",
        &tag,
        "cat /built > /child",
        "",
    );
    let since = now();
    let read = json(&ok(kiln(
        &tmp.path().join("child-store"),
        &["build", &child, "--json"],
    )));
    let image_saves = |since: &str| {
        image_events(since)
            .into_iter()
            .filter(|e| e.starts_with("save") && e.contains(&image_id))
            .count()
    };
    assert_eq!(image_saves(&since), 0);
    let since = now();
    let saved = json(&ok(kiln_with_env(
        &tmp.path().join("child-saved-store"),
        &["build", &child, "--json"],
        &[SAVED],
    )));
    assert_eq!(image_saves(&since), 1);
    assert_eq!(read["images"][0]["base"], saved["images"][0]["base"]);
    assert_eq!(read["images"][0]["digest"], saved["images"][0]["digest"]);
    let layers = docker(&[
        "image",
        "inspect",
        &tag,
        "--format",
        "{{len .RootFS.Layers}}",
    ]);
    assert_eq!(layers, "3");

    let since = now();
    let report = json(&ok(kiln(
        &store,
        &["test", &format!("{name}:1.0.0"), "--json"],
    )));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    let loads: Vec<String> = image_events(&since)
        .into_iter()
        .filter(|e| e.starts_with("load"))
        .filter(|e| e.contains(&image_id) || e.contains(&tag))
        .collect();
    assert!(loads.is_empty(), "a held image was loaded again: {loads:?}");
    assert_eq!(
        docker(&["image", "inspect", &tag, "--format", "{{.Id}}"]),
        image_id
    );
    assert_eq!(support::engine_names(&store), Vec::<String>::new());

    // The engine dropped it: not an error, it is loaded again (and gone
    // again afterwards).
    docker(&["rmi", &tag]);
    let report = json(&ok(kiln(
        &store,
        &["test", &format!("{name}:1.0.0"), "--json"],
    )));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");
    assert_eq!(support::engine_names(&store), Vec::<String>::new());

    // The tag now names another image: noticed, rebuilt, never stale.
    let base_v2 = import_base(tmp.path(), &base_tag, "v2");
    assert_ne!(base_v1, base_v2);
    let moved = json(&ok(kiln(&store, &["build", &recipe, "--json"])));
    assert_ne!(moved["images"][0]["base"]["digest"], base_digest);
    assert_ne!(moved["images"][0]["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(
        moved["images"][0]["layers"][0]["cached"],
        Value::Bool(false),
        "the run layer runs again on the new base"
    );

    for image in [&base_tag, &tag, &base_v1] {
        let _ = Command::new("docker").args(["rmi", image]).output();
    }
}

/// A recipe named `name` on the engine's image `base_tag` whose first
/// layer runs `run`, then a files layer, and `checks` (TOML); the folder,
/// as kiln takes it.
fn recipe_on(dir: &Path, name: &str, base_tag: &str, run: &str, checks: &str) -> String {
    recipe_with_base(dir, name, &format!("docker-daemon:{base_tag}"), run, checks)
}

/// [`recipe_on`] with the base `base` (any base reference).
fn recipe_with_base(dir: &Path, name: &str, base: &str, run: &str, checks: &str) -> String {
    write(&dir.join("site/index.txt"), "hello\n");
    write(
        &dir.join("kiln.toml"),
        &format!(
            r#"
[image]
name = "{name}"
version = "1.0.0"
base = "{base}"
epoch = 1700000000

[config]
entrypoint = ["/bin/busybox", "sleep", "3600"]
env = {{ PATH = "/bin" }}

[[layer]]
name = "setup"
run = "{run}"

[[layer]]
name = "site"
files = [{{ src = "site/", dest = "/srv/" }}]
{checks}"#
        ),
    );
    dir.to_str().expect("utf8").to_owned()
}

/// The containers the engine has (running or not) of the image `id`.
fn containers_of(id: &str) -> String {
    docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("ancestor={id}"),
    ])
}

// With an empty store, the first step runs on the engine's image while the
// base is imported (docs/benchmarks.md, session 5); its cache key, which
// rests on the imported base's manifest digest, comes after. A cache entry
// found then wins over what ran, and a failing step leaves no tag and no
// container, whichever finishes first.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_step_runs_while_its_base_is_imported_and_its_key_comes_after() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let unique = format!("{}-{}", std::process::id(), now().replace('.', ""));
    let base_tag = format!("kiln-test/early-base:{unique}");
    let base_id = import_base(tmp.path(), &base_tag, "v1");
    let recipe = recipe_on(
        &tmp.path().join("image"),
        "earlystep",
        &base_tag,
        "cat /version > /built",
        "",
    );
    let store = tmp.path().join("store");

    // Built on an empty store: the step ran early, on the right base.
    let first = json(&ok(kiln(&store, &["build", &recipe, "--json"])));
    let digest = first["images"][0]["digest"].as_str().expect("digest");
    assert_eq!(
        support::layers(&first),
        [("setup".to_owned(), false), ("site".to_owned(), false)]
    );
    // The same image as when the base is stored before the step runs.
    let stored = json(&ok(kiln(
        &store,
        &["build", &recipe, "--json", "--no-cache"],
    )));
    assert_eq!(stored["images"][0]["digest"].as_str(), Some(digest));

    // The store forgets which base the engine's image became: the base is
    // read out of the engine again and the step runs early again, but its
    // key (made once the base is imported) finds the cache entry, which is
    // taken, as without the early run.
    let bases = store.join("kiln/engine/bases");
    std::fs::remove_dir_all(&bases).expect("forget the base");
    let again = json(&ok(kiln(&store, &["build", &recipe, "--json"])));
    let recorded = bases.join(base_id.trim_start_matches("sha256:"));
    assert!(recorded.exists(), "the base was to be imported again");
    assert_eq!(again["images"][0]["digest"].as_str(), Some(digest));
    assert_eq!(
        support::layers(&again),
        [("setup".to_owned(), true), ("site".to_owned(), true)]
    );

    // A step that fails while the base is imported: the build fails with
    // the step's output, names nothing, and leaves no container.
    let broken = recipe_on(
        &tmp.path().join("broken"),
        "earlybroken",
        &base_tag,
        "echo the step broke >&2; exit 3",
        "",
    );
    let fresh = tmp.path().join("fresh-store");
    let out = kiln(&fresh, &["build", &broken, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("the step broke"),
        "{}",
        support::stderr(&out)
    );
    let images = json(&ok(kiln(&fresh, &["images", "--json"])));
    assert_eq!(
        images["images"].as_array().map(Vec::len),
        Some(0),
        "{images}"
    );
    assert_eq!(containers_of(&base_id), "", "a container was left behind");

    let _ = Command::new("docker").args(["rmi", &base_tag]).output();
}

/// A busybox root holding `/version` = `version`, its files dated an hour
/// back (so that the folder's stamp is settled and may name an image).
fn rootfs_folder(root: &Path, version: &str) {
    busybox_root(root, version);
    for file in ["bin/busybox", "version"] {
        std::fs::File::options()
            .write(true)
            .open(root.join(file))
            .and_then(|f| {
                f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            })
            .expect("set mtime");
    }
}

// A `rootfs:` folder new to the store (an empty store) whose base an
// earlier build of the store's namespace gave the engine: the first step
// runs on the engine's image, found by the name the folder's stamp gives
// it, while the folder is imported (docs/benchmarks.md, session 7). A name
// that leads to another image is noticed: the step runs again on the base
// imported, and the name moves to it. gc takes the name with the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_rootfs_folder_new_to_the_store_runs_its_first_step_on_the_image_the_engine_holds() {
    let Some(_engine) = engine().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    rootfs_folder(&root, "v1");
    let recipe = recipe_with_base(
        &tmp.path().join("image"),
        "earlyrootfs",
        &format!("rootfs:{}", root.display()),
        "cat /version > /built",
        r#"
[[check]]
name = "the step saw its base"
file = "/built"
contains = "v1"
"#,
    );
    let recipe = recipe.as_str();
    let store = tmp.path().join("store");
    let _cleanup = support::EngineCleanup(store.clone());
    // A stamp is settled once every file's ctime, which cannot be set back,
    // is two seconds old: only then may it name an image.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let rootfs_names = || -> Vec<String> {
        support::engine_names(&store)
            .into_iter()
            .filter(|n| n.contains("/rootfs:"))
            .collect()
    };

    // The first build imports the folder first, then gives the engine its
    // base under the folder's name.
    let first = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    let digest = first["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let named = rootfs_names();
    assert_eq!(named.len(), 1, "{:?}", support::engine_names(&store));
    let name = named[0].clone();
    let namespace = support::engine_namespace(&store);
    let base_id = docker(&["image", "inspect", &name, "--format", "{{.Id}}"]);

    // The store is emptied: the step runs on the engine's image, by id,
    // once, and the image is the same byte for byte.
    std::fs::remove_dir_all(&store).expect("empty the store");
    let since = now();
    let again = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(again["images"][0]["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(
        support::layers(&again),
        [("setup".to_owned(), false), ("site".to_owned(), false)]
    );
    let ours = |images: Vec<String>, other: &str| -> Vec<String> {
        // Other tests run beside this one: only this store's containers.
        images
            .into_iter()
            .filter(|i| *i == base_id || i == other || i.starts_with(&namespace))
            .collect()
    };
    assert_eq!(
        ours(containers_created_from(&since), ""),
        std::slice::from_ref(&base_id)
    );
    let report = json(&ok(kiln(&store, &["test", "earlyrootfs:1.0.0", "--json"])));
    assert_eq!(report["passed"], Value::Bool(true), "{report:#}");

    // The name is moved to another image: the step runs on it, is found
    // to have run on something else than the base imported, and runs again
    // on the base; the image is still the same, and the name is back.
    let unique = format!("{}-{}", std::process::id(), now().replace('.', ""));
    let other_tag = format!("kiln-test/early-rootfs-other:{unique}");
    let other_id = import_base(tmp.path(), &other_tag, "v2");
    docker(&["tag", &other_tag, &name]);
    std::fs::remove_dir_all(&store).expect("empty the store");
    let since = now();
    let misled = json(&ok(kiln(&store, &["build", recipe, "--json"])));
    assert_eq!(
        misled["images"][0]["digest"].as_str(),
        Some(digest.as_str())
    );
    let created = ours(containers_created_from(&since), &other_id);
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[0], other_id, "{created:?}");
    assert_eq!(
        docker(&["image", "inspect", &name, "--format", "{{.Id}}"]),
        base_id
    );
    let _ = Command::new("docker").args(["rmi", &other_tag]).output();

    // gc removes the name with the rest of the store's names.
    let gc = json(&ok(kiln(&store, &["gc", "--json"])));
    let removed = gc["engine_removed"].to_string();
    assert!(removed.contains(&name), "{gc:#}");
    assert_eq!(support::engine_names(&store), Vec::<String>::new());
}
