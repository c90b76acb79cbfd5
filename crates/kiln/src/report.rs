//! What a build or a test run produced, shaped as the CLI contract's JSON.

use kiln_image::Digest;
use serde::Serialize;

/// One built image (an element of `images` in `kiln build --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildReport {
    /// Image name.
    pub name: String,
    /// Manifest digest, as skopeo and registries report it.
    pub digest: Digest,
    /// Tags the store gives it.
    pub tags: Vec<String>,
    /// The tags that named another digest before this build and now name
    /// this one (empty when none moved).
    pub moved: Vec<MovedTag>,
    /// What it was built on, resolved to a digest (absent for `scratch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseReport>,
    /// The recipe's layers (the base's are not listed).
    pub layers: Vec<LayerReport>,
    /// Wall time of the build.
    pub duration_ms: u64,
}

/// A tag a build moved from one digest to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedTag {
    /// The tag (without the image name).
    pub tag: String,
    /// The digest it named before.
    pub from: Digest,
    /// The digest it names now: the build's.
    pub to: Digest,
}

/// The base an image was built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseReport {
    /// The base as the recipe names it (a tag, a path...).
    pub reference: String,
    /// The manifest digest it resolved to: the same recipe and base digest
    /// always give the same image.
    pub digest: Digest,
}

/// One layer of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    /// The layer's name in the recipe.
    pub name: String,
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Whether it was reused from the cache rather than built.
    pub cached: bool,
    /// Why it was built rather than reused (empty when cached).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
}

/// The checks of one image (`kiln test --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    /// Image name.
    pub name: String,
    /// Manifest digest that was booted.
    pub digest: Digest,
    /// Whether every check passed.
    pub passed: bool,
    /// Each check, in recipe order.
    pub checks: Vec<CheckReport>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// What was expected and what was seen, secrets redacted.
    pub detail: String,
}

/// One image's release: its build, its checks, the channels it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseReport {
    /// The build.
    pub build: BuildReport,
    /// The checks.
    pub test: TestReport,
    /// Channels moved to the digest (empty when a check failed).
    pub promoted: Vec<String>,
    /// Where `[promote] push` sent the image, if the recipe says and the
    /// checks passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<PushedReport>,
}

/// An image pushed to a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushedReport {
    /// `docker://HOST/REPO`.
    pub destination: String,
    /// The manifest digest the registry reported (always the image's own).
    pub digest: Digest,
    /// The tags written: the version, extra tags, and each channel moved.
    pub tags: Vec<String>,
    /// Blobs sent; those the registry had (or mounted) are not counted.
    pub blobs_uploaded: usize,
}
