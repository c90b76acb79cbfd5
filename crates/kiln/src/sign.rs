//! Signing, verifying and describing images (`kiln keygen`, `sign`,
//! `verify`, `sbom`, and the signing step of `kiln release`), over
//! kiln-sign. An image is named in the store (`NAME[:TAG]`,
//! `NAME@sha256:HEX`) or in a registry (`docker://HOST/REPO@sha256:HEX`):
//! for a registry, the `.sig` and `.att` manifests are pulled into a
//! temporary store, extended there, and pushed back under the same tag.

use std::path::{Path, PathBuf};

use kiln_image::{Descriptor, Digest, ImageError, Remote, Store};
use kiln_recipe::{BaseRef, Recipe, SecretSource};
use kiln_sign::attached::{self, Attachment, NewLayer};
use kiln_sign::{PredicateKind, PublicKey, SbomSubject, SigningKey, Statement};
use serde::Serialize;

use crate::KilnError;
use crate::plan::recipe_dir;
use crate::reference;

pub use kiln_sign::{KeyFiles, SignError, VerifyFailure};

/// The ref name attachments get in a temporary store for a registry.
const SCRATCH_NAME: &str = "image";

/// An image to sign or verify.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// In kiln's store.
    Stored { name: String, digest: Digest },
    /// In a registry, by digest.
    Registry {
        host: String,
        repository: String,
        digest: Digest,
    },
}

impl Target {
    fn parse(store: &Store, reference: &str) -> Result<Target, KilnError> {
        if !reference.starts_with("docker://") {
            let found = reference::resolve(store, reference)?;
            return Ok(Target::Stored {
                name: found.name,
                digest: found.digest,
            });
        }
        let invalid = |reason: String| KilnError::InvalidReference {
            reference: reference.to_owned(),
            reason,
        };
        match crate::reference::parse_transport(reference)? {
            BaseRef::Registry {
                host,
                repository,
                digest: Some(digest),
                ..
            } => Ok(Target::Registry {
                host,
                repository,
                digest: digest
                    .parse()
                    .map_err(|e: kiln_image::DigestParseError| invalid(e.to_string()))?,
            }),
            _ => Err(invalid(
                "sign and verify by digest: docker://HOST/REPO@sha256:HEX".into(),
            )),
        }
    }

    fn digest(&self) -> &Digest {
        match self {
            Target::Stored { digest, .. } | Target::Registry { digest, .. } => digest,
        }
    }
}

/// What `kiln sign` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SignReport {
    /// The image as given.
    pub reference: String,
    /// Its manifest digest.
    pub digest: Digest,
    /// The tag the signature is attached under (`sha256-HEX.sig`).
    pub signature_tag: String,
    /// False when this key had signed it already (nothing was added).
    pub added: bool,
}

/// What `kiln verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The image as given.
    pub reference: String,
    /// Its manifest digest.
    pub digest: Digest,
    /// `signature`, or the attestation type checked.
    pub checked: String,
    /// How many signatures or attestations verified.
    pub verified: usize,
}

/// Write a new key pair as `PREFIX.key` (sealed with `password`) and
/// `PREFIX.pub`, in cosign's formats. Existing files are not overwritten.
pub fn keygen(prefix: &Path, password: &[u8]) -> Result<KeyFiles, KilnError> {
    Ok(SigningKey::generate()?.write_pair(prefix, password)?)
}

/// Read the private key at `path`, opened with `password`.
pub fn read_signing_key(path: &Path, password: &[u8]) -> Result<SigningKey, KilnError> {
    Ok(SigningKey::read(path, password)?)
}

/// Sign `reference` (a store reference or `docker://HOST/REPO@sha256:HEX`)
/// with `key`, as cosign signs: the signature is appended to the image's
/// `sha256-HEX.sig`, in the store or in the registry.
pub async fn sign(
    store: &Store,
    reference: &str,
    key: &SigningKey,
) -> Result<SignReport, KilnError> {
    let target = Target::parse(store, reference)?;
    let tag = Attachment::Signature.tag(target.digest());
    let added = match &target {
        Target::Stored { name, digest } => {
            kiln_sign::sign_image(store, name, digest, name, key)?.added
        }
        Target::Registry {
            host,
            repository,
            digest,
        } => {
            let scratch = Scratch::new()?;
            let remote = crate::registry::remote(host, repository, false)?;
            scratch.pull(&remote, digest, Attachment::Signature).await?;
            let identity = format!("{host}/{repository}");
            let signed =
                kiln_sign::sign_image(&scratch.store, SCRATCH_NAME, digest, &identity, key)?;
            if signed.added {
                scratch
                    .push(&remote, &signed.manifest, Attachment::Signature, digest)
                    .await?;
            }
            signed.added
        }
    };
    Ok(SignReport {
        reference: reference.to_owned(),
        digest: target.digest().clone(),
        signature_tag: tag,
        added,
    })
}

/// Verify the signatures of `reference`, or with `attestation` its
/// attestations of that type, with the public key at `key_path`. An error
/// whose [`KilnError::kind`] is work (exit 1) says why none verified.
pub async fn verify(
    store: &Store,
    reference: &str,
    key_path: &Path,
    attestation: Option<PredicateKind>,
) -> Result<VerifyReport, KilnError> {
    let key = PublicKey::read(key_path)?;
    let target = Target::parse(store, reference)?;
    let kind = match attestation {
        Some(_) => Attachment::Attestation,
        None => Attachment::Signature,
    };
    let scratch;
    let (store, repository) = match &target {
        Target::Stored { name, .. } => (store, name.as_str()),
        Target::Registry {
            host,
            repository,
            digest,
        } => {
            scratch = Scratch::new()?;
            scratch
                .pull(
                    &crate::registry::remote(host, repository, true)?,
                    digest,
                    kind,
                )
                .await?;
            (&scratch.store, SCRATCH_NAME)
        }
    };
    let digest = target.digest();
    let verified = match attestation {
        None => {
            kiln_sign::verify_image(store, repository, digest, &key, key_path, reference)?.len()
        }
        Some(kind) => kiln_sign::verify_attestations(
            store, repository, digest, kind, &key, key_path, reference,
        )?
        .len(),
    };
    Ok(VerifyReport {
        reference: reference.to_owned(),
        digest: digest.clone(),
        checked: attestation.map_or_else(|| "signature".to_owned(), |k| k.to_string()),
        verified,
    })
}

/// The SPDX 2.3 SBOM of the stored image `reference`.
pub fn sbom(store: &Store, reference: &str) -> Result<serde_json::Value, KilnError> {
    let found = reference::resolve(store, reference)?;
    sbom_of(store, &found.name, &found.digest)
}

fn sbom_of(store: &Store, name: &str, digest: &Digest) -> Result<serde_json::Value, KilnError> {
    let image = kiln_image::load_image(store, digest)?;
    let contents = kiln_sign::read_contents(store, &image)?;
    let created = image
        .config
        .get("created")
        .and_then(|c| c.as_str())
        .unwrap_or("1970-01-01T00:00:00Z")
        .to_owned();
    Ok(kiln_sign::spdx_document(
        &SbomSubject {
            name,
            digest,
            created: &created,
            kiln_version: env!("CARGO_PKG_VERSION"),
        },
        &contents,
    ))
}

/// A store in a temporary folder, for a registry's attachments.
struct Scratch {
    _dir: tempfile::TempDir,
    store: Store,
}

impl Scratch {
    fn new() -> Result<Scratch, KilnError> {
        let dir = tempfile::tempdir().map_err(|source| KilnError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let store = Store::open(dir.path())?;
        Ok(Scratch { _dir: dir, store })
    }

    /// Pull the `kind` attachment of `digest` (if the registry has one),
    /// with its blobs, and name it as kiln-sign looks for it.
    async fn pull(
        &self,
        remote: &Remote,
        digest: &Digest,
        kind: Attachment,
    ) -> Result<(), KilnError> {
        let tag = kind.tag(digest);
        let manifest = match remote.manifest(&tag).await {
            Ok(m) => m,
            Err(ImageError::RegistryNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let stored = self.store.put_blob(&manifest.bytes)?;
        for blob in attached::referenced_blobs(&stored, &manifest.bytes, kind)? {
            remote.fetch_blob(&self.store, &blob).await?;
        }
        let descriptor = Descriptor::new(manifest.media_type, stored, manifest.bytes.len() as u64);
        self.store
            .set_ref(&format!("{SCRATCH_NAME}:{tag}"), &descriptor)?;
        Ok(())
    }

    /// Push the attachment `manifest` with its blobs under the `kind` tag
    /// of `digest`.
    async fn push(
        &self,
        remote: &Remote,
        manifest: &Descriptor,
        kind: Attachment,
        digest: &Digest,
    ) -> Result<(), KilnError> {
        let bytes = self.store.read_blob(&manifest.digest)?;
        for blob in attached::referenced_blobs(&manifest.digest, &bytes, kind)? {
            let what = format!("{} of {}", blob.media_type, kind.tag(digest));
            remote.push_blob(&self.store, &blob, &what).await?;
        }
        remote
            .push_manifest(&kind.tag(digest), &manifest.media_type, bytes)
            .await?;
        Ok(())
    }
}

/// The facts of one release that its provenance records.
pub(crate) struct ReleaseFacts<'a> {
    pub recipe: &'a Recipe,
    pub name: &'a str,
    pub digest: &'a Digest,
    pub base: Option<(String, String)>,
    pub layers: Vec<(String, String)>,
    pub run_id: &'a str,
    pub started_at: u64,
}

/// The release's signing step: sign the digest with `key`, and attest its
/// provenance and its SBOM, all in the store.
/// `identity` is where the image is going (`HOST/REPO`), else its name.
pub(crate) fn sign_release(
    store: &Store,
    facts: &ReleaseFacts<'_>,
    key: &SigningKey,
    identity: &str,
) -> Result<(), KilnError> {
    kiln_sign::sign_image(store, facts.name, facts.digest, identity, key)?;
    let provenance = provenance(store, facts)?;
    let statement = Statement::about_image(
        identity,
        facts.digest,
        PredicateKind::SlsaProvenanceV1,
        provenance.predicate(),
    );
    kiln_sign::attest_image(store, facts.name, facts.digest, &statement, key)?;
    let sbom = sbom_of(store, facts.name, facts.digest)?;
    let statement = Statement::about_image(identity, facts.digest, PredicateKind::SpdxJson, sbom);
    kiln_sign::attest_image(store, facts.name, facts.digest, &statement, key)?;
    Ok(())
}

/// The signing key `[promote] sign` names: a file (relative to the recipe)
/// or an environment variable holding the PEM; its password is
/// `COSIGN_PASSWORD` (empty when unset), as for cosign.
pub(crate) fn release_key(recipe: &Recipe, source: &SecretSource) -> Result<SigningKey, KilnError> {
    let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
    let unavailable = |reason: String| KilnError::SecretUnavailable {
        name: "[promote] sign".into(),
        source_desc: source.to_string(),
        reason,
    };
    let (pem, origin) = match source {
        SecretSource::File(path) => {
            let path = recipe_dir(recipe).join(path);
            let pem = std::fs::read(&path).map_err(|e| unavailable(e.to_string()))?;
            (pem, path)
        }
        SecretSource::Env(name) => {
            let pem = std::env::var(name)
                .map_err(|_| unavailable(format!("the variable {name} is not set")))?;
            (pem.into_bytes(), PathBuf::from(format!("env:{name}")))
        }
    };
    Ok(SigningKey::from_encrypted_pem(
        &pem,
        password.as_bytes(),
        &origin,
    )?)
}

fn provenance(store: &Store, facts: &ReleaseFacts<'_>) -> Result<kiln_sign::Provenance, KilnError> {
    use kiln_sign::{ProvenanceCheck, ProvenanceLayer};
    let recipe_bytes = std::fs::read(&facts.recipe.path).unwrap_or_default();
    let keys = kiln_cache::explain::load_last(store, facts.name);
    let record = kiln_promote::record::latest(store, facts.digest)?;
    let mut provenance = kiln_sign::Provenance::default();
    provenance.image = facts.name.to_owned();
    provenance.recipe_path = facts.recipe.path.display().to_string();
    provenance.recipe_sha256 = Digest::of(&recipe_bytes).hex().to_owned();
    provenance.bases = facts.base.iter().cloned().collect();
    provenance.layers = facts
        .layers
        .iter()
        .map(|(name, digest)| {
            let key = keys
                .layers
                .iter()
                .find(|l| l.name == *name)
                .map(|l| l.key.to_string())
                .unwrap_or_default();
            ProvenanceLayer::new(name, digest, &key)
        })
        .collect();
    if let Some(record) = &record {
        provenance.checks = record
            .checks
            .iter()
            .map(|c| ProvenanceCheck::new(&c.name, c.passed, c.duration_ms))
            .collect();
        provenance.finished_on = kiln_image::rfc3339(record.finished_at);
    }
    provenance.started_on = kiln_image::rfc3339(facts.started_at);
    provenance.invocation_id = facts.run_id.to_owned();
    provenance.kiln_version = env!("CARGO_PKG_VERSION").to_owned();
    Ok(provenance)
}

/// Copy the signature and attestations of `name`@`digest` from the store to
/// `remote`, appended to what the registry holds for that digest (another
/// signer's signatures stay). Nothing is sent when the registry has them.
/// Returns the tags the store held (each now in the registry too).
pub(crate) async fn push_attachments(
    store: &Store,
    name: &str,
    digest: &Digest,
    remote: &Remote,
) -> Result<Vec<String>, KilnError> {
    let mut carried = Vec::new();
    for kind in [Attachment::Signature, Attachment::Attestation] {
        let tag = kind.tag(digest);
        let Some(ours) = store.resolve(&format!("{name}:{tag}"))? else {
            continue;
        };
        carried.push(tag.clone());
        let scratch = Scratch::new()?;
        scratch.pull(remote, digest, kind).await?;
        let mut head = scratch.store.resolve(&format!("{SCRATCH_NAME}:{tag}"))?;
        let mut changed = false;
        for layer in attached::read_layers(store, &ours.digest, kind)? {
            let new = NewLayer {
                media_type: layer.descriptor.media_type.clone(),
                content: layer.content,
                annotations: layer.descriptor.annotations.clone().unwrap_or_default(),
            };
            let base = head.as_ref().map(|d| d.digest.clone());
            let (manifest, added) = attached::append(&scratch.store, base.as_ref(), kind, new)?;
            changed |= added;
            head = Some(manifest);
        }
        if let (true, Some(manifest)) = (changed, &head) {
            scratch.push(remote, manifest, kind, digest).await?;
        }
    }
    Ok(carried)
}
