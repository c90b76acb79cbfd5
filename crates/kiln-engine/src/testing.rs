//! Support for engine-backed tests in any kiln crate (feature
//! `test-support`): the engine-or-skip convention, and tiny images built by
//! hand so that tests depend on no registry and no other kiln crate.

use std::collections::BTreeMap;
use std::io;

use sha2::{Digest as _, Sha256};

use crate::docker::Docker;
use crate::engine::Engine;
use crate::error::EngineError;

/// Whether engine-backed tests must fail, not skip, without an engine:
/// `KILN_REQUIRE_ENGINE=1` or `CI=true` (what `cargo xtask ci` sets).
pub fn engine_required() -> bool {
    std::env::var("KILN_REQUIRE_ENGINE").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The engine, or `None` after printing `skipped: no container engine` to
/// stderr. When [`engine_required`], an unreachable engine panics instead:
/// the test fails, as it must in CI.
pub async fn engine_or_skip() -> Option<Docker> {
    match Docker::connect().await {
        Ok(docker) => Some(docker),
        Err(e) if engine_required() => {
            panic!(
                "a container engine is required (KILN_REQUIRE_ENGINE=1 or CI=true) but none is usable: {}",
                kiln_error_kind::Chain(&e)
            )
        }
        Err(e) => {
            eprintln!(
                "skipped: no container engine ({})",
                kiln_error_kind::Chain(&e)
            );
            None
        }
    }
}

/// One entry of a [`TestImage`]'s single layer.
#[derive(Debug, Clone)]
enum Entry {
    File {
        content: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: String,
    },
}

/// A one-layer image assembled in memory and written as a docker-archive
/// (`manifest.json`, config JSON, uncompressed layer tar), which
/// [`Engine::load_image`] loads.
///
/// ```no_run
/// # async fn f(engine: &kiln_engine::Docker) -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_engine::testing::TestImage;
/// let image = TestImage::busybox()?
///     .file("/www/health", "ok\n", 0o644)
///     .entrypoint(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"])
///     .expose("8080/tcp");
/// let id = image.load(engine).await?; // "sha256:..."
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TestImage {
    entries: BTreeMap<String, Entry>,
    config: serde_json::Map<String, serde_json::Value>,
    env: Vec<String>,
    exposed: BTreeMap<String, serde_json::Value>,
    labels: BTreeMap<String, String>,
}

fn clean(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

fn argv(args: &[&str]) -> serde_json::Value {
    serde_json::Value::from(args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
}

impl TestImage {
    /// An empty image.
    pub fn new() -> Self {
        TestImage::default()
    }

    /// The host's static busybox (`/bin/busybox`, Debian's busybox-static)
    /// at `/bin/busybox`, with `/bin/sh` linked to it and `PATH=/bin`.
    pub fn busybox() -> io::Result<Self> {
        let busybox = std::fs::read("/bin/busybox").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("/bin/busybox (install busybox-static): {e}"),
            )
        })?;
        Ok(TestImage::new()
            .file("/bin/busybox", busybox, 0o755)
            .symlink("/bin/sh", "busybox")
            .env("PATH", "/bin"))
    }

    /// A file owned by root.
    pub fn file(self, path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.file_owned(path, content, mode, 0, 0)
    }

    /// A file with an owner.
    pub fn file_owned(
        mut self,
        path: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Self {
        self.entries.insert(
            clean(path),
            Entry::File {
                content: content.into(),
                mode,
                uid,
                gid,
            },
        );
        self
    }

    /// A folder (parents of files are added as 0o755 without asking).
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.insert(clean(path), Entry::Dir { mode });
        self
    }

    /// A symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.insert(
            clean(path),
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
        self
    }

    /// `Entrypoint`.
    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.config.insert("Entrypoint".into(), argv(args));
        self
    }

    /// `Cmd`.
    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.config.insert("Cmd".into(), argv(args));
        self
    }

    /// `User`.
    pub fn user(mut self, user: &str) -> Self {
        self.config.insert("User".into(), user.into());
        self
    }

    /// `WorkingDir`.
    pub fn workdir(mut self, dir: &str) -> Self {
        self.config.insert("WorkingDir".into(), dir.into());
        self
    }

    /// One `Env` entry.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// One exposed port, like `"8080/tcp"`.
    pub fn expose(mut self, port: &str) -> Self {
        self.exposed.insert(port.to_owned(), serde_json::json!({}));
        self
    }

    /// One label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    fn layer(&self) -> io::Result<Vec<u8>> {
        let mut entries = self.entries.clone();
        for path in self.entries.keys() {
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                entries
                    .entry(p.to_owned())
                    .or_insert(Entry::Dir { mode: 0o755 });
                parent = p;
            }
        }
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        for (path, entry) in &entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            match entry {
                Entry::File {
                    content,
                    mode,
                    uid,
                    gid,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_uid(u64::from(*uid));
                    header.set_gid(u64::from(*gid));
                    header.set_size(content.len() as u64);
                    tar.append_data(&mut header, path, content.as_slice())?;
                }
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        tar.into_inner()
    }

    /// The image as a docker-archive tar, and its image id
    /// (`sha256:` + the digest of its config), tagged
    /// `kiln-test/image:<first 12 hex digits of the id>`.
    pub fn archive(&self) -> io::Result<(Vec<u8>, String)> {
        let layer = self.layer()?;
        let layer_hex = hex::encode(Sha256::digest(&layer));
        let mut config = self.config.clone();
        if !self.env.is_empty() {
            config.insert("Env".into(), serde_json::json!(self.env));
        }
        if !self.exposed.is_empty() {
            config.insert("ExposedPorts".into(), serde_json::json!(self.exposed));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), serde_json::json!(self.labels));
        }
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let image_config = serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_hex}")] },
            "history": [ { "created_by": "kiln test image" } ],
        });
        let config_bytes = serde_json::to_vec(&image_config).map_err(io::Error::other)?;
        let config_hex = hex::encode(Sha256::digest(&config_bytes));
        let tag = format!("kiln-test/image:{}", &config_hex[..12]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": [tag],
            "Layers": [format!("{layer_hex}/layer.tar")],
        }]))
        .map_err(io::Error::other)?;

        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: String, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, path, data)
        };
        add(format!("{layer_hex}/layer.tar"), &layer)?;
        add(format!("{config_hex}.json"), &config_bytes)?;
        add("manifest.json".to_owned(), &manifest)?;
        Ok((tar.into_inner()?, format!("sha256:{config_hex}")))
    }

    /// Load the image into `engine`; its id.
    pub async fn load(&self, engine: &dyn Engine) -> Result<String, EngineError> {
        let (archive, id) = self.archive().map_err(|e| EngineError::LoadFailed {
            message: format!("building the test image: {e}"),
        })?;
        engine
            .load_image(Box::new(io::Cursor::new(archive)))
            .await?;
        Ok(id)
    }
}
