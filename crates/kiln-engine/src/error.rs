//! The one error type of the engine crate: what went wrong talking to the
//! container engine, with the container, image or path involved.

use std::time::Duration;

/// A boxed cause, so that no bollard type shows in kiln-engine's public API.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a call to the container engine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Nothing answers at the engine's endpoint.
    #[error(
        "no container engine reachable at {endpoint}: start dockerd (or the Docker service), or set DOCKER_HOST to a running engine"
    )]
    Unreachable {
        /// The endpoint tried (`DOCKER_HOST`, else the default socket).
        endpoint: String,
        /// What the connection attempt said.
        #[source]
        source: Cause,
    },
    /// The engine answered, but refused or failed the request.
    #[error("container engine: {operation} failed (status {status}): {message}")]
    Rejected {
        /// What was asked, e.g. `start container 3f2a...`.
        operation: String,
        /// The HTTP status of the engine's answer.
        status: u16,
        /// The engine's own message.
        message: String,
    },
    /// The image or container asked for does not exist in the engine.
    #[error("container engine: {what} not found")]
    NotFound {
        /// What was looked for, e.g. `image sha256:...`.
        what: String,
    },
    /// `docker load` refused the archive; the message is the engine's.
    #[error("container engine: loading the image failed: {message}")]
    LoadFailed {
        /// The engine's message from the load progress stream.
        message: String,
    },
    /// The container port was not published to the host.
    #[error("container {container}: port {port}/tcp is not published to the host")]
    PortNotPublished {
        /// The container id.
        container: String,
        /// The container port.
        port: u16,
    },
    /// A command run with exec did not finish in time.
    #[error("container {container}: {argv} did not finish within {timeout:?}")]
    ExecTimedOut {
        /// The container id.
        container: String,
        /// The command, as a debug-formatted argv.
        argv: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// A host file the engine's output was being written to failed.
    #[error("{what}: writing {}", path.display())]
    HostFile {
        /// What was being written: `container ID` or `image NAME`.
        what: String,
        /// The host file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The tar archive of a path in a container could not be read or built.
    #[error("container {container}: archive of {path}")]
    Archive {
        /// The container id.
        container: String,
        /// The path inside the container.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The engine's answer could not be read (the connection broke, a
    /// request timed out, unexpected JSON).
    #[error("container engine: {operation} failed")]
    Transport {
        /// What was asked.
        operation: String,
        /// The cause.
        #[source]
        source: Cause,
    },
}

impl EngineError {
    /// Which kind of failure this is. Every variant is named, with no
    /// wildcard: a new variant must be given its kind where it is added.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        use kiln_error_kind::ErrorKind;
        match self {
            EngineError::Unreachable { .. } => ErrorKind::Environment,
            EngineError::Rejected { .. }
            | EngineError::NotFound { .. }
            | EngineError::LoadFailed { .. }
            | EngineError::PortNotPublished { .. }
            | EngineError::ExecTimedOut { .. }
            | EngineError::HostFile { .. }
            | EngineError::Archive { .. }
            | EngineError::Transport { .. } => ErrorKind::Work,
        }
    }

    /// Whether no engine could be reached at all (the CLI's exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EngineError::Unreachable { .. })
    }

    /// Whether the engine answered and said no: a request it could not
    /// carry out for this image or container (bad entrypoint, conflicting
    /// options, container not running), as opposed to an engine that is
    /// gone or broken.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self,
            EngineError::Rejected { .. } | EngineError::NotFound { .. }
        )
    }
}
