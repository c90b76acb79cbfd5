//! The SLSA provenance v1 predicate of a released image: what it was built
//! from (the recipe's digest, the bases' digests), how (each layer's cache
//! key), what proved it (the checks that passed, and when), and by which
//! kiln. kiln-sign knows nothing of recipes: the facade hands it these
//! plain values.

use serde::Serialize;
use serde_json::{Value, json};

/// The build type kiln's provenance declares.
pub const BUILD_TYPE: &str = "urn:kiln:build-type:recipe:v1";
/// The builder id kiln's provenance declares.
pub const BUILDER_ID: &str = "urn:kiln:builder";

/// The facts of one release that the provenance records.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Provenance {
    /// The image's name.
    pub image: String,
    /// The recipe file, as given.
    pub recipe_path: String,
    /// sha256 hex of the recipe's bytes.
    pub recipe_sha256: String,
    /// Each base: its reference and the manifest digest it resolved to.
    pub bases: Vec<(String, String)>,
    /// Each of the recipe's layers: its name, its blob digest and its cache
    /// key.
    pub layers: Vec<ProvenanceLayer>,
    /// The checks that ran on this digest.
    pub checks: Vec<ProvenanceCheck>,
    /// When the build started (RFC 3339).
    pub started_on: String,
    /// When the checks finished (RFC 3339).
    pub finished_on: String,
    /// The run's id.
    pub invocation_id: String,
    /// kiln's version.
    pub kiln_version: String,
}

/// One layer in the provenance.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ProvenanceLayer {
    /// Its name in the recipe.
    pub name: String,
    /// Its blob's digest.
    pub digest: String,
    /// Its cache key (empty when not known).
    pub cache_key: String,
}

/// One check in the provenance.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ProvenanceCheck {
    /// Its name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub duration_ms: u64,
}

impl ProvenanceLayer {
    /// A layer record.
    pub fn new(name: &str, digest: &str, cache_key: &str) -> Self {
        ProvenanceLayer {
            name: name.into(),
            digest: digest.into(),
            cache_key: cache_key.into(),
        }
    }
}

impl ProvenanceCheck {
    /// A check record.
    pub fn new(name: &str, passed: bool, duration_ms: u64) -> Self {
        ProvenanceCheck {
            name: name.into(),
            passed,
            duration_ms,
        }
    }
}

/// `sha256:HEX` → `{"sha256": HEX}`; anything else is kept under `raw`.
fn digest_set(digest: &str) -> Value {
    match digest.split_once(':') {
        Some((algorithm, hex)) => json!({ algorithm: hex }),
        None => json!({ "raw": digest }),
    }
}

impl Provenance {
    /// The SLSA provenance v1 predicate.
    pub fn predicate(&self) -> Value {
        json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": {
                        "path": self.recipe_path,
                        "digest": {"sha256": self.recipe_sha256},
                    },
                    "image": self.image,
                },
                "internalParameters": {
                    "layers": self.layers.iter().map(|l| json!({
                        "name": l.name,
                        "cacheKey": l.cache_key,
                    })).collect::<Vec<_>>(),
                },
                "resolvedDependencies": self.bases.iter().map(|(reference, digest)| json!({
                    "uri": reference,
                    "digest": digest_set(digest),
                })).collect::<Vec<_>>(),
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {"kiln": self.kiln_version},
                },
                "metadata": {
                    "invocationId": self.invocation_id,
                    "startedOn": self.started_on,
                    "finishedOn": self.finished_on,
                },
                "byproducts": self.layers.iter().map(|l| json!({
                    "name": format!("layer {}", l.name),
                    "digest": digest_set(&l.digest),
                    "annotations": {"cacheKey": l.cache_key},
                })).chain(self.checks.iter().map(|c| json!({
                    "name": format!("check {}", c.name),
                    "annotations": {
                        "passed": c.passed,
                        "durationMs": c.duration_ms,
                        "finishedOn": self.finished_on,
                    },
                }))).collect::<Vec<_>>(),
            },
        })
    }
}
