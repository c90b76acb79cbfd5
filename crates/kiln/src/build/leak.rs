//! The leak check of a build: after the layers and the config are written
//! and before the image gets a name, every declared secret value is looked
//! for everywhere in what the recipe added. A hit fails the build, no tag
//! or channel moves, and the blobs that carry the secret are removed at
//! once, under the store's sweep (so no build, test or promotion is in
//! progress) and only when no root needs them: another image, a channel's
//! history, a test record. Cache entries that name a leaking layer go with
//! it (they would hand the secret to the next build). The build's other
//! blobs (clean layers another image may share) are left for gc.

use kiln_image::{Digest, Lease, Store, Sweep};
use kiln_recipe::Recipe;

use crate::KilnError;
use crate::secret;

/// Fail if any readable secret of `recipe` is in the image `built`, whose
/// first `base_layers` layers came from its base; give the build's `lease`
/// back when none is. On a leak, the lease is given up for the sweep and
/// the blobs that carry the secret are removed unless a root needs them.
pub(super) async fn check(
    store: &Store,
    recipe: &Recipe,
    built: &kiln_image::BuiltImage,
    base_layers: usize,
    lease: Lease,
) -> Result<Lease, KilnError> {
    let manifest: &Digest = &built.manifest.digest;
    let secrets = secret::readable(recipe);
    if secrets.is_empty() {
        return Ok(lease);
    }
    // Reading every layer the recipe added: the blocking pool's work.
    let leaks = {
        let (store, manifest) = (store.clone(), manifest.clone());
        crate::blocking::run(move || {
            kiln_secrets::scan_image(&store, &manifest, &secrets, base_layers)
        })
        .await?
    };
    if leaks.is_empty() {
        return Ok(lease);
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
    let sweep = crate::store_lock::sweep_after(lease).await?;
    let (store, blobs, manifest) = (
        store.clone(),
        leaking_blobs(built, &leaks),
        manifest.clone(),
    );
    crate::blocking::run(move || discard(&store, &sweep, &manifest, &blobs)).await?;
    Err(KilnError::SecretLeaked {
        image: recipe.image.name.to_string(),
        leaks: described,
    })
}

/// The blobs that carry a leaked value: the leaking layers, the config
/// when the config or its history leaked, and always the manifest (it
/// names them).
fn leaking_blobs(built: &kiln_image::BuiltImage, leaks: &[kiln_secrets::Leak]) -> Vec<Digest> {
    let mut blobs = vec![built.manifest.digest.clone()];
    for leak in leaks {
        match &leak.location {
            kiln_secrets::LeakLocation::LayerFile { digest, .. }
            | kiln_secrets::LeakLocation::LayerPath { digest, .. } => blobs.push(digest.clone()),
            kiln_secrets::LeakLocation::Config { .. }
            | kiln_secrets::LeakLocation::History { .. } => {
                blobs.push(built.config_digest.clone());
            }
            _ => {}
        }
    }
    blobs.sort();
    blobs.dedup();
    blobs
}

/// Remove `blobs` (which carry a secret) and the cache entries naming
/// them, under the sweep, unless a root still needs them.
fn discard(
    store: &Store,
    sweep: &Sweep,
    manifest: &Digest,
    blobs: &[Digest],
) -> Result<(), KilnError> {
    for entry in kiln_cache::entry::stored(store)? {
        if entry.blob.as_ref().is_some_and(|b| blobs.contains(b)) {
            kiln_cache::entry::remove(&entry.path)?;
        }
    }
    let roots = crate::gc::roots(store)?;
    let removed = store.remove_unreferenced(sweep, blobs, &roots)?;
    // The manifest is this build's own: its stored recipe is not written
    // yet, but an earlier identical build's is, and it goes with it.
    if removed.contains(manifest) {
        crate::stored_recipe::remove(store, manifest)?;
    }
    Ok(())
}
