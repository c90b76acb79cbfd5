//! What the store keeps: the recipe as built (not as its file reads later),
//! gc's roots beyond tags (test records, cache entries), and exports that
//! are whole or absent.

mod support;

use std::path::{Path, PathBuf};

use kiln::{BuildOptions, Destination, Digest, Store};
use support::{AtLayer, assert_fsck_clean, files_under, write};

/// A busybox image `name` at 1.0.0 in `dir/name` serving `page`, with one
/// command check named `check`.
fn busybox_recipe(dir: &Path, name: &str, page: &str, check: &str) -> PathBuf {
    let root = dir.join(name);
    support::copy_busybox(&root);
    write(&root.join("site/page.txt"), page.as_bytes());
    write(
        &root.join("kiln.toml"),
        format!(
            r#"{}
[[layer]]
name = "site"
files = [{{ src = "site/page.txt", dest = "/www/page.txt" }}]

[[check]]
name = "{check}"
command = ["/bin/busybox", "cat", "/www/page.txt"]
"#,
            support::busybox_recipe_head(name, r#"entrypoint = ["/bin/busybox", "sleep", "600"]"#)
        )
        .as_bytes(),
    );
    root
}

#[tokio::test]
async fn a_recipe_edited_during_its_build_is_stored_as_built() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = busybox_recipe(tmp.path(), "edited", "page\n", "as built");
    let recipe = kiln::load_recipe(&root).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let file = root.join("kiln.toml");
    // While the layers are written, the file gets another check.
    let events = AtLayer {
        layer: "site",
        action: || {
            let text = std::fs::read_to_string(&file).expect("read");
            std::fs::write(&file, text.replace("as built", "edited later")).expect("edit");
        },
    };
    let report = kiln::build(&store, &recipe, &BuildOptions::default(), None, &events)
        .await
        .expect("build");
    assert!(
        std::fs::read_to_string(&file)
            .expect("read")
            .contains("edited later")
    );
    let stored = kiln::recipe_of(&store, "edited", &report.digest).expect("stored recipe");
    let checks: Vec<&str> = stored.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(checks, ["as built"]);
    assert_eq!(stored, recipe);
}

/// Whether `digest`'s blob is in `store`.
fn has_blob(store: &Store, digest: &Digest) -> bool {
    store
        .root()
        .join("blobs/sha256")
        .join(digest.hex())
        .is_file()
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_keeps_tested_images_and_cached_layers_that_no_tag_names() {
    let Some(docker) = kiln_engine::testing::engine_or_skip().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let name = format!("roots-{}", std::process::id());
    let root = busybox_recipe(tmp.path(), &name, "first\n", "page");
    let page = root.join("site/page.txt");
    let first = kiln::load_recipe(&root).expect("recipe");
    let untested = support::build(&store, &first).await.expect("build");
    // Same version, other content: the tag moves on each time.
    std::fs::write(&page, "second\n").expect("write");
    let second = kiln::load_recipe(&root).expect("recipe");
    let tested = support::build(&store, &second).await.expect("build");
    let outcome = kiln::test(
        &store,
        &docker,
        &second,
        &tested.digest,
        &kiln::TestOptions::default(),
        &kiln::NoEvents,
    )
    .await
    .expect("test");
    assert!(outcome.passed, "{outcome:?}");
    std::fs::write(&page, "third\n").expect("write");
    let third = kiln::load_recipe(&root).expect("recipe");
    support::build(&store, &third).await.expect("build");

    let gc = kiln::gc(&store, &kiln::GcOptions::default()).expect("gc");
    // The untested, untagged image goes; the layers its cache entries name
    // stay (the next build of that content reuses them).
    assert!(!has_blob(&store, &untested.digest), "{gc:?}");
    let untested_layers: Vec<_> = untested.layers.iter().map(|l| l.digest.clone()).collect();
    for layer in &untested_layers {
        assert!(
            has_blob(&store, layer),
            "cached layer {layer} removed: {gc:?}"
        );
    }
    // The tested image keeps its test record, so it stays whole.
    let out = tmp.path().join("tested.tar");
    kiln::export(
        &store,
        None,
        &format!("{name}@{}", tested.digest),
        &Destination::OciArchive {
            file: out.clone(),
            reference: None,
        },
    )
    .await
    .expect("the tested image exports whole");
    assert!(out.is_file());

    std::fs::write(&page, "first\n").expect("write");
    let again = support::build(&store, &first).await.expect("build");
    assert_eq!(again.digest, untested.digest);
    assert!(again.layers.iter().all(|l| l.cached), "{:?}", again.layers);
    assert_fsck_clean(&store);
}

#[tokio::test]
async fn an_export_that_fails_leaves_its_destination_as_it_was() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = busybox_recipe(tmp.path(), "exported", "page\n", "page");
    let recipe = kiln::load_recipe(&root).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let report = support::build(&store, &recipe).await.expect("build");
    // The busybox layer rots in place: same size, other bytes. Export
    // verifies every blob while it streams it, and fails past the start.
    let layer = &report.layers[0].digest;
    let blob = store.root().join("blobs/sha256").join(layer.hex());
    let mut bytes = std::fs::read(&blob).expect("read blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let mut perms = std::fs::metadata(&blob).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("chmod");
    std::fs::write(&blob, &bytes).expect("corrupt");

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let old_archive = out.join("old.tar");
    std::fs::write(&old_archive, b"the previous export\n").expect("write");
    let destinations = [
        Destination::OciArchive {
            file: old_archive.clone(),
            reference: None,
        },
        Destination::DockerArchive {
            file: out.join("new-docker.tar"),
            reference: None,
        },
        Destination::OciDir {
            dir: out.join("layout"),
            reference: None,
        },
    ];
    for destination in &destinations {
        let result = kiln::export(&store, None, "exported:1.0.0", destination).await;
        let Err(err) = result else {
            panic!("exported a corrupt blob to {destination:?}");
        };
        // Refused on the way, not up front: the blob's digest is named.
        assert!(
            format!("{err:?}").contains(layer.hex()),
            "{destination:?}: {err:?}"
        );
    }
    // The old archive is untouched, nothing new appeared, and no temporary
    // file was left beside them.
    assert_eq!(
        std::fs::read(&old_archive).expect("read"),
        b"the previous export\n"
    );
    let left = files_under(&out);
    assert_eq!(left, std::slice::from_ref(&old_archive), "{left:?}");
    let entries: Vec<_> = std::fs::read_dir(&out)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}
