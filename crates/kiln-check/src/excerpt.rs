//! Short, readable excerpts of what a container said or holds, for check
//! details: enough to see why, never a whole log.

use std::time::Duration;

/// The last `max_lines` lines of `bytes`, at most `max_chars` characters,
/// as text.
pub(crate) fn tail(bytes: &[u8], max_lines: usize, max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
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

/// The first `max_chars` characters of `bytes`, as text.
pub(crate) fn head(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() > max_chars {
        format!("{}...", text.chars().take(max_chars).collect::<String>())
    } else {
        text.into_owned()
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
        assert_eq!(tail(b"a\nb\nc\nd\n", 2, 100), "c\nd");
        assert_eq!(tail(b"a\nb", 5, 100), "a\nb");
        assert_eq!(tail(b"", 5, 100), "");
        assert_eq!(tail(b"abcdefgh", 5, 3), "...fgh");
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
        assert_eq!(head(b"abcdef", 3), "abc...");
        assert_eq!(head(b"abc", 3), "abc");
        assert_eq!(human(Duration::from_secs(60)), "60s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }
}
