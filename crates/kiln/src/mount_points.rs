//! What the engine does for a run layer's mount points, taken back out of
//! the command's change set.
//!
//! Before the command runs, the engine mounts the image's volumes (the
//! base's and `[config] volumes`) and the step's secrets folder. It creates
//! each mount point, and every missing folder above it, in the container's
//! own filesystem; what the command then writes at or below a mount point
//! goes to the mount, not to the container's filesystem, as after a
//! Dockerfile `VOLUME`. So of a change set:
//!
//! - a change at or below a mount point is the engine's or the mount's,
//!   never the layer's;
//! - a folder above a mount point that is added or modified is the
//!   engine's doing (it created a child on the way down) unless the
//!   command changed something else below that folder too;
//! - everything else, including a deleted folder, is the command's.
//!
//! A mount point the image already had is not changed by the mount, and
//! stays as the layers below hold it. A mount point reached through a
//! symlink (`/var/run/app` where `/var/run` links to `/run`) is where the
//! engine put it, the link followed (see [`as_placed`]).

use std::collections::VecDeque;

use kiln_engine::{ContainerId, Engine, EngineError, PathKind};
use kiln_image::change_set::{PathChange, PathChangeKind};

/// How many symlinks one mount point's path may pass through, as the
/// kernel allows: past that the engine refuses to mount it at all.
const MAX_LINKS: usize = 40;

/// `path` made lexical: absolute, no `.`, `..` taken back, no repeated or
/// trailing `/` (`/srv//a/` → `/srv/a`), as the engine places a mount.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The volumes an image's config declares: its `config.Volumes` keys
/// (`{"/data": {}}`), cleaned, sorted and each once.
pub fn config_volumes(config: &serde_json::Value) -> Vec<String> {
    cleaned(
        config
            .pointer("/config/Volumes")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flat_map(|v| v.keys())
            .map(String::as_str),
    )
}

/// `volumes` [`clean`]ed, sorted, each once.
pub fn cleaned<'v>(volumes: impl IntoIterator<Item = &'v str>) -> Vec<String> {
    let mut volumes: Vec<String> = volumes.into_iter().map(clean).collect();
    volumes.sort();
    volumes.dedup();
    volumes
}

/// `mounts` where the engine placed them in container `id`: each path
/// with every symlink on the way (its last part too) followed inside the
/// container's filesystem, as the engine follows them before it mounts.
/// A mount whose own path the change list holds needs no lookup (the
/// engine created it where it was written); the others are looked up in
/// the container, which must still exist.
pub async fn as_placed(
    engine: &dyn Engine,
    id: &ContainerId,
    mounts: Vec<String>,
    changes: &[PathChange],
) -> Result<Vec<String>, EngineError> {
    let mut placed = Vec::with_capacity(mounts.len());
    for mount in mounts {
        if changes.iter().any(|c| c.path == mount) {
            placed.push(mount);
        } else {
            placed.push(follow_links(engine, id, &mount).await?);
        }
    }
    placed.sort();
    placed.dedup();
    Ok(placed)
}

/// `path` with each symlink on the way followed in container `id`, within
/// its filesystem (`..` stops at `/`). A part that does not exist ends the
/// lookup: the rest is created as written. Past [`MAX_LINKS`] links the
/// path is taken as written.
async fn follow_links(
    engine: &dyn Engine,
    id: &ContainerId,
    path: &str,
) -> Result<String, EngineError> {
    let parts = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let mut pending: VecDeque<String> = parts(path).into();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            at.pop();
            continue;
        }
        let candidate = clean(&format!("/{}/{part}", at.join("/")));
        match engine.read_path(id, &candidate).await? {
            Some(info) if info.kind == PathKind::Symlink => {
                links += 1;
                if links > MAX_LINKS {
                    return Ok(clean(path));
                }
                let target = info.link_target.unwrap_or_default();
                if target.starts_with('/') {
                    at.clear();
                }
                for p in parts(&target).into_iter().rev() {
                    pending.push_front(p);
                }
            }
            Some(_) => at.push(part),
            None => {
                at.push(part);
                at.extend(pending.drain(..));
            }
        }
    }
    Ok(clean(&format!("/{}", at.join("/"))))
}

/// Whether `path` is `prefix` or below it.
fn at_or_below(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` is strictly above `below`.
fn strictly_above(path: &str, below: &str) -> bool {
    path != below && at_or_below(below, path)
}

/// `changes` without what the engine did for `mounts` (absolute, cleaned
/// in-image paths): see the module's documentation.
pub fn without_mount_points(changes: Vec<PathChange>, mounts: &[String]) -> Vec<PathChange> {
    if mounts.is_empty() {
        return changes;
    }
    let in_mount = |c: &PathChange| mounts.iter().any(|m| at_or_below(&c.path, m));
    let above_mount = |c: &PathChange| mounts.iter().any(|m| strictly_above(&c.path, m));
    // The command's own changes: neither in a mount nor on a mount's way
    // down.
    let own: Vec<&str> = changes
        .iter()
        .filter(|c| !in_mount(c) && !above_mount(c))
        .map(|c| c.path.as_str())
        .collect();
    let keep = |c: &PathChange| {
        if in_mount(c) {
            false
        } else if above_mount(c) {
            c.kind == PathChangeKind::Deleted || own.iter().any(|p| strictly_above(&c.path, p))
        } else {
            true
        }
    };
    let kept: Vec<bool> = changes.iter().map(keep).collect();
    changes
        .into_iter()
        .zip(kept)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: PathChangeKind) -> PathChange {
        PathChange {
            path: path.to_owned(),
            kind,
        }
    }

    fn added(path: &str) -> PathChange {
        change(path, PathChangeKind::Added)
    }

    fn modified(path: &str) -> PathChange {
        change(path, PathChangeKind::Modified)
    }

    fn paths(changes: &[PathChange]) -> Vec<&str> {
        changes.iter().map(|c| c.path.as_str()).collect()
    }

    #[test]
    fn a_mount_point_the_engine_created_and_its_new_parents_are_left_out() {
        let changes = vec![
            added("/srv"),
            added("/srv/a"),
            added("/srv/a/b"),
            added("/data"),
            added("/etc/motd"),
            modified("/etc"),
        ];
        let kept = without_mount_points(changes, &["/srv/a/b".into(), "/data".into()]);
        assert_eq!(paths(&kept), ["/etc/motd", "/etc"]);
    }

    #[test]
    fn a_folder_above_a_mount_point_stays_when_the_command_changed_it_too() {
        let changes = vec![
            modified("/srv"),
            added("/srv/own.txt"),
            added("/srv/a"),
            added("/srv/a/b"),
        ];
        let kept = without_mount_points(changes, &["/srv/a/b".into()]);
        assert_eq!(paths(&kept), ["/srv", "/srv/own.txt"]);
    }

    #[test]
    fn what_is_below_a_mount_point_and_deleted_folders_above_it() {
        let changes = vec![
            added("/data/file"),
            change("/var/old", PathChangeKind::Deleted),
            modified("/var"),
            added("/var/lib"),
            added("/var/lib/db"),
        ];
        let kept = without_mount_points(changes, &["/data".into(), "/var/lib/db".into()]);
        // /var stays: the command deleted /var/old.
        assert_eq!(paths(&kept), ["/var/old", "/var"]);
        let deleted = without_mount_points(
            vec![change("/srv", PathChangeKind::Deleted)],
            &["/srv/a".into()],
        );
        assert_eq!(paths(&deleted), ["/srv"]);
    }

    #[test]
    fn a_sibling_with_a_common_prefix_is_not_below_a_mount_point() {
        let changes = vec![added("/database"), added("/data2/x"), added("/data2")];
        let kept = without_mount_points(changes.clone(), &["/data".into()]);
        assert_eq!(kept, changes);
    }

    #[test]
    fn paths_are_cleaned_as_the_engine_places_mounts() {
        assert_eq!(clean("/srv//a/"), "/srv/a");
        assert_eq!(clean("/srv/./a/../b"), "/srv/b");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("/../x"), "/x");
        let config = serde_json::json!({
            "config": { "Volumes": { "/var/lib/db/": {}, "/data": {}, "/data/.": {} } }
        });
        assert_eq!(config_volumes(&config), ["/data", "/var/lib/db"]);
        assert!(config_volumes(&serde_json::json!({ "config": {} })).is_empty());
    }
}
