//! `[config] env` keeps the recipe's order in the built image's `Env`: the
//! base's variables first, a name the base has overridden in its place,
//! the recipe's new names after them in the order written; the same recipe
//! gives the same digest. No container engine: config and file layers only.

use std::path::Path;

use kiln::{Destination, Store};
use serde_json::{Value, json};

mod support;
use support::block_on;

/// Build `recipe` into `store`; return its digest and its config's `Env`,
/// read back from the store.
fn build(store: &Store, ctx: &Path, recipe: &str, name: &str) -> (kiln::Digest, Value) {
    let report = support::parse_and_build(store, ctx, recipe);
    let inspection = kiln::inspect(store, name).expect("inspect");
    let config: Value = serde_json::from_slice(&inspection.config_bytes).expect("config json");
    (report.digest, config["config"]["Env"].clone())
}

#[test]
fn env_is_in_the_recipe_order_and_a_base_name_keeps_its_place() {
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(ctx.path().join("f"), "x").expect("write");
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(store_dir.path()).expect("store");

    let plain = "[image]\nname = \"plain\"\nepoch = 1700000000\n\
                 [config]\nenv = { ZED = \"1\", ALPHA = \"2\" }\n";
    let (digest, env) = build(&store, ctx.path(), plain, "plain");
    assert_eq!(env, json!(["ZED=1", "ALPHA=2"]));
    // Reproducible: the same recipe in another store, the same digest.
    let other_dir = tempfile::tempdir().expect("tmp");
    let other = Store::open(other_dir.path()).expect("store");
    assert_eq!(build(&other, ctx.path(), plain, "plain").0, digest);

    // A base with an Env of its own, exported to an OCI layout.
    let base = "[image]\nname = \"base\"\nepoch = 1700000000\n\
                [config]\nenv = { TERM = \"xterm\", PATH = \"/usr/bin\", HOME = \"/\" }\n\
                [[layer]]\nname = \"f\"\nfiles = [{ src = \"f\", dest = \"/f\" }]\n";
    let (_, env) = build(&store, ctx.path(), base, "base");
    assert_eq!(env, json!(["TERM=xterm", "PATH=/usr/bin", "HOME=/"]));
    let layout = tempfile::tempdir().expect("tmp");
    let dest: Destination = format!("oci:{}:base", layout.path().display())
        .parse()
        .expect("destination");
    block_on(kiln::export(&store, None, "base", &dest)).expect("export");

    let on_base = format!(
        "[image]\nname = \"web\"\nepoch = 1700000000\nbase = \"oci:{}:base\"\n\
         [config]\nenv = {{ ZED = \"1\", PATH = \"/opt/bin:/usr/bin\", ALPHA = \"2\" }}\n",
        layout.path().display()
    );
    let (digest, env) = build(&store, ctx.path(), &on_base, "web");
    assert_eq!(
        env,
        json!([
            "TERM=xterm",
            "PATH=/opt/bin:/usr/bin",
            "HOME=/",
            "ZED=1",
            "ALPHA=2"
        ])
    );
    assert_eq!(build(&other, ctx.path(), &on_base, "web").0, digest);
}
