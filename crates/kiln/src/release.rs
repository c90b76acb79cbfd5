//! Release: build, test, then sign and attest (with `[promote] sign`), then
//! promote to the recipe's channels. Only a digest whose checks all passed
//! is signed or moves a channel, and a signing failure moves none.

use kiln_engine::Engine;
use kiln_image::{Digest, Store};
use kiln_promote::channel;
use kiln_recipe::{BaseRef, Recipe};

use crate::KilnError;
use crate::build::{BuildOptions, build};
use crate::cancel::until_cancelled;
use crate::capability::{Stage, ensure_supported};
use crate::events::Events;
use crate::registry::RegistryTarget;
use crate::report::{PushedReport, ReleaseReport};
use crate::sign::{ReleaseFacts, push_attachments, release_key, sign_release};
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
    let mut pushed = None;
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
        // Pushed before any channel moves: a push that fails leaves the
        // channels where they were, here and in the registry.
        if let Some(destination) = &recipe.promote.push {
            // A cancelled push stops between requests: the manifest goes
            // last, so the registry is left with no half-written tag.
            let pushing = push(
                store,
                destination,
                &digest,
                &built.tags,
                &recipe.promote.channels,
            );
            pushed = Some(until_cancelled(&options.cancel, pushing).await?);
            if key.is_some() {
                // The signature and attestations follow the image, appended
                // to whatever the registry holds for that digest.
                let remote = RegistryTarget::parse(destination)?.remote(false)?;
                let attaching = push_attachments(store, &built.name, &digest, &remote);
                until_cancelled(&options.cancel, attaching).await?;
            }
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
        pushed,
    })
}

/// Push `digest` to `destination` (`docker://HOST/REPO`), tagged with the
/// build's tags and then each channel.
async fn push(
    store: &Store,
    destination: &str,
    digest: &Digest,
    build_tags: &[String],
    channels: &[String],
) -> Result<PushedReport, KilnError> {
    let target = RegistryTarget::parse(destination)?;
    let mut tags: Vec<String> = build_tags.to_vec();
    tags.extend(target.tag.iter().cloned());
    for ch in channels {
        if !tags.contains(ch) {
            tags.push(ch.clone());
        }
    }
    let remote = target.push_remote(store, digest)?;
    let report = remote.push_image(store, digest, &tags).await?;
    Ok(PushedReport {
        destination: format!("docker://{}/{}", target.host, target.repository),
        digest: report.digest.unwrap_or_else(|| digest.clone()),
        tags: report.tags,
        blobs_uploaded: report.uploaded.len(),
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
