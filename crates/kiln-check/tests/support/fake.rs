//! A recording fake of the container engine: scripted answers, every call
//! written down, and a container that can be made to exit at a given time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kiln_engine::{
    Archive, Change, ContainerId, ContainerSpec, ContainerState, Engine, EngineError, ExecOutput,
    ImageConfig, NewFile, PathInfo, PathKind,
};
use tokio::time::Instant;

/// What an exec does.
#[derive(Clone)]
pub enum ExecScript {
    /// Finishes with this.
    Output(ExecOutput),
    /// Never finishes: times out.
    Hang,
}

/// A file written with put_file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<String>,
    created: Vec<ContainerSpec>,
    files: Vec<PutFile>,
    started_at: Option<Instant>,
    removed: Vec<String>,
}

/// The fake. Build it with the methods below, then run a suite on it.
#[derive(Default)]
pub struct FakeEngine {
    config: ImageConfig,
    paths: BTreeMap<String, PathInfo>,
    exec: BTreeMap<Vec<String>, ExecScript>,
    ports: BTreeMap<u16, SocketAddr>,
    exits: Option<(Duration, i64)>,
    logs: String,
    failures: BTreeMap<&'static str, fn() -> EngineError>,
    recorded: Mutex<Recorded>,
}

pub fn file(content: &str, mode: u32, uid: u32, gid: u32) -> PathInfo {
    PathInfo {
        kind: PathKind::File,
        mode,
        uid,
        gid,
        size: content.len() as u64,
        content: Some(content.as_bytes().to_vec()),
        link_target: None,
    }
}

pub fn symlink(target: &str) -> PathInfo {
    PathInfo {
        kind: PathKind::Symlink,
        mode: 0o777,
        uid: 0,
        gid: 0,
        size: 0,
        content: None,
        link_target: Some(target.to_owned()),
    }
}

pub fn unreachable() -> EngineError {
    EngineError::Unreachable {
        endpoint: "unix:///fake.sock".into(),
        source: "connection refused".into(),
    }
}

pub fn rejected() -> EngineError {
    EngineError::Rejected {
        operation: "start container fake".into(),
        status: 400,
        message: "exec: \"/bin/nope\": stat /bin/nope: no such file or directory".into(),
    }
}

impl FakeEngine {
    pub fn new() -> Self {
        FakeEngine::default()
    }

    /// The image's configuration.
    pub fn config(mut self, config: ImageConfig) -> Self {
        self.config = config;
        self
    }

    /// Something at a path.
    pub fn path(mut self, path: &str, info: PathInfo) -> Self {
        self.paths.insert(path.to_owned(), info);
        self
    }

    /// What running `argv` does.
    pub fn exec(mut self, argv: &[&str], script: ExecScript) -> Self {
        self.exec
            .insert(argv.iter().map(|a| (*a).to_owned()).collect(), script);
        self
    }

    /// Where a container port is published.
    pub fn port(mut self, port: u16, addr: SocketAddr) -> Self {
        self.ports.insert(port, addr);
        self
    }

    /// The container exits with `code`, `after` its start.
    pub fn exits(mut self, after: Duration, code: i64) -> Self {
        self.exits = Some((after, code));
        self
    }

    /// The container's log.
    pub fn logs(mut self, logs: &str) -> Self {
        self.logs = logs.to_owned();
        self
    }

    /// `method` fails with `error()`.
    pub fn failing(mut self, method: &'static str, error: fn() -> EngineError) -> Self {
        self.failures.insert(method, error);
        self
    }

    fn record(&self, call: String) -> Result<(), EngineError> {
        let method = call.split(' ').next().unwrap_or_default().to_owned();
        self.recorded.lock().expect("lock").calls.push(call);
        match self.failures.get(method.as_str()) {
            Some(error) => Err(error()),
            None => Ok(()),
        }
    }

    /// Every call, in order, as `method args`.
    pub fn calls(&self) -> Vec<String> {
        self.recorded.lock().expect("lock").calls.clone()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.split(' ').next() == Some(method))
            .collect()
    }

    /// The specs containers were created with.
    pub fn created(&self) -> Vec<ContainerSpec> {
        self.recorded.lock().expect("lock").created.clone()
    }

    /// The files written.
    pub fn files(&self) -> Vec<PutFile> {
        self.recorded.lock().expect("lock").files.clone()
    }

    /// The containers removed.
    pub fn removed(&self) -> Vec<String> {
        self.recorded.lock().expect("lock").removed.clone()
    }

    fn current_state(&self) -> ContainerState {
        let started = self.recorded.lock().expect("lock").started_at;
        match (started, self.exits) {
            (None, _) => ContainerState::Created,
            (Some(at), Some((after, code))) if Instant::now() >= at + after => {
                ContainerState::Exited { code }
            }
            (Some(_), _) => ContainerState::Running,
        }
    }
}

#[async_trait]
impl Engine for FakeEngine {
    async fn load_image(&self, _archive: Archive) -> Result<(), EngineError> {
        self.record("load".into())
    }

    async fn image_config(&self, image: &str) -> Result<ImageConfig, EngineError> {
        self.record(format!("image_config {image}"))?;
        Ok(self.config.clone())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId, EngineError> {
        self.record(format!("create {}", spec.image))?;
        self.recorded
            .lock()
            .expect("lock")
            .created
            .push(spec.clone());
        Ok(ContainerId::new("fake0123456789"))
    }

    async fn put_file(&self, _id: &ContainerId, file: &NewFile<'_>) -> Result<(), EngineError> {
        self.record(format!("put {}", file.path))?;
        self.recorded.lock().expect("lock").files.push(PutFile {
            path: file.path.to_owned(),
            content: file.content.to_vec(),
            mode: file.mode,
            uid: file.uid,
            gid: file.gid,
        });
        Ok(())
    }

    async fn start(&self, _id: &ContainerId) -> Result<(), EngineError> {
        self.record("start".into())?;
        self.recorded.lock().expect("lock").started_at = Some(Instant::now());
        Ok(())
    }

    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        self.record(format!("exec {argv:?}"))?;
        if matches!(self.current_state(), ContainerState::Exited { .. }) {
            return Err(EngineError::Rejected {
                operation: format!("exec in container {id}"),
                status: 409,
                message: format!("Container {id} is not running"),
            });
        }
        match self.exec.get(argv) {
            Some(ExecScript::Output(out)) => Ok(out.clone()),
            Some(ExecScript::Hang) => {
                tokio::time::sleep(timeout).await;
                Err(EngineError::ExecTimedOut {
                    container: id.to_string(),
                    argv: format!("{argv:?}"),
                    timeout,
                })
            }
            None => Ok(ExecOutput::default()),
        }
    }

    async fn read_path(
        &self,
        _id: &ContainerId,
        path: &str,
    ) -> Result<Option<PathInfo>, EngineError> {
        self.record(format!("read {path}"))?;
        Ok(self.paths.get(path).cloned())
    }

    async fn published_addr(&self, id: &ContainerId, port: u16) -> Result<SocketAddr, EngineError> {
        self.record(format!("addr {port}"))?;
        self.ports
            .get(&port)
            .copied()
            .ok_or_else(|| EngineError::PortNotPublished {
                container: id.to_string(),
                port,
            })
    }

    async fn state(&self, _id: &ContainerId) -> Result<ContainerState, EngineError> {
        self.record("state".into())?;
        Ok(self.current_state())
    }

    async fn logs_tail(&self, _id: &ContainerId, lines: usize) -> Result<String, EngineError> {
        self.record(format!("logs {lines}"))?;
        Ok(self.logs.clone())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), EngineError> {
        self.record(format!("remove {id}"))?;
        self.recorded
            .lock()
            .expect("lock")
            .removed
            .push(id.to_string());
        Ok(())
    }

    async fn remove_labelled(&self, label: &str, value: &str) -> Result<usize, EngineError> {
        self.record(format!("remove_labelled {label}={value}"))?;
        Ok(0)
    }

    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        self.record(format!("remove_image {image}"))?;
        Ok(())
    }

    async fn wait(&self, id: &ContainerId) -> Result<i64, EngineError> {
        self.record(format!("wait {id}"))?;
        match self.current_state() {
            ContainerState::Exited { code } => Ok(code),
            _ => Err(not_scripted("wait")),
        }
    }

    async fn changes(&self, _id: &ContainerId) -> Result<Vec<Change>, EngineError> {
        Err(not_scripted("changes"))
    }

    async fn export_to_file(&self, _id: &ContainerId, _dest: &Path) -> Result<u64, EngineError> {
        Err(not_scripted("export_to_file"))
    }

    async fn image_names(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        self.record(format!("image_names {image}"))?;
        Ok(Some(vec![image.to_owned()]))
    }

    async fn tag_image(&self, image: &str, name: &str) -> Result<(), EngineError> {
        self.record(format!("tag_image {image} {name}"))
    }

    async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EngineError> {
        self.record(format!("names_with_prefix {prefix}"))?;
        Ok(Vec::new())
    }

    async fn remove_managed_containers_of(&self, image: &str) -> Result<usize, EngineError> {
        self.record(format!("remove_managed_containers_of {image}"))?;
        Ok(0)
    }

    async fn save_image(
        &self,
        _image: &str,
        _chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<u64, EngineError> {
        Err(not_scripted("save_image"))
    }
}

/// The checks never build run layers: a call the fake has no script for.
fn not_scripted(operation: &str) -> EngineError {
    EngineError::Rejected {
        operation: operation.to_owned(),
        status: 501,
        message: "the fake engine has no script for this".to_owned(),
    }
}
