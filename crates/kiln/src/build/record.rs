//! Stage 7, record: only a build whose image passed the leak scan leaves
//! bookkeeping behind (the stat cache and the last build name host files,
//! and a file's name may be what leaked): the stat cache, the last build
//! (for explaining the next one's misses), the recipe beside the image, and
//! last the tags, which make the image visible.

use kiln_cache::explain::{self, LastBuild, LayerSnapshot};
use kiln_cache::stat::StatCache;
use kiln_image::{BuiltImage, Store};
use kiln_recipe::Recipe;

use super::plan::Plan;
use crate::{KilnError, stored_recipe};

/// Record the build of `recipe` as `built` in `store`.
pub(super) fn record(
    store: &Store,
    recipe: &Recipe,
    plan: &Plan,
    built: &BuiltImage,
    stat: &StatCache,
    snapshots: Vec<LayerSnapshot>,
) -> Result<(), KilnError> {
    stat.save()?;
    explain::save_last(store, &plan.name, &LastBuild { layers: snapshots })?;
    // The recipe is kept beside the image so that `kiln test NAME:TAG` knows
    // its checks. It holds secret sources, never secret values.
    stored_recipe::save(store, &built.manifest.digest, recipe)?;
    for tag in &plan.tags {
        store.set_ref(&format!("{}:{tag}", plan.name), &built.manifest)?;
    }
    Ok(())
}
