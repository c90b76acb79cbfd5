//! Signing an image and verifying its signatures, in the store, in cosign's
//! form: a simple signing payload naming the manifest digest, its ECDSA
//! signature in the layer's annotation, under the image's `.sig` tag.

use std::path::Path;

use kiln_image::{Descriptor, Digest, Store};

use crate::attached::{
    self, Attachment, NewLayer, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};
use crate::payload::SimpleSigning;
use crate::{PublicKey, SignError, SigningKey, VerifyFailure};

/// What signing did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Signed {
    /// The attachment's ref in the store (`web:sha256-HEX.sig`).
    pub ref_name: String,
    /// Its manifest, now holding the new layer.
    pub manifest: Descriptor,
    /// False when the same signature was attached already.
    pub added: bool,
}

/// Sign image `digest` of repository `repository` in `store` with `key`:
/// the payload names `docker_reference` (`HOST/REPO` where the image is
/// pushed, else the image name). The signature is appended to the
/// `repository:sha256-HEX.sig` ref; earlier signatures stay.
pub fn sign_image(
    store: &Store,
    repository: &str,
    digest: &Digest,
    docker_reference: &str,
    key: &SigningKey,
) -> Result<Signed, SignError> {
    let payload = SimpleSigning::new(docker_reference, digest).to_bytes();
    let signature = key.sign(&payload);
    use base64::Engine as _;
    let layer = NewLayer {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        content: payload,
        annotations: [(
            SIGNATURE_ANNOTATION.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(signature),
        )]
        .into(),
    };
    attach(store, repository, digest, Attachment::Signature, layer)
}

/// Append `layer` to the `kind` attachment of `digest` and point its ref at
/// the result.
pub(crate) fn attach(
    store: &Store,
    repository: &str,
    digest: &Digest,
    kind: Attachment,
    layer: NewLayer,
) -> Result<Signed, SignError> {
    let ref_name = format!("{repository}:{}", kind.tag(digest));
    let existing = store.resolve(&ref_name)?.map(|d| d.digest);
    let (manifest, added) = attached::append(store, existing.as_ref(), kind, layer)?;
    if added {
        store.set_ref(&ref_name, &manifest)?;
    }
    Ok(Signed {
        ref_name,
        manifest,
        added,
    })
}

/// The layers attached to `digest` as `kind` under `repository`, or
/// [`VerifyFailure::Unsigned`] (reported for `reference`) when none are.
pub(crate) fn attached_layers(
    store: &Store,
    repository: &str,
    digest: &Digest,
    kind: Attachment,
    reference: &str,
) -> Result<Vec<attached::AttachedLayer>, SignError> {
    let tag = kind.tag(digest);
    let unsigned = || SignError::NotVerified {
        reference: reference.to_owned(),
        failure: VerifyFailure::Unsigned { tag: tag.clone() },
    };
    let Some(manifest) = store.resolve(&format!("{repository}:{tag}"))? else {
        return Err(unsigned());
    };
    let layers = attached::read_layers(store, &manifest.digest, kind)?;
    if layers.is_empty() {
        return Err(unsigned());
    }
    Ok(layers)
}

/// The payloads of the signatures of `digest` that verify with `key`
/// (read from `key_path`, named in failures) and name `digest`; an error
/// saying why when none does. `reference` is how the user named the image.
pub fn verify_image(
    store: &Store,
    repository: &str,
    digest: &Digest,
    key: &PublicKey,
    key_path: &Path,
    reference: &str,
) -> Result<Vec<SimpleSigning>, SignError> {
    let layers = attached_layers(store, repository, digest, Attachment::Signature, reference)?;
    let mut verified = Vec::new();
    let mut claimed = None;
    for layer in &layers {
        let Some(signature) = layer.signature() else {
            continue;
        };
        if !key.verifies(&layer.content, &signature) {
            continue;
        }
        match serde_json::from_slice::<SimpleSigning>(&layer.content) {
            Ok(payload) if payload.signs(digest) => verified.push(payload),
            Ok(payload) => claimed = Some(payload.critical.image.docker_manifest_digest),
            Err(_) => {}
        }
    }
    if !verified.is_empty() {
        return Ok(verified);
    }
    let failure = match claimed {
        Some(claimed) => VerifyFailure::OtherImage { claimed },
        None => VerifyFailure::NotByThisKey {
            count: layers.len(),
            key: key_path.to_path_buf(),
        },
    };
    Err(SignError::NotVerified {
        reference: reference.to_owned(),
        failure,
    })
}
