//! Typed, located access to the parsed TOML tree, so that every section
//! reports wrong types, unknown keys and missing keys the same way and keeps
//! going after the first problem.

use std::cell::Cell;
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::values::ValueError;

/// A value of the tree with its byte range in the text.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A problem found in the text, before it is given a line and a column.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub span: Range<usize>,
    pub label: String,
    pub message: String,
    pub help: Option<String>,
}

/// Every problem found so far. Readers push here and return `None` for a
/// value they could not read, so that one run reports all problems.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem and gives `None`, for `return p.fail(...)`.
    pub fn fail<T>(
        &mut self,
        span: Range<usize>,
        label: impl Into<String>,
        message: impl Into<String>,
    ) -> Option<T> {
        self.push(span, label, message, None);
        None
    }

    /// Records a problem with a help line and gives `None`.
    pub fn fail_help<T>(
        &mut self,
        span: Range<usize>,
        label: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Option<T> {
        self.push(span, label, message, Some(help.into()));
        None
    }

    fn push(
        &mut self,
        span: Range<usize>,
        label: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.0.push(Problem {
            span,
            label: label.into(),
            message: message.into(),
            help,
        });
    }
}

/// "a string", "an integer"...: the type of a value as a message says it.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Reports that `v` (described by `what`) is not of the `expected` type.
pub(crate) fn wrong_type<T>(
    v: &Value<'_>,
    what: &str,
    expected: &str,
    example: &str,
    p: &mut Problems,
) -> Option<T> {
    let found = type_name(v.get_ref());
    p.fail(
        v.span(),
        format!("expected {expected}"),
        format!("{what} must be {expected}, not {found}: write {example}"),
    )
}

/// A table of the tree, with a description used in messages
/// (`[image]`, `layer "site"`, `files[0] of layer "site"`).
pub(crate) struct Table<'a, 'i> {
    pub what: String,
    pub span: Range<usize>,
    entries: &'a DeTable<'i>,
    /// The keys this table takes, once `deny_unknown` has been called.
    allowed: Cell<&'static [&'static str]>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// `v` as a table, or a located type error.
    pub fn of(
        v: &'a Value<'i>,
        what: impl Into<String>,
        example: &str,
        p: &mut Problems,
    ) -> Option<Self> {
        let what = what.into();
        match v.get_ref() {
            DeValue::Table(entries) => Some(Table {
                what,
                span: v.span(),
                entries,
                allowed: Cell::new(&[]),
            }),
            _ => wrong_type(v, &what, "a table", example, p),
        }
    }

    /// The whole document as a table.
    pub fn root(span: Range<usize>, entries: &'a DeTable<'i>) -> Self {
        Table {
            what: "the recipe".to_owned(),
            span,
            entries,
            allowed: Cell::new(&[]),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Where `key` is written, if present.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(k, _)| k.span())
    }

    /// Keys with their spans and values, in the order they are written.
    pub fn entries(&self) -> Vec<(&'a str, Range<usize>, &'a Value<'i>)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
            .collect();
        all.sort_by_key(|(_, span, _)| span.start);
        all
    }

    /// "`key` in WHAT", for messages.
    pub fn describe(&self, key: &str) -> String {
        format!("`{key}` in {}", self.what)
    }

    /// Reports every key not in `allowed`, suggesting the closest allowed key.
    pub fn deny_unknown(&self, allowed: &'static [&'static str], p: &mut Problems) {
        self.allowed.set(allowed);
        for (key, span, _) in self.entries() {
            if !allowed.contains(&key) {
                self.unknown(key, span, allowed, p);
            }
        }
    }

    /// Records the keys this table takes without reporting anything, for a
    /// caller that reports unknown keys its own way.
    pub fn set_allowed(&self, allowed: &'static [&'static str]) {
        self.allowed.set(allowed);
    }

    /// Reports `key` as unknown here.
    pub fn unknown(&self, key: &str, span: Range<usize>, allowed: &[&str], p: &mut Problems) {
        let message = match closest(key, allowed) {
            Some(near) => format!(
                "unknown key `{key}` in {}; did you mean `{near}`?",
                self.what
            ),
            None => format!("unknown key `{key}` in {}; remove it", self.what),
        };
        p.fail_help::<()>(
            span,
            "unknown key",
            message,
            format!("{} takes: {}", self.what, allowed.join(", ")),
        );
    }

    /// Whether some unknown key here looks like a misspelling of `key`
    /// (known once `deny_unknown` ran). A key missing because it is misspelt
    /// is reported once, as the typo, and not again as missing.
    pub fn misspells(&self, key: &str) -> bool {
        let allowed = self.allowed.get();
        !allowed.is_empty()
            && self
                .entries
                .iter()
                .map(|(k, _)| k.get_ref().as_ref())
                .any(|k| !allowed.contains(&k) && closest(k, allowed) == Some(key))
    }

    /// The value of a required key, or an error at the table naming the key
    /// and showing how to write it.
    pub fn require(&self, key: &str, example: &str, p: &mut Problems) -> Option<&'a Value<'i>> {
        match self.get(key) {
            Some(v) => Some(v),
            None if self.misspells(key) => None,
            None => p.fail(
                self.span.clone(),
                format!("`{key}` missing"),
                format!("{} is missing `{key}`: add {example}", self.what),
            ),
        }
    }
}

/// `v` as a string, or a located type error.
pub(crate) fn string<'a>(
    v: &'a Value<'_>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<Spanned<&'a str>> {
    match v.get_ref() {
        DeValue::String(s) => Some(Spanned::new(v.span(), s.as_ref())),
        _ => wrong_type(v, what, "a string", example, p),
    }
}

/// `v` as a boolean, or a located type error.
pub(crate) fn boolean(v: &Value<'_>, what: &str, example: &str, p: &mut Problems) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => wrong_type(v, what, "a boolean", example, p),
    }
}

/// `v` as an array of tables (`[[key]]`); a single `[key]` table is
/// told to double its brackets.
pub(crate) fn array_of_tables<'a, 'i>(
    v: &'a Value<'i>,
    key: &str,
    p: &mut Problems,
) -> Option<&'a [Value<'i>]> {
    match v.get_ref() {
        DeValue::Array(items) => Some(items),
        DeValue::Table(_) => p.fail(
            v.span(),
            "a single table",
            format!("`{key}` must be an array of tables: write [[{key}]] with double brackets, not [{key}]"),
        ),
        _ => wrong_type(v, &format!("`{key}`"), "an array of tables", &format!("[[{key}]] sections"), p),
    }
}

/// `v` as an array, or a located type error.
pub(crate) fn array<'a, 'i>(
    v: &'a Value<'i>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<&'a [Value<'i>]> {
    match v.get_ref() {
        DeValue::Array(items) => Some(items),
        _ => wrong_type(v, what, "an array", example, p),
    }
}

/// `v` as an integer (any TOML radix), with the radix it was written in.
pub(crate) fn integer(
    v: &Value<'_>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<(i128, u32)> {
    match v.get_ref() {
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some((n, i.radix())),
            Err(_) => p.fail(v.span(), "too large", format!("{what} is too large")),
        },
        _ => wrong_type(v, what, "an integer", example, p),
    }
}

/// `v` as a list of strings. Every bad element is reported.
pub(crate) fn strings(
    v: &Value<'_>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<Vec<String>> {
    let items = array(v, what, example, p)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        match string(item, &format!("each entry of {what}"), example, p) {
            Some(s) => out.push(s.into_inner().to_owned()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `v` as a table of strings, collected in the order written (a sorted map
/// sorts them). Every bad value is reported; numbers and booleans get a
/// hint to quote them.
pub(crate) fn string_map<M: Default + Extend<(String, String)>>(
    v: &Value<'_>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<M> {
    let table = Table::of(v, what, example, p)?;
    let mut out = M::default();
    let mut ok = true;
    for (key, _, value) in table.entries() {
        match value.get_ref() {
            DeValue::String(s) => {
                out.extend([(key.to_owned(), s.as_ref().to_owned())]);
            }
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                let text = value_text(value);
                ok = false;
                p.fail::<()>(
                    value.span(),
                    "expected a string",
                    format!(
                        "`{key}` in {what} must be a string, not {}: write {} = \"{text}\"",
                        type_name(value.get_ref()),
                        toml_key(key)
                    ),
                );
            }
            _ => {
                ok = false;
                wrong_type::<()>(
                    value,
                    &format!("`{key}` in {what}"),
                    "a string",
                    &format!("{} = \"...\"", toml_key(key)),
                    p,
                );
            }
        }
    }
    ok.then_some(out)
}

/// `v` as a string parsed into a value type.
pub(crate) fn parsed<T>(
    v: &Value<'_>,
    what: &str,
    example: &str,
    p: &mut Problems,
) -> Option<Spanned<T>>
where
    T: FromStr<Err = ValueError>,
{
    let s = string(v, what, example, p)?;
    match s.get_ref().parse::<T>() {
        Ok(t) => Some(Spanned::new(v.span(), t)),
        Err(e) => p.fail(v.span(), "invalid value", e.0),
    }
}

/// A scalar as it would be quoted back to the user (`8080`, `true`).
fn value_text(v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::String(s) => s.to_string(),
        other => other.type_str().to_owned(),
    }
}

/// A key as it must be written in TOML: bare if it can be, quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The allowed key nearest to a misspelt one, if it is near enough to be a
/// typo (at most a third of its letters differ).
pub(crate) fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let limit = (key.chars().count().max(3) / 3).max(1);
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance, counting an adjacent swap as one edit (so `nmae`
/// is one edit from `name`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        let keys = ["name", "version", "base", "epoch", "context"];
        let check =
            |typo: &str, expect: Option<&str>| assert_eq!(closest(typo, &keys), expect, "{typo}");
        check("nmae", Some("name"));
        check("nam", Some("name"));
        check("verison", Some("version"));
        check("bsae", Some("base"));
        check("contxt", Some("context"));
        check("entrypoint", None);
        check("x", None);
    }

    #[test]
    fn keys_quote_only_when_needed() {
        assert_eq!(toml_key("PATH"), "PATH");
        assert_eq!(
            toml_key("org.opencontainers.image.source"),
            "\"org.opencontainers.image.source\""
        );
    }
}
