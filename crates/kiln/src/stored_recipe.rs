//! The recipe an image was built from, kept in the store by manifest digest
//! so that an image named by reference can be tested with its own checks.
//!
//! What is kept is the `Recipe` value the build was given, not the file it
//! may have come from: an embedder that changed the version, a label or a
//! check in memory built that, and `kiln test REF` must test that.

use std::path::PathBuf;

use kiln_image::{Digest, Store};
use kiln_recipe::Recipe;
use serde::{Deserialize, Serialize};

use crate::KilnError;

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Where the recipe was (or would be) read from, absolute: relative
    /// paths in it (secret files) are relative to its folder.
    path: PathBuf,
    /// The recipe as built (kiln-recipe's serde form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recipe: Option<Recipe>,
    /// The recipe's text, as stores written before the value was kept hold
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

fn path(store: &Store, digest: &Digest) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("recipes")
        .join(format!("{}.json", digest.hex()))
}

fn corrupt(file: &std::path::Path, e: serde_json::Error) -> KilnError {
    KilnError::Io {
        path: file.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    }
}

/// Keep `recipe`, the value that was built, for `digest`. It holds secret
/// sources, never secret values.
pub(crate) fn save(store: &Store, digest: &Digest, recipe: &Recipe) -> Result<(), KilnError> {
    let mut recipe = recipe.clone();
    recipe.path = std::path::absolute(&recipe.path).unwrap_or(recipe.path);
    let stored = Stored {
        path: recipe.path.clone(),
        recipe: Some(recipe),
        text: None,
    };
    let file = path(store, digest);
    let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| corrupt(&file, e))?;
    kiln_image::write_atomic(&file, &bytes)?;
    Ok(())
}

/// The recipe `digest` was built from, if kiln built it.
pub(crate) fn load(store: &Store, digest: &Digest) -> Result<Option<Recipe>, KilnError> {
    let file = path(store, digest);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KilnError::Io { path: file, source }),
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(&file, e))?;
    match (stored.recipe, stored.text) {
        (Some(recipe), _) => Ok(Some(recipe)),
        (None, Some(text)) => Ok(Some(kiln_recipe::parse(&text, &stored.path)?)),
        (None, None) => Ok(None),
    }
}
