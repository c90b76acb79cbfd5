//! Registry credentials where the ecosystem keeps them, so that `docker
//! login` or `skopeo login` is all a user does: `REGISTRY_AUTH_FILE`
//! (containers-auth.json, as skopeo and podman read it), then
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. Within a file,
//! a `credHelpers` entry for the host wins, then `credsStore`, then the
//! `auths` entry, as docker does; helpers are the `docker-credential-NAME`
//! programs on PATH, spoken to with their `get` protocol.
//!
//! A credential is only ever handed to the HTTP client: errors name the
//! file or helper and what is wrong with it, never the value.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryAuth;
use crate::ImageError;

/// Where to look for registry credentials, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialFiles {
    /// Files in the `auths`/`credHelpers`/`credsStore` format, first first:
    /// `REGISTRY_AUTH_FILE`, then docker's `config.json`.
    pub files: Vec<PathBuf>,
}

/// The part of a docker `config.json` (or containers `auth.json`) kiln reads.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// A credential helper's answer to `get`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

impl CredentialFiles {
    /// The files the environment names: `REGISTRY_AUTH_FILE` if set, then
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    /// Files that do not exist are skipped when looked up.
    pub fn from_environment() -> Self {
        let mut files = Vec::new();
        if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
            files.push(PathBuf::from(file));
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            files.push(Path::new(&dir).join("config.json"));
        } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            files.push(Path::new(&home).join(".docker").join("config.json"));
        }
        CredentialFiles { files }
    }

    /// The credentials for registry `host` (`HOST[:PORT]`): the first file
    /// that knows the host decides; anonymous when none does. A file that
    /// exists but cannot be parsed, or a helper that fails for another
    /// reason than "not found", is [`ImageError::Credentials`].
    pub fn lookup(&self, host: &str) -> Result<RegistryAuth, ImageError> {
        for file in &self.files {
            let text = match std::fs::read(file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(failure(host, file, format!("cannot be read: {e}")));
                }
            };
            let config: ConfigFile = serde_json::from_slice(&text).map_err(|e| {
                // serde's message names a line and column, never a value.
                failure(host, file, format!("is not valid JSON of that format: {e}"))
            })?;
            if let Some(found) = config.lookup(host, file)? {
                return Ok(found);
            }
        }
        Ok(RegistryAuth::Anonymous)
    }
}

impl ConfigFile {
    fn lookup(&self, host: &str, file: &Path) -> Result<Option<RegistryAuth>, ImageError> {
        let aliases = host_aliases(host);
        let helper = aliases
            .iter()
            .find_map(|h| self.cred_helpers.get(h))
            .or(self.creds_store.as_ref())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            if let Some(found) = run_helper(helper, host)? {
                return Ok(Some(found));
            }
        }
        let entry = self
            .auths
            .iter()
            .find(|(key, _)| aliases.contains(&normalise_key(key)));
        let Some((_, entry)) = entry else {
            return Ok(None);
        };
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(RegistryAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                failure(
                    host,
                    file,
                    "its \"auth\" entry is not base64 of user:password".into(),
                )
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            failure(
                host,
                file,
                "its \"auth\" entry has no \":\" between user name and password".into(),
            )
        })?;
        Ok(Some(RegistryAuth::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }))
    }
}

/// The names a config may file `host` under: itself, and for Docker Hub
/// the names docker writes.
fn host_aliases(host: &str) -> Vec<String> {
    let mut names = vec![host.to_ascii_lowercase()];
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        names.extend(["docker.io", "index.docker.io", "registry-1.docker.io"].map(String::from));
    }
    names
}

/// `https://HOST/v1/` and `http://HOST` are how older docker versions
/// spelled a key; the host is what matters.
fn normalise_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Ask `docker-credential-NAME get` for `host`'s credentials; `None` when
/// the helper has none.
fn run_helper(name: &str, host: &str) -> Result<Option<RegistryAuth>, ImageError> {
    let program = format!("docker-credential-{name}");
    let helper_failure = |reason: String| ImageError::Credentials {
        host: host.to_owned(),
        source_name: format!("credential helper {program}"),
        reason,
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(helper_failure(
            "its name may hold only letters, digits, `-`, `_` and `.`".into(),
        ));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            helper_failure(if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} is not on PATH; install it or remove it from the docker config")
            } else {
                format!("cannot start it: {e}")
            })
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its answer.
        let _ = stdin.write_all(host.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| helper_failure(format!("waiting for it failed: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        // The helper's own words may be anything: only its status is shown.
        return Err(helper_failure(format!(
            "it failed ({}); run `{program} get` by hand to see why",
            output.status
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|_| {
        helper_failure("its answer is not the JSON {\"Username\",\"Secret\"} of `get`".into())
    })?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(RegistryAuth::Basic {
        username: answer.username,
        password: answer.secret,
    }))
}

fn failure(host: &str, file: &Path, reason: String) -> ImageError {
    ImageError::Credentials {
        host: host.to_owned(),
        source_name: file.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(json: &str, host: &str) -> Result<RegistryAuth, ImageError> {
        let dir = tempfile::tempdir().map_err(|source| ImageError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let file = dir.path().join("config.json");
        std::fs::write(&file, json).map_err(|source| ImageError::Io {
            path: file.clone(),
            source,
        })?;
        CredentialFiles { files: vec![file] }.lookup(host)
    }

    fn basic(u: &str, p: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn auths_entries_by_host_and_by_old_url() {
        let json = r#"{"auths":{"127.0.0.1:5000":{"auth":"a2lsbjpzM2NyZXQ="},
                       "https://registry.example/v1/":{"auth":"dTpwOnc="}}}"#;
        assert_eq!(
            lookup(json, "127.0.0.1:5000").ok(),
            Some(basic("kiln", "s3cret"))
        );
        // The password may itself hold colons.
        assert_eq!(
            lookup(json, "registry.example").ok(),
            Some(basic("u", "p:w"))
        );
        assert_eq!(
            lookup(json, "other.example").ok(),
            Some(RegistryAuth::Anonymous)
        );
    }

    #[test]
    fn username_and_password_fields() {
        let json = r#"{"auths":{"r.example":{"username":"a","password":"b"}}}"#;
        assert_eq!(lookup(json, "r.example").ok(), Some(basic("a", "b")));
    }

    #[test]
    fn malformed_entries_never_show_the_value() {
        let json = r#"{"auths":{"r.example":{"auth":"!!not-base64-hunter2"}}}"#;
        match lookup(json, "r.example") {
            Err(e @ ImageError::Credentials { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("r.example") && text.contains("base64"),
                    "{text}"
                );
                assert!(!text.contains("hunter2"), "{text}");
            }
            other => panic!("expected a credentials error, got {other:?}"),
        }
        assert!(matches!(
            lookup("{not json", "r.example"),
            Err(ImageError::Credentials { .. })
        ));
    }

    #[test]
    fn missing_files_are_skipped_and_helpers_must_exist() {
        let none = CredentialFiles {
            files: vec![PathBuf::from("/nonexistent/kiln/config.json")],
        };
        assert_eq!(none.lookup("r.example").ok(), Some(RegistryAuth::Anonymous));
        let json = r#"{"credHelpers":{"r.example":"kiln-test-absent-helper"}}"#;
        match lookup(json, "r.example") {
            Err(ImageError::Credentials {
                source_name,
                reason,
                ..
            }) => {
                assert!(source_name.contains("docker-credential-kiln-test-absent-helper"));
                assert!(reason.contains("PATH"), "{reason}");
            }
            other => panic!("expected a credentials error, got {other:?}"),
        }
    }
}
