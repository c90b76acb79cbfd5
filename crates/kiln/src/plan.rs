//! From the recipe's layer definitions to the entries kiln-image writes.
//! This is where recipe vocabulary (owner defaults, modes) meets the
//! image crate's, which knows nothing of TOML.

use std::path::{Path, PathBuf};

use kiln_image::{CopySpec, EntryKind, LayerEntry};
use kiln_recipe::{FileLayer, Owner, Recipe};
use serde_json::{Value, json};

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

/// The entries of a file layer, in recipe order (the image crate sorts):
/// host hard links among them as tar hard links, and a folder entry for
/// every parent the layer does not give (`0o755`, the layer's owner).
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
            preserve: copy.preserve,
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
    kiln_image::link_hard_links(&mut entries)?;
    kiln_image::add_parent_folders(&mut entries, layer.owner.uid, layer.owner.gid);
    Ok(entries)
}

/// The layer's definition from the recipe as canonical data, for its cache
/// key and for explaining what changed. Names of secrets may appear in a
/// definition; values never can (a file layer has none).
pub fn file_layer_definition(layer: &FileLayer) -> Value {
    let owner = |o: Option<Owner>| o.map(|o| o.to_string());
    json!({
        "owner": layer.owner.to_string(),
        "files": layer.files.iter().map(|f| json!({
            "src": f.src, "dest": f.dest, "mode": f.mode.map(|m| m.bits()),
            "owner": owner(f.owner), "exclude": f.exclude, "preserve": f.preserve,
        })).collect::<Vec<_>>(),
        "dirs": layer.dirs.iter().map(|d| json!({
            "path": d.path, "mode": d.mode.map(|m| m.bits()), "owner": owner(d.owner),
        })).collect::<Vec<_>>(),
        "symlinks": layer.symlinks.iter().map(|l| json!({
            "path": l.path, "target": l.target, "owner": owner(l.owner),
        })).collect::<Vec<_>>(),
    })
}
