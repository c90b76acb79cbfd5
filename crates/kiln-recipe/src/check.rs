//! `[[check]]`: exactly one kind per check, only the keys that kind takes,
//! and the defaults of the retry policy.

use std::collections::BTreeMap;

use toml::de::DeValue;

use crate::diagnostic::line_of;
use crate::document::{
    Problems, Table, Value, array_of_tables, boolean, integer, string, string_map, strings,
};
use crate::field::{absolute_path, mode, optional, or_default, owner, port_number, ports};
use crate::layer::{name_of, required_name};
use crate::model::{
    Check, CheckKind, CommandCheck, FileCheck, HttpCheck, MetadataCheck, Probe, TcpCheck,
};
use crate::section::duration_or;

const KINDS: &[&str] = &["http", "tcp", "command", "file", "metadata"];
const PROBE_KEYS: &[&str] = &["healthy_threshold", "interval", "timeout", "deadline"];
const CHECK_KEYS: &[&str] = &[
    "name",
    "http",
    "tcp",
    "command",
    "file",
    "metadata",
    "status",
    "body_contains",
    "healthy_threshold",
    "interval",
    "timeout",
    "deadline",
    "exit_code",
    "stdout_contains",
    "stderr_contains",
    "exists",
    "contains",
    "mode",
    "owner",
];
const METADATA_KEYS: &[&str] = &[
    "user",
    "exposed",
    "entrypoint",
    "cmd",
    "env",
    "workdir",
    "labels",
];

/// The keys, besides `name` and the kind itself, that a kind takes.
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "http" => &[
            "status",
            "body_contains",
            "healthy_threshold",
            "interval",
            "timeout",
            "deadline",
        ],
        "tcp" => PROBE_KEYS,
        "command" => &["exit_code", "stdout_contains", "stderr_contains"],
        "file" => &["exists", "contains", "mode", "owner"],
        _ => &[],
    }
}

/// Every `[[check]]`, in order, with unique names.
pub(crate) fn checks(v: &Value<'_>, text: &str, p: &mut Problems) -> Option<Vec<Check>> {
    let items = array_of_tables(v, "check", p)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    let mut first_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        if let Some(name) = name_of(item) {
            if let Some(first) = first_at.get(name.get_ref()) {
                p.fail::<()>(
                    name.span(),
                    "second check with this name",
                    format!(
                        "duplicate check name {:?}: a check of that name is already on line {}; check names must be unique, so rename this one",
                        name.get_ref(),
                        line_of(text, *first)
                    ),
                );
            } else {
                first_at.insert(name.get_ref(), name.span().start);
            }
        }
        match check(item, index, p) {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn check(v: &Value<'_>, index: usize, p: &mut Problems) -> Option<Check> {
    let what = match name_of(v) {
        Some(name) => format!("check {:?}", name.get_ref()),
        None => format!("[[check]] number {}", index + 1),
    };
    let t = Table::of(v, what, "[[check]] with name = \"...\"", p)?;
    t.deny_unknown(CHECK_KEYS, p);
    let name = required_name(&t, p);
    let present: Vec<(&str, std::ops::Range<usize>)> = t
        .entries()
        .into_iter()
        .filter(|(k, _, _)| KINDS.contains(k))
        .map(|(k, span, _)| (k, span))
        .collect();
    let kind = match present.as_slice() {
        [] if KINDS.iter().any(|k| t.misspells(k)) => None,
        [] => p.fail(
            t.span.clone(),
            "no kind",
            format!(
                "{} has no kind: add one of http = {{ port = 8080 }}, tcp = {{ port = 8080 }}, command = [...], file = \"/path\" or metadata = {{ ... }}",
                t.what
            ),
        ),
        [(first, _), (second, span), ..] => p.fail(
            span.clone(),
            "second kind",
            format!(
                "{} has two kinds, `{first}` and `{second}`; a check has exactly one: split it into two [[check]] tables",
                t.what
            ),
        ),
        [(kind, _)] => {
            deny_foreign_keys(&t, kind, p);
            read_kind(&t, kind, p)
        }
    };
    Some(Check {
        name: name?,
        kind: kind?,
    })
}

/// Reports keys that belong to another kind of check, naming the kinds
/// they are for.
fn deny_foreign_keys(t: &Table<'_, '_>, kind: &str, p: &mut Problems) {
    for (key, span, _) in t.entries() {
        if key == "name" || KINDS.contains(&key) || !CHECK_KEYS.contains(&key) {
            continue;
        }
        if kind_keys(kind).contains(&key) {
            continue;
        }
        let owners: Vec<&str> = KINDS
            .iter()
            .copied()
            .filter(|k| kind_keys(k).contains(&key))
            .collect();
        let takes = kind_keys(kind);
        let takes = if takes.is_empty() {
            format!("a {kind} check takes no other keys")
        } else {
            format!("a {kind} check takes {}", takes.join(", "))
        };
        p.fail_help::<()>(
            span,
            format!("not for {kind} checks"),
            format!(
                "`{key}` does not apply to a {kind} check ({}); it is for {} checks: remove it",
                t.what,
                owners.join(" and ")
            ),
            takes,
        );
    }
}

fn read_kind(t: &Table<'_, '_>, kind: &str, p: &mut Problems) -> Option<CheckKind> {
    let v = t.get(kind)?;
    let what = t.describe(kind);
    match kind {
        "http" => http(t, v, &what, p).map(CheckKind::Http),
        "tcp" => {
            let target = Table::of(v, &what, "tcp = { port = 8080 }", p)?;
            target.deny_unknown(&["port"], p);
            let port = target
                .require("port", "port = 8080", p)
                .and_then(|v| port_number(v, &target.describe("port"), p));
            let probe = probe(t, p);
            Some(CheckKind::Tcp(TcpCheck {
                port: port?,
                probe: probe?,
            }))
        }
        "command" => command(t, v, &what, p).map(CheckKind::Command),
        "file" => file(t, v, &what, p).map(CheckKind::File),
        _ => metadata(v, &what, p).map(CheckKind::Metadata),
    }
}

fn http(t: &Table<'_, '_>, v: &Value<'_>, what: &str, p: &mut Problems) -> Option<HttpCheck> {
    let target = Table::of(v, what, "http = { port = 8080, path = \"/health\" }", p)?;
    target.deny_unknown(&["port", "path"], p);
    let port = target
        .require("port", "port = 8080", p)
        .and_then(|v| port_number(v, &target.describe("port"), p));
    let path = or_default(&target, "path", "/".to_owned(), |v, what| {
        let s = string(v, what, "path = \"/health\"", p)?;
        if !s.get_ref().starts_with('/') {
            return p.fail(
                v.span(),
                "must start with '/'",
                format!(
                    "{what} must start with '/': write path = \"/{}\"",
                    s.get_ref()
                ),
            );
        }
        Some(s.get_ref().to_string())
    });
    let status = or_default(t, "status", 200, |v, what| {
        let (n, _) = integer(v, what, "status = 200", p)?;
        match u16::try_from(n) {
            Ok(s) if (100..=599).contains(&s) => Some(s),
            _ => p.fail(
                v.span(),
                "not an HTTP status",
                format!("{what} must be an HTTP status from 100 to 599, not {n}"),
            ),
        }
    });
    let body_contains = optional(t, "body_contains", |v, what| {
        string(v, what, "body_contains = \"ok\"", p).map(|s| s.get_ref().to_string())
    });
    let probe = probe(t, p);
    Some(HttpCheck {
        port: port?,
        path: path?,
        status: status?,
        body_contains: body_contains?,
        probe: probe?,
    })
}

fn probe(t: &Table<'_, '_>, p: &mut Problems) -> Option<Probe> {
    let defaults = Probe::default();
    let healthy_threshold = or_default(
        t,
        "healthy_threshold",
        defaults.healthy_threshold,
        |v, what| {
            let (n, _) = integer(v, what, "healthy_threshold = 1", p)?;
            match u32::try_from(n) {
            Ok(n) if n >= 1 => Some(n),
            _ => p.fail(
                v.span(),
                "at least 1",
                format!("{what} is the number of consecutive successes needed and must be at least 1, not {n}"),
            ),
        }
        },
    );
    // Zero between attempts is a tight retry loop, which is allowed; a zero
    // timeout or deadline could never pass.
    let interval = duration_or(t, "interval", defaults.interval, false, p);
    let timeout = duration_or(t, "timeout", defaults.timeout, true, p);
    let deadline = duration_or(t, "deadline", defaults.deadline, true, p);
    Some(Probe {
        healthy_threshold: healthy_threshold?,
        interval: interval?,
        timeout: timeout?,
        deadline: deadline?,
    })
}

fn command(t: &Table<'_, '_>, v: &Value<'_>, what: &str, p: &mut Problems) -> Option<CommandCheck> {
    let argv = match v.get_ref() {
        DeValue::String(s) => p.fail(
            v.span(),
            "a string, not an array",
            format!("{what} must be an array (exec form; no shell is assumed): write command = [\"/bin/sh\", \"-c\", {s:?}] or split it into arguments"),
        ),
        DeValue::Array(items) if items.is_empty() => p.fail(
            v.span(),
            "empty",
            format!("{what} is empty: write the program and its arguments, like command = [\"/bin/app\", \"--version\"]"),
        ),
        _ => strings(v, what, "command = [\"/bin/app\", \"--version\"]", p),
    };
    let exit_code = or_default(t, "exit_code", 0, |v, what| {
        let (n, _) = integer(v, what, "exit_code = 0", p)?;
        if !(0..=255).contains(&n) {
            return p.fail(
                v.span(),
                "not an exit code",
                format!("{what} must be from 0 to 255, not {n}"),
            );
        }
        i64::try_from(n).ok()
    });
    let stdout_contains = optional(t, "stdout_contains", |v, what| {
        string(v, what, "stdout_contains = \"...\"", p).map(|s| s.get_ref().to_string())
    });
    let stderr_contains = optional(t, "stderr_contains", |v, what| {
        string(v, what, "stderr_contains = \"...\"", p).map(|s| s.get_ref().to_string())
    });
    Some(CommandCheck {
        argv: argv?,
        exit_code: exit_code?,
        stdout_contains: stdout_contains?,
        stderr_contains: stderr_contains?,
    })
}

fn file(t: &Table<'_, '_>, v: &Value<'_>, what: &str, p: &mut Problems) -> Option<FileCheck> {
    let path = absolute_path(v, what, "file = \"/etc/motd\"", p);
    let exists = or_default(t, "exists", true, |v, what| {
        boolean(v, what, "exists = false", p)
    });
    if exists == Some(false) {
        for key in ["contains", "mode", "owner"] {
            if let Some(span) = t.key_span(key) {
                p.fail::<()>(
                    span,
                    "needs the file to exist",
                    format!(
                        "`{key}` cannot be checked when the file must not exist (exists = false in {}): remove `{key}`, or remove exists = false",
                        t.what
                    ),
                );
            }
        }
    }
    let contains = optional(t, "contains", |v, what| {
        string(v, what, "contains = \"...\"", p).map(|s| s.get_ref().to_string())
    });
    let mode_ = optional(t, "mode", |v, what| mode(v, what, p));
    let owner_ = optional(t, "owner", |v, what| owner(v, what, p));
    Some(FileCheck {
        path: path?.get_ref().to_string(),
        exists: exists?,
        contains: contains?,
        mode: mode_?,
        owner: owner_?,
    })
}

fn metadata(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<MetadataCheck> {
    let t = Table::of(v, what, "metadata = { user = \"1000:1000\" }", p)?;
    t.deny_unknown(METADATA_KEYS, p);
    if t.entries().is_empty() {
        return p.fail(
            t.span.clone(),
            "empty",
            format!("{what} compares nothing: add user, exposed, entrypoint, cmd, env, workdir or labels"),
        );
    }
    let user = optional(&t, "user", |v, what| {
        string(v, what, "user = \"1000:1000\"", p).map(|s| s.get_ref().to_string())
    });
    let exposed = optional(&t, "exposed", |v, what| ports(v, what, p));
    let entrypoint = optional(&t, "entrypoint", |v, what| {
        strings(v, what, "entrypoint = [\"/bin/app\"]", p)
    });
    let cmd = optional(&t, "cmd", |v, what| {
        strings(v, what, "cmd = [\"--serve\"]", p)
    });
    let env = optional(&t, "env", |v, what| {
        string_map(v, what, "env = { NAME = \"value\" }", p)
    });
    let workdir = optional(&t, "workdir", |v, what| {
        string(v, what, "workdir = \"/app\"", p).map(|s| s.get_ref().to_string())
    });
    let labels = optional(&t, "labels", |v, what| {
        string_map(v, what, "labels = { key = \"value\" }", p)
    });
    Some(MetadataCheck {
        user: user?,
        exposed: exposed?,
        entrypoint: entrypoint?,
        cmd: cmd?,
        env: env?,
        workdir: workdir?,
        labels: labels?,
    })
}
