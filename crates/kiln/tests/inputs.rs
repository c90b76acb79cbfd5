//! Inputs are hashed from the bytes that go into the layer: a file changed
//! between hashing (the cache key) and writing fails the build, naming the
//! file, and nothing is tagged or cached under a key that names other
//! content.

use std::path::Path;

use kiln::{BuildOptions, Events, KilnError, Store};

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Rewrites `file` with `content` as the layer `layer` starts: after its
/// inputs were hashed, before they are written.
struct ChangeAt<'a> {
    layer: &'static str,
    file: &'a Path,
    content: &'static [u8],
}

impl kiln::CheckEvents for ChangeAt<'_> {}
impl Events for ChangeAt<'_> {
    fn layer_started(&self, _image: &str, layer: &str) {
        if layer == self.layer {
            std::fs::write(self.file, self.content).expect("change the input");
        }
    }
}

#[tokio::test]
async fn a_file_changed_between_hashing_and_writing_fails_the_build_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("image");
    let input = image.join("data/app.conf");
    write(&input, b"mode=old\n");
    write(
        &image.join("kiln.toml"),
        br#"
[image]
name = "changing"
version = "1.0.0"
base = "scratch"

[[layer]]
name = "conf"
files = [{ src = "data/app.conf", dest = "/etc/app.conf" }]
"#,
    );
    let recipe = kiln::load_recipe(&image).expect("recipe");
    let store = Store::open(tmp.path().join("store")).expect("store");
    // Same size, other content: only the content check can see it.
    let events = ChangeAt {
        layer: "conf",
        file: &input,
        content: b"mode=new\n",
    };
    let result = kiln::build(&store, &recipe, &BuildOptions::default(), None, &events).await;
    let Err(err) = result else {
        panic!("a build whose input changed under it succeeded: {result:?}");
    };
    let message = err.to_string();
    assert!(
        message.contains("app.conf") && message.contains("changed"),
        "the error does not name the file: {message}"
    );
    assert!(matches!(err, KilnError::Image(_)), "{err:?}");
    let index = std::fs::read_to_string(store.root().join("index.json")).expect("index");
    assert!(!index.contains("changing:1.0.0"), "{index}");

    // No cache entry names the old content's key: built from the old
    // content again, the layer is written anew, never served with the new
    // bytes.
    std::fs::write(&input, b"mode=old\n").expect("restore");
    let report = kiln::build(
        &store,
        &recipe,
        &BuildOptions::default(),
        None,
        &kiln::NoEvents,
    )
    .await
    .expect("a build of the settled input");
    assert!(!report.layers[0].cached, "{:?}", report.layers[0]);
}
