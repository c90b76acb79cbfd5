//! From the recipe's layer definitions to the entries kiln-image writes.
//! This is where recipe vocabulary (owner defaults, modes) meets the
//! image crate's, which knows nothing of TOML.

use std::path::{Path, PathBuf};

use kiln_image::{CopySpec, EntryKind, LayerEntry};
use kiln_recipe::{FileLayer, Recipe};

use crate::KilnError;

/// The folder that holds the recipe.
pub fn recipe_dir(recipe: &Recipe) -> PathBuf {
    match recipe.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The folder `src` paths are read from.
pub fn context_dir(recipe: &Recipe) -> PathBuf {
    recipe_dir(recipe).join(&recipe.image.context)
}

/// The entries of a file layer, in recipe order (the image crate sorts).
pub fn file_layer_entries(context: &Path, layer: &FileLayer) -> Result<Vec<LayerEntry>, KilnError> {
    let mut entries = Vec::new();
    for copy in &layer.files {
        let owner = copy.owner.unwrap_or(layer.owner);
        let spec = CopySpec {
            src: copy.src.clone(),
            dest: copy.dest.clone(),
            mode: copy.mode.map(|m| m.bits()),
            uid: owner.uid,
            gid: owner.gid,
            exclude: copy.exclude.clone(),
        };
        entries.extend(kiln_image::plan_copy(context, &spec)?);
    }
    for dir in &layer.dirs {
        let owner = dir.owner.unwrap_or(layer.owner);
        entries.push(LayerEntry {
            path: dir.path.trim_end_matches('/').to_owned(),
            kind: EntryKind::Dir,
            mode: dir.mode.map_or(0o755, |m| m.bits()),
            uid: owner.uid,
            gid: owner.gid,
        });
    }
    for link in &layer.symlinks {
        let owner = link.owner.unwrap_or(layer.owner);
        entries.push(LayerEntry {
            path: link.path.trim_end_matches('/').to_owned(),
            kind: EntryKind::Symlink {
                target: link.target.clone(),
            },
            mode: 0o777,
            uid: owner.uid,
            gid: owner.gid,
        });
    }
    Ok(entries)
}
