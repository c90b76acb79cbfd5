//! What goes into a layer ([`LayerEntry`]) and how a copy from the build
//! context becomes entries ([`plan_copy`]): the context boundary and the
//! mode normalisation are enforced here, before anything is written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::ImageError;

/// One file, folder or symlink of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Absolute in-image path, normalised: starts with `/`, no trailing `/`,
    /// no empty, `.` or `..` components.
    pub path: String,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
}

/// The kind of a [`LayerEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose content is read from `source` on the host when
    /// the layer is written.
    File {
        /// The host file to read.
        source: PathBuf,
    },
    /// A folder.
    Dir,
    /// A symbolic link, stored as is and never followed.
    Symlink {
        /// The link's target.
        target: String,
    },
    /// A hard link to a regular file of the same layer, stored as a tar
    /// hard link. The writer makes the first path of each group (in byte
    /// order) the file and the others links to it, so the group's order in
    /// the plan does not matter.
    HardLink {
        /// Absolute in-image path of a [`EntryKind::File`] (or another
        /// member of its group) in the same layer.
        target: String,
    },
    /// A character device node.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One copy from the build context into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Path relative to the context. A trailing `/` copies a folder's
    /// content recursively; without it, `src` must be a file.
    pub src: String,
    /// Absolute in-image path. For a folder copy, the folder the content goes
    /// into (a trailing `/` is customary). For a file, the file's path, or a
    /// folder ending in `/` that the file goes into under its own name.
    pub dest: String,
    /// Permission bits for the copied regular files; see [`plan_copy`].
    pub mode: Option<u32>,
    /// Numeric owner of every entry.
    pub uid: u32,
    /// Numeric group of every entry.
    pub gid: u32,
    /// gitignore-style globs, relative to `src`, of what a folder copy
    /// leaves out (`**/*.tmp`, `cache/`, `!keep.tmp`). Ignored when `src`
    /// is a file.
    pub exclude: Vec<String>,
    /// Keep each entry's exact permission bits, numeric owner and group,
    /// device nodes and fifos from the source; `mode`, `uid` and `gid` are
    /// then not used.
    pub preserve: bool,
}

/// Turn one copy into layer entries.
///
/// - **Context boundary.** A `src` that leaves `context`, whether through
///   `..`, by being absolute, or through a symlink (`src` itself or one of
///   its parents) that resolves outside it, is refused with
///   [`ImageError::ContextEscape`] naming `src`. A missing `src` is
///   [`ImageError::SourceMissing`]. A symlink as `src` itself is followed
///   (its target's content is copied); a symlink inside a copied folder is
///   stored as it is, wherever it points: it is never followed, so it reads
///   nothing outside the context.
/// - **Folders.** A folder copy yields the destination folder itself (unless
///   it is `/`) and every subfolder as folder entries, and skips what
///   `exclude` matches (an excluded folder is skipped whole).
/// - **Modes.** Raw permission bits depend on the umask of whoever checked
///   the files out, so kiln normalises them the way git does, to build the
///   same bytes everywhere. This refines the recipe format's "defaults to
///   the source's permission bits": with `mode` unset, a regular file gets
///   `0o755` if any execute bit is set on the source, else `0o644`; folders
///   get `0o755`; symlinks `0o777`. With `mode` set, it applies to regular
///   files only (on a folder copy, folders stay `0o755`).
/// - **Preserve.** With [`CopySpec::preserve`], every entry keeps its own
///   permission bits (setuid, setgid, sticky included) and numeric owner
///   and group, and device nodes and fifos are copied as such.
///
/// Sockets are refused, and so are devices and fifos unless preserved;
/// names that are not UTF-8 too. Hard links are found by
/// [`link_hard_links`], over a whole layer.
pub fn plan_copy(context: &Path, spec: &CopySpec) -> Result<Vec<LayerEntry>, ImageError> {
    plan_copy_noting(context, spec, &mut FileMetadata::new())
}

/// The host metadata of regular files, by host path, as a walk read it:
/// handed on so that nothing after the walk needs to stat them again.
pub type FileMetadata = HashMap<PathBuf, std::fs::Metadata>;

/// [`plan_copy`], noting in `files` the metadata the walk of a folder copy
/// read for each regular file (by its source path). Files it did not walk
/// to (a single file or a glob's matches) may be missing from it.
pub fn plan_copy_noting(
    context: &Path,
    spec: &CopySpec,
    files: &mut FileMetadata,
) -> Result<Vec<LayerEntry>, ImageError> {
    let escape = |reason: String| ImageError::ContextEscape {
        src: spec.src.clone(),
        reason,
    };
    let invalid = |reason: &str| ImageError::InvalidCopy {
        src: spec.src.clone(),
        reason: reason.to_owned(),
    };

    let folder_copy = spec.src.ends_with('/');
    let rel = Path::new(spec.src.trim_end_matches('/'));
    if spec.src.starts_with('/') {
        return Err(escape(
            "it is an absolute path; src is relative to the context".into(),
        ));
    }
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(escape("it climbs out with '..'".into()));
    }
    let ctx = context.canonicalize().map_err(ImageError::io(context))?;
    if is_glob(&spec.src) {
        return plan_glob(&ctx, spec);
    }
    let host = ctx.join(rel);
    let resolved = match resolve(&ctx, &host)? {
        Resolved::Inside(p) => p,
        Resolved::Outside(p) => {
            return Err(escape(format!(
                "it resolves to {} through a symlink",
                p.display()
            )));
        }
        Resolved::Missing => {
            return Err(ImageError::SourceMissing {
                src: spec.src.clone(),
                path: host,
            });
        }
    };
    let meta = std::fs::metadata(&resolved).map_err(ImageError::io(&resolved))?;
    let dest_is_dir = spec.dest.ends_with('/') && spec.dest != "/";
    let dest = if spec.dest == "/" {
        "/"
    } else {
        spec.dest.trim_end_matches('/')
    };
    check_image_path(dest).map_err(|reason| ImageError::InvalidCopy {
        src: spec.src.clone(),
        reason: format!("dest {:?} is not usable: {reason}", spec.dest),
    })?;

    if folder_copy {
        if !meta.is_dir() {
            return Err(invalid("src ends with '/' but is not a folder"));
        }
        let matcher = exclude_matcher(&resolved, &spec.exclude)?;
        let mut out = Vec::new();
        if dest != "/" {
            let mut top = entry(dest.to_owned(), EntryKind::Dir, 0o755, spec);
            if spec.preserve {
                keep_metadata(&mut top, &meta);
            }
            out.push(top);
        }
        let mut walk = Walk {
            spec,
            matcher: &matcher,
            dest,
            out: &mut out,
            files,
        };
        walk.dir(&resolved, "")?;
        return Ok(out);
    }

    if meta.is_dir() {
        return Err(invalid(
            "src is a folder: end it with '/' to copy its content",
        ));
    }
    if !meta.is_file() {
        return Err(ImageError::UnsupportedFileType { path: resolved });
    }
    let path = if dest_is_dir {
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| invalid("src has no file name"))?;
        join(dest, name)
    } else if dest == "/" {
        return Err(invalid(
            "dest \"/\" is a folder: name the file, or end dest with '/'",
        ));
    } else {
        dest.to_owned()
    };
    Ok(vec![file_entry(spec, path, resolved, &meta)])
}

/// A copied regular file's entry: `source` on the host at `path` in the
/// image.
fn file_entry(
    spec: &CopySpec,
    path: String,
    source: PathBuf,
    meta: &std::fs::Metadata,
) -> LayerEntry {
    let mode = file_mode(spec.mode, meta.permissions().mode());
    let mut e = entry(path, EntryKind::File { source }, mode, spec);
    if spec.preserve {
        keep_metadata(&mut e, meta);
    }
    e
}

/// Whether a `src` is a glob: it holds `*`, `?` or `[` (so `**` and
/// `[...]` too). kiln-recipe's `is_glob` says the same of the recipe.
pub fn is_glob(src: &str) -> bool {
    src.contains(['*', '?', '['])
}

/// A glob `src`: every file it matches (relative to the context, `*`, `?`
/// and `[...]` within one path component, `**` across any number) goes
/// into the folder `dest`, at its path below the glob's *base*, the folder
/// of the components before the first one with a wildcard (`docs/**/*.html`
/// puts `docs/a/b.html` at `DEST/a/b.html`). Folders are walked, never
/// copied by themselves: a glob selects files and symlinks, and a matched
/// file brings its parent folders. Symlinks are not followed while walking;
/// a matched symlink is a `src` of its own (followed, refused when it leads
/// out of the context, skipped when it leads to a folder). `exclude` is
/// relative to the base. No match at all is [`ImageError::NoMatch`].
fn plan_glob(ctx: &Path, spec: &CopySpec) -> Result<Vec<LayerEntry>, ImageError> {
    let invalid = |reason: String| ImageError::InvalidCopy {
        src: spec.src.clone(),
        reason,
    };
    if !spec.dest.ends_with('/') {
        return Err(invalid(format!(
            "src is a glob, which copies its matches into a folder: end dest with '/' (\"{}/\")",
            spec.dest
        )));
    }
    let dest = if spec.dest == "/" {
        "/"
    } else {
        spec.dest.trim_end_matches('/')
    };
    check_image_path(dest)
        .map_err(|reason| invalid(format!("dest {:?} is not usable: {reason}", spec.dest)))?;
    let glob = globset::GlobBuilder::new(&spec.src)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| invalid(format!("it is not a valid glob: {}", e.kind())))?
        .compile_matcher();
    let components: Vec<&str> = spec.src.split('/').collect();
    let fixed = components.iter().take_while(|c| !is_glob(c)).count();
    let base_rel = components[..fixed].join("/");
    // Without `**`, nothing deeper than the glob's own components matches.
    let depth = if spec.src.contains("**") {
        usize::MAX
    } else {
        components.len() - fixed
    };
    let base = match resolve(ctx, &ctx.join(&base_rel))? {
        Resolved::Inside(p) if p.is_dir() => p,
        Resolved::Outside(p) => {
            return Err(ImageError::ContextEscape {
                src: spec.src.clone(),
                reason: format!(
                    "its folder {base_rel:?} resolves to {} through a symlink",
                    p.display()
                ),
            });
        }
        _ => {
            return Err(ImageError::NoMatch {
                src: spec.src.clone(),
                context: ctx.to_path_buf(),
            });
        }
    };
    let matcher = exclude_matcher(&base, &spec.exclude)?;
    let mut found = Vec::new();
    let mut search = GlobSearch {
        glob: &glob,
        excluded: &matcher,
        base_rel: &base_rel,
        depth,
        found: &mut found,
    };
    search.dir(&base, "", 1)?;
    let mut out = Vec::with_capacity(found.len());
    for (below, host) in found {
        let image_path = join(dest, &below);
        let meta = std::fs::symlink_metadata(&host).map_err(ImageError::io(&host))?;
        if meta.file_type().is_symlink() {
            let shown = if base_rel.is_empty() {
                below.clone()
            } else {
                format!("{base_rel}/{below}")
            };
            match resolve(ctx, &host)? {
                Resolved::Inside(target) => {
                    let target_meta =
                        std::fs::metadata(&target).map_err(ImageError::io(&target))?;
                    if target_meta.is_dir() {
                        continue;
                    }
                    if !target_meta.is_file() {
                        return Err(ImageError::UnsupportedFileType { path: target });
                    }
                    out.push(file_entry(spec, image_path, target, &target_meta));
                }
                Resolved::Outside(p) => {
                    return Err(ImageError::ContextEscape {
                        src: spec.src.clone(),
                        reason: format!(
                            "its match {shown:?} resolves to {} through a symlink",
                            p.display()
                        ),
                    });
                }
                Resolved::Missing => {
                    return Err(ImageError::SourceMissing {
                        src: spec.src.clone(),
                        path: host,
                    });
                }
            }
        } else if meta.is_file() {
            out.push(file_entry(spec, image_path, host, &meta));
        } else {
            return Err(ImageError::UnsupportedFileType { path: host });
        }
    }
    if out.is_empty() {
        return Err(ImageError::NoMatch {
            src: spec.src.clone(),
            context: ctx.to_path_buf(),
        });
    }
    if dest != "/" {
        out.push(entry(dest.to_owned(), EntryKind::Dir, 0o755, spec));
    }
    Ok(out)
}

/// The walk below a glob's base: every entry that is not a folder, whose
/// path (from the context) the glob matches and `exclude` does not.
struct GlobSearch<'a> {
    glob: &'a globset::GlobMatcher,
    excluded: &'a Gitignore,
    base_rel: &'a str,
    depth: usize,
    /// (path below the base, host path), in walk order: sorted by name at
    /// every level.
    found: &'a mut Vec<(String, PathBuf)>,
}

impl GlobSearch<'_> {
    fn dir(&mut self, dir: &Path, rel: &str, level: usize) -> Result<(), ImageError> {
        for (below, path, meta) in children(dir, rel)? {
            let file_type = meta.file_type();
            if self
                .excluded
                .matched(&below, file_type.is_dir())
                .is_ignore()
            {
                continue;
            }
            if file_type.is_dir() {
                if level < self.depth {
                    self.dir(&path, &below, level + 1)?;
                }
                continue;
            }
            let from_context = if self.base_rel.is_empty() {
                below.clone()
            } else {
                format!("{}/{below}", self.base_rel)
            };
            if self.glob.is_match(&from_context) {
                self.found.push((below, path));
            }
        }
        Ok(())
    }
}

/// Give `e` the source's own permission bits, owner and group.
fn keep_metadata(e: &mut LayerEntry, meta: &std::fs::Metadata) {
    e.mode = meta.mode() & 0o7777;
    e.uid = meta.uid();
    e.gid = meta.gid();
}

/// Device numbers as Linux encodes them in `st_rdev`.
pub(crate) fn device_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// Turn regular files of one layer that are hard links of each other on
/// the host (same device and inode, different source paths, same mode,
/// owner and group) into one file and [`EntryKind::HardLink`]s to it, as
/// tar stores them. The same source copied to two places stays two files:
/// that is a copy, not a link.
pub fn link_hard_links(entries: &mut [LayerEntry]) -> Result<(), ImageError> {
    link_hard_links_noted(entries, &FileMetadata::new())
}

/// [`link_hard_links`], taking each file's metadata from `files` when the
/// walk noted it there (see [`plan_copy_noting`]) instead of reading it
/// again.
pub fn link_hard_links_noted(
    entries: &mut [LayerEntry],
    files: &FileMetadata,
) -> Result<(), ImageError> {
    // (device, inode, mode, uid, gid) -> the group's first path and source.
    type Inode = (u64, u64, u32, u32, u32);
    let mut first: BTreeMap<Inode, (String, PathBuf)> = BTreeMap::new();
    for e in entries.iter_mut() {
        let EntryKind::File { source } = &e.kind else {
            continue;
        };
        let read;
        let meta = match files.get(source) {
            Some(meta) => meta,
            None => {
                read = std::fs::metadata(source).map_err(ImageError::io(source))?;
                &read
            }
        };
        if meta.nlink() < 2 {
            continue;
        }
        let id = (meta.dev(), meta.ino(), e.mode, e.uid, e.gid);
        match first.get(&id) {
            Some((path, first_source)) if first_source != source => {
                e.kind = EntryKind::HardLink {
                    target: path.clone(),
                };
            }
            Some(_) => {}
            None => {
                first.insert(id, (e.path.clone(), source.clone()));
            }
        }
    }
    Ok(())
}

/// Add a folder entry (`0o755`, owned by `uid:gid`) for every parent of an
/// entry that the entries do not already hold, so that an unpacked layer's
/// folders do not take the extractor's defaults and the unpack time.
pub fn add_parent_folders(entries: &mut Vec<LayerEntry>, uid: u32, gid: u32) {
    let present: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let mut missing = BTreeSet::new();
    for e in entries.iter() {
        let mut path = e.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            if parent.is_empty() || present.contains(parent) {
                break;
            }
            missing.insert(parent.to_owned());
            path = parent;
        }
    }
    entries.extend(missing.into_iter().map(|path| LayerEntry {
        path,
        kind: EntryKind::Dir,
        mode: 0o755,
        uid,
        gid,
    }));
}

fn entry(path: String, kind: EntryKind, mode: u32, spec: &CopySpec) -> LayerEntry {
    LayerEntry {
        path,
        kind,
        mode,
        uid: spec.uid,
        gid: spec.gid,
    }
}

/// git's model: executable or not, nothing else of the source's bits.
fn file_mode(given: Option<u32>, source: u32) -> u32 {
    match given {
        Some(m) => m & 0o7777,
        None if source & 0o111 != 0 => 0o755,
        None => 0o644,
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn exclude_matcher(root: &Path, patterns: &[String]) -> Result<Gitignore, ImageError> {
    let mut builder = GitignoreBuilder::new(root);
    for pattern in patterns {
        builder
            .add_line(None, pattern)
            .map_err(|e| ImageError::InvalidExclude {
                pattern: pattern.clone(),
                reason: e.to_string(),
            })?;
    }
    builder.build().map_err(|e| ImageError::InvalidExclude {
        pattern: patterns.join(", "),
        reason: e.to_string(),
    })
}

struct Walk<'a> {
    spec: &'a CopySpec,
    matcher: &'a Gitignore,
    dest: &'a str,
    out: &'a mut Vec<LayerEntry>,
    /// The metadata read for each regular file, by host path.
    files: &'a mut FileMetadata,
}

impl Walk<'_> {
    /// Add what folder `dir` (at `rel` below the copied folder) holds.
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), ImageError> {
        for (child_rel, path, meta) in children(dir, rel)? {
            let file_type = meta.file_type();
            if self
                .matcher
                .matched(&child_rel, file_type.is_dir())
                .is_ignore()
            {
                continue;
            }
            let image_path = join(self.dest, &child_rel);
            let preserve = self.spec.preserve;
            let mut e = if file_type.is_symlink() {
                // Stored verbatim and never followed: where it points is
                // the image's business, not the host's.
                let target = std::fs::read_link(&path).map_err(ImageError::io(&path))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| ImageError::NonUtf8Path { path: path.clone() })?;
                let kind = EntryKind::Symlink {
                    target: target.to_owned(),
                };
                entry(image_path, kind, 0o777, self.spec)
            } else if file_type.is_dir() {
                entry(image_path, EntryKind::Dir, 0o755, self.spec)
            } else if file_type.is_file() {
                let mode = file_mode(self.spec.mode, meta.permissions().mode());
                self.files.insert(path.clone(), meta.clone());
                let kind = EntryKind::File {
                    source: path.clone(),
                };
                entry(image_path, kind, mode, self.spec)
            } else if preserve && (file_type.is_char_device() || file_type.is_block_device()) {
                let (major, minor) = device_numbers(meta.rdev());
                let kind = if file_type.is_char_device() {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                };
                entry(image_path, kind, 0, self.spec)
            } else if preserve && file_type.is_fifo() {
                entry(image_path, EntryKind::Fifo, 0, self.spec)
            } else {
                return Err(ImageError::UnsupportedFileType { path });
            };
            if preserve {
                keep_metadata(&mut e, &meta);
                // A symlink's own bits mean nothing on Linux; tar stores 0o777.
                if file_type.is_symlink() {
                    e.mode = 0o777;
                }
            }
            self.out.push(e);
            if file_type.is_dir() {
                self.dir(&path, &child_rel)?;
            }
        }
        Ok(())
    }
}

/// What folder `dir` (at `rel` below where a walk started) holds, sorted by
/// name: each child's path below the start, its host path and its own
/// metadata (symlinks not followed).
fn children(dir: &Path, rel: &str) -> Result<Vec<Child>, ImageError> {
    stat_children(dir)?
        .into_iter()
        .map(|(name, meta)| {
            let path = dir.join(&name);
            let name = name
                .to_str()
                .ok_or_else(|| ImageError::NonUtf8Path { path: path.clone() })?;
            let below = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let meta = meta.map_err(ImageError::io(&path))?;
            Ok((below, path, meta))
        })
        .collect()
}

/// A child of a folder: its path below where the walk started, its host
/// path, its own metadata.
type Child = (String, PathBuf, std::fs::Metadata);

/// The names of what folder `dir` holds, sorted (by bytes), each with its
/// own metadata (symlinks not followed) or why it could not be read. Each
/// child is stat-ed relative to the open folder (`fstatat` on its
/// descriptor, not a lookup of the full path), and the folder is closed
/// before this returns, so a walk holds no descriptor per level.
fn stat_children(
    dir: &Path,
) -> Result<Vec<(OsString, std::io::Result<std::fs::Metadata>)>, ImageError> {
    let mut children = std::fs::read_dir(dir)
        .map_err(ImageError::io(dir))?
        .map(|child| child.map(|c| (c.file_name(), c)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ImageError::io(dir))?;
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(children
        .into_iter()
        .map(|(name, child)| (name, child.metadata()))
        .collect())
}

/// Where a host path leads, relative to the (canonical) context.
enum Resolved {
    Inside(PathBuf),
    Outside(PathBuf),
    Missing,
}

/// Follow every symlink of `path`. A dangling symlink is resolved lexically
/// from its folder, so that one pointing out of the context is still caught.
fn resolve(ctx: &Path, path: &Path) -> Result<Resolved, ImageError> {
    let classify = |p: PathBuf| {
        if p.starts_with(ctx) {
            Resolved::Inside(p)
        } else {
            Resolved::Outside(p)
        }
    };
    match path.canonicalize() {
        Ok(p) => Ok(classify(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                // A parent may be a dangling symlink; resolve what exists.
                return Ok(match path.parent().map(|p| resolve(ctx, p)).transpose()? {
                    Some(Resolved::Outside(p)) => Resolved::Outside(p),
                    _ => Resolved::Missing,
                });
            };
            if !meta.file_type().is_symlink() {
                return Ok(Resolved::Missing);
            }
            let target = std::fs::read_link(path).map_err(ImageError::io(path))?;
            let base = match path.parent().map(Path::canonicalize) {
                Some(Ok(p)) => p,
                _ => return Ok(Resolved::Missing),
            };
            let lexical = normalise(&base.join(target));
            Ok(match classify(lexical) {
                Resolved::Inside(_) => Resolved::Missing,
                outside => outside,
            })
        }
        Err(e) => Err(ImageError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether `path` is an absolute, normalised in-image path; why not if not.
pub(crate) fn check_image_path(path: &str) -> Result<(), String> {
    if path == "/" {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("it must start with '/'".into());
    };
    if path.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    for part in rest.split('/') {
        match part {
            "" => return Err("it has an empty component or a trailing '/'".into()),
            "." | ".." => return Err("it has a '.' or '..' component".into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths() {
        for ok in ["/", "/a", "/a/b.c", "/a/..b"] {
            assert_eq!(check_image_path(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a", "/a/", "//a", "/a/./b", "/a/../b", "/a\0"] {
            assert!(check_image_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn git_modes() {
        assert_eq!(file_mode(None, 0o100664), 0o644);
        assert_eq!(file_mode(None, 0o100600), 0o644);
        assert_eq!(file_mode(None, 0o100744), 0o755);
        assert_eq!(file_mode(None, 0o100701), 0o755);
        assert_eq!(file_mode(Some(0o4755), 0o100644), 0o4755);
        assert_eq!(file_mode(Some(0o100640), 0o100755), 0o640);
    }

    #[test]
    fn device_numbers_decode_st_rdev() {
        // /dev/null is 1:3, /dev/ptmx 5:2; a large minor spills high.
        assert_eq!(device_numbers(0x103), (1, 3));
        assert_eq!(device_numbers(0x502), (5, 2));
        assert_eq!(device_numbers(0x0010_0103), (1, 0x103));
    }

    #[test]
    fn parent_folders_are_added_once() {
        let file = |path: &str| LayerEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o700,
            uid: 5,
            gid: 5,
        };
        let mut entries = vec![file("/a/b/c"), file("/a/b/d"), file("/x"), file("/a")];
        add_parent_folders(&mut entries, 1, 2);
        let added: Vec<(&str, u32, u32)> = entries[4..]
            .iter()
            .map(|e| (e.path.as_str(), e.mode, e.uid))
            .collect();
        assert_eq!(added, [("/a/b", 0o755, 1)]);
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(
            normalise(Path::new("/a/b/../../c/./d")),
            PathBuf::from("/c/d")
        );
        assert_eq!(normalise(Path::new("/a/../../..")), PathBuf::from("/"));
    }
}
