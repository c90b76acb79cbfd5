//! The leak check of a build: after the layers and the config are written
//! and before the image gets a name, every declared secret value is looked
//! for everywhere in what the recipe added. A hit fails the build; the
//! blobs stay unnamed (gc removes them) and no tag or channel moves.

use kiln_image::{Digest, Store};
use kiln_recipe::Recipe;

use crate::KilnError;
use crate::secret;

/// Fail if any readable secret of `recipe` is in the image `built`, whose
/// first `base_layers` layers came from its base. On a leak, the blobs the
/// recipe added (manifest, config, its own layers) are removed from the
/// store unless another image uses them.
pub(super) fn check(
    store: &Store,
    recipe: &Recipe,
    built: &kiln_image::BuiltImage,
    base_layers: usize,
) -> Result<(), KilnError> {
    let manifest: &Digest = &built.manifest.digest;
    let secrets = secret::readable(recipe);
    if secrets.is_empty() {
        return Ok(());
    }
    let leaks = kiln_secrets::scan_image(store, manifest, &secrets, base_layers)?;
    if leaks.is_empty() {
        return Ok(());
    }
    // Layer numbers count the base's layers; name the recipe's layers.
    let described = leaks
        .iter()
        .map(|leak| {
            let mut text = leak.to_string();
            let layer = match &leak.location {
                kiln_secrets::LeakLocation::LayerFile { layer, .. }
                | kiln_secrets::LeakLocation::LayerPath { layer, .. } => Some(*layer),
                _ => None,
            };
            let own = layer
                .and_then(|l| l.checked_sub(base_layers))
                .and_then(|i| recipe.layers.get(i));
            if let Some(own) = own {
                text.push_str(&format!(" (layer {:?} of the recipe)", own.name));
            }
            text
        })
        .collect();
    let mut discard = vec![manifest.clone(), built.config_digest.clone()];
    discard.extend(
        built
            .layers
            .iter()
            .skip(base_layers)
            .map(|l| l.digest.clone()),
    );
    store.remove_unreferenced(&discard)?;
    Err(KilnError::SecretLeaked {
        image: recipe.image.name.to_string(),
        leaks: described,
    })
}
