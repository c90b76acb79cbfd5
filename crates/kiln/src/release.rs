//! Release: build, test, then sign and attest (with `[promote] sign`), then
//! promote to the recipe's channels. Only a digest whose checks all passed
//! is signed or moves a channel, and a signing failure moves none.

use kiln_engine::Engine;
use kiln_image::Store;
use kiln_promote::channel;
use kiln_recipe::{BaseRef, Recipe};

use crate::KilnError;
use crate::build::{BuildOptions, build};
use crate::capability::{Stage, ensure_supported};
use crate::events::Events;
use crate::report::ReleaseReport;
use crate::sign::{ReleaseFacts, release_key, sign_release};
use crate::test_run::{TestOptions, test};

/// Build `recipe`, run its checks on the result, and when they all pass
/// sign the digest and attest its provenance and SBOM (when `[promote]
/// sign` names a key), then move every channel of `[promote] channels` to
/// the new digest. `options.cancel` cancels the build and the test alike;
/// a cancelled release signs and promotes nothing.
pub async fn release(
    store: &Store,
    engine: &dyn Engine,
    recipe: &Recipe,
    options: &BuildOptions,
    run_id: &str,
    events: &dyn Events,
) -> Result<ReleaseReport, KilnError> {
    // Refuse what cannot finish before spending a build on it.
    ensure_supported(recipe, Stage::Release)?;
    // A key that cannot be read or opened fails the release before it
    // builds anything.
    let key = match &recipe.promote.sign {
        Some(source) => Some(release_key(recipe, source)?),
        None => None,
    };
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let built = build(store, recipe, options, Some(engine), events).await?;
    let digest = built.digest.clone();
    let test_options = TestOptions {
        run_id: Some(run_id.to_owned()),
        cancel: options.cancel.clone(),
    };
    let tested = test(store, engine, recipe, &digest, &test_options, events).await?;
    let mut promoted = Vec::new();
    if tested.passed {
        if let Some(key) = &key {
            let facts = ReleaseFacts {
                recipe,
                name: &built.name,
                digest: &digest,
                base: built
                    .base
                    .as_ref()
                    .map(|b| (b.reference.clone(), b.digest.to_string())),
                layers: built
                    .layers
                    .iter()
                    .map(|l| (l.name.clone(), l.digest.to_string()))
                    .collect(),
                run_id,
                started_at,
            };
            sign_release(store, &facts, key, &identity(recipe, &built.name))?;
        }
        for ch in &recipe.promote.channels {
            let moved = channel::promote(store, &built.name, &digest, ch)?;
            events.promoted(&built.name, ch, &moved);
            promoted.push(ch.clone());
        }
    }
    Ok(ReleaseReport {
        build: built,
        test: tested,
        promoted,
    })
}

/// Where the signature says the image lives: the push destination's
/// `HOST/REPO` when the recipe pushes, else the image's name.
fn identity(recipe: &Recipe, name: &str) -> String {
    match recipe.promote.push.as_deref().map(str::parse::<BaseRef>) {
        Some(Ok(BaseRef::Registry {
            host, repository, ..
        })) => format!("{host}/{repository}"),
        _ => name.to_owned(),
    }
}
