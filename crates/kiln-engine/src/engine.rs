//! The narrow trait the rest of kiln sees of a container engine, and the
//! plain values that cross it. Nothing here names bollard, so a fake can
//! stand in for Docker in unit tests.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::error::EngineError;

/// A tar stream, read as it arrives: an image archive is never held whole
/// in memory.
pub type Archive = Box<dyn AsyncRead + Send + Unpin>;

/// What kiln asks of a container engine.
///
/// Every container kiln creates carries [`MANAGED_LABEL`](crate::MANAGED_LABEL)
/// and a [`RUN_LABEL`](crate::RUN_LABEL); [`Engine::remove_labelled`] finds
/// them again after an interrupted run.
#[async_trait]
pub trait Engine: Send + Sync {
    /// Load an image archive (`docker load`: a docker-archive tar with a
    /// `manifest.json`), streamed. A refusal carries the engine's message.
    async fn load_image(&self, archive: Archive) -> Result<(), EngineError>;

    /// The configuration of an image the engine holds (by id or tag).
    async fn image_config(&self, image: &str) -> Result<ImageConfig, EngineError>;

    /// Create (not start) a container.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId, EngineError>;

    /// Write one file into a container, creating missing parent folders
    /// (0o755, owned by root). Works before the container is started.
    async fn put_file(&self, id: &ContainerId, file: &NewFile<'_>) -> Result<(), EngineError>;

    /// Start a created container.
    async fn start(&self, id: &ContainerId) -> Result<(), EngineError>;

    /// Run `argv` in a running container and wait for it, at most
    /// `timeout` ([`EngineError::ExecTimedOut`] then).
    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, EngineError>;

    /// What is at `path` in the container, without following a final
    /// symlink; `None` if nothing is. Works on images with no shell, and on
    /// stopped containers. A file's content is read up to
    /// [`PathInfo::CONTENT_CAP`] bytes.
    async fn read_path(
        &self,
        id: &ContainerId,
        path: &str,
    ) -> Result<Option<PathInfo>, EngineError>;

    /// Where the host reaches the container's tcp `port` (published with
    /// [`ContainerSpec::ports`]). The container must have been started.
    async fn published_addr(&self, id: &ContainerId, port: u16) -> Result<SocketAddr, EngineError>;

    /// Whether the container runs.
    async fn state(&self, id: &ContainerId) -> Result<ContainerState, EngineError>;

    /// The last `lines` lines of the container's stdout and stderr.
    async fn logs_tail(&self, id: &ContainerId, lines: usize) -> Result<String, EngineError>;

    /// Remove a container, running or not, with its anonymous volumes. A
    /// container that is already gone is not an error.
    async fn remove_container(&self, id: &ContainerId) -> Result<(), EngineError>;

    /// Remove every container, in any state, labelled `label=value`; how
    /// many were removed.
    async fn remove_labelled(&self, label: &str, value: &str) -> Result<usize, EngineError>;

    /// Remove the image name `image` (a tag) from the engine. A name that
    /// is already gone, or an image a container still uses, is not an
    /// error: the name stays for whoever uses it.
    async fn remove_image(&self, image: &str) -> Result<(), EngineError>;

    /// Wait until the container's main process ends; its exit code
    /// (non-zero codes are answers, not errors).
    async fn wait(&self, id: &ContainerId) -> Result<i64, EngineError>;

    /// What the container changed in its filesystem since it was created,
    /// as the engine reports it (`docker diff`): every added or modified
    /// path, and every deleted one (a deleted folder's content is not
    /// listed below it).
    async fn changes(&self, id: &ContainerId) -> Result<Vec<Change>, EngineError>;

    /// Write the container's whole filesystem as a tar stream (`docker
    /// export`) to the host file `dest`, streamed: memory stays bounded
    /// whatever its size. How many bytes were written.
    async fn export_to_file(&self, id: &ContainerId, dest: &Path) -> Result<u64, EngineError>;

    /// The id (`sha256:...`, the digest of its config) of the image the
    /// engine holds as `image` (a tag or an id); `None` when it holds no
    /// such image. One inspect, nothing moved: kiln asks this before
    /// loading or saving an image, so that what the engine already holds
    /// is never sent or read again.
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        match self.image_config(image).await {
            Ok(config) => Ok(Some(config.id)),
            Err(EngineError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The volumes the config of the image `image` (a tag or an id)
    /// declares (its `Config.Volumes` keys, as written, sorted), from one
    /// inspect; `None` when this engine cannot tell (the default), and
    /// [`EngineError::NotFound`] when it holds no such image. kiln asks
    /// before it runs a step on an image whose config it has not read yet
    /// (a `docker-daemon:` base still being imported): the engine mounts
    /// those volumes in the step's container.
    async fn image_volumes(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        let _ = image;
        Ok(None)
    }

    /// The names (`REPO:TAG`) the engine gives the image `image` (a tag or
    /// an id); `None` when it holds no such image, an empty list when it
    /// holds it by id only. Removing the last name of an image removes the
    /// image, so kiln asks before it names, and later unnames, an image it
    /// found in the engine.
    async fn image_names(&self, image: &str) -> Result<Option<Vec<String>>, EngineError>;

    /// Give the image `image` (a tag or an id) the name `name`
    /// (`REPO:TAG`), nothing moved. An image the engine does not hold is
    /// [`EngineError::NotFound`].
    async fn tag_image(&self, image: &str, name: &str) -> Result<(), EngineError>;

    /// Every image name (`REPO:TAG`) the engine holds that starts with
    /// `prefix`, sorted.
    async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EngineError>;

    /// Remove every container carrying [`MANAGED_LABEL`](crate::MANAGED_LABEL)
    /// that was created from the image name `image`, in any state; how
    /// many were removed. For cleaning up after runs that were killed
    /// before they could clean up themselves.
    async fn remove_managed_containers_of(&self, image: &str) -> Result<usize, EngineError>;

    /// The container's overlay folders on this host: the upper folder,
    /// which holds exactly what the container changed, and the lower
    /// folders below it; when the engine runs on this host, keeps
    /// containers on overlay and the upper folder is readable here; `None`
    /// otherwise (the changes are then [`Engine::changes`], read from
    /// [`Engine::export_to_file`]). Valid until the container is removed.
    async fn overlay_dirs(&self, id: &ContainerId) -> Result<Option<OverlayDirs>, EngineError> {
        let _ = id;
        Ok(None)
    }

    /// Where the engine keeps the image `image` (`NAME:TAG` or an id) on
    /// this host, so that its layers can be read without a save (Docker
    /// 20.10 writes a whole save into a folder of its own before it sends
    /// the first byte: 0.8-0.9 s of a 200 MB base here): the file of its
    /// config's raw bytes and, bottom first, each layer's files and the
    /// tar-split record that rebuilds its tar byte for byte, as the engine
    /// itself does for a save. `None` when the engine is not on this host,
    /// does not keep images on overlay2, or its data root is not readable
    /// here; the image is then saved. What it names is a hint, read while
    /// the engine may change it: the reader checks every layer against its
    /// diff_id and the config against the id. An image the engine does not
    /// hold is [`EngineError::NotFound`].
    async fn image_on_disk(&self, image: &str) -> Result<Option<ImageOnDisk>, EngineError> {
        let _ = image;
        Ok(None)
    }

    /// Send the image `image` (`NAME:TAG` or an id) as a `docker save`
    /// archive into `chunks`, in order, as the engine streams it (never an
    /// empty chunk; a bounded channel keeps memory bounded). How many bytes
    /// were sent. If the receiver hangs up, the save stops there and
    /// answers what was sent: the reader knows why it stopped. An image
    /// the engine does not hold is [`EngineError::NotFound`].
    async fn save_image(
        &self,
        image: &str,
        chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<u64, EngineError>;
}

/// A container's overlay filesystem, as host folders (see
/// [`Engine::overlay_dirs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    /// What the container wrote: changed files, whiteouts, opaque folders.
    pub upper: PathBuf,
    /// The folders below it, top first: the engine's own layer of the
    /// container (`-init`), then the image's layers from the top.
    pub lowers: Vec<PathBuf>,
}

/// Where an image is on the engine's host (see [`Engine::image_on_disk`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOnDisk {
    /// The image's id: the digest of its config.
    pub id: String,
    /// The file holding the config's raw bytes.
    pub config: PathBuf,
    /// Its layers, bottom first.
    pub layers: Vec<LayerOnDisk>,
}

/// One layer of an [`ImageOnDisk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOnDisk {
    /// The layer's diff_id, as the image's config lists it.
    pub diff_id: String,
    /// The folder of its files (overlay2's `diff`).
    pub files: PathBuf,
    /// Its tar-split record (gzip, one JSON object per line): the tar's
    /// headers and padding as bytes, and the files whose bytes go between.
    pub tar_split: PathBuf,
}

/// One path a container changed, as [`Engine::changes`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Change {
    /// Absolute path in the container.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// What happened to a changed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// It existed and was changed (content, mode, owner, or a folder's
    /// entries).
    Modified,
    /// It is new.
    Added,
    /// It was removed.
    Deleted,
}

/// A container's id as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// Wrap an id the engine gave.
    pub fn new(id: impl Into<String>) -> Self {
        ContainerId(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, as `docker ps` shows them.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How to create a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The image (id or tag).
    pub image: String,
    /// Extra environment, in order.
    pub env: Vec<(String, String)>,
    /// Container tcp ports published on 127.0.0.1, each to a host port the
    /// engine picks (see [`Engine::published_addr`]).
    pub ports: Vec<u16>,
    /// Labels; kiln adds [`MANAGED_LABEL`](crate::MANAGED_LABEL) and
    /// [`RUN_LABEL`](crate::RUN_LABEL) here.
    pub labels: BTreeMap<String, String>,
    /// `false`: no network at all (network mode `none`); `true`: the default
    /// bridge, so that published ports work.
    pub network: bool,
    /// Overrides the image's cmd.
    pub cmd: Option<Vec<String>>,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's user.
    pub user: Option<String>,
    /// Overrides the image's working directory.
    pub workdir: Option<String>,
    /// Host folders bind-mounted read-only into the container.
    pub read_only_mounts: Vec<ReadOnlyMount>,
}

/// A host folder bind-mounted read-only into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyMount {
    /// The host folder.
    pub source: std::path::PathBuf,
    /// Absolute path in the container.
    pub target: String,
}

/// One file to write into a container with [`Engine::put_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFile<'a> {
    /// Absolute path in the container.
    pub path: &'a str,
    /// The content.
    pub content: &'a [u8],
    /// Permission bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
}

/// The runtime configuration of an image, as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The image id (`sha256:...`, the digest of its config).
    pub id: String,
    /// `User`; `None` when unset or empty.
    pub user: Option<String>,
    /// `Env`, in order, split at the first `=`.
    pub env: Vec<(String, String)>,
    /// `Entrypoint`, as stored (`None` when null).
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`, as stored (`None` when null).
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`; `None` when unset or empty.
    pub workdir: Option<String>,
    /// `ExposedPorts`, like `"8080/tcp"`, sorted.
    pub exposed: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// The layers' diff ids (`sha256:...` of each uncompressed layer), in
    /// order.
    pub diff_ids: Vec<String>,
}

/// What a command run with [`Engine::exec`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code.
    pub exit_code: i64,
    /// Its stdout, up to [`ExecOutput::OUTPUT_CAP`] bytes (the rest is
    /// dropped).
    pub stdout: Vec<u8>,
    /// Its stderr, up to [`ExecOutput::OUTPUT_CAP`] bytes.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// How much of each stream is kept: a chatty command must not exhaust
    /// memory.
    pub const OUTPUT_CAP: usize = 16 << 20;
}

/// What kind of thing is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else: device, fifo, socket.
    Other,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::File => "file",
            PathKind::Dir => "folder",
            PathKind::Symlink => "symlink",
            PathKind::Other => "special file",
        })
    }
}

/// What is at a path in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// File, folder, symlink.
    pub kind: PathKind,
    /// Permission bits, with setuid, setgid and sticky (`0..=0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Size in bytes (files only; else 0).
    pub size: u64,
    /// For files: the content, up to [`PathInfo::CONTENT_CAP`] bytes.
    pub content: Option<Vec<u8>>,
    /// For symlinks: where it points, as stored.
    pub link_target: Option<String>,
}

impl PathInfo {
    /// How much of a file is read: checks look for short strings, and an
    /// image may hold files of gigabytes.
    pub const CONTENT_CAP: u64 = 16 << 20;
}

/// Whether a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running (also paused or restarting).
    Running,
    /// Stopped, with its exit code.
    Exited {
        /// The exit code of its main process.
        code: i64,
    },
}
