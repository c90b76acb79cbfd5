//! Readers for the value kinds that recur across sections (modes, owners,
//! ports, durations, paths, names), so each is checked, and its mistakes
//! explained, in one place.

use toml::Spanned;
use toml::de::DeValue;

use crate::document::{Problems, Table, Value, array, integer, parsed, string, wrong_type};
use crate::values::{Duration, Mode, Owner, Port, Protocol};

/// Permission bits: an integer up to 0o7777, best written in octal.
pub(crate) fn mode(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<Mode> {
    match v.get_ref() {
        DeValue::String(s) => {
            let digits = s.trim_start_matches("0o");
            let suggestion =
                if !digits.is_empty() && digits.chars().all(|c| ('0'..='7').contains(&c)) {
                    format!("0o{digits}")
                } else {
                    "0o644".to_owned()
                };
            p.fail(
                v.span(),
                "a string, not a number",
                format!(
                    "{what} must be an octal integer, not a string: write mode = {suggestion} (no quotes)"
                ),
            )
        }
        _ => {
            let (n, radix) = integer(v, what, "mode = 0o644", p)?;
            // As written, with its radix prefix (`0o10000`, `755`).
            let written = match v.get_ref() {
                DeValue::Integer(i) => i.to_string(),
                _ => n.to_string(),
            };
            // `mode = 755` is decimal 755 = 0o1363: sticky and odd bits, almost
            // certainly not what was meant. Refuse what looks like octal
            // written without its prefix instead of building a wrong image.
            if radix == 10
                && written.len() >= 3
                && written.chars().all(|c| ('0'..='7').contains(&c))
            {
                return p.fail(
                    v.span(),
                    "decimal, not octal",
                    format!(
                        "{what} is written in decimal ({written} = {n:#o}); write mode = 0o{written} for octal permission bits"
                    ),
                );
            }
            match u32::try_from(n).ok().and_then(|n| Mode::new(n).ok()) {
                Some(m) => Some(m),
                None => p.fail(
                    v.span(),
                    "out of range",
                    format!(
                        "{what} must be at most 0o7777 (permission bits with setuid, setgid and sticky), not {written}: write e.g. mode = 0o755"
                    ),
                ),
            }
        }
    }
}

/// A numeric owner `"UID:GID"`.
pub(crate) fn owner(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<Owner> {
    parsed::<Owner>(v, what, "owner = \"1000:1000\"", p).map(Spanned::into_inner)
}

/// A port number, 1 to 65535.
pub(crate) fn port_number(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<u16> {
    if let DeValue::String(s) = v.get_ref() {
        let hint = s
            .parse::<u16>()
            .map_or("8080".to_owned(), |n| n.to_string());
        return p.fail(
            v.span(),
            "a string, not a number",
            format!("{what} must be an integer, not a string: write port = {hint}"),
        );
    }
    let (n, _) = integer(v, what, "port = 8080", p)?;
    match u16::try_from(n) {
        Ok(port) if port > 0 => Some(port),
        _ => p.fail(
            v.span(),
            "not a port",
            format!("{what} must be a port from 1 to 65535, not {n}"),
        ),
    }
}

/// A list of exposed ports: integers (tcp) or strings `"N/tcp|udp|sctp"`.
pub(crate) fn ports(v: &Value<'_>, what: &str, p: &mut Problems) -> Option<Vec<Port>> {
    let items = array(v, what, "[8080, \"53/udp\"]", p)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let port = match item.get_ref() {
            DeValue::String(_) => {
                parsed::<Port>(item, what, "\"53/udp\"", p).map(Spanned::into_inner)
            }
            DeValue::Integer(_) => {
                port_number(item, &format!("each entry of {what}"), p).map(|number| Port {
                    number,
                    protocol: Protocol::Tcp,
                })
            }
            _ => wrong_type(
                item,
                &format!("each entry of {what}"),
                "a port number or a string like \"53/udp\"",
                "[8080, \"53/udp\"]",
                p,
            ),
        };
        match port {
            Some(port) => out.push(port),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A duration string such as `"500ms"`; `positive` refuses zero.
pub(crate) fn duration(
    v: &Value<'_>,
    what: &str,
    positive: bool,
    p: &mut Problems,
) -> Option<Duration> {
    if let DeValue::Integer(i) = v.get_ref() {
        return p.fail(
            v.span(),
            "no unit",
            format!("{what} must be a string with a unit, not a bare number: write \"{i}s\" or \"{i}ms\""),
        );
    }
    let d = parsed::<Duration>(v, what, "\"5s\"", p)?.into_inner();
    if positive && d.as_std().is_zero() {
        return p.fail(
            v.span(),
            "zero",
            format!("{what} must be longer than zero, like \"1s\""),
        );
    }
    Some(d)
}

/// An absolute path in the image (or the container).
pub(crate) fn absolute_path<'a>(
    v: &'a Value<'_>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<Spanned<&'a str>> {
    let s = string(v, what, example, p)?;
    if !s.get_ref().starts_with('/') {
        return p.fail(
            v.span(),
            "not absolute",
            format!(
                "{what} must be an absolute path, starting with '/': write {}",
                absolute_hint(s.get_ref())
            ),
        );
    }
    Some(s)
}

/// How `relative` would be written as an absolute path, if that is obvious.
fn absolute_hint(relative: &str) -> String {
    let trimmed = relative.trim_start_matches("./");
    if trimmed.is_empty() || trimmed.split('/').any(|c| c == "..") {
        "an absolute path such as \"/bin/app\"".to_owned()
    } else {
        format!("\"/{trimmed}\"")
    }
}

/// An optional key read with `read`, with `default` when absent.
pub(crate) fn or_default<'a, 'i, T>(
    t: &Table<'a, 'i>,
    key: &str,
    default: T,
    read: impl FnOnce(&'a Value<'i>, &str) -> Option<T>,
) -> Option<T> {
    match t.get(key) {
        None => Some(default),
        Some(v) => read(v, &t.describe(key)),
    }
}

/// An optional key read with `read`: `Some(None)` when absent, `None` when
/// present but wrong.
pub(crate) fn optional<'a, 'i, T>(
    t: &Table<'a, 'i>,
    key: &str,
    read: impl FnOnce(&'a Value<'i>, &str) -> Option<T>,
) -> Option<Option<T>> {
    match t.get(key) {
        None => Some(None),
        Some(v) => read(v, &t.describe(key)).map(Some),
    }
}

/// Whether `s` is a lowercase name `[a-z0-9][a-z0-9._-]*` (channels).
pub(crate) fn is_lower_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && s.len() <= 128
}

/// Whether `s` can be an OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub(crate) fn is_tag(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && s.len() <= 128
}

/// Whether `s` is a portable environment variable name.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
