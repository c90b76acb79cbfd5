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
use crate::report::MovedTag;
use crate::{KilnError, stored_recipe};

/// Record the build of `recipe` as `built` in `store`; the tags that named
/// another digest before and now name this one.
pub(super) fn record(
    store: &Store,
    recipe: &Recipe,
    plan: &Plan,
    built: &BuiltImage,
    stat: &StatCache,
    snapshots: Vec<LayerSnapshot>,
) -> Result<Vec<MovedTag>, KilnError> {
    // Three independent files, each flushed to disk: written at once, their
    // flushes overlap (the filesystem commits them together) instead of
    // queueing one after another. Each is written only if it changed.
    let last = LastBuild { layers: snapshots };
    let (stat_saved, last_saved, recipe_saved) = std::thread::scope(|scope| {
        let stat_saved = scope.spawn(|| stat.save());
        let last_saved = scope.spawn(|| explain::save_last(store, &plan.name, &last));
        // The recipe is kept beside the image so that `kiln test NAME:TAG`
        // knows its checks. It holds secret sources, never secret values.
        let recipe_saved = stored_recipe::save(store, &built.manifest.digest, recipe);
        (stat_saved.join(), last_saved.join(), recipe_saved)
    });
    let panicked = |what: &str| KilnError::Io {
        path: store.bookkeeping_dir(),
        source: std::io::Error::other(format!("writing the {what} panicked")),
    };
    stat_saved.map_err(|_| panicked("stat cache"))??;
    last_saved.map_err(|_| panicked("last build"))??;
    recipe_saved?;
    // Last, the tags: only now is the build visible.
    let mut moved = Vec::new();
    for tag in &plan.tags {
        let name = format!("{}:{tag}", plan.name);
        // A tag is a name, not a promise: a rebuild with other inputs
        // moves it, and says so, rather than moving it silently.
        if let Some(before) = store.resolve(&name)?
            && before.digest != built.manifest.digest
        {
            moved.push(MovedTag {
                tag: tag.clone(),
                from: before.digest,
                to: built.manifest.digest.clone(),
            });
        }
        store.set_ref(&name, &built.manifest)?;
    }
    Ok(moved)
}
