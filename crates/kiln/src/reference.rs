//! Image references on the command line: `NAME`, `NAME:TAG`,
//! `NAME:CHANNEL` and `NAME@sha256:HEX`, resolved against the store.

use kiln_image::{Digest, Store};
use kiln_recipe::{BaseRef, ImageName};

use crate::KilnError;

/// A reference resolved to a manifest in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Image name.
    pub name: String,
    /// Manifest digest.
    pub digest: Digest,
}

fn invalid(reference: &str, reason: impl Into<String>) -> KilnError {
    KilnError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

/// `s` spelled as containers-transports(5) spell a place (a destination, a
/// registry target), with its error naming `s` once: the recipe's own
/// message starts with `invalid base "S": ` or `invalid reference "S": `,
/// which [`KilnError::InvalidReference`] says itself.
pub(crate) fn parse_transport(s: &str) -> Result<BaseRef, KilnError> {
    s.parse::<BaseRef>().map_err(|e| {
        let message = e.to_string();
        let reason = ["invalid base", "invalid reference"]
            .iter()
            .find_map(|said| message.strip_prefix(&format!("{said} {s:?}: ")))
            .unwrap_or(&message);
        invalid(s, reason)
    })
}

fn parse_name(reference: &str, name: &str) -> Result<String, KilnError> {
    name.parse::<ImageName>()
        .map(|n| n.to_string())
        .map_err(|e| invalid(reference, e.to_string()))
}

/// Resolve `reference` against the store. A bare `NAME` means `NAME:latest`,
/// or the one image of that name when all its refs agree.
pub fn resolve(store: &Store, reference: &str) -> Result<ImageRef, KilnError> {
    let unknown = |available: Vec<String>| KilnError::UnknownImage {
        reference: reference.to_owned(),
        store: store.root().to_path_buf(),
        available,
    };
    // cosign's signature and attestation manifests sit beside images as
    // tags (`NAME:sha256-HEX.sig`) but name no image of their own.
    let refs: Vec<(String, kiln_image::Descriptor)> = store
        .refs()?
        .into_iter()
        .filter(|(r, _)| {
            !r.split_once(':')
                .is_some_and(|(_, tag)| kiln_sign::attached::is_attachment_tag(tag))
        })
        .collect();
    if let Some((name, digest)) = reference.split_once('@') {
        let name = parse_name(reference, name)?;
        let digest: Digest = digest
            .parse()
            .map_err(|e: kiln_image::DigestParseError| invalid(reference, e.to_string()))?;
        if !store.has_blob(&digest) {
            return Err(unknown(refs.into_iter().map(|(r, _)| r).collect()));
        }
        return Ok(ImageRef { name, digest });
    }
    if let Some((name, _tag)) = reference.split_once(':') {
        let name = parse_name(reference, name)?;
        return match refs.iter().find(|(r, _)| r == reference) {
            Some((_, descriptor)) => Ok(ImageRef {
                name,
                digest: descriptor.digest.clone(),
            }),
            None => Err(unknown(refs.into_iter().map(|(r, _)| r).collect())),
        };
    }
    let name = parse_name(reference, reference)?;
    let prefix = format!("{name}:");
    let mine: Vec<&(String, kiln_image::Descriptor)> = refs
        .iter()
        .filter(|(r, _)| r.starts_with(&prefix))
        .collect();
    if let Some((_, d)) = mine.iter().find(|(r, _)| *r == format!("{name}:latest")) {
        return Ok(ImageRef {
            name,
            digest: d.digest.clone(),
        });
    }
    match mine.first() {
        Some((_, first)) if mine.iter().all(|(_, d)| d.digest == first.digest) => Ok(ImageRef {
            name,
            digest: first.digest.clone(),
        }),
        Some(_) => Err(invalid(
            reference,
            format!(
                "several images are named {name}: say which with one of {}",
                mine.iter()
                    .map(|(r, _)| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        None => Err(unknown(refs.into_iter().map(|(r, _)| r).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_error_names_the_reference_once() {
        for (s, reason) in [
            ("oci:", "oci: needs a location after the colon"),
            (
                "docker://",
                "a registry reference is docker://HOST/REPO[:TAG]",
            ),
            (
                "docker-daemon:Bad_Name:1.0",
                "\"Bad_Name\" is not a valid name",
            ),
        ] {
            let message = parse_transport(s).expect_err(s).to_string();
            assert_eq!(message.matches(&format!("{s:?}")).count(), 1, "{message}");
            assert!(
                message.starts_with(&format!("invalid reference {s:?}: ")),
                "{message}"
            );
            assert!(message.contains(reason), "{message}");
        }
    }
}
