//! kiln-engine: the container engine behind a narrow trait.
//!
//! Everything kiln asks of a container engine (load an image, boot a
//! container, run a command in it, read a path out of it, find a published
//! port, clean up) is one method of [`Engine`]. [`Docker`] implements it
//! over Docker's HTTP API; it is the only code in kiln that knows the Docker
//! API exists, so the other crates test their logic against a fake.
//!
//! Every container kiln creates carries [`MANAGED_LABEL`]`=true` and
//! [`RUN_LABEL`]`=<run id>`: whoever interrupts a run removes what it left
//! with [`Engine::remove_labelled`].
//!
//! ```no_run
//! use kiln_engine::{ContainerSpec, Docker, Engine, MANAGED_LABEL, RUN_LABEL};
//!
//! # async fn boot() -> Result<(), kiln_engine::EngineError> {
//! let docker = Docker::connect().await?; // EngineError::Unreachable without dockerd
//! let spec = ContainerSpec {
//!     image: "sha256:0123...".into(),
//!     ports: vec![8080],
//!     network: true,
//!     labels: [(MANAGED_LABEL.into(), "true".into()), (RUN_LABEL.into(), "run-1".into())].into(),
//!     ..ContainerSpec::default()
//! };
//! let id = docker.create_container(&spec).await?;
//! docker.start(&id).await?;
//! let addr = docker.published_addr(&id, 8080).await?; // 127.0.0.1:32768
//! # let _ = addr;
//! docker.remove_container(&id).await?;
//! # Ok(()) }
//! ```
//!
//! Engine-backed tests of any crate use the `test-support` feature:
//! `testing::engine_or_skip` and `testing::TestImage`.
#![deny(missing_docs)]

mod archive;
mod docker;
mod engine;
mod error;
mod ping;
#[cfg(feature = "test-support")]
pub mod testing;

/// The chunk type [`Engine::save_image`] sends.
pub use bytes::Bytes;
pub use docker::{CAPTURE_ENV, Docker};
pub use engine::{
    Archive, Change, ChangeKind, ContainerId, ContainerSpec, ContainerState, Engine, ExecOutput,
    ImageConfig, ImageOnDisk, LayerOnDisk, NewFile, OverlayDirs, PathInfo, PathKind, ReadOnlyMount,
};
pub use error::{Cause, EngineError};
pub use kiln_error_kind::ErrorKind;

/// The label every container kiln creates carries, with the value `true`.
pub const MANAGED_LABEL: &str = "dev.kiln.managed";

/// The label that names the run a container belongs to.
pub const RUN_LABEL: &str = "dev.kiln.run";
