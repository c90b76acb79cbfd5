//! Stage 1, resolve the base: whatever the recipe builds on (a registry,
//! the engine, an archive, a layout, another recipe, an image in the store)
//! becomes a [`BaseImage`] in the store, or `None` for `scratch`.

use kiln_engine::Engine;
use kiln_image::{BaseImage, Store};
use kiln_recipe::{BaseRef, Recipe};

use crate::KilnError;
use crate::cancel::until_cancelled;
use crate::plan::recipe_dir;
use crate::reference::{self, ImageRef};

/// The base `recipe` builds on, in `store`; `built` holds the recipes built
/// so far in this run (what a `recipe:` base resolves to). A `rootfs:` base
/// is written with `epoch`, its files vouched for by `stat`.
///
/// `--no-cache` does not apply here: it rebuilds the recipe's layers, and
/// takes the base as it is (as `docker build --no-cache` takes its `FROM`).
/// Every kind of base is still checked for change: a `rootfs:` tree by its
/// files, a `docker-daemon:` image by its engine id, a tag by its digest.
///
/// Imports (`rootfs:`, `oci:`, archives) run on the blocking pool and stop
/// at a cancel on their own; registry and engine calls are raced against
/// the store handle's token.
pub(super) async fn resolve(
    store: &Store,
    recipe: &Recipe,
    built: &super::BuiltRecipes,
    engine: Option<&dyn Engine>,
    epoch: u64,
    stat: &super::SharedStat,
) -> Result<Option<BaseImage>, KilnError> {
    let (owned, dir, platform) = (store.clone(), recipe_dir(recipe), platform(recipe));
    let cancel = store.cancel();
    match &recipe.image.base {
        BaseRef::Scratch => Ok(None),
        BaseRef::Rootfs { path } => {
            let (path, stat) = (dir.join(path), stat.clone());
            crate::blocking::run(move || {
                super::rootfs::import(&owned, &path, epoch, &platform, &stat)
            })
            .await
            .map(Some)
        }
        BaseRef::Registry {
            host,
            repository,
            tag,
            digest,
        } => {
            let digest = digest
                .as_deref()
                .map(str::parse::<kiln_image::Digest>)
                .transpose()
                .map_err(|e| KilnError::InvalidReference {
                    reference: recipe.image.base.to_string(),
                    reason: e.to_string(),
                })?;
            // With the credentials docker or skopeo would use; a tag is
            // resolved to the digest the registry serves, and every blob
            // is verified as it streams in.
            let remote = crate::registry::remote(host, repository, true)?;
            let pull = async {
                Ok(remote
                    .pull(store, tag.as_deref(), digest.as_ref(), &platform)
                    .await?)
            };
            Ok(Some(until_cancelled(cancel, pull).await?))
        }
        BaseRef::DockerDaemon { reference } => {
            let engine = engine.ok_or_else(|| KilnError::NoEngineForBase {
                base: recipe.image.base.to_string(),
            })?;
            // One inspect when the engine's image id was imported before.
            let base = recipe.image.base.to_string();
            let import = crate::engine_images::daemon_base(store, engine, reference, &base);
            Ok(Some(until_cancelled(cancel, import).await?))
        }
        BaseRef::Recipe { path } => {
            let file = kiln_recipe::recipe_file(&dir.join(path));
            let file = std::fs::canonicalize(&file)
                .map_err(|source| KilnError::Io { path: file, source })?;
            let digest = built
                .get(&file)
                .ok_or_else(|| KilnError::InvalidReference {
                    reference: format!("recipe:{}", path.display()),
                    reason: "that recipe was not built first".into(),
                })?;
            Ok(Some(kiln_image::load_image(store, digest)?))
        }
        BaseRef::Oci {
            dir: layout,
            reference,
        } => {
            let (layout, reference) = (dir.join(layout), reference.clone());
            crate::blocking::run(move || {
                kiln_image::import_oci_layout_for(&owned, &layout, reference.as_deref(), &platform)
            })
            .await
            .map(Some)
        }
        BaseRef::OciArchive { file, reference } => {
            let (file, reference) = (dir.join(file), reference.clone());
            crate::blocking::run(move || {
                kiln_image::import_oci_archive_for(&owned, &file, reference.as_deref(), &platform)
            })
            .await
            .map(Some)
        }
        BaseRef::DockerArchive { file, reference } => {
            let (file, reference) = (dir.join(file), reference.clone());
            crate::blocking::run(move || {
                kiln_image::import_docker_archive(&owned, &file, reference.as_deref())
            })
            .await
            .map(Some)
        }
        BaseRef::Kiln { name, tag, digest } => {
            let image_ref = match (tag, digest) {
                (_, Some(d)) => format!("{name}@{d}"),
                (Some(t), None) => format!("{name}:{t}"),
                (None, None) => name.to_string(),
            };
            let ImageRef { digest, .. } = reference::resolve(store, &image_ref)?;
            Ok(Some(kiln_image::load_image(store, &digest)?))
        }
    }
}

/// The platform `recipe` builds for: its `[image] platform`, else the
/// host's. A multi-platform base is followed to it, and a config that names
/// none (as on scratch) records it.
pub(crate) fn platform(recipe: &Recipe) -> kiln_image::Platform {
    recipe
        .image
        .platform
        .as_ref()
        .map_or_else(kiln_image::Platform::host, crate::registry::image_platform)
}
