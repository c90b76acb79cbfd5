//! `umoci unpack`: an image of a store as a folder, unpacked by a tool that
//! is not kiln, for tests to read back what an image holds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Unpack `NAME:TAG` of the OCI layout `store` into the bundle folder
/// `bundle` (which must not exist yet); its `rootfs` folder, after
/// asserting that umoci succeeded. Run as root, umoci keeps the layers'
/// owners; otherwise it unpacks `--rootless`, owning every file itself.
pub(crate) fn unpack(store: &Path, reference: &str, bundle: &Path) -> PathBuf {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    let out = Command::new("umoci")
        .arg("unpack")
        .args((!root).then_some("--rootless"))
        .arg("--image")
        .arg(format!("{}:{reference}", store.display()))
        .arg(bundle)
        .output()
        .expect("run umoci");
    assert!(
        out.status.success(),
        "umoci unpack {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle.join("rootfs")
}
