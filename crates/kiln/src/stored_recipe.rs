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
    // Rebuilding the same image keeps the same recipe: nothing to write.
    kiln_image::write_atomic_if_changed(&file, &bytes)?;
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

/// Every stored recipe file with the manifest digest its name gives
/// (`None` for a file kiln did not name), sorted.
pub(crate) fn stored(store: &Store) -> Result<Vec<(PathBuf, Option<Digest>)>, KilnError> {
    Ok(store
        .bookkeeping_files("recipes")?
        .into_iter()
        .map(|path| {
            let digest = crate::gc::digest_of_file(&path);
            (path, digest)
        })
        .collect())
}

/// When `digest` was last built here: the time its recipe was stored,
/// else its manifest blob's time. For `kiln gc --keep`'s "newest first".
pub(crate) fn built_at(store: &Store, digest: &Digest) -> std::time::SystemTime {
    [path(store, digest), store.blob_path(digest)]
        .iter()
        .find_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Remove the stored recipe of `digest`, if any (its image is gone).
pub(crate) fn remove(store: &Store, digest: &Digest) -> Result<(), KilnError> {
    kiln_image::remove_if_present(&path(store, digest))?;
    Ok(())
}
