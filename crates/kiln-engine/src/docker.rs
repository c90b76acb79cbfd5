//! [`Engine`] for Docker, over its HTTP API (bollard). This file is the only
//! place in kiln that speaks the Docker API.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as ApiError;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ExecConfig, HostConfig, Mount, MountType,
    PortBinding,
};
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ImportImageOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, TagImageOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};

use bollard::models::ChangeType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::archive::{self, FirstEntry};
use crate::engine::{
    Archive, Change, ChangeKind, ContainerId, ContainerSpec, ContainerState, Engine, ExecOutput,
    ImageConfig, ImageOnDisk, LayerOnDisk, NewFile, OverlayDirs, PathInfo,
};
use crate::error::EngineError;

/// The socket Docker listens on when `DOCKER_HOST` is not set.
const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Loading a large image sends the whole archive before the engine answers
/// at all, so the load request gets far more time than the API's default
/// two minutes per request.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The API's default time per request (bollard's), for a local engine.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// How long the exit code of a finished exec may lag behind the end of its
/// output stream before it is read again.
const EXEC_EXIT_POLL: Duration = Duration::from_millis(20);

/// How much of the container's log [`Engine::logs_tail`] keeps: a single
/// endless line must not exhaust memory.
const LOG_CAP: usize = 64 << 10;

/// A connection to a Docker engine.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    endpoint: String,
    upper_dir_reads: bool,
}

/// The environment variable that, set to `export`, makes
/// [`Engine::overlay_dirs`] and [`Engine::image_on_disk`] answer `None`, as
/// on a remote engine: run layers then read a container's changes from the
/// engine's filesystem export, and a `docker-daemon:` base is saved.
pub const CAPTURE_ENV: &str = "KILN_RUN_LAYER_CAPTURE";

impl Docker {
    /// Connect to the engine `DOCKER_HOST` names, else the default socket,
    /// agree on the API version (Docker 20.10 speaks 1.41) and ping it.
    ///
    /// No engine there is [`EngineError::Unreachable`].
    pub async fn connect() -> Result<Docker, EngineError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        Docker::connect_to(&endpoint).await
    }

    /// Connect to the engine at `endpoint` (`unix:///PATH`, `tcp://HOST:PORT`
    /// or `http://HOST:PORT`), as [`Docker::connect`] does.
    pub async fn connect_to(endpoint: &str) -> Result<Docker, EngineError> {
        let unreachable = |e: ApiError| EngineError::Unreachable {
            endpoint: endpoint.to_owned(),
            source: Box::new(e),
        };
        // bollard speaks the newest API by default; Docker 20.10 refuses
        // anything above 1.41.
        let client = match endpoint.strip_prefix("unix://") {
            // A local engine: one ping says it is there and its version.
            Some(socket) => {
                let (major, minor) =
                    crate::ping::api_version(Path::new(socket))
                        .await
                        .map_err(|e| EngineError::Unreachable {
                            endpoint: endpoint.to_owned(),
                            source: Box::new(e),
                        })?;
                // The engine's version, or bollard's newest if it is newer.
                let newest = bollard::API_DEFAULT_VERSION;
                let (major_version, minor_version) =
                    (major, minor).min((newest.major_version, newest.minor_version));
                let version = bollard::ClientVersion {
                    major_version,
                    minor_version,
                };
                bollard::Docker::connect_with_unix(endpoint, REQUEST_TIMEOUT_SECS, &version)
                    .map_err(unreachable)?
            }
            None => {
                let client = bollard::Docker::connect_with_host(endpoint).map_err(unreachable)?;
                let client = client.negotiate_version().await.map_err(unreachable)?;
                client.ping().await.map_err(unreachable)?;
                client
            }
        };
        let upper_dir_reads = std::env::var(CAPTURE_ENV).map_or(true, |v| v != "export");
        Ok(Docker {
            client,
            endpoint: endpoint.to_owned(),
            upper_dir_reads,
        })
    }

    /// Whether [`Engine::overlay_dirs`] may offer a container's overlay upper
    /// folder and [`Engine::image_on_disk`] an image's layers where the
    /// engine keeps them (the default, unless [`CAPTURE_ENV`] is `export`).
    /// `false` makes run layers read changes from the engine's filesystem
    /// export and bases come from a save: slower, and the same bytes.
    pub fn with_upper_dir_reads(mut self, allowed: bool) -> Docker {
        self.upper_dir_reads = allowed;
        self
    }

    /// Whether folders the engine names are to be read here: allowed (see
    /// [`Docker::with_upper_dir_reads`]) and the engine on this host (a
    /// folder named by a remote engine is not).
    fn reads_data_root(&self) -> bool {
        self.upper_dir_reads && self.endpoint.starts_with("unix://")
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every container, in any state, labelled `label=value`.
    pub async fn containers_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<ContainerId>, EngineError> {
        let filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| self.fail("list containers labelled", &format!("{label}={value}"), e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| c.id)
            .map(ContainerId::new)
            .collect())
    }

    /// Turn a bollard error into kiln's: `operation` says what was asked
    /// and `subject` what it was asked of (named again when it is missing).
    fn fail(&self, operation: &str, subject: &str, e: ApiError) -> EngineError {
        let operation = format!("{operation} {subject}");
        match e {
            ApiError::DockerResponseServerError {
                status_code: 404, ..
            } => EngineError::NotFound {
                what: subject.to_owned(),
            },
            ApiError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Rejected {
                operation,
                status: status_code,
                message: message.trim().to_owned(),
            },
            e if is_connection_failure(&e) => EngineError::Unreachable {
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            },
            e => EngineError::Transport {
                operation,
                source: Box::new(e),
            },
        }
    }

    /// What the engine knows of a container.
    async fn inspect_container(
        &self,
        id: &ContainerId,
    ) -> Result<bollard::models::ContainerInspectResponse, EngineError> {
        self.client
            .inspect_container(
                id.as_str(),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| self.fail("inspect", &format!("container {id}"), e))
    }

    /// Whether `path` exists in the container (without reading it).
    async fn exists(&self, id: &ContainerId, path: &str) -> Result<bool, EngineError> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        match self
            .client
            .get_container_archive_info(id.as_str(), Some(options))
            .await
        {
            Ok(_) => Ok(true),
            Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.fail("stat path in", &format!("container {id}"), e)),
        }
    }
}

/// Whether an error means nothing answered at the endpoint (as opposed to
/// an answer kiln did not like).
fn is_connection_failure(e: &ApiError) -> bool {
    match e {
        ApiError::HyperLegacyError { err } => err.is_connect(),
        ApiError::SocketNotFoundError(_) => true,
        ApiError::IOError { err } => matches!(
            err.kind(),
            std::io::ErrorKind::NotFound
                | std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::PermissionDenied
        ),
        _ => false,
    }
}

/// `REPO:TAG` split at the tag's colon (the last one after the last `/`,
/// so that a registry's port stays in the repository); no tag is `latest`.
fn split_name(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "latest"),
    }
}

/// Append `more` to `buf`, keeping at most `cap` bytes in all.
fn push_capped(buf: &mut Vec<u8>, more: &[u8], cap: usize) {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&more[..more.len().min(room)]);
}

/// `HOST_IP:HOST_PORT` of a port binding; an unspecified address (Docker
/// reports `0.0.0.0` or `::` for "all interfaces") is reached on loopback.
fn binding_addr(binding: &PortBinding) -> Option<SocketAddr> {
    let port: u16 = binding.host_port.as_deref()?.parse().ok()?;
    let ip = match binding.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(ip) => match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        },
    };
    Some(SocketAddr::new(ip, port))
}

#[async_trait]
impl Engine for Docker {
    async fn load_image(&self, archive: Archive) -> Result<(), EngineError> {
        // The archive is read in pieces as the request body is sent, so
        // memory stays bounded whatever the image's size.
        let body = futures_util::stream::try_unfold(archive, |mut reader| async move {
            let mut buf = BytesMut::with_capacity(64 << 10);
            let n = reader.read_buf(&mut buf).await?;
            Ok::<_, std::io::Error>((n > 0).then(|| (buf.freeze(), reader)))
        });
        let client = self.client.clone().with_timeout(LOAD_TIMEOUT);
        let options = ImportImageOptionsBuilder::new().quiet(false).build();
        let mut progress = client.import_image_stream(options, body, None);
        while let Some(item) = progress.next().await {
            match item {
                Ok(_) => {}
                Err(ApiError::DockerStreamError { error }) => {
                    return Err(EngineError::LoadFailed {
                        message: error.trim().to_owned(),
                    });
                }
                Err(ApiError::DockerResponseServerError { message, .. }) => {
                    return Err(EngineError::LoadFailed {
                        message: message.trim().to_owned(),
                    });
                }
                Err(e) => return Err(self.fail("load", "image archive", e)),
            }
        }
        Ok(())
    }

    async fn image_config(&self, image: &str) -> Result<ImageConfig, EngineError> {
        let inspect = self
            .client
            .inspect_image(image)
            .await
            .map_err(|e| self.fail("inspect", &format!("image {image}"), e))?;
        let config = inspect.config.unwrap_or_default();
        let mut exposed = config.exposed_ports.unwrap_or_default();
        exposed.sort();
        Ok(ImageConfig {
            id: inspect.id.unwrap_or_default(),
            user: config.user.filter(|u| !u.is_empty()),
            env: config
                .env
                .unwrap_or_default()
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv, String::new()),
                })
                .collect(),
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            workdir: config.working_dir.filter(|w| !w.is_empty()),
            exposed,
            labels: config
                .labels
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            diff_ids: inspect.root_fs.and_then(|r| r.layers).unwrap_or_default(),
        })
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId, EngineError> {
        let port_key = |p: &u16| format!("{p}/tcp");
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .ports
            .iter()
            .map(|p| {
                // An empty host port lets the engine pick a free one.
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                };
                (port_key(p), Some(vec![binding]))
            })
            .collect();
        let host_config = HostConfig {
            network_mode: Some(if spec.network { "bridge" } else { "none" }.to_owned()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            mounts: (!spec.read_only_mounts.is_empty()).then(|| {
                spec.read_only_mounts
                    .iter()
                    .map(|m| Mount {
                        target: Some(m.target.clone()),
                        source: Some(m.source.to_string_lossy().into_owned()),
                        typ: Some(MountType::BIND),
                        read_only: Some(true),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: (!spec.env.is_empty())
                .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(
                spec.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| spec.ports.iter().map(port_key).collect()),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .client
            .create_container(None, body)
            .await
            .map_err(|e| self.fail("create container from", &format!("image {}", spec.image), e))?;
        Ok(ContainerId::new(created.id))
    }

    async fn put_file(&self, id: &ContainerId, file: &NewFile<'_>) -> Result<(), EngineError> {
        let archive_error = |source: std::io::Error| EngineError::Archive {
            container: id.to_string(),
            path: file.path.to_owned(),
            source,
        };
        let components: Vec<&str> = file
            .path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let Some((file_name, dirs)) = components.split_last() else {
            return Err(archive_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file path",
            )));
        };
        if components.contains(&"..") {
            return Err(archive_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path must not contain ..",
            )));
        }
        // The archive is unpacked at the deepest folder that exists: a
        // folder entry for an existing folder would reset its mode and
        // owner (think /tmp).
        let mut existing = dirs.len();
        while existing > 0
            && !self
                .exists(id, &format!("/{}", dirs[..existing].join("/")))
                .await?
        {
            existing -= 1;
        }
        let tar = archive::file_tar(&dirs[existing..], file_name, file).map_err(archive_error)?;
        let at = format!("/{}", dirs[..existing].join("/"));
        let options = UploadToContainerOptionsBuilder::new().path(&at).build();
        self.client
            .upload_to_container(
                id.as_str(),
                Some(options),
                bollard::body_full(Bytes::from(tar)),
            )
            .await
            .map_err(|e| {
                self.fail(
                    &format!("write {} into", file.path),
                    &format!("container {id}"),
                    e,
                )
            })
    }

    async fn start(&self, id: &ContainerId) -> Result<(), EngineError> {
        self.client
            .start_container(
                id.as_str(),
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| self.fail("start", &format!("container {id}"), e))
    }

    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        let subject = format!("container {id}");
        let run = async {
            let config = ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(argv.to_vec()),
                ..Default::default()
            };
            let exec = self
                .client
                .create_exec(id.as_str(), config)
                .await
                .map_err(|e| self.fail("exec in", &subject, e))?;
            let mut out = ExecOutput::default();
            let started = self
                .client
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| self.fail("start exec in", &subject, e))?;
            if let StartExecResults::Attached { mut output, .. } = started {
                while let Some(frame) = output.next().await {
                    match frame.map_err(|e| self.fail("read exec output of", &subject, e))? {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            push_capped(&mut out.stdout, &message, ExecOutput::OUTPUT_CAP);
                        }
                        LogOutput::StdErr { message } => {
                            push_capped(&mut out.stderr, &message, ExecOutput::OUTPUT_CAP)
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
            }
            // The output ends when the process does, but the engine may
            // record the exit code a moment later.
            loop {
                let inspect = self
                    .client
                    .inspect_exec(&exec.id)
                    .await
                    .map_err(|e| self.fail("inspect exec in", &subject, e))?;
                match (inspect.running, inspect.exit_code) {
                    (Some(false), Some(code)) => {
                        out.exit_code = code;
                        return Ok(out);
                    }
                    _ => tokio::time::sleep(EXEC_EXIT_POLL).await,
                }
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::ExecTimedOut {
                container: id.to_string(),
                argv: format!("{argv:?}"),
                timeout,
            }),
        }
    }

    async fn read_path(
        &self,
        id: &ContainerId,
        path: &str,
    ) -> Result<Option<PathInfo>, EngineError> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self
            .client
            .download_from_container(id.as_str(), Some(options));
        let archive_error = |source: std::io::Error| EngineError::Archive {
            container: id.to_string(),
            path: path.to_owned(),
            source,
        };
        // Only the first entry is wanted: for a folder the engine sends the
        // whole tree, which is dropped unread once its header is in.
        let mut buf: Vec<u8> = Vec::new();
        let mut needed: Option<usize> = None;
        loop {
            let chunk = match stream.try_next().await {
                Ok(chunk) => chunk,
                // The engine says 404 both for a missing path and for a
                // missing container; only the first is an answer.
                Err(ApiError::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) if !message.contains("No such container") => {
                    return Ok(None);
                }
                Err(e) => {
                    return Err(self.fail(
                        &format!("read {path} in"),
                        &format!("container {id}"),
                        e,
                    ));
                }
            };
            let complete = chunk.is_none();
            if let Some(chunk) = chunk {
                buf.extend_from_slice(&chunk);
            }
            if !complete && needed.is_some_and(|n| buf.len() < n) {
                continue;
            }
            match archive::first_entry(&buf, complete).map_err(archive_error)? {
                FirstEntry::Done(info) => return Ok(Some(info)),
                FirstEntry::NeedMore(n) => needed = n,
            }
        }
    }

    async fn published_addr(&self, id: &ContainerId, port: u16) -> Result<SocketAddr, EngineError> {
        let inspect = self.inspect_container(id).await?;
        inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut ports| ports.remove(&format!("{port}/tcp")))
            .flatten()
            .and_then(|bindings| bindings.iter().find_map(binding_addr))
            .ok_or_else(|| EngineError::PortNotPublished {
                container: id.to_string(),
                port,
            })
    }

    async fn state(&self, id: &ContainerId) -> Result<ContainerState, EngineError> {
        let inspect = self.inspect_container(id).await?;
        let state = inspect.state.unwrap_or_default();
        let code = state.exit_code.unwrap_or(0);
        Ok(match state.status {
            Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
            Some(
                ContainerStateStatusEnum::EXITED
                | ContainerStateStatusEnum::DEAD
                | ContainerStateStatusEnum::REMOVING,
            ) => ContainerState::Exited { code },
            Some(_) => ContainerState::Running,
            None if state.running == Some(true) => ContainerState::Running,
            None => ContainerState::Exited { code },
        })
    }

    async fn logs_tail(&self, id: &ContainerId, lines: usize) -> Result<String, EngineError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.client.logs(id.as_str(), Some(options));
        let mut text: Vec<u8> = Vec::new();
        while let Some(frame) = stream.next().await {
            let frame =
                frame.map_err(|e| self.fail("read logs of", &format!("container {id}"), e))?;
            text.extend_from_slice(frame.as_ref());
            if text.len() > 2 * LOG_CAP {
                text.drain(..text.len() - LOG_CAP);
            }
        }
        if text.len() > LOG_CAP {
            text.drain(..text.len() - LOG_CAP);
            // Start at a whole line: the cut may split a secret, and the
            // caller's redaction sees whole lines only. A line longer than
            // the cap stays cut (the caller shows far less than the cap).
            if let Some(newline) = text.iter().position(|&b| b == b'\n') {
                text.drain(..=newline);
            }
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .client
            .remove_container(id.as_str(), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Another caller is removing it already (a cancelled run's
            // cleanup racing the run's own).
            Err(ApiError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(self.fail("remove", &format!("container {id}"), e)),
        }
    }

    async fn remove_labelled(&self, label: &str, value: &str) -> Result<usize, EngineError> {
        let containers = self.containers_labelled(label, value).await?;
        for id in &containers {
            self.remove_container(id).await?;
        }
        Ok(containers.len())
    }

    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        match self
            .client
            .remove_image(
                image,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(ApiError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            // Another caller removed the same image (two names of one id)
            // a moment before: the name is gone, as asked.
            Err(ApiError::DockerResponseServerError {
                status_code: 500,
                message,
            }) if message.contains("unrecognized image ID") => Ok(()),
            Err(e) => Err(self.fail("remove", &format!("image {image}"), e)),
        }
    }

    async fn wait(&self, id: &ContainerId) -> Result<i64, EngineError> {
        // A build step may run for a long time: no request timeout here.
        let client = self.client.clone().with_timeout(LOAD_TIMEOUT);
        let mut stream = client.wait_container(
            id.as_str(),
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let mut code = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(response) => code = Some(response.status_code),
                // bollard reports a non-zero exit as an error carrying the
                // code: for kiln it is an answer.
                Err(ApiError::DockerContainerWaitError { code: c, .. }) => code = Some(c),
                Err(e) => return Err(self.fail("wait for", &format!("container {id}"), e)),
            }
        }
        match code {
            Some(code) => Ok(code),
            // The stream ended without an answer: ask for the state instead.
            None => match self.state(id).await? {
                ContainerState::Exited { code } => Ok(code),
                _ => Err(EngineError::Rejected {
                    operation: format!("wait for container {id}"),
                    status: 0,
                    message: "the engine gave no exit code".into(),
                }),
            },
        }
    }

    async fn changes(&self, id: &ContainerId) -> Result<Vec<Change>, EngineError> {
        let changes = self
            .client
            .container_changes(id.as_str())
            .await
            .map_err(|e| self.fail("list changes of", &format!("container {id}"), e))?;
        Ok(changes
            .unwrap_or_default()
            .into_iter()
            .map(|c| Change {
                path: c.path,
                kind: match c.kind {
                    ChangeType::_0 => ChangeKind::Modified,
                    ChangeType::_1 => ChangeKind::Added,
                    ChangeType::_2 => ChangeKind::Deleted,
                },
            })
            .collect())
    }

    async fn export_to_file(&self, id: &ContainerId, dest: &Path) -> Result<u64, EngineError> {
        let client = self.client.clone().with_timeout(LOAD_TIMEOUT);
        let stream = client.export_container(id.as_str());
        self.stream_to_file(stream, "export", &format!("container {id}"), dest)
            .await
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        match self.client.inspect_image(image).await {
            Ok(inspect) => Ok(inspect.id),
            Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.fail("inspect", &format!("image {image}"), e)),
        }
    }

    async fn image_names(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        match self.client.inspect_image(image).await {
            Ok(inspect) => Ok(Some(inspect.repo_tags.unwrap_or_default())),
            Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.fail("inspect", &format!("image {image}"), e)),
        }
    }

    async fn image_volumes(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        let inspect = self
            .client
            .inspect_image(image)
            .await
            .map_err(|e| self.fail("inspect", &format!("image {image}"), e))?;
        let mut volumes = inspect.config.and_then(|c| c.volumes).unwrap_or_default();
        volumes.sort();
        Ok(Some(volumes))
    }

    async fn tag_image(&self, image: &str, name: &str) -> Result<(), EngineError> {
        let (repo, tag) = split_name(name);
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.client
            .tag_image(image, Some(options))
            .await
            .map_err(|e| self.fail("tag", &format!("image {image}"), e))
    }

    async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EngineError> {
        let images = self
            .client
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(|e| self.fail("list", "images", e))?;
        let mut names: Vec<String> = images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t.starts_with(prefix))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn remove_managed_containers_of(&self, image: &str) -> Result<usize, EngineError> {
        let filters = HashMap::from([
            ("label", vec![format!("{}=true", crate::MANAGED_LABEL)]),
            ("ancestor", vec![image.to_owned()]),
        ]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = match self.client.list_containers(Some(options)).await {
            Ok(containers) => containers,
            // The engine refuses an ancestor filter naming no image: then
            // no container can have been created from it.
            Err(ApiError::DockerResponseServerError {
                status_code: 400 | 404,
                ..
            }) => return Ok(0),
            Err(e) => return Err(self.fail("list containers of", &format!("image {image}"), e)),
        };
        let mut removed = 0;
        for id in containers.into_iter().filter_map(|c| c.id) {
            self.remove_container(&ContainerId::new(id)).await?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn overlay_dirs(&self, id: &ContainerId) -> Result<Option<OverlayDirs>, EngineError> {
        if !self.reads_data_root() {
            return Ok(None);
        }
        let inspect = self.inspect_container(id).await?;
        let Some(OverlayDirs { upper, lowers }) = inspect.graph_driver.and_then(overlay2_folders)
        else {
            return Ok(None);
        };
        // Readable here (the engine's data root is root-only), else the
        // export is the way.
        let readable = tokio::fs::read_dir(&upper).await.is_ok();
        let absolute = upper.is_absolute() && lowers.iter().all(|l| l.is_absolute());
        Ok((readable && absolute).then_some(OverlayDirs { upper, lowers }))
    }

    async fn image_on_disk(&self, image: &str) -> Result<Option<ImageOnDisk>, EngineError> {
        if !self.reads_data_root() {
            return Ok(None);
        }
        let inspect = self
            .client
            .inspect_image(image)
            .await
            .map_err(|e| self.fail("inspect", &format!("image {image}"), e))?;
        let (Some(id), Some(OverlayDirs { upper, lowers }), Some(root_fs)) = (
            inspect.id,
            inspect.graph_driver.and_then(overlay2_folders),
            inspect.root_fs,
        ) else {
            return Ok(None);
        };
        // Bottom first, as the config lists the layers.
        let mut folders: Vec<PathBuf> = std::iter::once(upper).chain(lowers).collect();
        folders.reverse();
        let diff_ids = root_fs.layers.unwrap_or_default();
        if diff_ids.is_empty() || folders.len() != diff_ids.len() {
            return Ok(None);
        }
        Ok(overlay2_image(&id, &diff_ids, folders).await)
    }

    async fn save_image(
        &self,
        image: &str,
        chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<u64, EngineError> {
        // Asking first turns an unknown image into NotFound rather than an
        // error in the middle of a stream.
        self.image_config(image).await?;
        let client = self.client.clone().with_timeout(LOAD_TIMEOUT);
        let mut stream = client.export_image(image);
        let mut sent = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.fail("save", &format!("image {image}"), e))?;
            if chunk.is_empty() {
                continue;
            }
            let len = chunk.len() as u64;
            if chunks.send(chunk).await.is_err() {
                // The reader stopped: it says why.
                break;
            }
            sent += len;
        }
        Ok(sent)
    }
}

/// The upper folder and the lower ones (top first, as overlay's lowerdir
/// option lists them; none for an image with no layer) of what the engine
/// keeps on overlay2, as its inspect gives them; `None` for another driver.
fn overlay2_folders(driver: bollard::models::DriverData) -> Option<OverlayDirs> {
    if driver.name != "overlay2" {
        return None;
    }
    let upper = driver.data.get("UpperDir").map(PathBuf::from)?;
    let lowers = driver
        .data
        .get("LowerDir")
        .map(|l| {
            l.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    Some(OverlayDirs { upper, lowers })
}

/// The image `id` whose layers (diff_ids `diff_ids`, bottom first) have
/// their files in `folders` (`<root>/overlay2/<cache-id>/diff`, bottom
/// first), as Docker's overlay2 data root lays it out: the config under
/// `image/overlay2/imagedb/content`, and each layer's record under
/// `image/overlay2/layerdb/sha256/<chain id>`, whose `cache-id` names its
/// folder. `None` when anything is laid out otherwise or not readable.
async fn overlay2_image(
    id: &str,
    diff_ids: &[String],
    folders: Vec<PathBuf>,
) -> Option<ImageOnDisk> {
    let (root, _) = under_overlay2(folders.first()?)?;
    let images = root.join("image/overlay2");
    let config = images
        .join("imagedb/content/sha256")
        .join(id.strip_prefix("sha256:")?);
    tokio::fs::metadata(&config).await.ok()?;
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut chain: Option<String> = None;
    for (diff_id, files) in diff_ids.iter().zip(folders) {
        let chain_id = match &chain {
            None => diff_id.clone(),
            Some(below) => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(format!("{below} {diff_id}").as_bytes());
                format!("sha256:{}", hex::encode(digest))
            }
        };
        let record = images
            .join("layerdb/sha256")
            .join(chain_id.strip_prefix("sha256:")?);
        let cache_id = tokio::fs::read_to_string(record.join("cache-id"))
            .await
            .ok()?;
        let (_, folder_id) = under_overlay2(&files)?;
        if folder_id != cache_id.trim() {
            return None;
        }
        layers.push(LayerOnDisk {
            diff_id: diff_id.clone(),
            files,
            tar_split: record.join("tar-split.json.gz"),
        });
        chain = Some(chain_id);
    }
    Some(ImageOnDisk {
        id: id.to_owned(),
        config,
        layers,
    })
}

/// The data root and the layer's cache id of the overlay2 layer folder
/// `folder` (`<root>/overlay2/<cache-id>/diff`).
fn under_overlay2(folder: &Path) -> Option<(PathBuf, String)> {
    let layer = folder.parent()?;
    let overlay2 = layer.parent()?;
    let named = folder.file_name()? == "diff" && overlay2.file_name()? == "overlay2";
    let cache_id = layer.file_name()?.to_str()?.to_owned();
    named.then(|| Some((overlay2.parent()?.to_path_buf(), cache_id)))?
}

impl Docker {
    /// Write a byte stream from the engine (an export or a save) to the
    /// host file `dest`, bounded in memory. How many bytes were written.
    async fn stream_to_file(
        &self,
        mut stream: impl futures_util::Stream<Item = Result<bytes::Bytes, ApiError>> + Unpin,
        operation: &str,
        what: &str,
        dest: &Path,
    ) -> Result<u64, EngineError> {
        let archive_error = |source: std::io::Error| EngineError::HostFile {
            what: what.to_owned(),
            path: dest.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(archive_error)?;
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.fail(operation, what, e))?;
            file.write_all(&chunk).await.map_err(archive_error)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(archive_error)?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_tags_colon_not_the_registrys_port() {
        assert_eq!(
            split_name("kiln.local/ab/web:12-3"),
            ("kiln.local/ab/web", "12-3")
        );
        assert_eq!(
            split_name("127.0.0.1:5000/web:1"),
            ("127.0.0.1:5000/web", "1")
        );
        assert_eq!(
            split_name("127.0.0.1:5000/web"),
            ("127.0.0.1:5000/web", "latest")
        );
        assert_eq!(split_name("web"), ("web", "latest"));
    }

    #[test]
    fn bindings_on_all_interfaces_are_reached_on_loopback() {
        let b = |ip: Option<&str>, port: Option<&str>| PortBinding {
            host_ip: ip.map(str::to_owned),
            host_port: port.map(str::to_owned),
        };
        assert_eq!(
            binding_addr(&b(Some("127.0.0.1"), Some("32768"))),
            "127.0.0.1:32768".parse().ok()
        );
        assert_eq!(
            binding_addr(&b(Some("0.0.0.0"), Some("80"))),
            "127.0.0.1:80".parse().ok()
        );
        assert_eq!(
            binding_addr(&b(Some("::"), Some("80"))),
            "[::1]:80".parse().ok()
        );
        assert_eq!(
            binding_addr(&b(None, Some("80"))),
            "127.0.0.1:80".parse().ok()
        );
        assert_eq!(
            binding_addr(&b(Some("127.0.0.1"), Some(""))),
            None,
            "not assigned yet"
        );
    }

    #[test]
    fn captured_output_stops_at_the_cap() {
        let mut buf = b"abc".to_vec();
        push_capped(&mut buf, b"defgh", 5);
        assert_eq!(buf, b"abcde");
        push_capped(&mut buf, b"x", 5);
        assert_eq!(buf, b"abcde");
    }
}
