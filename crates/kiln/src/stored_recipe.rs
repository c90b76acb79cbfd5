//! The recipe an image was built from, kept in the store by manifest digest
//! so that an image named by reference can be tested with its own checks.

use std::path::PathBuf;

use kiln_image::{Digest, Store};
use kiln_recipe::Recipe;
use serde::{Deserialize, Serialize};

use crate::KilnError;

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Where the recipe was read from; relative paths in it (secret files)
    /// are relative to its folder.
    path: PathBuf,
    text: String,
}

fn path(store: &Store, digest: &Digest) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("recipes")
        .join(format!("{}.json", digest.hex()))
}

/// Keep the text of `recipe` (as it is on disk) for `digest`. A recipe that
/// an embedder parsed from memory has no file: its image can then only be
/// tested with the recipe in hand, which [`load`] reports as no recipe.
pub(crate) fn save(store: &Store, digest: &Digest, recipe: &Recipe) -> Result<(), KilnError> {
    let text = match std::fs::read_to_string(&recipe.path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(KilnError::Io {
                path: recipe.path.clone(),
                source,
            });
        }
    };
    let recipe_path = std::path::absolute(&recipe.path).unwrap_or_else(|_| recipe.path.clone());
    let stored = Stored {
        path: recipe_path,
        text,
    };
    let file = path(store, digest);
    let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| KilnError::Io {
        path: file.clone(),
        source: std::io::Error::other(e),
    })?;
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
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| KilnError::Io {
        path: file.clone(),
        source: std::io::Error::other(e),
    })?;
    Ok(Some(kiln_recipe::parse(&stored.text, &stored.path)?))
}
