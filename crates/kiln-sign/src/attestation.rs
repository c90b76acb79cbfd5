//! Attesting an image and verifying its attestations, in cosign's form: an
//! in-toto statement in a DSSE envelope, one layer per envelope under the
//! image's `.att` tag, the predicate type in the layer's annotation.

use std::path::Path;

use kiln_image::{Digest, Store};

use crate::attached::{
    Attachment, DSSE_MEDIA_TYPE, NewLayer, PREDICATE_TYPE_ANNOTATION, SIGNATURE_ANNOTATION,
};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::signature::{Signed, attach, attached_layers};
use crate::statement::{PredicateKind, Statement};
use crate::{PublicKey, SignError, SigningKey, VerifyFailure};

/// Attach `statement`, signed with `key`, to image `digest` of
/// `repository`, appended to its `.att` ref.
pub fn attest_image(
    store: &Store,
    repository: &str,
    digest: &Digest,
    statement: &Statement,
    key: &SigningKey,
) -> Result<Signed, SignError> {
    let payload = serde_json::to_vec(statement)?;
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, key);
    let layer = NewLayer {
        media_type: DSSE_MEDIA_TYPE.to_owned(),
        content: envelope.to_bytes(),
        annotations: [
            (SIGNATURE_ANNOTATION.to_owned(), String::new()),
            (
                PREDICATE_TYPE_ANNOTATION.to_owned(),
                statement.predicate_type.clone(),
            ),
        ]
        .into(),
    };
    attach(store, repository, digest, Attachment::Attestation, layer)
}

/// The statements of type `kind` about `digest` whose envelopes verify with
/// `key`; an error saying why when none does.
pub fn verify_attestations(
    store: &Store,
    repository: &str,
    digest: &Digest,
    kind: PredicateKind,
    key: &PublicKey,
    key_path: &Path,
    reference: &str,
) -> Result<Vec<Statement>, SignError> {
    let layers = attached_layers(
        store,
        repository,
        digest,
        Attachment::Attestation,
        reference,
    )?;
    let mut of_kind = 0;
    let mut verified = Vec::new();
    let mut claimed = None;
    for layer in &layers {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&layer.content) else {
            continue;
        };
        let statement = envelope
            .payload_bytes()
            .and_then(|p| serde_json::from_slice::<Statement>(&p).ok());
        let Some(statement) = statement.filter(|s| s.predicate_type == kind.uri()) else {
            continue;
        };
        of_kind += 1;
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE || !envelope.verified_by(key) {
            continue;
        }
        if statement.is_about(digest) {
            verified.push(statement);
        } else {
            claimed = statement
                .subject
                .first()
                .and_then(|s| s.digest.get("sha256"))
                .map(|hex| format!("sha256:{hex}"));
        }
    }
    if !verified.is_empty() {
        return Ok(verified);
    }
    let failure = if of_kind == 0 {
        VerifyFailure::NoneOfType {
            kind: kind.to_string(),
            count: layers.len(),
        }
    } else if let Some(claimed) = claimed {
        VerifyFailure::OtherImage { claimed }
    } else {
        VerifyFailure::NotByThisKey {
            count: of_kind,
            key: key_path.to_path_buf(),
        }
    };
    Err(SignError::NotVerified {
        reference: reference.to_owned(),
        failure,
    })
}
