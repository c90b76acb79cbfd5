//! Where the facade meets registries: `docker://HOST/REPO[:TAG]` places
//! parsed once, credentials looked up where docker and skopeo keep them
//! (kiln-image's [`CredentialFiles`]), and the shared layer cache of
//! `--cache-from` / `--cache-to`, one [`Remote`] per repository for the
//! whole build so each token is fetched once.

use kiln_cache::key::LayerKey;
use kiln_image::{CredentialFiles, Digest, LayerBlob, Remote, Store, StoredImage};
use kiln_recipe::BaseRef;

use crate::KilnError;
use crate::catalog::{IndexEntry, Inspection};

/// A repository of a registry, and maybe a tag: where `kiln export` and
/// `[promote] push` send an image, or a shared cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// `HOST[:PORT]`.
    pub host: String,
    /// The repository.
    pub repository: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
}

impl RegistryTarget {
    /// Parse `docker://HOST/REPO[:TAG]` (no digest: kiln names what it
    /// pushes by tag, and the digest is the image's own).
    pub fn parse(s: &str) -> Result<Self, KilnError> {
        let invalid = |reason: String| KilnError::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        match crate::reference::parse_transport(s)? {
            BaseRef::Registry {
                host,
                repository,
                tag,
                digest: None,
            } => Ok(RegistryTarget {
                host,
                repository,
                tag,
            }),
            BaseRef::Registry { .. } => Err(invalid(
                "a push destination names a tag, not a digest: the digest is the image's own"
                    .into(),
            )),
            other => Err(invalid(format!(
                "{}: is not a registry: write docker://HOST/REPO",
                other.transport()
            ))),
        }
    }

    /// A session with this repository, with the credentials the
    /// environment gives for its host.
    pub(crate) fn remote(&self, read_only: bool) -> Result<Remote, KilnError> {
        remote(&self.host, &self.repository, read_only)
    }

    /// A session for pushing `digest` here that may mount blobs from the
    /// repository its base was pulled from, when that is on this registry
    /// (the image's stored recipe names a `docker://` base of this host):
    /// the base's layers then cost the registry a mount, not an upload.
    /// The stored recipe is only a hint; without one nothing is mounted.
    pub(crate) fn push_remote(&self, store: &Store, digest: &Digest) -> Result<Remote, KilnError> {
        let remote = self.remote(false)?;
        let recipe = crate::stored_recipe::load(store, digest).ok().flatten();
        if let Some(BaseRef::Registry {
            host, repository, ..
        }) = recipe.map(|r| r.image.base)
        {
            if host == self.host && repository != self.repository {
                remote.allow_mounts_from(&[repository]);
            }
        }
        Ok(remote)
    }
}

impl std::fmt::Display for RegistryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker://{}/{}", self.host, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Manifest, config, layers and history of the image a registry reference
/// `docker://HOST/REPO[:TAG|@sha256:HEX]` names, read from the registry
/// with the credentials a pull uses, verified, and nothing stored. An image
/// index is followed to `platform` (else the host's), and the inspection
/// says which index and which entry. Errors are a pull's: bad reference
/// exit 2, unknown tag or digest exit 2, no registry or credentials
/// refused exit 3.
pub async fn inspect_registry(
    reference: &str,
    platform: Option<&kiln_recipe::Platform>,
) -> Result<Inspection, KilnError> {
    let invalid = |reason: String| KilnError::InvalidReference {
        reference: reference.to_owned(),
        reason,
    };
    let BaseRef::Registry {
        host,
        repository,
        tag,
        digest,
    } = crate::reference::parse_transport(reference)?
    else {
        return Err(invalid(
            "not a registry reference: write docker://HOST/REPO[:TAG|@sha256:HEX]".into(),
        ));
    };
    let digest = digest
        .as_deref()
        .map(str::parse::<Digest>)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    let platform = platform.map_or_else(kiln_image::Platform::host, image_platform);
    let found = remote(&host, &repository, true)?
        .describe(tag.as_deref(), digest.as_ref(), &platform)
        .await?;
    let index = found.index.map(|index| IndexEntry {
        digest: index.digest,
        platform: found
            .platform
            .as_ref()
            .map_or_else(|| platform.to_string(), ToString::to_string),
    });
    let image = StoredImage::parse(found.manifest.digest, found.manifest.bytes, found.config)?;
    Ok(Inspection {
        name: format!("{host}/{repository}"),
        digest: image.digest,
        manifest: image.manifest,
        config: image.config,
        manifest_bytes: image.manifest_bytes,
        config_bytes: image.config_bytes,
        index,
    })
}

/// A recipe's platform (`[image] platform`, `--platform`) as kiln-image
/// spells it.
pub(crate) fn image_platform(p: &kiln_recipe::Platform) -> kiln_image::Platform {
    kiln_image::Platform {
        os: p.os().to_owned(),
        architecture: p.architecture().to_owned(),
        variant: p.variant().map(str::to_owned),
        extra: Default::default(),
    }
}

/// A session with `host`/`repository` using the credentials of
/// `REGISTRY_AUTH_FILE` or docker's config for `host` (anonymous if none).
pub(crate) fn remote(host: &str, repository: &str, read_only: bool) -> Result<Remote, KilnError> {
    let auth = CredentialFiles::from_environment().lookup(host)?;
    Ok(if read_only {
        Remote::new_read_only(host, repository, auth)?
    } else {
        Remote::new(host, repository, auth)?
    })
}

/// The registries a build shares its layer cache through.
pub(crate) struct SharedCache {
    from: Vec<Remote>,
    to: Option<Remote>,
}

impl SharedCache {
    /// The caches `cache_from` and `cache_to` name (`docker://HOST/REPO`);
    /// `None` when there are none.
    pub(crate) fn open(
        cache_from: &[String],
        cache_to: Option<&str>,
    ) -> Result<Option<SharedCache>, KilnError> {
        let repository = |s: &str| {
            let target = RegistryTarget::parse(s)?;
            if target.tag.is_some() {
                return Err(KilnError::InvalidReference {
                    reference: s.to_owned(),
                    reason: "a cache is a repository: write docker://HOST/REPO, with no tag".into(),
                });
            }
            Ok(target)
        };
        let from = cache_from
            .iter()
            .map(|s| repository(s)?.remote(true))
            .collect::<Result<Vec<_>, KilnError>>()?;
        let to = cache_to.map(|s| repository(s)?.remote(false)).transpose()?;
        if from.is_empty() && to.is_none() {
            return Ok(None);
        }
        Ok(Some(SharedCache { from, to }))
    }

    /// `key`'s layer from the first `--cache-from` repository that has it,
    /// verified and recorded in `store`'s own cache.
    pub(crate) async fn fetch(
        &self,
        store: &Store,
        key: &LayerKey,
    ) -> Result<Option<LayerBlob>, KilnError> {
        for remote in &self.from {
            if let Some(blob) = kiln_cache::shared::fetch(remote, store, key).await? {
                return Ok(Some(blob));
            }
        }
        Ok(None)
    }

    /// Publish every layer (its key and blob) to the `--cache-to`
    /// repository, if there is one.
    pub(crate) async fn publish(
        &self,
        store: &Store,
        layers: &[(LayerKey, LayerBlob)],
    ) -> Result<(), KilnError> {
        let Some(remote) = &self.to else {
            return Ok(());
        };
        for (key, blob) in layers {
            kiln_cache::shared::publish(remote, store, key, blob).await?;
        }
        Ok(())
    }
}
