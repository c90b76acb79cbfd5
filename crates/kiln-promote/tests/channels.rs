//! Promotion and rollback on a real store: refusals, history, refs.

use kiln_image::{Digest, Store};
use kiln_promote::PromoteError;
use kiln_promote::channel::{self, Action};
use kiln_promote::record::{self, CheckRecord, TestRecord};

/// A stored manifest (content differs by `n`) and its digest.
fn manifest(store: &Store, n: u32) -> Digest {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[],"annotations":{{"n":"{n}"}}}}"#,
        Digest::of(b"{}")
    );
    store.put_blob(body.as_bytes()).expect("put manifest")
}

fn tested(store: &Store, name: &str, digest: &Digest, passed: bool) {
    record::save(
        store,
        &TestRecord {
            name: name.into(),
            digest: digest.clone(),
            passed,
            checks: vec![CheckRecord {
                name: "health".into(),
                passed,
                duration_ms: 3,
                detail: String::new(),
            }],
            finished_at: 0,
        },
    )
    .expect("save record");
}

fn current_ref(store: &Store, r: &str) -> Option<Digest> {
    store.resolve(r).expect("resolve").map(|d| d.digest)
}

#[test]
fn untested_failed_and_foreign_digests_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let d = manifest(&store, 1);
    assert!(matches!(
        channel::promote(&store, "web", &d, "stable"),
        Err(PromoteError::Untested { .. })
    ));
    tested(&store, "web", &d, false);
    let err = channel::promote(&store, "web", &d, "stable").expect_err("failed digest");
    assert!(matches!(err, PromoteError::Failed { .. }));
    assert!(
        err.to_string().contains("health"),
        "names the failed check: {err}"
    );
    tested(&store, "other", &d, true);
    assert!(matches!(
        channel::promote(&store, "web", &d, "stable"),
        Err(PromoteError::WrongImage { .. })
    ));
    let missing = Digest::of(b"not stored");
    assert!(matches!(
        channel::promote(&store, "web", &missing, "stable"),
        Err(PromoteError::NotStored { .. })
    ));
    assert!(matches!(
        channel::promote(&store, "web", &d, "Bad/Name"),
        Err(PromoteError::InvalidChannel(_))
    ));
    assert_eq!(
        current_ref(&store, "web:stable"),
        None,
        "no refusal moved the channel"
    );
    assert!(
        channel::history(&store, "web", "stable")
            .expect("history")
            .is_empty()
    );
}

#[test]
fn promotions_move_the_ref_and_rollbacks_walk_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let [a, b, c] = [1, 2, 3].map(|n| manifest(&store, n));
    for d in [&a, &b, &c] {
        tested(&store, "web", d, true);
    }
    assert!(matches!(
        channel::rollback(&store, "web", "stable"),
        Err(PromoteError::NothingToRollBack { .. })
    ));
    let first = channel::promote(&store, "web", &a, "stable").expect("promote a");
    assert_eq!(first.from, None);
    channel::promote(&store, "web", &b, "stable").expect("promote b");
    let moved = channel::promote(&store, "web", &c, "stable").expect("promote c");
    assert_eq!(moved.from, Some(b.clone()));
    assert_eq!(current_ref(&store, "web:stable"), Some(c.clone()));

    // b has since failed a re-test: rollback skips it.
    tested(&store, "web", &b, false);
    let back = channel::rollback(&store, "web", "stable").expect("rollback");
    assert_eq!((back.from, back.to), (Some(c.clone()), a.clone()));
    assert_eq!(current_ref(&store, "web:stable"), Some(a.clone()));
    assert_eq!(
        channel::current(&store, "web", "stable").expect("current"),
        Some(a.clone())
    );
    assert!(matches!(
        channel::rollback(&store, "web", "stable"),
        Err(PromoteError::NothingToRollBack { .. })
    ));

    let history = channel::history(&store, "web", "stable").expect("history");
    let actions: Vec<Action> = history.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            Action::Promote,
            Action::Promote,
            Action::Promote,
            Action::Rollback
        ]
    );
    assert_eq!(
        channel::all(&store, "web").expect("all"),
        vec![("stable".to_owned(), a)]
    );
}

#[test]
fn two_rollbacks_go_back_two_promotions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let [a, b, c] = [1, 2, 3].map(|n| manifest(&store, n));
    for d in [&a, &b, &c] {
        tested(&store, "web", d, true);
        channel::promote(&store, "web", d, "canary").expect("promote");
    }
    assert_eq!(
        channel::rollback(&store, "web", "canary").expect("1st").to,
        b
    );
    assert_eq!(
        channel::rollback(&store, "web", "canary").expect("2nd").to,
        a
    );
    assert_eq!(current_ref(&store, "web:canary"), Some(a));
}

#[test]
fn every_digest_a_channel_ever_held_is_referenced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let [a, b, c] = [1, 2, 3].map(|n| manifest(&store, n));
    tested(&store, "web", &a, true);
    tested(&store, "web", &b, true);
    tested(&store, "api", &c, true);
    channel::promote(&store, "web", &a, "stable").expect("a");
    channel::promote(&store, "web", &b, "stable").expect("b");
    channel::promote(&store, "api", &c, "canary").expect("c");
    let referenced = channel::referenced(&store).expect("referenced");
    assert_eq!(referenced.into_iter().collect::<Vec<_>>(), {
        let mut all = vec![a, b, c];
        all.sort();
        all
    });
}

#[test]
fn a_corrupt_history_is_an_error_not_a_reset() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let dir = store.bookkeeping_dir().join("channels/web");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("stable.json"), "{not json").expect("write");
    let err = channel::current(&store, "web", "stable").expect_err("corrupt");
    assert!(matches!(err, PromoteError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("stable.json"), "{err}");
}
