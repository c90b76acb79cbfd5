//! Layer keys change when, and only when, something the layer's bytes
//! depend on changes: an input, the layer's definition, the epoch or the
//! parent. Property tests over random layers and random edits.

use kiln_cache::key::{InputRecord, KeyInput, LayerKey};
use kiln_image::Digest;
use proptest::prelude::*;

fn record() -> impl Strategy<Value = InputRecord> {
    (
        "/[a-z]{1,8}(/[a-z]{1,8}){0,2}",
        prop_oneof![Just("file"), Just("dir"), Just("symlink")],
        0u32..0o7777,
        0u32..70000,
        0u32..70000,
        any::<u64>(),
    )
        .prop_map(|(path, kind, mode, uid, gid, content)| InputRecord {
            path,
            kind: kind.to_owned(),
            mode,
            uid,
            gid,
            digest: (kind == "file").then(|| Digest::of(&content.to_le_bytes())),
            target: (kind == "symlink").then(|| format!("t{content}")),
        })
}

fn layer() -> impl Strategy<Value = KeyInput> {
    (
        "[a-z0-9:]{1,20}",
        0u64..2_000_000_000,
        "[a-z/.*]{0,12}",
        proptest::collection::btree_map("/[a-z]{1,10}", record(), 0..8),
    )
        .prop_map(|(parent, epoch, exclude, inputs)| KeyInput {
            parent,
            epoch,
            definition: serde_json::json!({ "files": [{ "src": "site/", "dest": "/www/", "exclude": [exclude] }] }),
            inputs: inputs
                .into_iter()
                .map(|(path, mut r)| {
                    r.path = path;
                    r
                })
                .collect(),
        })
}

#[derive(Debug, Clone)]
enum Edit {
    Content(usize),
    Mode(usize),
    Owner(usize),
    Path(usize),
    Remove(usize),
    Add,
    Definition,
    Epoch,
    Parent,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Content),
        any::<usize>().prop_map(Edit::Mode),
        any::<usize>().prop_map(Edit::Owner),
        any::<usize>().prop_map(Edit::Path),
        any::<usize>().prop_map(Edit::Remove),
        Just(Edit::Add),
        Just(Edit::Definition),
        Just(Edit::Epoch),
        Just(Edit::Parent),
    ]
}

/// Apply `edit`; false if it had nothing to act on.
fn apply(input: &mut KeyInput, edit: &Edit) -> bool {
    let n = input.inputs.len();
    let pick = |i: usize| if n == 0 { None } else { Some(i % n) };
    match *edit {
        Edit::Content(i) => match pick(i) {
            Some(i) => {
                let r = &mut input.inputs[i];
                r.digest = Some(Digest::of(format!("{:?}+", r.digest).as_bytes()));
                true
            }
            None => false,
        },
        Edit::Mode(i) => pick(i).is_some_and(|i| {
            input.inputs[i].mode ^= 0o100;
            true
        }),
        Edit::Owner(i) => pick(i).is_some_and(|i| {
            input.inputs[i].uid += 1;
            true
        }),
        Edit::Path(i) => pick(i).is_some_and(|i| {
            input.inputs[i].path.push_str("-renamed");
            true
        }),
        Edit::Remove(i) => pick(i).is_some_and(|i| {
            input.inputs.remove(i);
            true
        }),
        Edit::Add => {
            input.inputs.push(InputRecord {
                path: "/zz-added".into(),
                kind: "dir".into(),
                mode: 0o755,
                uid: 0,
                gid: 0,
                digest: None,
                target: None,
            });
            true
        }
        Edit::Definition => {
            input.definition["files"][0]["exclude"] = serde_json::json!(["changed-glob"]);
            true
        }
        Edit::Epoch => {
            input.epoch += 1;
            true
        }
        Edit::Parent => {
            input.parent.push('x');
            true
        }
    }
}

proptest! {
    #[test]
    fn any_edit_changes_the_key(input in layer(), e in edit()) {
        let before = LayerKey::of(&input).expect("key");
        let mut edited = input.clone();
        if apply(&mut edited, &e) && edited != input {
            prop_assert_ne!(LayerKey::of(&edited).expect("key"), before, "{:?} left the key unchanged", e);
        }
    }

    #[test]
    fn the_same_layer_gives_the_same_key_whatever_the_entry_order(input in layer()) {
        let mut shuffled = input.clone();
        shuffled.inputs.reverse();
        prop_assert_eq!(LayerKey::of(&shuffled).expect("key"), LayerKey::of(&input).expect("key"));
    }
}
