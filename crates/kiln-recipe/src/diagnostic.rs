//! The crate's error: a recipe that cannot be read, or one that can but is
//! wrong, with every problem located at file:line:column and renderable by
//! miette with the offending line underlined.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::document::Problem;

/// Why a recipe could not be turned into a [`Recipe`](crate::Recipe).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecipeError {
    /// The recipe file could not be read.
    #[error("cannot read recipe {}", path.display())]
    Io {
        /// The file (for a folder: `<folder>/kiln.toml`).
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The recipe was read but is not valid: bad TOML, unknown or missing
    /// keys, wrong types or values. Every problem found is listed, in the
    /// order they appear in the file.
    #[error("{}", summary(path, diagnostics))]
    Invalid {
        /// The recipe file.
        path: PathBuf,
        /// Every problem, first in the file first; never empty when built
        /// by this crate.
        diagnostics: Vec<RecipeDiagnostic>,
        /// The recipe's text, named by its path, for rendering.
        source_code: NamedSource<String>,
    },
}

impl RecipeError {
    /// Which kind of failure this is: always bad input (a recipe that
    /// cannot be read was named wrongly or is not readable by the user).
    /// Every variant is named, with no wildcard, so that a new one must be
    /// given its kind where it is added.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        match self {
            RecipeError::Io { .. } | RecipeError::Invalid { .. } => {
                kiln_error_kind::ErrorKind::Input
            }
        }
    }

    /// The located problems (empty for an I/O error).
    pub fn diagnostics(&self) -> &[RecipeDiagnostic] {
        match self {
            RecipeError::Invalid { diagnostics, .. } => diagnostics,
            RecipeError::Io { .. } => &[],
        }
    }

    /// The recipe file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            RecipeError::Io { path, .. } | RecipeError::Invalid { path, .. } => path,
        }
    }

    /// Locates `problems` in `text` and wraps them, first in the file first.
    pub(crate) fn invalid(path: &Path, text: &str, mut problems: Vec<Problem>) -> Self {
        // A stable sort keeps problems found at the same place in the order
        // the reader found them, which is the order a reader fixes them in.
        problems.sort_by_key(|p| p.span.start);
        let diagnostics = problems
            .into_iter()
            .map(|p| RecipeDiagnostic::locate(path, text, p))
            .collect();
        RecipeError::Invalid {
            path: path.to_owned(),
            diagnostics,
            source_code: NamedSource::new(path.display().to_string(), text.to_owned())
                .with_language("TOML"),
        }
    }
}

/// One step of the way to a value of a recipe: a table's key or an
/// array's index (`[[layer]]` is the array `layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep<'a> {
    /// A key of a table.
    Key(&'a str),
    /// An index of an array, from 0.
    Index(usize),
}

impl RecipeError {
    /// A problem found after parsing (by the builder, say: a glob that
    /// matches nothing) located at the value `at` leads to in `text`, the
    /// recipe read from `path`, so that it is reported at file:line:column
    /// like any other. `None` when `text` holds no such value (it changed
    /// since the recipe was parsed).
    pub fn at_value(
        path: &Path,
        text: &str,
        at: &[KeyStep<'_>],
        label: &str,
        message: String,
    ) -> Option<Self> {
        let doc = toml::de::DeTable::parse(text).ok()?;
        let mut span = None;
        let mut table = Some(doc.get_ref());
        let mut array: Option<&[toml::Spanned<toml::de::DeValue<'_>>]> = None;
        for step in at {
            let value = match (step, table, array) {
                (KeyStep::Key(k), Some(t), _) => t.get(*k)?,
                (KeyStep::Index(i), _, Some(items)) => items.get(*i)?,
                _ => return None,
            };
            span = Some(value.span());
            (table, array) = match value.get_ref() {
                toml::de::DeValue::Table(t) => (Some(t), None),
                toml::de::DeValue::Array(items) => (None, Some(&**items)),
                _ => (None, None),
            };
        }
        let problem = Problem {
            span: span?,
            label: label.to_owned(),
            message,
            help: None,
        };
        Some(RecipeError::invalid(path, text, vec![problem]))
    }
}

/// The 1-based line of byte `offset` in `text`, for messages that point
/// back at an earlier occurrence.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn summary(path: &Path, diagnostics: &[RecipeDiagnostic]) -> String {
    match diagnostics {
        [] => format!("{}: invalid recipe", path.display()),
        [only] => only.to_string(),
        [first, rest @ ..] => {
            let s = if rest.len() == 1 { "" } else { "s" };
            format!("{first} (and {} more error{s})", rest.len())
        }
    }
}

impl Diagnostic for RecipeError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match self {
            RecipeError::Io { .. } => "kiln::recipe::io",
            RecipeError::Invalid { .. } => "kiln::recipe::invalid",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self {
            RecipeError::Io { .. } => Some(Box::new(
                "a recipe is a TOML file, or a folder that holds kiln.toml",
            )),
            RecipeError::Invalid { diagnostics, .. } => diagnostics.first()?.help(),
        }
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        match self {
            RecipeError::Invalid { source_code, .. } => Some(source_code),
            RecipeError::Io { .. } => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.diagnostics().first()?.labels()
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        let rest = self
            .diagnostics()
            .get(1..)
            .filter(|rest| !rest.is_empty())?;
        Some(Box::new(rest.iter().map(|d| d as &dyn Diagnostic)))
    }
}

/// One problem in a recipe, located in its text.
///
/// Its `Display` is `"{path}:{line}:{column}: {message}"`. As a
/// [`miette::Diagnostic`] it has a label at `span` and the help; it carries
/// no source code of its own: rendered inside [`RecipeError`], it uses the
/// error's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeDiagnostic {
    /// The recipe file.
    pub path: PathBuf,
    /// 1-based line of the span's start.
    pub line: usize,
    /// 1-based column of the span's start, counted in characters.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
    /// A short label shown under the offending text ("unknown key").
    pub label: String,
    /// Byte range in the text of the offending key, value or table header.
    pub span: Range<usize>,
    /// The text of line `line`, without its line break.
    pub source_line: String,
    /// More help: what a table takes, the other occurrence of a duplicate.
    pub help: Option<String>,
}

impl RecipeDiagnostic {
    fn locate(path: &Path, text: &str, problem: Problem) -> Self {
        let mut start = problem.span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        RecipeDiagnostic {
            path: path.to_owned(),
            line: text[..start].matches('\n').count() + 1,
            column: text[line_start..start].chars().count() + 1,
            message: problem.message,
            label: problem.label,
            span: problem.span,
            source_line: text[line_start..line_end].trim_end_matches('\r').to_owned(),
            help: problem.help,
        }
    }
}

impl fmt::Display for RecipeDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for RecipeDiagnostic {}

impl Diagnostic for RecipeDiagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = LabeledSpan::new_with_span(Some(self.label.clone()), self.span.clone());
        Some(Box::new(std::iter::once(label)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(span: Range<usize>, message: &str) -> Problem {
        Problem {
            span,
            label: "here".into(),
            message: message.into(),
            help: None,
        }
    }

    #[test]
    fn lines_and_columns_count_characters_from_one() {
        let text = "a = 1\r\nb = \"é\" x\n";
        let check = |offset: usize, line: usize, column: usize, source_line: &str| {
            let d =
                RecipeDiagnostic::locate(Path::new("k.toml"), text, problem(offset..offset, "m"));
            assert_eq!(
                (d.line, d.column, d.source_line.as_str()),
                (line, column, source_line)
            );
        };
        check(0, 1, 1, "a = 1");
        check(4, 1, 5, "a = 1");
        check(7, 2, 1, "b = \"é\" x");
        // "é" is two bytes but one column.
        check(7 + 4 + 1 + 2 + 2, 2, 9, "b = \"é\" x");
        check(text.len(), 3, 1, "");
    }

    #[test]
    fn invalid_sorts_and_summarises() {
        let e = RecipeError::invalid(
            Path::new("k.toml"),
            "a = 1\nb = 2\n",
            vec![
                problem(6..7, "second"),
                problem(0..1, "first"),
                problem(6..7, "third"),
            ],
        );
        assert_eq!(e.to_string(), "k.toml:1:1: first (and 2 more errors)");
        let messages: Vec<_> = e.diagnostics().iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["first", "second", "third"]);
        assert_eq!(e.related().map(Iterator::count), Some(2));
        assert!(e.source_code().is_some());
        assert_eq!(e.diagnostics()[1].to_string(), "k.toml:2:1: second");
    }

    #[test]
    fn one_problem_has_no_count() {
        let e = RecipeError::invalid(Path::new("k.toml"), "a = 1\n", vec![problem(4..5, "bad")]);
        assert_eq!(e.to_string(), "k.toml:1:5: bad");
        assert!(e.related().is_none());
    }
}
