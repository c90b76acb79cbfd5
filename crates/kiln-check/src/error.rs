//! The crate's error: the engine failed while a suite ran. A check that
//! fails is not an error; it is an outcome.

use kiln_engine::EngineError;

/// Why a suite could not be run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The engine failed while booting the image.
    #[error("booting {image}")]
    Boot {
        /// The image being booted.
        image: String,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
    /// The engine failed while a check ran.
    #[error("check {check:?}")]
    Engine {
        /// The check's name.
        check: String,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
    /// The container could not be removed after the suite.
    #[error(
        "removing test container {container} failed; remove it with `docker rm -f {container}`"
    )]
    Cleanup {
        /// The container id.
        container: String,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
}

impl CheckError {
    /// The engine's error behind this one.
    pub fn engine_error(&self) -> &EngineError {
        match self {
            CheckError::Boot { source, .. }
            | CheckError::Engine { source, .. }
            | CheckError::Cleanup { source, .. } => source,
        }
    }

    /// Which kind of failure this is: the engine's error's kind (an
    /// unreachable engine is missing environment, anything else failed
    /// work).
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        match self {
            CheckError::Boot { source, .. }
            | CheckError::Engine { source, .. }
            | CheckError::Cleanup { source, .. } => source.kind(),
        }
    }

    /// Whether the engine could not be reached at all (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        self.engine_error().is_unreachable()
    }
}
