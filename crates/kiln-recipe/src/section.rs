//! The recipe's top-level sections (`[image]`, `[config]`, `[secrets]`,
//! `[boot]`, `[promote]`) and the walk over the whole document that reads
//! every section, so that every problem in the file is found in one run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::line_of;
use crate::document::{Problems, Table, Value, array, integer, string};
use crate::field::{
    absolute_path, duration, is_env_name, is_lower_name, is_tag, optional, or_default, ports,
};
use crate::model::{
    Boot, BootSecretTarget, ConfigSection, ImageSection, Promote, Recipe, SecretDecl,
};
use crate::values::{BaseRef, Duration, ImageName, Platform, SecretSource};
use crate::{check, layer};

pub(crate) const TOP_KEYS: &[&str] = &[
    "args", "image", "config", "layer", "secrets", "boot", "check", "promote",
];
const IMAGE_KEYS: &[&str] = &[
    "name", "version", "base", "epoch", "context", "platform", "volatile",
];
const CONFIG_KEYS: &[&str] = &[
    "entrypoint",
    "cmd",
    "env",
    "workdir",
    "user",
    "expose",
    "labels",
    "stop_signal",
    "volumes",
];
const BOOT_KEYS: &[&str] = &["secrets", "env", "timeout"];
const PROMOTE_KEYS: &[&str] = &["channels", "sign", "push"];

/// The whole document as a recipe, or `None` with every problem in `p`.
pub(crate) fn recipe(
    path: &Path,
    text: &str,
    doc: &Spanned<DeTable<'_>>,
    p: &mut Problems,
) -> Option<Recipe> {
    let root = Table::root(doc.span(), doc.get_ref());
    for (key, span, _) in root.entries() {
        if !TOP_KEYS.contains(&key) {
            misplaced_or_unknown(&root, key, span, p);
        }
    }
    // `deny_unknown` is not used above (misplaced keys get their own
    // message), so tell the table its keys for `misspells`.
    root.set_allowed(TOP_KEYS);
    let image = match root.get("image") {
        Some(v) => image(v, p),
        None if root.misspells("image") => None,
        None => p.fail(
            0..0,
            "[image] missing",
            "the recipe has no [image] table: add [image] with name = \"...\" (and base = \"scratch\" or another base)",
        ),
    };
    let config = root
        .get("config")
        .map_or(Some(ConfigSection::default()), |v| config(v, p));
    let declared = declared_secrets(&root);
    let secrets = root
        .get("secrets")
        .map_or(Some(BTreeMap::new()), |v| secrets(v, p));
    let layers = root
        .get("layer")
        .map_or(Some(Vec::new()), |v| layer::layers(v, text, &declared, p));
    let boot = root
        .get("boot")
        .map_or(Some(Boot::default()), |v| boot(v, &declared, p));
    let checks = root
        .get("check")
        .map_or(Some(Vec::new()), |v| check::checks(v, text, p));
    let promote = root
        .get("promote")
        .map_or(Some(Promote::default()), |v| promote(v, text, p));
    Some(Recipe {
        path: path.to_owned(),
        // Read and applied before the sections (crate::args).
        args: BTreeMap::new(),
        image: image?,
        config: config?,
        layers: layers?,
        secrets: secrets?,
        boot: boot?,
        checks: checks?,
        promote: promote?,
    })
}

/// A top-level key that is not a section: a section's key written before
/// any header (or under the wrong one) gets told where it belongs.
fn misplaced_or_unknown(
    root: &Table<'_, '_>,
    key: &str,
    span: std::ops::Range<usize>,
    p: &mut Problems,
) {
    let home = [
        ("[image]", IMAGE_KEYS),
        ("[config]", CONFIG_KEYS),
        ("[promote]", PROMOTE_KEYS),
    ]
    .into_iter()
    .find(|(_, keys)| keys.contains(&key));
    match home {
        Some((section, _)) => {
            p.fail_help::<()>(
                span,
                "unknown key",
                format!("unknown top-level key `{key}`; it belongs in {section}: move it under the {section} header"),
                format!("a recipe's top level holds only the sections {}", TOP_KEYS.join(", ")),
            );
        }
        None => root.unknown(key, span, TOP_KEYS, p),
    }
}

/// Names under `[secrets]`, even those whose declaration is wrong, so that
/// a broken declaration is not reported again as an undeclared secret.
fn declared_secrets(root: &Table<'_, '_>) -> BTreeSet<String> {
    match root.get("secrets").map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
        _ => BTreeSet::new(),
    }
}

fn image(v: &Value<'_>, p: &mut Problems) -> Option<ImageSection> {
    let t = Table::of(v, "[image]", "[image] with name = \"web\"", p)?;
    t.deny_unknown(IMAGE_KEYS, p);
    let name = t.require("name", "name = \"web\"", p).and_then(|v| {
        crate::document::parsed::<ImageName>(v, &t.describe("name"), "name = \"web\"", p)
    });
    let version = optional(&t, "version", |v, what| {
        let s = string(v, what, "version = \"1.0.0\"", p)?;
        if !is_tag(s.get_ref()) {
            return p.fail(
                v.span(),
                "not a tag",
                format!(
                    "invalid version {:?}: it is also stored as a tag, so use letters, digits, '.', '_' and '-' (up to 128, not starting with '.' or '-'), like \"1.4.2\"",
                    s.get_ref()
                ),
            );
        }
        Some(s.get_ref().to_string())
    });
    let base = or_default(&t, "base", BaseRef::Scratch, |v, what| {
        crate::document::parsed::<BaseRef>(v, what, "base = \"scratch\"", p)
            .map(Spanned::into_inner)
    });
    let epoch = optional(&t, "epoch", |v, what| {
        let (n, _) = integer(v, what, "epoch = 1700000000", p)?;
        match u64::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => p.fail(
                v.span(),
                "negative",
                format!("{what} is seconds since 1970-01-01 and cannot be negative, like epoch = 1700000000"),
            ),
        }
    });
    let context = or_default(&t, "context", PathBuf::from("."), |v, what| {
        let s = string(v, what, "context = \".\"", p)?;
        if s.get_ref().is_empty() {
            return p.fail(
                v.span(),
                "empty",
                format!("{what} is empty: write context = \".\" for the recipe's folder"),
            );
        }
        Some(PathBuf::from(*s.get_ref()))
    });
    let platform = optional(&t, "platform", |v, what| {
        crate::document::parsed::<Platform>(v, what, "platform = \"linux/arm64\"", p)
            .map(Spanned::into_inner)
    });
    let volatile = optional(&t, "volatile", |v, what| {
        let globs = crate::document::strings(v, what, "volatile = [\"/var/log/apt/**\"]", p)?;
        if let Some(bad) = globs.iter().find(|g| !g.starts_with('/')) {
            return p.fail(
                v.span(),
                "not absolute",
                format!(
                    "{what} holds {bad:?}: each glob is an absolute in-image path, like \"/var/log/apt/**\""
                ),
            );
        }
        Some(globs)
    });
    Some(ImageSection {
        name: name?.into_inner(),
        version: version?,
        base: base?,
        epoch: epoch?,
        context: context?,
        platform: platform?,
        volatile: volatile?,
    })
}

fn config(v: &Value<'_>, p: &mut Problems) -> Option<ConfigSection> {
    let t = Table::of(
        v,
        "[config]",
        "[config] with entrypoint = [\"/bin/app\"]",
        p,
    )?;
    t.deny_unknown(CONFIG_KEYS, p);
    let entrypoint = optional(&t, "entrypoint", |v, what| {
        crate::document::strings(
            v,
            what,
            "entrypoint = [\"/bin/app\", \"--serve\"] (exec form)",
            p,
        )
    });
    let cmd = optional(&t, "cmd", |v, what| {
        crate::document::strings(v, what, "cmd = [\"--port\", \"8080\"] (exec form)", p)
    });
    let env = env_map(&t, "env", p);
    let workdir = optional(&t, "workdir", |v, what| {
        absolute_path(v, what, "workdir = \"/app\"", p).map(|s| s.get_ref().to_string())
    });
    let user = optional(&t, "user", |v, what| {
        non_empty(v, what, "user = \"1000:1000\"", p)
    });
    let expose = or_default(&t, "expose", Vec::new(), |v, what| ports(v, what, p));
    let labels = or_default(&t, "labels", BTreeMap::new(), |v, what| {
        crate::document::string_map(
            v,
            what,
            "labels = { \"org.opencontainers.image.source\" = \"...\" }",
            p,
        )
    });
    let stop_signal = optional(&t, "stop_signal", |v, what| {
        non_empty(v, what, "stop_signal = \"SIGTERM\"", p)
    });
    let volumes = or_default(&t, "volumes", Vec::new(), |v, what| {
        let items = array(v, what, "volumes = [\"/data\"]", p)?;
        let paths: Vec<_> = items
            .iter()
            .map(|item| {
                absolute_path(
                    item,
                    &format!("each entry of {what}"),
                    "volumes = [\"/data\"]",
                    p,
                )
            })
            .collect();
        paths
            .into_iter()
            .map(|s| s.map(|s| s.get_ref().to_string()))
            .collect()
    });
    Some(ConfigSection {
        entrypoint: entrypoint?,
        cmd: cmd?,
        env: env?,
        workdir: workdir?,
        user: user?,
        expose: expose?,
        labels: labels?,
        stop_signal: stop_signal?,
        volumes: volumes?,
    })
}

/// A non-empty string.
fn non_empty(v: &Value<'_>, what: &str, example: &str, p: &mut Problems) -> Option<String> {
    let s = string(v, what, example, p)?;
    if s.get_ref().is_empty() {
        return p.fail(
            v.span(),
            "empty",
            format!("{what} is empty: write {example} or remove it"),
        );
    }
    Some(s.get_ref().to_string())
}

/// An `env` table in the order written: string values and names that can
/// be environment variables (no `=`, not empty).
pub(crate) fn env_map(t: &Table<'_, '_>, key: &str, p: &mut Problems) -> Option<crate::model::Env> {
    let Some(v) = t.get(key) else {
        return Some(crate::model::Env::new());
    };
    let what = t.describe(key);
    let map = crate::document::string_map(v, &what, "env = { NAME = \"value\" }", p);
    let mut ok = true;
    if let DeValue::Table(entries) = v.get_ref() {
        for (name, _) in entries.iter() {
            if name.get_ref().is_empty() || name.get_ref().contains('=') {
                ok = false;
                p.fail::<()>(
                    name.span(),
                    "not a variable name",
                    format!("{:?} in {what} is not a valid variable name: names are not empty and hold no '='", name.get_ref()),
                );
            }
        }
    }
    map.filter(|_| ok)
}

fn secrets(v: &Value<'_>, p: &mut Problems) -> Option<BTreeMap<String, SecretDecl>> {
    let t = Table::of(
        v,
        "[secrets]",
        "[secrets.NAME] with from = \"env:VARIABLE\"",
        p,
    )?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, span, value) in t.entries() {
        let valid_name = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            ok = false;
            p.fail::<()>(
                span.clone(),
                "bad secret name",
                format!("invalid secret name {name:?}: it becomes a file name under /run/secrets/, so use letters, digits, '_', '-' and '.'"),
            );
        }
        let Some(decl) = Table::of(
            value,
            format!("[secrets.{name}]"),
            &format!("[secrets.{name}] with from = \"env:VARIABLE\" on the next line"),
            p,
        ) else {
            ok = false;
            continue;
        };
        decl.deny_unknown(&["from"], p);
        let from = decl
            .require("from", "from = \"env:VARIABLE\" or from = \"file:PATH\"", p)
            .and_then(|v| {
                crate::document::parsed::<SecretSource>(
                    v,
                    &decl.describe("from"),
                    "from = \"env:VARIABLE\"",
                    p,
                )
            });
        match from {
            Some(from) => {
                out.insert(
                    name.to_owned(),
                    SecretDecl {
                        from: from.into_inner(),
                    },
                );
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn boot(v: &Value<'_>, declared: &BTreeSet<String>, p: &mut Problems) -> Option<Boot> {
    let t = Table::of(v, "[boot]", "[boot] with timeout = \"60s\"", p)?;
    t.deny_unknown(BOOT_KEYS, p);
    let secrets = or_default(&t, "secrets", BTreeMap::new(), |v, what| {
        let map = Table::of(
            v,
            what,
            "secrets = { db_password = \"env:DB_PASSWORD\" }",
            p,
        )?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, span, value) in map.entries() {
            if !declared.contains(name) {
                ok = false;
                p.fail_help::<()>(
                    span,
                    "undeclared secret",
                    format!("[boot] secrets names {name:?}, which is not declared: add [secrets.{name}] with from = \"env:VARIABLE\", or fix the name"),
                    declared_help(declared),
                );
            }
            match boot_target(value, &format!("`{name}` in {what}"), p) {
                Some(target) => {
                    out.insert(name.to_owned(), target);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let env = env_map(&t, "env", p);
    let timeout = or_default(&t, "timeout", Boot::default().timeout, |v, what| {
        duration(v, what, true, p)
    });
    Some(Boot {
        secrets: secrets?,
        env: env?,
        timeout: timeout?,
    })
}

/// "the declared secrets are: a, b" (or that there are none).
pub(crate) fn declared_help(declared: &BTreeSet<String>) -> String {
    if declared.is_empty() {
        "the recipe declares no secrets; declare one with [secrets.NAME] and from = \"env:VARIABLE\"".to_owned()
    } else {
        let names: Vec<_> = declared.iter().map(String::as_str).collect();
        format!("declared secrets: {}", names.join(", "))
    }
}

fn boot_target(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<BootSecretTarget> {
    let s = string(v, what, "\"env:NAME\" or \"file:/run/secrets/NAME\"", p)?;
    let s = *s.get_ref();
    match s.split_once(':') {
        Some(("env", name)) if is_env_name(name) => Some(BootSecretTarget::Env(name.to_owned())),
        Some(("file", path)) if path.starts_with('/') && path.len() > 1 => {
            Some(BootSecretTarget::File(path.to_owned()))
        }
        Some(("file", path)) => p.fail(
            v.span(),
            "not absolute",
            format!(
                "invalid boot secret target {s:?}: the file path in the container must be absolute: write \"file:/{}\"",
                path.trim_start_matches("./")
            ),
        ),
        _ => p.fail(
            v.span(),
            "bad target",
            format!("invalid boot secret target {s:?}: write \"env:NAME\" (an environment variable) or \"file:/ABSOLUTE/PATH\" (a file in the container)"),
        ),
    }
}

fn promote(v: &Value<'_>, text: &str, p: &mut Problems) -> Option<Promote> {
    let t = Table::of(v, "[promote]", "[promote] with channels = [\"stable\"]", p)?;
    t.deny_unknown(PROMOTE_KEYS, p);
    let channels = or_default(&t, "channels", Vec::new(), |v, what| {
        let items = array(v, what, "channels = [\"stable\"]", p)?;
        let mut out = Vec::new();
        let mut first_at: BTreeMap<String, usize> = BTreeMap::new();
        let mut ok = true;
        for item in items {
            let Some(s) = string(
                item,
                &format!("each entry of {what}"),
                "channels = [\"stable\"]",
                p,
            ) else {
                ok = false;
                continue;
            };
            let name = *s.get_ref();
            if !is_lower_name(name) {
                ok = false;
                p.fail::<()>(
                    item.span(),
                    "bad channel name",
                    format!("invalid channel name {name:?}: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, like \"stable\""),
                );
            } else if let Some(first) = first_at.get(name) {
                ok = false;
                let first_line = line_of(text, *first);
                let here = if first_line == line_of(text, item.span().start) {
                    String::new()
                } else {
                    format!(" (first on line {first_line})")
                };
                p.fail::<()>(
                    item.span(),
                    "listed twice",
                    format!("channel {name:?} is listed twice{here}: remove this one"),
                );
            } else {
                first_at.insert(name.to_owned(), item.span().start);
                out.push(name.to_owned());
            }
        }
        ok.then_some(out)
    });
    let sign = optional(&t, "sign", |v, what| {
        // A key written into the recipe would be committed, copied and
        // stored with it: refuse it here, at its line, before anything runs.
        if let toml::de::DeValue::String(text) = v.get_ref()
            && (text.contains("-----BEGIN") || text.contains("PRIVATE KEY"))
        {
            return p.fail_help(
                v.span(),
                "a key written inline",
                "[promote] sign holds a key itself: kiln refuses keys inline in a recipe",
                "keep the key in a file or the environment: sign = \"file:keys/release.key\" or sign = \"env:KILN_SIGNING_KEY\"",
            );
        }
        crate::document::parsed::<SecretSource>(v, what, "sign = \"file:keys/release.key\"", p)
            .map(Spanned::into_inner)
    });
    let push = optional(&t, "push", |v, what| {
        let s = string(v, what, "push = \"docker://HOST/REPO\"", p)?;
        let s = *s.get_ref();
        let hint =
            "write push = \"docker://HOST/REPO\", like \"docker://registry.example.com/team/web\"";
        if !s.starts_with("docker://") {
            return p.fail(
                v.span(),
                "not docker://",
                format!("invalid push {s:?}: kiln pushes to registries only, so it must start with docker://; {hint}"),
            );
        }
        match s.parse::<BaseRef>() {
            Ok(BaseRef::Registry { digest: None, .. }) => Some(s.to_owned()),
            Ok(_) => p.fail(
                v.span(),
                "has a digest",
                format!("invalid push {s:?}: a push target names a repository (and optionally a tag), not a digest; {hint}"),
            ),
            Err(e) => p.fail(v.span(), "bad reference", format!("invalid push {s:?}: {e}")),
        }
    });
    Some(Promote {
        channels: channels?,
        sign: sign?,
        push: push?,
    })
}

/// A duration key with a default, for the readers of other sections;
/// `positive` refuses zero.
pub(crate) fn duration_or(
    t: &Table<'_, '_>,
    key: &str,
    default: Duration,
    positive: bool,
    p: &mut Problems,
) -> Option<Duration> {
    or_default(t, key, default, |v, what| duration(v, what, positive, p))
}
