//! What this build of kiln can do yet. A recipe key whose feature is not
//! built is refused up front with a clear error, never silently ignored.

use kiln_recipe::{BaseRef, LayerKind, Recipe};

use crate::KilnError;

/// The step about to run; each needs a different part of the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Building layers and the image.
    Build,
    /// Build, test, sign and promote (pushing too).
    Release,
}

/// Refuse a recipe that asks `stage` for something not built yet.
pub fn ensure_supported(recipe: &Recipe, stage: Stage) -> Result<(), KilnError> {
    // Every base transport, layer kind and release step (signing, pushing)
    // is built: nothing is refused today. Callers keep asking, so that a
    // feature added to the format later is refused here until it works.
    let _ = (recipe, stage);
    Ok(())
}

/// Whether building `recipe` needs a container engine: run layers run
/// there, and `docker-daemon:` bases are read from it. A recipe for which
/// this is false builds with `engine: None`. (Testing always needs one.)
pub fn needs_engine(recipe: &Recipe) -> bool {
    matches!(recipe.image.base, BaseRef::DockerDaemon { .. })
        || recipe
            .layers
            .iter()
            .any(|l| matches!(l.kind, LayerKind::Run(_)))
}
