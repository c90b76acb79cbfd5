//! in-toto statements: a predicate (provenance, SBOM) about subjects named
//! by digest. kiln's subject is always one image manifest.

use kiln_image::Digest;
use serde::{Deserialize, Serialize};

/// The statement type kiln writes (in-toto attestation framework v1).
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1; `cosign verify-attestation --type slsaprovenance1`.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// An SPDX document; `cosign verify-attestation --type spdxjson`.
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";

/// A predicate type, by the short name cosign's `--type` takes or by URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PredicateKind {
    /// SLSA provenance v1 (`slsaprovenance1`).
    SlsaProvenanceV1,
    /// SPDX JSON (`spdxjson`).
    SpdxJson,
}

impl PredicateKind {
    /// Its predicate type URI.
    pub fn uri(self) -> &'static str {
        match self {
            PredicateKind::SlsaProvenanceV1 => SLSA_PROVENANCE_V1,
            PredicateKind::SpdxJson => SPDX_DOCUMENT,
        }
    }

    /// The name cosign's `--type` gives it.
    pub fn short_name(self) -> &'static str {
        match self {
            PredicateKind::SlsaProvenanceV1 => "slsaprovenance1",
            PredicateKind::SpdxJson => "spdxjson",
        }
    }

    /// Every kind kiln attests.
    pub const ALL: [PredicateKind; 2] = [PredicateKind::SlsaProvenanceV1, PredicateKind::SpdxJson];
}

impl std::str::FromStr for PredicateKind {
    type Err = String;

    /// `slsaprovenance1`, `spdxjson`, or their URIs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PredicateKind::ALL
            .into_iter()
            .find(|k| k.short_name() == s || k.uri() == s)
            .ok_or_else(|| {
                format!("unknown attestation type {s:?}: kiln attests slsaprovenance1 and spdxjson")
            })
    }
}

impl std::fmt::Display for PredicateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}

/// An in-toto statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// The predicate's type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: serde_json::Value,
}

/// A subject: a name and its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's name (`HOST/REPO` or the image name).
    pub name: String,
    /// `{"sha256": HEX}`.
    pub digest: std::collections::BTreeMap<String, String>,
}

impl Statement {
    /// A statement of `predicate` (of type `kind`) about image `digest`
    /// known as `name`.
    pub fn about_image(
        name: &str,
        digest: &Digest,
        kind: PredicateKind,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject: vec![Subject {
                name: name.to_owned(),
                digest: [("sha256".to_owned(), digest.hex().to_owned())].into(),
            }],
            predicate_type: kind.uri().to_owned(),
            predicate,
        }
    }

    /// Whether `digest` is one of the subjects.
    pub fn is_about(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex()))
    }
}
