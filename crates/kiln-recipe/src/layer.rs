//! `[[layer]]`: file layers (files, dirs, symlinks) and run layers, with the
//! rules that keep the two kinds apart and names unique.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;
use toml::de::DeValue;

use crate::diagnostic::line_of;
use crate::document::{
    Problems, Table, Value, array, array_of_tables, boolean, string, strings, wrong_type,
};
use crate::field::{absolute_path, mode, optional, or_default, owner};
use crate::model::{
    DirEntry, FileCopy, FileLayer, Layer, LayerKind, RunCommand, RunLayer, SymlinkEntry,
};
use crate::section::{declared_help, env_map};
use crate::values::Owner;

const LAYER_KEYS: &[&str] = &[
    "name", "files", "dirs", "symlinks", "owner", "run", "secrets", "env", "network", "user",
    "workdir",
];
const FILE_KEYS: &[&str] = &["files", "dirs", "symlinks"];
const RUN_ONLY_KEYS: &[&str] = &["secrets", "env", "network", "user", "workdir"];
const FILE_COPY_KEYS: &[&str] = &["src", "dest", "mode", "owner", "exclude", "preserve"];
const DIR_KEYS: &[&str] = &["path", "mode", "owner"];
const SYMLINK_KEYS: &[&str] = &["path", "target", "owner"];

/// Every `[[layer]]`, in order, with unique names.
pub(crate) fn layers(
    v: &Value<'_>,
    text: &str,
    declared: &BTreeSet<String>,
    p: &mut Problems,
) -> Option<Vec<Layer>> {
    let items = array_of_tables(v, "layer", p)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    let mut first_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        if let Some(name) = name_of(item) {
            match first_at.get(name.get_ref()) {
                Some(first) => p.fail_help::<()>(
                    name.span(),
                    "second layer with this name",
                    format!(
                        "duplicate layer name {:?}: a layer of that name is already on line {}; layer names must be unique, so rename this one",
                        name.get_ref(),
                        line_of(text, *first)
                    ),
                    "layer names appear in the image history and in build output, so each must say which layer it is",
                ),
                None => {
                    first_at.insert(name.get_ref(), name.span().start);
                    None
                }
            };
        }
        match layer(item, index, declared, p) {
            Some(l) => out.push(l),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The `name` of a `[[layer]]` or `[[check]]`, when it is a string; used to
/// name the table in messages before it is read.
pub(crate) fn name_of<'a>(v: &'a Value<'_>) -> Option<Spanned<&'a str>> {
    let DeValue::Table(t) = v.get_ref() else {
        return None;
    };
    let (_, name) = t.iter().find(|(k, _)| k.get_ref() == "name")?;
    match name.get_ref() {
        DeValue::String(s) if !s.is_empty() => Some(Spanned::new(name.span(), s.as_ref())),
        _ => None,
    }
}

/// `name`, required and not empty.
pub(crate) fn required_name(t: &Table<'_, '_>, p: &mut Problems) -> Option<String> {
    let v = t.require("name", "name = \"...\"", p)?;
    let s = string(v, &t.describe("name"), "name = \"...\"", p)?;
    if s.get_ref().is_empty() {
        return p.fail(
            v.span(),
            "empty",
            format!(
                "{} is empty: give it a name that says what it is",
                t.describe("name")
            ),
        );
    }
    Some(s.get_ref().to_string())
}

fn layer(
    v: &Value<'_>,
    index: usize,
    declared: &BTreeSet<String>,
    p: &mut Problems,
) -> Option<Layer> {
    let what = match name_of(v) {
        Some(name) => format!("layer {:?}", name.get_ref()),
        None => format!("[[layer]] number {}", index + 1),
    };
    let t = Table::of(v, what, "[[layer]] with name = \"...\"", p)?;
    t.deny_unknown(LAYER_KEYS, p);
    let name = required_name(&t, p);
    let file_key = FILE_KEYS.iter().copied().find(|k| t.has(k));
    let kind = match (file_key, t.key_span("run")) {
        (Some(file_key), Some(run)) => {
            p.fail::<()>(
                run,
                "second kind of content",
                format!(
                    "{} has both `{file_key}` and `run`; a layer is either a file layer or a run layer: move `run` into a [[layer]] of its own",
                    t.what
                ),
            );
            // Still read both halves, so their own problems show in this run.
            file_layer(&t, p);
            run_layer(&t, declared, p);
            None
        }
        (None, None) if ["files", "dirs", "symlinks", "run"].iter().any(|k| t.misspells(k)) => None,
        (None, None) => p.fail(
            t.span.clone(),
            "no content",
            format!(
                "{} has no content: add files, dirs or symlinks (a file layer), or run = \"...\" (a run layer)",
                t.what
            ),
        ),
        (Some(file_key), None) => {
            for key in RUN_ONLY_KEYS {
                if let Some(span) = t.key_span(key) {
                    p.fail::<()>(
                        span,
                        "only for run layers",
                        format!(
                            "`{key}` is only for run layers, and {} is a file layer (it has `{file_key}`): remove `{key}`, or put the command that needs it in a run layer",
                            t.what
                        ),
                    );
                }
            }
            file_layer(&t, p).map(LayerKind::Files)
        }
        (None, Some(_)) => {
            if let Some(span) = t.key_span("owner") {
                p.fail::<()>(
                    span,
                    "only for file layers",
                    format!(
                        "`owner` is only for file layers, and {} is a run layer (it has `run`): remove it and change ownership in the command (chown)",
                        t.what
                    ),
                );
            }
            run_layer(&t, declared, p).map(LayerKind::Run)
        }
    };
    Some(Layer {
        name: name?,
        kind: kind?,
    })
}

fn file_layer(t: &Table<'_, '_>, p: &mut Problems) -> Option<FileLayer> {
    let owner_ = or_default(t, "owner", Owner::default(), |v, what| owner(v, what, p));
    let files = entries(
        t,
        "files",
        "files = [{ src = \"rootfs/app\", dest = \"/bin/app\" }]",
        p,
        file_copy,
    );
    let dirs = entries(
        t,
        "dirs",
        "dirs = [{ path = \"/tmp\", mode = 0o1777 }]",
        p,
        dir_entry,
    );
    let symlinks = entries(
        t,
        "symlinks",
        "symlinks = [{ path = \"/bin/sh\", target = \"busybox\" }]",
        p,
        symlink,
    );
    Some(FileLayer {
        owner: owner_?,
        files: files?,
        dirs: dirs?,
        symlinks: symlinks?,
    })
}

/// The entries of `files`, `dirs` or `symlinks`: an array of tables, each
/// read by `read` and named `KEY[i] of LAYER` in messages.
fn entries<T>(
    t: &Table<'_, '_>,
    key: &str,
    example: &str,
    p: &mut Problems,
    read: fn(&Table<'_, '_>, &mut Problems) -> Option<T>,
) -> Option<Vec<T>> {
    let Some(v) = t.get(key) else {
        return Some(Vec::new());
    };
    let items = array(v, &t.describe(key), example, p)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let entry = Table::of(item, format!("{key}[{i}] of {}", t.what), example, p)
            .and_then(|e| read(&e, p));
        match entry {
            Some(e) => out.push(e),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn file_copy(e: &Table<'_, '_>, p: &mut Problems) -> Option<FileCopy> {
    e.deny_unknown(FILE_COPY_KEYS, p);
    let src = e
        .require("src", "src = \"path/in/the/context\"", p)
        .and_then(|v| source_path(v, &e.describe("src"), p));
    let dest = e
        .require("dest", "dest = \"/absolute/path/in/the/image\"", p)
        .and_then(|v| absolute_path(v, &e.describe("dest"), "dest = \"/bin/app\"", p));
    if let (Some(src), Some(dest)) = (&src, &dest) {
        if crate::model::is_glob(src.get_ref()) && !dest.get_ref().ends_with('/') {
            p.fail::<()>(
                dest.span(),
                "must end in '/'",
                format!(
                    "src {:?} is a glob, which copies its matches into a folder, so dest must be one: write dest = \"{}/\"",
                    src.get_ref(),
                    dest.get_ref()
                ),
            );
        } else if src.get_ref().ends_with('/') && !dest.get_ref().ends_with('/') {
            p.fail::<()>(
                dest.span(),
                "must end in '/'",
                format!(
                    "src {:?} is a folder (it ends in '/'), so dest must be one too: write dest = \"{}/\"",
                    src.get_ref(),
                    dest.get_ref()
                ),
            );
        }
    }
    let mode_ = optional(e, "mode", |v, what| mode(v, what, p));
    let owner_ = optional(e, "owner", |v, what| owner(v, what, p));
    let exclude = or_default(e, "exclude", Vec::new(), |v, what| {
        strings(v, what, "exclude = [\"**/*.tmp\"]", p)
    });
    let preserve = or_default(e, "preserve", false, |v, what| {
        boolean(v, what, "preserve = true", p)
    });
    if let (Some(true), Some(span)) = (preserve, e.key_span("mode")) {
        p.fail::<()>(
            span,
            "conflicts with preserve",
            format!(
                "{} sets both `mode` and `preserve = true`; preserve keeps each source's own mode: remove one",
                e.what
            ),
        );
    }
    Some(FileCopy {
        src: src?.get_ref().to_string(),
        dest: dest?.get_ref().to_string(),
        mode: mode_?,
        owner: owner_?,
        exclude: exclude?,
        preserve: preserve?,
    })
}

/// A `src`: relative to the context and staying inside it. Symlinks that
/// lead out are the image builder's to catch; this is the early, located
/// half of that rule.
fn source_path<'a>(v: &'a Value<'_>, what: &str, p: &mut Problems) -> Option<Spanned<&'a str>> {
    let s = string(v, what, "src = \"rootfs/app\"", p)?;
    let path = *s.get_ref();
    if path.is_empty() {
        return p.fail(
            v.span(),
            "empty",
            format!(
                "{what} is empty: write a path relative to the context, or \"./\" for all of it"
            ),
        );
    }
    if path.starts_with('/') {
        return p.fail(
            v.span(),
            "absolute",
            format!(
                "{what} must be relative to the context (the recipe's folder unless [image] context says otherwise), not absolute: write {:?}",
                path.trim_start_matches('/')
            ),
        );
    }
    if crate::model::is_glob(path) && path.ends_with('/') {
        return p.fail(
            v.span(),
            "glob ends in '/'",
            format!(
                "{what} ({path:?}) is a glob ending in '/'; a glob selects files: write {:?} to copy everything below the folders it names",
                format!("{}**", path)
            ),
        );
    }
    if path.split('/').any(|c| c == "..") {
        return p.fail(
            v.span(),
            "leaves the context",
            format!(
                "{what} ({path:?}) has a '..' component and would reach outside the context: move the file into the context, or set [image] context to a folder that holds it"
            ),
        );
    }
    Some(s)
}

fn dir_entry(e: &Table<'_, '_>, p: &mut Problems) -> Option<DirEntry> {
    e.deny_unknown(DIR_KEYS, p);
    let path = e
        .require("path", "path = \"/absolute/path\"", p)
        .and_then(|v| absolute_path(v, &e.describe("path"), "path = \"/data\"", p));
    let mode_ = optional(e, "mode", |v, what| mode(v, what, p));
    let owner_ = optional(e, "owner", |v, what| owner(v, what, p));
    Some(DirEntry {
        path: path?.get_ref().to_string(),
        mode: mode_?,
        owner: owner_?,
    })
}

fn symlink(e: &Table<'_, '_>, p: &mut Problems) -> Option<SymlinkEntry> {
    e.deny_unknown(SYMLINK_KEYS, p);
    let path = e
        .require("path", "path = \"/absolute/path/of/the/link\"", p)
        .and_then(|v| absolute_path(v, &e.describe("path"), "path = \"/bin/sh\"", p));
    let target = e
        .require("target", "target = \"what/it/points/at\"", p)
        .and_then(|v| {
            let s = string(v, &e.describe("target"), "target = \"busybox\"", p)?;
            if s.get_ref().is_empty() {
                return p.fail(
                    v.span(),
                    "empty",
                    format!(
                        "{} is empty: write what the link points at",
                        e.describe("target")
                    ),
                );
            }
            Some(s.get_ref().to_string())
        });
    let owner_ = optional(e, "owner", |v, what| owner(v, what, p));
    Some(SymlinkEntry {
        path: path?.get_ref().to_string(),
        target: target?,
        owner: owner_?,
    })
}

fn run_layer(t: &Table<'_, '_>, declared: &BTreeSet<String>, p: &mut Problems) -> Option<RunLayer> {
    let run = t
        .get("run")
        .and_then(|v| run_command(v, &t.describe("run"), p));
    let secrets = or_default(t, "secrets", Vec::new(), |v, what| {
        let items = array(v, what, "secrets = [\"api_token\"]", p)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(name) = string(
                item,
                &format!("each entry of {what}"),
                "secrets = [\"api_token\"]",
                p,
            ) else {
                ok = false;
                continue;
            };
            let name = *name.get_ref();
            if !declared.contains(name) {
                ok = false;
                p.fail_help::<()>(
                    item.span(),
                    "undeclared secret",
                    format!(
                        "{} uses secret {name:?}, which is not declared: add [secrets.{name}] with from = \"env:VARIABLE\", or fix the name",
                        t.what
                    ),
                    declared_help(declared),
                );
            } else if out.iter().any(|n| n == name) {
                ok = false;
                p.fail::<()>(
                    item.span(),
                    "listed twice",
                    format!("secret {name:?} is listed twice in {what}: remove one"),
                );
            } else {
                out.push(name.to_owned());
            }
        }
        ok.then_some(out)
    });
    let env = env_map(t, "env", p);
    let network = or_default(t, "network", false, |v, what| {
        boolean(v, what, "network = true", p)
    });
    let user = or_default(t, "user", "0:0".to_owned(), |v, what| run_user(v, what, p));
    let workdir = optional(t, "workdir", |v, what| {
        absolute_path(v, what, "workdir = \"/src\"", p).map(|s| s.get_ref().to_string())
    });
    Some(RunLayer {
        run: run?,
        secrets: secrets?,
        env: env?,
        network: network?,
        user: user?,
        workdir: workdir?,
    })
}

/// A run layer's `user`: numeric `UID[:GID]`, or a user name (with an
/// optional `:GROUP`) as the image's /etc/passwd knows it.
fn run_user(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<String> {
    let s = string(v, what, "user = \"0:0\"", p)?;
    let user = *s.get_ref();
    let part_ok = |part: &str| {
        let numeric = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let name = part.len() <= 32
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && part.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        (numeric && part.parse::<u32>().is_ok()) || name
    };
    let valid = match user.split_once(':') {
        Some((u, g)) => part_ok(u) && part_ok(g),
        None => part_ok(user),
    };
    if !valid {
        return p.fail(
            v.span(),
            "not a user",
            format!(
                "{what} ({user:?}) is not a user: write numeric \"UID[:GID]\" like \"0:0\" or \"33:33\", or a user name like \"www-data\""
            ),
        );
    }
    Some(user.to_owned())
}

fn run_command(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<RunCommand> {
    match v.get_ref() {
        DeValue::String(s) if s.trim().is_empty() => {
            p.fail(v.span(), "empty", format!("{what} is empty: write the command, like run = \"apk add curl\""))
        }
        DeValue::String(s) => Some(RunCommand::Shell(s.to_string())),
        DeValue::Array(items) if items.is_empty() => p.fail(
            v.span(),
            "empty",
            format!("{what} is an empty array: write the program and its arguments, like run = [\"/bin/app\", \"--init\"]"),
        ),
        DeValue::Array(_) => strings(v, what, "run = [\"/bin/app\", \"--init\"]", p).map(RunCommand::Exec),
        _ => wrong_type(
            v,
            what,
            "a string (run with /bin/sh -c) or an array of strings (exec form)",
            "run = \"echo hi > /etc/motd\"",
            p,
        ),
    }
}
