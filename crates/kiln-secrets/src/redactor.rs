//! Redaction of step output: every form of every secret becomes `***`
//! before a line is printed, logged or stored.

use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::{Needle, SecretValue, needles};

/// What a secret is replaced with.
const MASK: &[u8] = b"***";

/// Replaces every [`needles`] form of a set of secrets with `***`.
///
/// Matches are leftmost-longest: where the base64 of a value and its stable
/// middle both match, the whole encoding is replaced, not just the middle.
/// Build one per build (all secrets in one automaton) and reuse it.
///
/// Redact whole units (a line, a complete output): a secret split across
/// two calls is not seen by either.
pub struct Redactor {
    inner: Inner,
}

enum Inner {
    /// No needles: nothing to replace.
    Nothing,
    Automaton(AhoCorasick),
    /// Only if the automaton cannot be built (needles of hundreds of MiB):
    /// a slow search, so that output is still redacted.
    Naive(Vec<Needle>),
}

impl Redactor {
    /// A redactor for every form of every secret in `secrets`.
    pub fn new(secrets: &[SecretValue]) -> Self {
        let all: Vec<Needle> = secrets.iter().flat_map(needles).collect();
        let inner = if all.is_empty() {
            Inner::Nothing
        } else {
            match AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(all.iter().map(Needle::bytes))
            {
                Ok(ac) => Inner::Automaton(ac),
                Err(_) => Inner::Naive(all),
            }
        };
        Redactor { inner }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        match String::from_utf8(self.redact_bytes(text.as_bytes())) {
            Ok(s) => s,
            // Only a needle that is not UTF-8 itself can cut a character in
            // two; what is left of it is shown as U+FFFD.
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// `bytes` with every secret replaced by `***`.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.inner {
            Inner::Nothing => bytes.to_vec(),
            Inner::Automaton(ac) => {
                let mut out = Vec::with_capacity(bytes.len());
                let replaced = ac.try_replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
                    dst.extend_from_slice(MASK);
                    true
                });
                match replaced {
                    Ok(()) => out,
                    // A leftmost automaton always supports this search; were
                    // it ever refused, fall back rather than show the text.
                    Err(_) => naive_redact(bytes, ac.patterns_len(), |_| None),
                }
            }
            Inner::Naive(all) => naive_redact(bytes, all.len(), |i| all.get(i).map(Needle::bytes)),
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needles = match &self.inner {
            Inner::Nothing => 0,
            Inner::Automaton(ac) => ac.patterns_len(),
            Inner::Naive(all) => all.len(),
        };
        f.debug_struct("Redactor")
            .field("needles", &needles)
            .finish()
    }
}

/// Leftmost-longest replacement by trying every needle at every position.
/// `needle(i)` gives needle `i`; when it cannot (the needles are not at
/// hand), the whole text is masked: failing closed beats leaking.
fn naive_redact<'a>(
    bytes: &[u8],
    count: usize,
    needle: impl Fn(usize) -> Option<&'a [u8]>,
) -> Vec<u8> {
    let all: Option<Vec<&[u8]>> = (0..count).map(needle).collect();
    let Some(all) = all else {
        return if bytes.is_empty() {
            Vec::new()
        } else {
            MASK.to_vec()
        };
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let longest = all
            .iter()
            .filter(|n| !n.is_empty() && bytes[i..].starts_with(n))
            .map(|n| n.len())
            .max();
        match longest {
            Some(len) => {
                out.extend_from_slice(MASK);
                i += len;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        let secrets: Vec<SecretValue> = values
            .iter()
            .enumerate()
            .map(|(i, v)| SecretValue::new(format!("s{i}"), *v))
            .collect();
        Redactor::new(&secrets)
    }

    fn check(values: &[&str], input: &str, expected: &str) {
        assert_eq!(redactor(values).redact(input), expected, "{input:?}");
    }

    #[test]
    fn raw_and_trimmed_values() {
        check(&["hunter2"], "a hunter2 b hunter2", "a *** b ***");
        check(&["tok-123\n"], "token=tok-123 done", "token=*** done");
        check(&["tok-123\n"], "line tok-123\nnext", "line ***next");
        check(&[""], "nothing to hide", "nothing to hide");
        check(&[], "nothing to hide", "nothing to hide");
    }

    #[test]
    fn encoded_forms() {
        let b64 = STANDARD.encode("tok-123456");
        check(&["tok-123456"], &format!("echo {b64}"), "echo ***");
        // Embedded in basic auth: "user:" puts the value 2 bytes into a
        // 3-byte group; the 4 characters of "use" and the 3 that mix "r:"
        // with the value stay, the rest is the stable part.
        let auth = STANDARD.encode("user:tok-123456");
        let out = redactor(&["tok-123456"]).redact(&auth);
        assert_eq!(out, format!("{}***", &auth[..7]));
        check(&["tok-123456"], "x746f6b2d313233343536x", "x***x");
        check(&["tok-123456"], "X746F6B2D313233343536X", "X***X");
        check(&["p@ss/w rd"], "u=p%40ss%2Fw%20rd&", "u=***&");
        check(&["p@ss/w rd"], "u=p%40ss%2fw%20rd&", "u=***&");
    }

    #[test]
    fn longest_match_wins_across_secrets() {
        // The longer secret contains the shorter one: the whole is masked,
        // not the inner part with the rest left showing.
        check(&["abcd", "xxabcdyy"], "[xxabcdyy] [abcd]", "[***] [***]");
    }

    #[test]
    fn bytes_and_debug() {
        let r = redactor(&["hunter2-value"]);
        assert_eq!(r.redact_bytes(b"\xffhunter2-value\xfe"), b"\xff***\xfe");
        let shown = format!("{r:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn naive_fallback_matches_the_automaton() {
        let needles: Vec<&[u8]> = vec![b"abcd", b"xxabcdyy", b"cd"];
        let out = naive_redact(b"[xxabcdyy] [abcd] cd", 3, |i| needles.get(i).copied());
        assert_eq!(out, b"[***] [***] ***");
        assert_eq!(naive_redact(b"anything", 1, |_| None), b"***");
    }
}
