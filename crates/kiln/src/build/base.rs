//! Stage 1, resolve the base: whatever the recipe builds on (a registry,
//! the engine, an archive, a layout, another recipe, an image in the store)
//! becomes a [`BaseImage`] in the store, or `None` for `scratch`.

use kiln_engine::Engine;
use kiln_image::{BaseImage, Store};
use kiln_recipe::{BaseRef, Recipe};

use crate::KilnError;
use crate::plan::recipe_dir;
use crate::reference::{self, ImageRef};

/// The base `recipe` builds on, in `store`; `built` holds the recipes built
/// so far in this run (what a `recipe:` base resolves to). A `rootfs:` base
/// is written with `plan`'s epoch, its files vouched for by `stat`.
///
/// `--no-cache` does not apply here: it rebuilds the recipe's layers, and
/// takes the base as it is (as `docker build --no-cache` takes its `FROM`).
/// Every kind of base is still checked for change: a `rootfs:` tree by its
/// files, a `docker-daemon:` image by its engine id, a tag by its digest.
pub(super) async fn resolve(
    store: &Store,
    recipe: &Recipe,
    built: &super::BuiltRecipes,
    engine: Option<&dyn Engine>,
    plan: &super::plan::Plan,
    stat: &mut kiln_cache::stat::StatCache,
) -> Result<Option<BaseImage>, KilnError> {
    match &recipe.image.base {
        BaseRef::Scratch => Ok(None),
        BaseRef::Rootfs { path } => Ok(Some(super::rootfs::import(
            store,
            &recipe_dir(recipe).join(path),
            plan.epoch,
            &platform(recipe),
            stat,
        )?)),
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
            let image = crate::registry::remote(host, repository, true)?
                .pull(store, tag.as_deref(), digest.as_ref(), &platform(recipe))
                .await?;
            Ok(Some(image))
        }
        BaseRef::DockerDaemon { reference } => {
            let engine = engine.ok_or_else(|| KilnError::NoEngineForBase {
                base: recipe.image.base.to_string(),
            })?;
            // One inspect when the engine's image id was imported before.
            Ok(Some(
                crate::engine_images::daemon_base(
                    store,
                    engine,
                    reference,
                    &recipe.image.base.to_string(),
                )
                .await?,
            ))
        }
        BaseRef::Recipe { path } => {
            let file = kiln_recipe::recipe_file(&recipe_dir(recipe).join(path));
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
        BaseRef::Oci { dir, reference } => Ok(Some(kiln_image::import_oci_layout_for(
            store,
            &recipe_dir(recipe).join(dir),
            reference.as_deref(),
            &platform(recipe),
        )?)),
        BaseRef::OciArchive { file, reference } => Ok(Some(kiln_image::import_oci_archive_for(
            store,
            &recipe_dir(recipe).join(file),
            reference.as_deref(),
            &platform(recipe),
        )?)),
        BaseRef::DockerArchive { file, reference } => Ok(Some(kiln_image::import_docker_archive(
            store,
            &recipe_dir(recipe).join(file),
            reference.as_deref(),
        )?)),
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
    match &recipe.image.platform {
        Some(p) => kiln_image::Platform {
            os: p.os().to_owned(),
            architecture: p.architecture().to_owned(),
            variant: p.variant().map(str::to_owned),
            extra: Default::default(),
        },
        None => kiln_image::Platform::host(),
    }
}
