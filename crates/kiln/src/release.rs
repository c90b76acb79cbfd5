//! Release: build, test, then promote to the recipe's channels. Only a
//! digest whose checks all passed moves a channel.

use kiln_engine::Engine;
use kiln_image::Store;
use kiln_promote::channel;
use kiln_recipe::Recipe;

use crate::KilnError;
use crate::build::{BuildOptions, build};
use crate::capability::{Stage, ensure_supported};
use crate::events::Events;
use crate::report::ReleaseReport;
use crate::test_run::{TestOptions, test};

/// Build `recipe`, run its checks on the result, and when they all pass move
/// every channel of `[promote] channels` to the new digest. `options.cancel`
/// cancels the build and the test alike; a cancelled release promotes
/// nothing.
pub async fn release(
    store: &Store,
    engine: &dyn Engine,
    recipe: &Recipe,
    options: &BuildOptions,
    run_id: &str,
    events: &dyn Events,
) -> Result<ReleaseReport, KilnError> {
    // Refuse sign/push before spending a build on a release that cannot
    // finish.
    ensure_supported(recipe, Stage::Release)?;
    let built = build(store, recipe, options, Some(engine), events).await?;
    let digest = built.digest.clone();
    let test_options = TestOptions {
        run_id: Some(run_id.to_owned()),
        cancel: options.cancel.clone(),
    };
    let tested = test(store, engine, recipe, &digest, &test_options, events).await?;
    let mut promoted = Vec::new();
    if tested.passed {
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
