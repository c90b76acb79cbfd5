//! What an image holds, as far as its SBOM needs it: the package databases
//! as the last layer that touches them leaves them (whiteouts honoured),
//! the OS's identity, and every regular file of kiln's own `files` layers
//! with its sha256. One streamed pass over each layer; nothing is unpacked
//! to disk.

use std::collections::BTreeMap;
use std::io::Read;

use kiln_image::{BaseImage, Digest, Store};
use sha2::{Digest as _, Sha256};

use crate::SignError;

/// Paths (without the leading `/`) whose content the SBOM reads.
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const APK_INSTALLED: &str = "lib/apk/db/installed";
const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];
/// The largest package database read (Debian's biggest images hold a few
/// MiB).
const MAX_DATABASE: u64 = 64 << 20;

/// What an image holds, for its SBOM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Contents {
    /// `/var/lib/dpkg/status`, if the image has one.
    pub dpkg_status: Option<Vec<u8>>,
    /// `/lib/apk/db/installed`, if the image has one.
    pub apk_installed: Option<Vec<u8>>,
    /// `/etc/os-release` (or `/usr/lib/os-release`).
    pub os_release: Option<Vec<u8>>,
    /// Each regular file of kiln's `files` layers (`/path` → sha256 hex),
    /// as the image finally holds it.
    pub files: BTreeMap<String, String>,
}

impl Contents {
    /// `ID` of os-release (`debian`, `alpine`), if known.
    pub fn os_id(&self) -> Option<String> {
        let text = String::from_utf8_lossy(self.os_release.as_deref()?).into_owned();
        text.lines().find_map(|l| {
            l.strip_prefix("ID=")
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    }
}

/// The layers of `image` that kiln's `files` layers wrote: history entries
/// `kiln layer NAME: files`, matched to layers in order (entries marked
/// `empty_layer` have none).
pub fn kiln_file_layers(image: &BaseImage) -> Vec<Digest> {
    let history: Vec<&serde_json::Value> = image
        .config
        .get("history")
        .and_then(|h| h.as_array())
        .map(|h| {
            h.iter()
                .filter(|e| e.get("empty_layer").and_then(|v| v.as_bool()) != Some(true))
                .collect()
        })
        .unwrap_or_default();
    if history.len() != image.layers.len() {
        return Vec::new();
    }
    history
        .iter()
        .zip(&image.layers)
        .filter(|(entry, _)| {
            entry
                .get("created_by")
                .and_then(|c| c.as_str())
                .is_some_and(|c| c.starts_with("kiln layer ") && c.ends_with(": files"))
        })
        .map(|(_, layer)| layer.digest.clone())
        .collect()
}

/// Read what `image` holds from its layers in `store`.
pub fn read_contents(store: &Store, image: &BaseImage) -> Result<Contents, SignError> {
    let file_layers = kiln_file_layers(image);
    let mut contents = Contents::default();
    for layer in &image.layers {
        let is_file_layer = file_layers.contains(&layer.digest);
        let file = store.open_blob(&layer.digest)?;
        let bad = |reason: String| SignError::Layer {
            digest: layer.digest.clone(),
            reason,
        };
        let reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                file,
            )))
        } else if layer.media_type.ends_with(".tar") || layer.media_type.ends_with("tar") {
            Box::new(std::io::BufReader::new(file))
        } else {
            return Err(bad(format!(
                "media type {} is not a tar layer kiln reads",
                layer.media_type
            )));
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let raw = entry.path_bytes().into_owned();
            let path = normalise(&String::from_utf8_lossy(&raw));
            if let Some(removed) = whiteout(&path) {
                contents.remove(&removed);
                continue;
            }
            let kind = entry.header().entry_type();
            if !kind.is_file() {
                // A folder, link or device replaces a file of that name.
                if !kind.is_dir() {
                    contents.remove(&path);
                }
                continue;
            }
            let wanted =
                path == DPKG_STATUS || path == APK_INSTALLED || OS_RELEASE.contains(&path.as_str());
            if wanted {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MAX_DATABASE)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(format!("{path}: {e}")))?;
                match path.as_str() {
                    DPKG_STATUS => contents.dpkg_status = Some(bytes.clone()),
                    APK_INSTALLED => contents.apk_installed = Some(bytes.clone()),
                    _ => contents.os_release = Some(bytes.clone()),
                }
                if is_file_layer {
                    contents
                        .files
                        .insert(format!("/{path}"), hex::encode(Sha256::digest(&bytes)));
                }
            } else if is_file_layer {
                let sha256 = hash(&mut entry).map_err(|e| bad(format!("{path}: {e}")))?;
                contents.files.insert(format!("/{path}"), sha256);
            } else {
                // A base or run layer overwrote a file kiln wrote.
                contents.files.remove(&format!("/{path}"));
            }
        }
    }
    Ok(contents)
}

impl Contents {
    /// Forget `path` and everything under it.
    fn remove(&mut self, path: &str) {
        let under = |p: &str| p == path || p.starts_with(&format!("{path}/")) || path.is_empty();
        if under(DPKG_STATUS) {
            self.dpkg_status = None;
        }
        if under(APK_INSTALLED) {
            self.apk_installed = None;
        }
        if OS_RELEASE.iter().any(|p| under(p)) {
            self.os_release = None;
        }
        self.files.retain(|p, _| !under(&p[1..]));
    }
}

/// The sha256 hex of what `reader` yields.
fn hash(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hex::encode(hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `./a/b/` → `a/b`.
fn normalise(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_owned()
}

/// The path a whiteout entry removes: `a/.wh.b` removes `a/b`; the opaque
/// marker `a/.wh..wh..opq` removes what lower layers had under `a`.
fn whiteout(path: &str) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path),
    };
    let target = name.strip_prefix(".wh.")?;
    if target == ".wh..opq" {
        return Some(dir.to_owned());
    }
    Some(if dir.is_empty() {
        target.to_owned()
    } else {
        format!("{dir}/{target}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_name_what_they_remove() {
        assert_eq!(
            whiteout("var/lib/dpkg/.wh.status").as_deref(),
            Some("var/lib/dpkg/status")
        );
        assert_eq!(whiteout("var/lib/.wh..wh..opq").as_deref(), Some("var/lib"));
        assert_eq!(whiteout(".wh.etc").as_deref(), Some("etc"));
        assert_eq!(whiteout("etc/passwd"), None);
    }

    #[test]
    fn removing_a_folder_forgets_what_is_under_it() {
        let mut c = Contents {
            dpkg_status: Some(b"x".to_vec()),
            files: [
                ("/var/lib/x".to_owned(), "00".to_owned()),
                ("/www/i".to_owned(), "11".to_owned()),
            ]
            .into(),
            ..Contents::default()
        };
        c.remove("var/lib");
        assert_eq!(c.dpkg_status, None);
        assert_eq!(c.files.keys().collect::<Vec<_>>(), ["/www/i"]);
    }
}
