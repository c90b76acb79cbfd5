//! The file check: what is at a path in the booted container, read through
//! the engine's copy API so that images without a shell are checked too.
//! Symlinks are followed, as `stat` does: a dangling link does not exist.

use kiln_engine::{EngineError, PathInfo, PathKind};
use kiln_recipe::FileCheck;

use crate::Redaction;
use crate::excerpt::{contains, head};
use crate::suite::{Container, Verdict};

/// More links than this in a chain is a loop, as for the kernel's ELOOP.
const MAX_LINKS: usize = 16;

/// Where a path led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing at the path.
    Missing,
    /// The path is a symlink chain ending at `target`, where nothing is.
    Dangling { target: String },
    /// The chain of links never ends.
    Loop,
    /// Something, at `path` (the end of any symlink chain).
    At { path: String, info: PathInfo },
}

pub(crate) async fn run(
    container: &Container<'_>,
    check: &FileCheck,
) -> Result<Verdict, EngineError> {
    let found = resolve(container, &check.path).await?;
    Ok(judge(check, &found, container.redaction))
}

async fn resolve(container: &Container<'_>, path: &str) -> Result<Found, EngineError> {
    let mut at = path.to_owned();
    for _ in 0..=MAX_LINKS {
        match container.engine.read_path(&container.id, &at).await? {
            None if at == path => return Ok(Found::Missing),
            None => return Ok(Found::Dangling { target: at }),
            Some(PathInfo {
                kind: PathKind::Symlink,
                link_target: Some(target),
                ..
            }) => {
                at = follow(&at, &target);
            }
            Some(info) => return Ok(Found::At { path: at, info }),
        }
    }
    Ok(Found::Loop)
}

/// The path a symlink at `link` pointing at `target` leads to.
pub(crate) fn follow(link: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else {
        let parent = link.rsplit_once('/').map_or("", |(p, _)| p);
        format!("{parent}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn describe(info: &PathInfo) -> String {
    let mut text = format!(
        "{}, mode {:#o}, owner {}:{}",
        info.kind, info.mode, info.uid, info.gid
    );
    if info.kind == PathKind::File {
        text.push_str(&format!(", {} bytes", info.size));
    }
    text
}

/// Compare what is at the path with what the check expects.
pub(crate) fn judge(check: &FileCheck, found: &Found, redaction: &Redaction) -> Verdict {
    let path = &check.path;
    let (at, info) = match found {
        Found::Missing if check.exists => return Verdict::Fail(format!("{path} does not exist")),
        Found::Dangling { target } if check.exists => {
            return Verdict::Fail(format!(
                "{path} is a symlink to {target}, which does not exist"
            ));
        }
        Found::Missing | Found::Dangling { .. } => {
            return Verdict::Pass(format!("{path} does not exist"));
        }
        Found::Loop => return Verdict::Fail(format!("{path}: too many levels of symlinks")),
        Found::At { path: at, info } => (at, info),
    };
    let shown = if at == path {
        format!("{path}: ")
    } else {
        format!("{path} -> {at}: ")
    };
    if !check.exists {
        return Verdict::Fail(format!(
            "{shown}exists ({}), expected it not to",
            describe(info)
        ));
    }
    let mut wrong = Vec::new();
    if let Some(needle) = &check.contains {
        match &info.content {
            Some(content) if info.kind == PathKind::File => {
                if !contains(content, needle) {
                    let searched = if info.size > PathInfo::CONTENT_CAP {
                        format!(" (in its first {} MiB)", PathInfo::CONTENT_CAP >> 20)
                    } else {
                        String::new()
                    };
                    wrong.push(format!(
                        "does not contain {needle:?}{searched}; it starts {:?}",
                        head(content, 120, redaction)
                    ));
                }
            }
            _ => wrong.push(format!(
                "is a {}, not a file: it cannot contain {needle:?}",
                info.kind
            )),
        }
    }
    if let Some(mode) = check.mode {
        if info.mode != mode.bits() {
            wrong.push(format!("mode {:#o} (expected {mode})", info.mode));
        }
    }
    if let Some(owner) = check.owner {
        if (info.uid, info.gid) != (owner.uid, owner.gid) {
            wrong.push(format!(
                "owner {}:{} (expected {owner})",
                info.uid, info.gid
            ));
        }
    }
    if wrong.is_empty() {
        let mut detail = format!("{shown}{}", describe(info));
        if let Some(needle) = &check.contains {
            detail.push_str(&format!(", contains {needle:?}"));
        }
        Verdict::Pass(detail)
    } else {
        Verdict::Fail(format!("{shown}{}", wrong.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_recipe::{Mode, Owner};

    fn info(kind: PathKind, mode: u32, owner: (u32, u32), content: Option<&str>) -> PathInfo {
        PathInfo {
            kind,
            mode,
            uid: owner.0,
            gid: owner.1,
            size: content.map_or(0, |c| c.len() as u64),
            content: content.map(|c| c.as_bytes().to_vec()),
            link_target: None,
        }
    }

    fn file_check(path: &str) -> FileCheck {
        FileCheck {
            path: path.into(),
            exists: true,
            contains: None,
            mode: None,
            owner: None,
        }
    }

    #[track_caller]
    fn check(check: &FileCheck, found: Found, passed: bool, detail: &str) {
        let (ok, d) = match judge(check, &found, &Redaction::none()) {
            Verdict::Pass(d) => (true, d),
            Verdict::Fail(d) => (false, d),
            Verdict::Exited(c) => panic!("exit {c}"),
        };
        assert_eq!((ok, d.as_str()), (passed, detail));
    }

    #[test]
    fn existence() {
        let motd = Found::At {
            path: "/etc/motd".into(),
            info: info(PathKind::File, 0o644, (0, 0), Some("golden\n")),
        };
        check(
            &file_check("/etc/motd"),
            motd.clone(),
            true,
            "/etc/motd: file, mode 0o644, owner 0:0, 7 bytes",
        );
        check(
            &file_check("/etc/motd"),
            Found::Missing,
            false,
            "/etc/motd does not exist",
        );
        let absent = FileCheck {
            exists: false,
            ..file_check("/etc/motd")
        };
        check(&absent, Found::Missing, true, "/etc/motd does not exist");
        check(
            &absent,
            Found::Dangling {
                target: "/nowhere".into(),
            },
            true,
            "/etc/motd does not exist",
        );
        check(
            &absent,
            motd,
            false,
            "/etc/motd: exists (file, mode 0o644, owner 0:0, 7 bytes), expected it not to",
        );
        check(
            &file_check("/bin/sh"),
            Found::Dangling {
                target: "/bin/busybox".into(),
            },
            false,
            "/bin/sh is a symlink to /bin/busybox, which does not exist",
        );
        check(
            &file_check("/a"),
            Found::Loop,
            false,
            "/a: too many levels of symlinks",
        );
    }

    #[test]
    fn content_mode_and_owner() {
        let found = || Found::At {
            path: "/www/index.html".into(),
            info: info(PathKind::File, 0o4750, (1000, 1000), Some("<h1>kiln</h1>")),
        };
        let good = FileCheck {
            contains: Some("kiln".into()),
            mode: Some(Mode::new(0o4750).expect("mode")),
            owner: Some(Owner {
                uid: 1000,
                gid: 1000,
            }),
            ..file_check("/www/index.html")
        };
        check(
            &good,
            found(),
            true,
            "/www/index.html: file, mode 0o4750, owner 1000:1000, 13 bytes, contains \"kiln\"",
        );
        let bad = FileCheck {
            contains: Some("golden".into()),
            mode: Some(Mode::new(0o644).expect("mode")),
            owner: Some(Owner { uid: 0, gid: 0 }),
            ..file_check("/www/index.html")
        };
        check(
            &bad,
            found(),
            false,
            "/www/index.html: does not contain \"golden\"; it starts \"<h1>kiln</h1>\"; mode 0o4750 (expected 0o644); owner 1000:1000 (expected 0:0)",
        );
        let dir = Found::At {
            path: "/www".into(),
            info: info(PathKind::Dir, 0o755, (0, 0), None),
        };
        let in_dir = FileCheck {
            contains: Some("x".into()),
            ..file_check("/www")
        };
        check(
            &in_dir,
            dir,
            false,
            "/www: is a folder, not a file: it cannot contain \"x\"",
        );
    }

    #[test]
    fn followed_links_are_shown() {
        let busybox = Found::At {
            path: "/bin/busybox".into(),
            info: info(PathKind::File, 0o755, (0, 0), Some("ELF")),
        };
        check(
            &file_check("/bin/sh"),
            busybox,
            true,
            "/bin/sh -> /bin/busybox: file, mode 0o755, owner 0:0, 3 bytes",
        );
    }

    #[test]
    fn link_targets_resolve_like_paths() {
        assert_eq!(follow("/bin/sh", "busybox"), "/bin/busybox");
        assert_eq!(follow("/bin/sh", "/usr/bin/busybox"), "/usr/bin/busybox");
        assert_eq!(follow("/usr/bin/x", "../../bin/./y"), "/bin/y");
        assert_eq!(
            follow("/x", "../../../y"),
            "/y",
            "no climbing above the root"
        );
        assert_eq!(follow("/a/b", ""), "/a");
    }
}
