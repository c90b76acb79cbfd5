//! A CNCF distribution registry (Debian's `docker-registry`) of the test's
//! own.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the registry.
const PROGRAM: &str = "/usr/bin/docker-registry";

/// A registry process on a free loopback port, with its storage in a
/// temporary folder; killed (by its pid) and removed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Its loopback port.
    pub port: u16,
    /// The folder it keeps repositories and blobs in.
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// One without authentication, or `None` (after saying so) when
    /// docker-registry is missing and the real parts are not
    /// [`crate::required`].
    pub fn start() -> Option<Registry> {
        Registry::start_with_auth(None)
    }

    /// One that, given an htpasswd file's content ([`crate::htpasswd`]),
    /// wants Basic credentials that match it.
    pub fn start_with_auth(htpasswd: Option<&str>) -> Option<Registry> {
        if !crate::have_tool_at(PROGRAM) {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary folder for the registry");
        let storage = dir.path().join("storage");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let auth = match htpasswd {
            Some(content) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, content).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .expect("write the registry's config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(PROGRAM)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            port,
            storage,
            _dir: dir,
        };
        // Bounded only so that a broken registry cannot hang the suite.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&registry.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {} within 30 s",
                registry.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    /// Where the registry keeps the bytes of the blob whose sha256 is
    /// `hex`.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
