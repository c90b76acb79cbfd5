//! plan_copy: the context boundary, excludes, destinations and modes.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::TestResult;
use kiln_image::{CopySpec, EntryKind, ImageError, LayerEntry, plan_copy};

fn spec(src: &str, dest: &str) -> CopySpec {
    CopySpec {
        src: src.into(),
        dest: dest.into(),
        mode: None,
        uid: 0,
        gid: 0,
        exclude: vec![],
        preserve: false,
    }
}

fn file(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn paths(entries: &[LayerEntry]) -> Vec<String> {
    let mut p: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    p.sort();
    p
}

/// The src an escape error names, or a description of what came back.
fn escape_src(result: Result<Vec<LayerEntry>, ImageError>) -> String {
    match result {
        Err(ImageError::ContextEscape { src, .. }) => src,
        other => format!("not an escape: {other:?}"),
    }
}

/// A context folder inside a temporary folder that also holds a file
/// outside the context.
fn setup() -> std::io::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let ctx = dir.path().join("ctx");
    file(&ctx.join("app/main.sh"), "#!/bin/sh\n", 0o700)?;
    file(&ctx.join("app/data.txt"), "data\n", 0o600)?;
    file(&dir.path().join("outside/secret"), "secret\n", 0o644)?;
    Ok((dir, ctx))
}

#[test]
fn refuses_parent_components() -> TestResult {
    let (_dir, ctx) = setup()?;
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("../outside/secret", "/x"))),
        "../outside/secret"
    );
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("app/../../outside/", "/x/"))),
        "app/../../outside/"
    );
    Ok(())
}

#[test]
fn refuses_absolute_src() -> TestResult {
    let (dir, ctx) = setup()?;
    let abs = dir
        .path()
        .join("outside/secret")
        .to_string_lossy()
        .into_owned();
    assert_eq!(escape_src(plan_copy(&ctx, &spec(&abs, "/x"))), abs);
    // Even an absolute path that lies inside the context: src is relative.
    let inside = ctx.join("app/data.txt").to_string_lossy().into_owned();
    assert_eq!(escape_src(plan_copy(&ctx, &spec(&inside, "/x"))), inside);
    Ok(())
}

#[test]
fn refuses_a_src_symlink_leading_out() -> TestResult {
    let (dir, ctx) = setup()?;
    symlink(dir.path().join("outside/secret"), ctx.join("innocent"))?;
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("innocent", "/x"))),
        "innocent"
    );
    Ok(())
}

#[test]
fn refuses_a_parent_symlink_leading_out() -> TestResult {
    let (dir, ctx) = setup()?;
    symlink(dir.path().join("outside"), ctx.join("door"))?;
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("door/secret", "/x"))),
        "door/secret"
    );
    assert_eq!(escape_src(plan_copy(&ctx, &spec("door/", "/x/"))), "door/");
    Ok(())
}

#[test]
fn symlinks_inside_a_copied_folder_are_stored_verbatim_wherever_they_point() -> TestResult {
    // A debootstrap root holds /etc/localtime -> /usr/share/zoneinfo/... and
    // relative links: kiln never follows them, so they read nothing outside.
    let (dir, ctx) = setup()?;
    let absolute = dir.path().join("outside/secret");
    symlink(&absolute, ctx.join("app/abs"))?;
    symlink("../../outside/secret", ctx.join("app/up"))?;
    symlink("../../nowhere/at/all", ctx.join("app/dangling"))?;
    let entries = plan_copy(&ctx, &spec("app/", "/app/"))?;
    let target_of = |path: &str| {
        entries.iter().find_map(|e| match &e.kind {
            EntryKind::Symlink { target } if e.path == path => Some(target.clone()),
            _ => None,
        })
    };
    assert_eq!(
        target_of("/app/abs").as_deref(),
        absolute.to_str(),
        "absolute target kept"
    );
    assert_eq!(
        target_of("/app/up").as_deref(),
        Some("../../outside/secret")
    );
    assert_eq!(
        target_of("/app/dangling").as_deref(),
        Some("../../nowhere/at/all")
    );
    Ok(())
}

#[test]
fn preserve_keeps_modes_owners_and_fifos() -> TestResult {
    let (_dir, ctx) = setup()?;
    file(&ctx.join("app/shadow"), "root:*:", 0o640)?;
    fs::set_permissions(ctx.join("app"), fs::Permissions::from_mode(0o1777))?;
    std::os::unix::fs::chown(ctx.join("app/shadow"), Some(0), Some(42))?;
    let fifo = ctx.join("app/pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success(), "mkfifo");
    let mut preserved = spec("app/", "/srv/");
    preserved.preserve = true;
    let entries = plan_copy(&ctx, &preserved)?;
    let get = |path: &str| {
        entries
            .iter()
            .find(|e| e.path == path)
            .map(|e| (e.kind.clone(), e.mode, e.uid, e.gid))
    };
    assert_eq!(get("/srv").map(|e| e.1), Some(0o1777));
    assert_eq!(get("/srv/shadow").map(|e| (e.1, e.3)), Some((0o640, 42)));
    assert_eq!(get("/srv/pipe").map(|e| e.0), Some(EntryKind::Fifo));
    // Without preserve a fifo is refused and modes are git's.
    assert!(matches!(
        plan_copy(&ctx, &spec("app/", "/srv/")),
        Err(ImageError::UnsupportedFileType { .. })
    ));
    Ok(())
}

#[test]
fn hard_links_of_one_layer_become_tar_hard_links() -> TestResult {
    let (_dir, ctx) = setup()?;
    fs::hard_link(ctx.join("app/main.sh"), ctx.join("app/other.sh"))?;
    let mut entries = plan_copy(&ctx, &spec("app/", "/app/"))?;
    // The same source copied a second time is a copy, not a link.
    entries.extend(plan_copy(&ctx, &spec("app/main.sh", "/copy.sh"))?);
    kiln_image::link_hard_links(&mut entries)?;
    let kind_of = |path: &str| {
        entries
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.kind.clone())
    };
    assert!(matches!(
        kind_of("/app/main.sh"),
        Some(EntryKind::File { .. })
    ));
    assert_eq!(
        kind_of("/app/other.sh"),
        Some(EntryKind::HardLink {
            target: "/app/main.sh".into()
        })
    );
    assert!(matches!(kind_of("/copy.sh"), Some(EntryKind::File { .. })));
    Ok(())
}

#[test]
fn a_symlink_staying_inside_is_copied_as_a_symlink() -> TestResult {
    let (_dir, ctx) = setup()?;
    symlink("data.txt", ctx.join("app/alias"))?;
    symlink("../app/main.sh", ctx.join("app/loop-back"))?;
    let entries = plan_copy(&ctx, &spec("app/", "/opt/app/"))?;
    let alias = entries.iter().find(|e| e.path == "/opt/app/alias");
    assert_eq!(
        alias.map(|e| (&e.kind, e.mode)),
        Some((
            &EntryKind::Symlink {
                target: "data.txt".into()
            },
            0o777
        ))
    );
    assert!(entries.iter().any(|e| e.kind
        == EntryKind::Symlink {
            target: "../app/main.sh".into()
        }));
    Ok(())
}

#[test]
fn a_symlink_as_src_inside_the_context_is_followed() -> TestResult {
    let (_dir, ctx) = setup()?;
    symlink("app/main.sh", ctx.join("entry"))?;
    let entries = plan_copy(&ctx, &spec("entry", "/bin/entry"))?;
    assert_eq!(entries.len(), 1);
    assert!(
        matches!(&entries[0].kind, EntryKind::File { source } if source.ends_with("app/main.sh"))
    );
    assert_eq!(entries[0].mode, 0o755);
    Ok(())
}

#[test]
fn missing_src_is_named() -> TestResult {
    let (_dir, ctx) = setup()?;
    match plan_copy(&ctx, &spec("app/nope.txt", "/x")) {
        Err(e @ ImageError::SourceMissing { .. }) => {
            assert!(e.to_string().contains("app/nope.txt"), "{e}")
        }
        other => panic!("expected SourceMissing, got {other:?}"),
    }
    Ok(())
}

#[test]
fn folder_copy_includes_dest_and_subfolders_and_applies_excludes() -> TestResult {
    let (_dir, ctx) = setup()?;
    file(&ctx.join("app/cache/big.bin"), "x", 0o644)?;
    file(&ctx.join("app/deep/er/keep.txt"), "k", 0o644)?;
    file(&ctx.join("app/deep/er/drop.tmp"), "t", 0o644)?;
    file(&ctx.join("app/keep.tmp"), "t", 0o644)?;
    fs::create_dir_all(ctx.join("app/empty"))?;
    let mut s = spec("app/", "/srv/app/");
    s.exclude = vec!["**/*.tmp".into(), "cache/".into(), "!keep.tmp".into()];
    let entries = plan_copy(&ctx, &s)?;
    assert_eq!(
        paths(&entries),
        [
            "/srv/app",
            "/srv/app/data.txt",
            "/srv/app/deep",
            "/srv/app/deep/er",
            "/srv/app/deep/er/keep.txt",
            "/srv/app/empty",
            "/srv/app/keep.tmp",
            "/srv/app/main.sh",
        ]
    );
    for e in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        assert_eq!(e.mode, 0o755, "{}", e.path);
    }
    Ok(())
}

#[test]
fn modes_follow_git_unless_given() -> TestResult {
    let (_dir, ctx) = setup()?;
    let mode_of = |entries: &[LayerEntry], path: &str| {
        entries.iter().find(|e| e.path == path).map(|e| e.mode)
    };
    let plain = plan_copy(&ctx, &spec("app/", "/a/"))?;
    assert_eq!(mode_of(&plain, "/a/main.sh"), Some(0o755));
    assert_eq!(mode_of(&plain, "/a/data.txt"), Some(0o644));
    let mut s = spec("app/", "/a/");
    s.mode = Some(0o640);
    let given = plan_copy(&ctx, &s)?;
    assert_eq!(mode_of(&given, "/a/main.sh"), Some(0o640));
    assert_eq!(mode_of(&given, "/a"), Some(0o755));
    Ok(())
}

#[test]
fn file_dest_ending_in_slash_keeps_the_name() -> TestResult {
    let (_dir, ctx) = setup()?;
    let mut s = spec("app/data.txt", "/etc/");
    s.uid = 7;
    s.gid = 8;
    let entries = plan_copy(&ctx, &s)?;
    assert_eq!(paths(&entries), ["/etc/data.txt"]);
    assert_eq!((entries[0].uid, entries[0].gid), (7, 8));
    Ok(())
}

#[test]
fn folder_and_file_mismatches_are_explained() -> TestResult {
    let (_dir, ctx) = setup()?;
    assert!(matches!(
        plan_copy(&ctx, &spec("app", "/a")),
        Err(ImageError::InvalidCopy { .. })
    ));
    assert!(matches!(
        plan_copy(&ctx, &spec("app/data.txt/", "/a/")),
        Err(ImageError::InvalidCopy { .. })
    ));
    assert!(matches!(
        plan_copy(&ctx, &spec("app/", "relative/")),
        Err(ImageError::InvalidCopy { .. })
    ));
    assert!(matches!(
        plan_copy(&ctx, &spec("app/", "/a/../b/")),
        Err(ImageError::InvalidCopy { .. })
    ));
    Ok(())
}

#[test]
fn sockets_are_refused() -> TestResult {
    let (_dir, ctx) = setup()?;
    let _socket = std::os::unix::net::UnixListener::bind(ctx.join("app/sock"))?;
    assert!(matches!(
        plan_copy(&ctx, &spec("app/", "/a/")),
        Err(ImageError::UnsupportedFileType { .. })
    ));
    Ok(())
}

#[test]
fn the_whole_context_can_be_copied_to_the_root() -> TestResult {
    let (_dir, ctx) = setup()?;
    let entries = plan_copy(&ctx, &spec("./", "/"))?;
    assert_eq!(paths(&entries), ["/app", "/app/data.txt", "/app/main.sh"]);
    Ok(())
}

/// A context for globs: pages at two depths, a folder of folders, a link
/// inside and one leading out.
fn glob_setup() -> std::io::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let (dir, ctx) = setup()?;
    file(&ctx.join("site/index.html"), "<h1>i</h1>\n", 0o644)?;
    file(&ctx.join("site/about.html"), "<h1>a</h1>\n", 0o755)?;
    file(&ctx.join("site/notes.txt"), "n\n", 0o644)?;
    file(&ctx.join("site/draft.tmp.html"), "d\n", 0o644)?;
    file(&ctx.join("site/blog/post1.html"), "p1\n", 0o644)?;
    file(&ctx.join("site/blog/2026/post2.html"), "p2\n", 0o644)?;
    file(&ctx.join("site/img/a.png"), "a\n", 0o644)?;
    file(&ctx.join("site/img/b.png"), "b\n", 0o644)?;
    file(&ctx.join("site/img/c.png"), "c\n", 0o644)?;
    fs::create_dir_all(ctx.join("plugins/one"))?;
    Ok((dir, ctx))
}

#[test]
fn a_glob_copies_its_matching_files_into_dest_sorted() -> TestResult {
    let (_dir, ctx) = glob_setup()?;
    let entries = plan_copy(&ctx, &spec("site/*.html", "/www/"))?;
    // Folders are not copied by `*`; each file keeps its git-like mode.
    let got: Vec<(String, u32)> = entries.iter().map(|e| (e.path.clone(), e.mode)).collect();
    assert_eq!(
        got,
        [
            ("/www/about.html".to_owned(), 0o755),
            ("/www/draft.tmp.html".to_owned(), 0o644),
            ("/www/index.html".to_owned(), 0o644),
            ("/www".to_owned(), 0o755),
        ]
    );
    assert!(matches!(
        &entries[0].kind,
        EntryKind::File { source } if source.ends_with("site/about.html")
    ));
    // `?` and `[...]` within one name.
    let pngs = plan_copy(&ctx, &spec("site/img/[ab].png", "/img/"))?;
    assert_eq!(paths(&pngs), ["/img", "/img/a.png", "/img/b.png"]);
    let one = plan_copy(&ctx, &spec("site/img/?.png", "/i/"))?;
    assert_eq!(paths(&one), ["/i", "/i/a.png", "/i/b.png", "/i/c.png"]);
    Ok(())
}

#[test]
fn double_star_crosses_folders_and_keeps_the_path_below_the_base() -> TestResult {
    let (_dir, ctx) = glob_setup()?;
    let mut s = spec("site/**/*.html", "/www/");
    s.exclude = vec!["*.tmp.html".into(), "blog/2026/".into()];
    let entries = plan_copy(&ctx, &s)?;
    assert_eq!(
        paths(&entries),
        [
            "/www",
            "/www/about.html",
            "/www/blog/post1.html",
            "/www/index.html"
        ]
    );
    // A wildcard in the first component: the base is the context itself.
    let all = plan_copy(&ctx, &spec("*/blog/**", "/b/"))?;
    assert_eq!(
        paths(&all),
        [
            "/b",
            "/b/site/blog/2026/post2.html",
            "/b/site/blog/post1.html"
        ]
    );
    Ok(())
}

#[test]
fn a_glob_that_matches_no_file_is_no_match() -> TestResult {
    let (_dir, ctx) = glob_setup()?;
    for glob in ["site/*.css", "nowhere/*.html", "plugins/*", "site/*"] {
        let result = plan_copy(&ctx, &spec(glob, "/x/"));
        if glob == "site/*" {
            // Files at the first level match; the folders beside them do not.
            assert_eq!(result?.len(), 5, "{glob}");
            continue;
        }
        match result {
            Err(e @ ImageError::NoMatch { .. }) => {
                assert_eq!(e.kind(), kiln_image::ErrorKind::Input);
                assert!(e.to_string().contains(glob), "{e}");
            }
            other => panic!("{glob}: expected NoMatch, got {other:?}"),
        }
    }
    // dest must be a folder.
    assert!(matches!(
        plan_copy(&ctx, &spec("site/*.html", "/www")),
        Err(ImageError::InvalidCopy { .. })
    ));
    Ok(())
}

#[test]
fn glob_matches_that_lead_out_of_the_context_are_refused() -> TestResult {
    let (dir, ctx) = glob_setup()?;
    // A matched symlink leading out is refused like any src ...
    symlink(
        dir.path().join("outside/secret"),
        ctx.join("site/leak.html"),
    )?;
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("site/*.html", "/www/"))),
        "site/*.html"
    );
    fs::remove_file(ctx.join("site/leak.html"))?;
    // ... one leading inside is followed; one to a folder is not a file.
    symlink("index.html", ctx.join("site/home.html"))?;
    symlink("blog", ctx.join("site/posts.html"))?;
    let entries = plan_copy(&ctx, &spec("site/*.html", "/www/"))?;
    assert_eq!(
        paths(&entries),
        [
            "/www",
            "/www/about.html",
            "/www/draft.tmp.html",
            "/www/home.html",
            "/www/index.html"
        ]
    );
    // A base folder that is a symlink out of the context, and `..`.
    symlink(dir.path().join("outside"), ctx.join("door"))?;
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("door/*", "/x/"))),
        "door/*"
    );
    assert_eq!(
        escape_src(plan_copy(&ctx, &spec("../outside/*", "/x/"))),
        "../outside/*"
    );
    Ok(())
}
