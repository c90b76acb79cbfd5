//! The facade's error: every lower crate's error, plus what only the
//! pipeline knows (a feature the recipe asks for that is not built yet, a
//! reference that names nothing). [`KilnError::kind`] tells the binary which
//! exit code it deserves.

use std::path::PathBuf;

pub use kiln_error_kind::{Chain, ErrorKind};

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KilnError {
    /// The recipe does not parse or validate.
    #[error(transparent)]
    Recipe(#[from] kiln_recipe::RecipeError),
    /// Layers, blobs or the store.
    #[error(transparent)]
    Image(#[from] kiln_image::ImageError),
    /// The layer cache.
    #[error(transparent)]
    Cache(#[from] kiln_cache::CacheError),
    /// The container engine.
    #[error(transparent)]
    Engine(#[from] kiln_engine::EngineError),
    /// Running the checks (not a failed check: that is a report).
    #[error(transparent)]
    Check(#[from] kiln_check::CheckError),
    /// Records, channels, rollback.
    #[error(transparent)]
    Promote(#[from] kiln_promote::PromoteError),
    /// An export's destination is in a folder that does not exist.
    #[error("{}: no such folder to export into: create it first", folder.display())]
    NoExportFolder {
        /// The folder the destination names.
        folder: PathBuf,
    },
    /// The recipe uses a feature this build of kiln does not have yet.
    #[error("{recipe}: {feature} {verb} not supported yet{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Unsupported {
        /// The recipe file.
        recipe: PathBuf,
        /// What is asked for, e.g. "`run` layers".
        feature: String,
        /// "is" or "are", for the message.
        verb: &'static str,
        /// Where in the recipe, e.g. "layer motd".
        detail: Option<String>,
    },
    /// A reference that names nothing in the store.
    #[error("{reference}: no such image in the store {store}{}", hint(.available))]
    UnknownImage {
        /// The reference as given.
        reference: String,
        /// The store searched.
        store: PathBuf,
        /// What the store does hold, for the hint.
        available: Vec<String>,
    },
    /// A reference that does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret's source cannot be read.
    #[error("secret {name}: cannot read {source_desc}: {reason}")]
    SecretUnavailable {
        /// The secret's name.
        name: String,
        /// `env:VAR` or `file:PATH`.
        source_desc: String,
        /// Why.
        reason: String,
    },
    /// The image has no recipe in the store to take its checks from.
    #[error("{name}@{digest} was not built by kiln from a recipe: test it with the recipe instead")]
    NoRecipe {
        /// Image name.
        name: String,
        /// Manifest digest.
        digest: kiln_image::Digest,
    },
    /// A declared secret's value is in the built image.
    #[error("secret leaked into image {image}; it was not tagged:\n  {}", .leaks.join("\n  "))]
    SecretLeaked {
        /// Image name.
        image: String,
        /// Where each leak is (never the value).
        leaks: Vec<String>,
    },
    /// Keys, signatures, attestations, SBOMs.
    #[error(transparent)]
    Sign(#[from] kiln_sign::SignError),
    /// Reading or scanning for secrets failed.
    #[error(transparent)]
    Secrets(#[from] kiln_secrets::SecretError),
    /// A `docker-daemon:` base, and no container engine to read it from.
    #[error("base {base} is read from the container engine, and none was given")]
    NoEngineForBase {
        /// The base as written.
        base: String,
    },
    /// Recipes whose `recipe:` bases loop back on themselves.
    #[error("recipe bases form a cycle: {}", .path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// The recipes around the loop, the first repeated at the end.
        path: Vec<PathBuf>,
    },
    /// A run layer's command exited non-zero.
    #[error("layer {layer}: the command exited with code {code}; its output ended with:\n{output}")]
    RunFailed {
        /// The layer's name.
        layer: String,
        /// The command's exit code.
        code: i64,
        /// The last lines of its stdout and stderr.
        output: String,
    },
    /// `--check-reproducible`: the same run layer built twice from the
    /// same parent gave two different layers.
    #[error(
        "layer {layer} is not reproducible: built twice from the same parent, these files differ: {}; make the step deterministic, or list them in [image] volatile",
        paths.join(", ")
    )]
    NotReproducible {
        /// The layer's name.
        layer: String,
        /// The in-image paths that differ, sorted.
        paths: Vec<String>,
    },
    /// `[image] volatile` holds a glob that does not parse.
    #[error("[image] volatile: invalid glob {glob:?}: {reason}")]
    InvalidVolatile {
        /// The glob as written.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
    /// What a run layer's command changed cannot become a layer.
    #[error("layer {layer}: what the command changed cannot become a layer")]
    ChangeSet {
        /// The layer's name.
        layer: String,
        /// Why.
        source: kiln_image::change_set::ChangeSetError,
    },
    /// A run layer, but no container engine to run it in.
    #[error("layer {layer}: a run layer needs a container engine, and none was given")]
    NoEngine {
        /// The layer's name.
        layer: String,
    },
    /// The run was cancelled through its [`Cancel`](crate::Cancel) token;
    /// its containers and temporary files were removed and nothing
    /// half-written was left in the store.
    #[error("cancelled")]
    Cancelled,
    /// The run was cancelled, but removing its containers failed: they
    /// carry the label `dev.kiln.run=<run_id>`.
    #[error("cancelled, but the containers labelled dev.kiln.run={run_id} could not be removed")]
    CancelCleanup {
        /// The run's id.
        run_id: String,
        /// What the engine said.
        source: kiln_engine::EngineError,
    },
    /// A bookkeeping or temporary file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn hint(available: &[String]) -> String {
    if available.is_empty() {
        "; it is empty: run `kiln build` first".to_owned()
    } else {
        format!("; it holds {}", available.join(", "))
    }
}

impl From<kiln_image::DigestParseError> for KilnError {
    /// A digest that does not parse is a reference that names nothing.
    fn from(e: kiln_image::DigestParseError) -> Self {
        KilnError::InvalidReference {
            reason: "expected sha256: followed by 64 lowercase hex digits".to_owned(),
            reference: e.0,
        }
    }
}

/// What callers branch on, so that none has to match on `Debug` output or
/// on the lower crates' enums.
impl KilnError {
    /// Whether a rollback found no earlier passing digest to go back to
    /// (the channel is left as it was).
    pub fn is_nothing_to_roll_back(&self) -> bool {
        matches!(
            self,
            KilnError::Promote(kiln_promote::PromoteError::NothingToRollBack { .. })
        )
    }

    /// Whether a promotion was refused because the digest was never tested.
    pub fn is_untested(&self) -> bool {
        matches!(
            self,
            KilnError::Promote(kiln_promote::PromoteError::Untested { .. })
        )
    }

    /// Whether a promotion was refused because the digest's latest test run
    /// failed.
    pub fn is_failed_test(&self) -> bool {
        matches!(
            self,
            KilnError::Promote(kiln_promote::PromoteError::Failed { .. })
        )
    }

    /// Whether a declared secret's value was found in the built image (the
    /// image was not tagged).
    pub fn is_secret_leak(&self) -> bool {
        matches!(self, KilnError::SecretLeaked { .. })
    }

    /// Whether the container engine could not be reached at all (as
    /// opposed to an engine that answered and refused, or none given).
    pub fn is_engine_unreachable(&self) -> bool {
        match self {
            KilnError::Engine(e) => e.is_unreachable(),
            KilnError::Check(e) => e.is_unreachable(),
            _ => false,
        }
    }

    /// Which kind of failure this is, and so which exit code it deserves.
    /// Every variant is named, with no wildcard, and a lower crate's error
    /// says its own kind where it is defined: a new variant anywhere must
    /// be given its kind, it cannot silently become "the work failed".
    pub fn kind(&self) -> ErrorKind {
        match self {
            KilnError::Recipe(e) => e.kind(),
            KilnError::Image(e) => e.kind(),
            KilnError::Cache(e) => e.kind(),
            KilnError::Engine(e) => e.kind(),
            KilnError::Check(e) => e.kind(),
            KilnError::Promote(e) => e.kind(),
            KilnError::Secrets(e) => e.kind(),
            KilnError::Sign(e) => e.kind(),
            KilnError::ChangeSet { source, .. } => source.kind(),
            KilnError::Unsupported { .. }
            | KilnError::NoExportFolder { .. }
            | KilnError::UnknownImage { .. }
            | KilnError::InvalidReference { .. }
            | KilnError::InvalidVolatile { .. }
            | KilnError::SecretUnavailable { .. }
            | KilnError::NoRecipe { .. }
            | KilnError::Cycle { .. } => ErrorKind::Input,
            KilnError::NoEngine { .. } | KilnError::NoEngineForBase { .. } => {
                ErrorKind::Environment
            }
            // A cancelled run is reported by the caller that cancelled it
            // (the CLI exits 130); as a kind it is work that did not finish.
            KilnError::SecretLeaked { .. }
            | KilnError::RunFailed { .. }
            | KilnError::NotReproducible { .. }
            | KilnError::Io { .. }
            | KilnError::Cancelled
            | KilnError::CancelCleanup { .. } => ErrorKind::Work,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The facade's kind is the kind the lower crate gave its own variant,
    /// including where a wrapper (cache, promote) carries an image error.
    #[test]
    fn kinds_come_from_where_each_variant_is_defined() {
        let missing = || kiln_image::ImageError::SourceMissing {
            src: "site/".into(),
            path: "/ctx/site".into(),
        };
        let unreachable = kiln_image::ImageError::RegistryUnreachable {
            host: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        let corrupt = kiln_image::ImageError::CorruptBlob {
            digest: kiln_image::Digest::of(b"x"),
            path: "/store/blobs/sha256/x".into(),
        };
        let cases = [
            (KilnError::from(missing()), ErrorKind::Input),
            (KilnError::from(unreachable), ErrorKind::Environment),
            (KilnError::from(corrupt), ErrorKind::Work),
            (
                KilnError::from(kiln_cache::CacheError::Store(missing())),
                ErrorKind::Input,
            ),
            (
                KilnError::from(kiln_promote::PromoteError::Store(missing())),
                ErrorKind::Input,
            ),
            (
                KilnError::from(kiln_promote::PromoteError::NothingToRollBack {
                    name: "web".into(),
                    channel: "stable".into(),
                }),
                ErrorKind::Work,
            ),
            (
                KilnError::from(kiln_secrets::SecretError::Unavailable {
                    name: "token".into(),
                    from: "env:TOKEN".into(),
                    reason: "unset".into(),
                }),
                ErrorKind::Input,
            ),
            (
                KilnError::NoEngine {
                    layer: "motd".into(),
                },
                ErrorKind::Environment,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
        assert_eq!(ErrorKind::Environment.exit_code(), 3);
    }

    /// A message names what failed; the cause is its `source()`, shown
    /// once by `Chain`, never twice.
    #[test]
    fn a_cause_is_told_once() {
        let error = KilnError::Io {
            path: "/store/kiln/x.json".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(error.to_string(), "/store/kiln/x.json");
        assert_eq!(Chain(&error).to_string(), "/store/kiln/x.json: disk full");
    }
}
