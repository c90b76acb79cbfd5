//! Short, readable excerpts of what a container said or holds, for check
//! details: enough to see why, never a whole log.
//!
//! Every excerpt is cut from text that was redacted first ([`Redaction`]):
//! cutting first could split a secret at the cut and leave a fragment that
//! no redactor recognises.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A function that masks every secret in a text.
type Mask = dyn Fn(&str) -> String + Send + Sync;

/// How secret values are masked in what the checks show: applied to whole
/// outputs before they are cut to length, so that no part of a secret
/// survives at the cut. The caller (who knows the secrets) supplies the
/// masking function; kiln-check never sees a secret value through it.
#[derive(Clone, Default)]
pub struct Redaction {
    mask: Option<Arc<Mask>>,
    lines: usize,
}

impl Redaction {
    /// Mask with `mask`; `lines` is how many lines the longest secret spans
    /// (a log tail fetches that many more lines, so that a secret cut by
    /// the engine's own line limit is dropped whole).
    pub fn new(mask: impl Fn(&str) -> String + Send + Sync + 'static, lines: usize) -> Self {
        Redaction {
            mask: Some(Arc::new(mask)),
            lines,
        }
    }

    /// No secrets: text is shown as it is.
    pub fn none() -> Self {
        Redaction::default()
    }

    /// `bytes` as text, every secret masked.
    pub fn apply(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        match &self.mask {
            Some(mask) => mask(&text),
            None => text.into_owned(),
        }
    }

    /// How many lines the longest secret spans.
    pub fn secret_lines(&self) -> usize {
        self.lines
    }
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redaction")
            .field("masks", &self.mask.is_some())
            .field("lines", &self.lines)
            .finish()
    }
}

impl PartialEq for Redaction {
    fn eq(&self, other: &Self) -> bool {
        let same_mask = match (&self.mask, &other.mask) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_mask && self.lines == other.lines
    }
}

impl Eq for Redaction {}

/// The last `max_lines` lines of `bytes`, at most `max_chars` characters,
/// as text, cut after `redaction` masked the whole.
pub(crate) fn tail(
    bytes: &[u8],
    max_lines: usize,
    max_chars: usize,
    redaction: &Redaction,
) -> String {
    let text = redaction.apply(bytes);
    let text = text.trim_end();
    let mut start = 0;
    for (seen, (i, _)) in text.rmatch_indices('\n').enumerate() {
        if seen + 1 == max_lines {
            start = i + 1;
            break;
        }
    }
    let lines = &text[start..];
    let chars = lines.chars().count();
    if chars > max_chars {
        let skip = chars - max_chars;
        format!("...{}", lines.chars().skip(skip).collect::<String>())
    } else {
        lines.to_owned()
    }
}

/// The first `max_chars` characters of `bytes`, as text, cut after
/// `redaction` masked the whole.
pub(crate) fn head(bytes: &[u8], max_chars: usize, redaction: &Redaction) -> String {
    let text = redaction.apply(bytes);
    if text.chars().count() > max_chars {
        format!("{}...", text.chars().take(max_chars).collect::<String>())
    } else {
        text
    }
}

/// Whether `needle` occurs in `haystack`, which need not be UTF-8.
pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A duration as a recipe writes it: `60s`, `500ms`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines_and_characters() {
        let none = Redaction::none();
        assert_eq!(tail(b"a\nb\nc\nd\n", 2, 100, &none), "c\nd");
        assert_eq!(tail(b"a\nb", 5, 100, &none), "a\nb");
        assert_eq!(tail(b"", 5, 100, &none), "");
        assert_eq!(tail(b"abcdefgh", 5, 3, &none), "...fgh");
    }

    #[test]
    fn a_secret_across_the_cut_leaves_no_fragment() {
        let secret = "SECRET-0123456789";
        let redaction = Redaction::new(move |t: &str| t.replace(secret, "***"), 1);
        // Cut first, the last 10 characters would be "456789abc" and the
        // first 8 "abSECRET": fragments no redactor recognises.
        let out = format!("start {secret}abc");
        assert_eq!(tail(out.as_bytes(), 5, 10, &redaction), "...art ***abc");
        let out = format!("ab{secret} end");
        assert_eq!(head(out.as_bytes(), 8, &redaction), "ab*** en...");
    }

    #[test]
    fn bytes_are_searched_as_bytes() {
        assert!(contains(b"status: ok\n", "ok"));
        assert!(!contains(b"status: ko\n", "ok"));
        assert!(
            contains(b"\xff\xfeok", "ok"),
            "content that is not UTF-8 is still searched"
        );
        assert!(contains(b"", ""));
    }

    #[test]
    fn heads_and_durations() {
        assert_eq!(head(b"abcdef", 3, &Redaction::none()), "abc...");
        assert_eq!(head(b"abc", 3, &Redaction::none()), "abc");
        assert_eq!(human(Duration::from_secs(60)), "60s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }
}
