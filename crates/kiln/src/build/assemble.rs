//! Stage 5, assemble: the base, the produced layers and the runtime config
//! become a config, a manifest and their blobs in the store, with the
//! annotations every kiln image carries. The image has no name yet.

use std::collections::BTreeMap;

use kiln_image::{BaseImage, BuiltImage, ImageSpec, LayerRecord, Store};
use kiln_recipe::Recipe;

use super::plan::Plan;
use crate::KilnError;

/// The prefix of the manifest annotation that records each build argument:
/// `dev.kiln.arg.NAME` = its value.
pub const ARG_ANNOTATION_PREFIX: &str = "dev.kiln.arg.";

/// Assemble the image of `recipe` from `base` and `layers` into `store`.
pub(super) fn assemble(
    store: &Store,
    recipe: &Recipe,
    plan: &Plan,
    base: Option<BaseImage>,
    layers: Vec<LayerRecord>,
) -> Result<BuiltImage, KilnError> {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_owned(),
        kiln_image::rfc3339(plan.epoch),
    );
    annotations.insert(
        "org.opencontainers.image.title".to_owned(),
        plan.name.clone(),
    );
    if let Some(version) = &recipe.image.version {
        annotations.insert(
            "org.opencontainers.image.version".to_owned(),
            version.clone(),
        );
    }
    // The build arguments the image was built with, so that an image says
    // what it is. Not secrets ([secrets] are), and the leak scan reads
    // annotations too.
    for (name, value) in &recipe.args {
        annotations.insert(format!("{ARG_ANNOTATION_PREFIX}{name}"), value.clone());
    }
    let spec = ImageSpec {
        platform: super::base::platform(recipe),
        base,
        config: plan.config.clone(),
        layers,
        created_epoch: plan.epoch,
        annotations,
    };
    Ok(kiln_image::assemble(store, &spec)?)
}
