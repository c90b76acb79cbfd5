//! Every kept input of every fuzz target (`seeds/<target>/`: the seed
//! corpus and each crash ever found) replayed under stable: none may panic.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the target's seeds folder") {
        let path = entry.expect("a seed").path();
        let data = std::fs::read(&path).expect("read a seed");
        run(&data);
        count += 1;
    }
    assert!(count > 0, "{} holds no inputs", dir.display());
}

#[test]
fn recipe_inputs() {
    replay("recipe", kiln_fuzz::recipe);
}

#[test]
fn base_layer_inputs() {
    replay("base_layer", kiln_fuzz::base_layer);
}

#[test]
fn documents_inputs() {
    replay("documents", kiln_fuzz::documents);
}
