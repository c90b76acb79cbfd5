//! The typed recipe: what a `kiln.toml` says once it has been parsed and
//! validated. Every value here is already valid; nothing downstream re-checks.
//!
//! Every type is also serde data, so that a recipe value (changed in memory
//! or not) can be kept exactly as it was built: kiln's store keeps it as
//! JSON beside the image. That form is kiln's own, not the TOML format;
//! deserialising it parses every value type again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;

/// An `env` table in the order the recipe writes it (serialized as a JSON
/// object, keys in that order).
pub type Env = indexmap::IndexMap<String, String>;
use serde::{Deserialize, Serialize};

pub use crate::values::{
    BaseRef, Duration, ImageName, Mode, Owner, Platform, Port, Protocol, SecretSource,
};

/// One golden image, as described by one recipe file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recipe {
    /// The file the recipe was read from (as given to the parser).
    pub path: PathBuf,
    /// `[args]`: every build argument the recipe declares, with the value
    /// it was built with (its default, or the `--arg` given). Every
    /// `${NAME}` in the other values is already replaced; this is the
    /// record of what they were replaced with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// `[image]`: name, version, base, epoch, context, platform.
    pub image: ImageSection,
    /// `[config]`: the OCI runtime configuration.
    pub config: ConfigSection,
    /// `[[layer]]`, in order: one OCI layer each.
    pub layers: Vec<Layer>,
    /// `[secrets.NAME]`: declared secrets, by name.
    pub secrets: BTreeMap<String, SecretDecl>,
    /// `[boot]`: how the test-runner boots the image.
    pub boot: Boot,
    /// `[[check]]`, in order.
    pub checks: Vec<Check>,
    /// `[promote]`: where a passing image goes.
    pub promote: Promote,
}

/// `[image]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ImageSection {
    /// The repository name (`[a-z0-9][a-z0-9._-]*`).
    pub name: ImageName,
    /// Optional version, also stored as a tag.
    #[schemars(extend("pattern" = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub version: Option<String>,
    /// What the image is built on (default `scratch`).
    #[schemars(default = "scratch")]
    pub base: BaseRef,
    /// mtime of every entry and the created time, in seconds since the Unix
    /// epoch. `SOURCE_DATE_EPOCH` overrides it at build time.
    pub epoch: Option<u64>,
    /// Folder that `src` paths are read from, relative to the recipe's
    /// folder (default `.`).
    #[schemars(default = "here")]
    pub context: PathBuf,
    /// `platform`: the platform picked from a multi-platform base and
    /// recorded in the image's config; `None` means the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// `volatile`: globs of files that run layers leave out. `None` means
    /// the default list (apt's and dpkg's logs and caches, see
    /// [`DEFAULT_VOLATILE`]); a given list replaces it.
    #[serde(default)]
    pub volatile: Option<Vec<String>>,
}

/// The default base, for the schema.
fn scratch() -> BaseRef {
    BaseRef::Scratch
}

/// The default context, for the schema.
fn here() -> PathBuf {
    PathBuf::from(".")
}

/// The default owner, for the schema.
fn root_owner() -> Owner {
    Owner { uid: 0, gid: 0 }
}

/// A run layer's default user, for recipes stored before `user` existed.
fn root_user() -> String {
    "0:0".to_owned()
}

/// The files run layers leave out unless `[image] volatile` says otherwise:
/// what a package install rewrites with times, run order or cache state in
/// it, so that the same install twice gives the same layer.
pub const DEFAULT_VOLATILE: &[&str] = &[
    "/var/log/apt/**",
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
    "/var/cache/ldconfig/aux-cache",
    "/var/cache/apt/*.bin",
    "/var/cache/debconf/*-old",
    "/var/lib/dpkg/*-old",
];

impl ImageSection {
    /// The volatile globs in force: `[image] volatile`, else the default
    /// list.
    pub fn volatile_globs(&self) -> Vec<String> {
        match &self.volatile {
            Some(globs) => globs.clone(),
            None => Self::default_volatile(),
        }
    }

    /// [`DEFAULT_VOLATILE`] as owned strings.
    pub fn default_volatile() -> Vec<String> {
        DEFAULT_VOLATILE.iter().map(|g| (*g).to_owned()).collect()
    }
}

/// `[config]`: every key optional.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct ConfigSection {
    /// `entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `cmd`.
    pub cmd: Option<Vec<String>>,
    /// `env`, in the order written; the image's `Env` keeps this order
    /// after the base's variables (a name the base has keeps its place).
    pub env: Env,
    /// `workdir`.
    pub workdir: Option<String>,
    /// `user`, as written (`"1000:1000"`, `"1000"`, or a name).
    pub user: Option<String>,
    /// `expose`.
    pub expose: Vec<Port>,
    /// `labels`, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// `stop_signal`.
    pub stop_signal: Option<String>,
    /// `volumes`.
    pub volumes: Vec<String>,
}

/// One `[[layer]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    /// Unique within the recipe.
    pub name: String,
    /// A file layer or a run layer.
    pub kind: LayerKind,
}

/// What a layer is made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum LayerKind {
    /// Files, folders and symlinks assembled by kiln itself.
    Files(FileLayer),
    /// A command run in the container engine on the layers so far.
    Run(RunLayer),
}

/// A file layer: `files`, `dirs`, `symlinks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct FileLayer {
    /// Default owner of this layer's entries (default `0:0`).
    #[schemars(default = "root_owner")]
    pub owner: Owner,
    /// `files`: single files and folders (src ending in `/`).
    #[schemars(default)]
    pub files: Vec<FileCopy>,
    /// `dirs`: folders to create.
    #[schemars(default)]
    pub dirs: Vec<DirEntry>,
    /// `symlinks`.
    #[schemars(default)]
    pub symlinks: Vec<SymlinkEntry>,
}

/// Whether a `src` is a glob: it holds `*`, `?` or `[` (`**` and `[...]`
/// included). A glob copies the files it matches, below the folder its
/// first wildcard component is in, into a `dest` folder.
pub fn is_glob(src: &str) -> bool {
    src.contains(['*', '?', '['])
}

/// One entry of `files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FileCopy {
    /// Path relative to the context. Ending in `/`: a folder copied
    /// recursively. With `*`, `?`, `**` or `[...]` (see [`is_glob`]): a
    /// glob whose matching files are copied into `dest`, a folder.
    #[schemars(extend("pattern" = "^[^/]"))]
    pub src: String,
    /// Absolute path in the image. Ending in `/` for a folder copy.
    #[schemars(extend("pattern" = "^/"))]
    pub dest: String,
    /// Permission bits; default: the source's bits (folders 0o755).
    pub mode: Option<Mode>,
    /// Owner of this entry; default: the layer's owner.
    pub owner: Option<Owner>,
    /// gitignore-style globs, relative to `src`, of what not to copy.
    #[schemars(default)]
    pub exclude: Vec<String>,
    /// `preserve = true`: keep each entry's exact permission bits, numeric
    /// owner and group, device nodes and fifos from the source, instead of
    /// the git-like default modes and the layer's owner.
    #[serde(default)]
    pub preserve: bool,
}

/// One entry of `dirs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DirEntry {
    /// Absolute path in the image.
    pub path: String,
    /// Permission bits (default 0o755).
    pub mode: Option<Mode>,
    /// Owner; default: the layer's owner.
    pub owner: Option<Owner>,
}

/// One entry of `symlinks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SymlinkEntry {
    /// Absolute path of the link in the image.
    pub path: String,
    /// What the link points at, stored as written.
    pub target: String,
    /// Owner; default: the layer's owner.
    pub owner: Option<Owner>,
}

/// A run layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct RunLayer {
    /// The command.
    pub run: RunCommand,
    /// Names of declared secrets this step may read under `/run/secrets/`.
    #[schemars(default)]
    pub secrets: Vec<String>,
    /// Build-time environment, in the order written; never written to the
    /// image config.
    #[schemars(default)]
    pub env: Env,
    /// Whether the step has a network (default false).
    #[schemars(default)]
    pub network: bool,
    /// Who the command runs as: `UID[:GID]` or a name (default `"0:0"`),
    /// whatever `[config] user` (the runtime user) is.
    #[serde(default = "root_user")]
    pub user: String,
    /// Where the command runs; `None` means `[config] workdir`, else `/`.
    #[serde(default)]
    pub workdir: Option<String>,
}

/// The command of a run layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum RunCommand {
    /// A string, run with `/bin/sh -c`.
    Shell(String),
    /// An array, run as is (exec form).
    Exec(Vec<String>),
}

/// `[secrets.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SecretDecl {
    /// Where the value is read from, where kiln runs.
    pub from: SecretSource,
}

/// `[boot]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct Boot {
    /// Declared secrets injected into the booted container, by secret name.
    pub secrets: BTreeMap<String, BootSecretTarget>,
    /// Extra environment for the booted container, in the order written.
    pub env: Env,
    /// Total time for boot plus all checks (default 120s).
    pub timeout: Duration,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            secrets: BTreeMap::new(),
            env: Env::new(),
            timeout: Duration::from_millis(120_000),
        }
    }
}

/// How a boot secret reaches the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum BootSecretTarget {
    /// `env:NAME`: as an environment variable.
    Env(String),
    /// `file:/ABS/PATH`: as a file.
    File(String),
}

/// One `[[check]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    /// Shown in reports.
    pub name: String,
    /// Exactly one kind.
    pub kind: CheckKind,
}

/// The kinds of check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum CheckKind {
    /// `http = { port, path }`.
    Http(HttpCheck),
    /// `tcp = { port }`.
    Tcp(TcpCheck),
    /// `command = [...]`.
    Command(CommandCheck),
    /// `file = "/path"`.
    File(FileCheck),
    /// `metadata = { ... }`.
    Metadata(MetadataCheck),
}

impl CheckKind {
    /// The recipe key that names this kind (`"http"`, `"tcp"`...).
    pub fn key(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Command(_) => "command",
            CheckKind::File(_) => "file",
            CheckKind::Metadata(_) => "metadata",
        }
    }
}

/// Retry policy of a readiness check (http, tcp).
#[derive(Debug, Clone, Serialize, Deserialize, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Consecutive successes needed (default 1).
    pub healthy_threshold: u32,
    /// Between attempts (default 1s).
    pub interval: Duration,
    /// One attempt (default 5s).
    pub timeout: Duration,
    /// Give up after (default 30s).
    pub deadline: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            healthy_threshold: 1,
            interval: Duration::from_millis(1_000),
            timeout: Duration::from_millis(5_000),
            deadline: Duration::from_millis(30_000),
        }
    }
}

/// An HTTP readiness check against a port of the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpCheck {
    /// Container port.
    pub port: u16,
    /// Request path (default `/`).
    pub path: String,
    /// Expected status (default 200).
    pub status: u16,
    /// Substring the body must contain.
    pub body_contains: Option<String>,
    /// Retry policy.
    pub probe: Probe,
}

/// A TCP readiness check: the port accepts a connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TcpCheck {
    /// Container port.
    pub port: u16,
    /// Retry policy.
    pub probe: Probe,
}

/// A command run inside the booted container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandCheck {
    /// argv, exec form.
    pub argv: Vec<String>,
    /// Expected exit code (default 0).
    pub exit_code: i64,
    /// Substring stdout must contain.
    pub stdout_contains: Option<String>,
    /// Substring stderr must contain.
    pub stderr_contains: Option<String>,
}

/// A file in the booted container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileCheck {
    /// Absolute path.
    pub path: String,
    /// Whether it must exist (default true).
    pub exists: bool,
    /// Substring the content must contain.
    pub contains: Option<String>,
    /// Exact permission bits.
    pub mode: Option<Mode>,
    /// Exact numeric owner.
    pub owner: Option<Owner>,
}

/// Expectations on the image's configuration. Only given keys are compared.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct MetadataCheck {
    /// Exact `User`.
    pub user: Option<String>,
    /// Ports that must be exposed (the image may expose more).
    pub exposed: Option<Vec<Port>>,
    /// Exact entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Exact cmd.
    pub cmd: Option<Vec<String>>,
    /// Variables that must be set to these values (others may exist).
    pub env: Option<BTreeMap<String, String>>,
    /// Exact working directory.
    pub workdir: Option<String>,
    /// Labels that must be set to these values (others may exist).
    pub labels: Option<BTreeMap<String, String>>,
}

/// `[promote]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct Promote {
    /// Channels `kiln release` moves once every check passed.
    #[schemars(extend("uniqueItems" = true, "items" = { "type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,127}$" }))]
    pub channels: Vec<String>,
    /// Signing key source (`file:` or `env:`).
    pub sign: Option<SecretSource>,
    /// Registry reference (`docker://HOST/REPO`) to push to.
    #[schemars(extend("pattern" = "^docker://"))]
    pub push: Option<String>,
}

impl fmt::Display for RunCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunCommand::Shell(s) => write!(f, "/bin/sh -c {s:?}"),
            RunCommand::Exec(argv) => write!(f, "{argv:?}"),
        }
    }
}
