//! The byte strings a secret can show up as: the value itself and the
//! encodings a build step is likely to put it through (base64, hex,
//! percent-encoding). Redaction and the image scan look for exactly these.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::engine::{Config as _, GeneralPurpose};
use zeroize::Zeroizing;

use crate::SecretValue;

/// The shortest encoded needle that is looked for, in bytes.
///
/// Encoded forms shorter than this (the base64 of a two-byte secret, the
/// stable middle of a short one's base64) would match by chance all over a
/// layer of binaries. Raw forms are always looked for, however short: a
/// secret that short is the recipe's problem, and hiding it would be worse.
pub const MIN_ENCODED_LEN: usize = 4;

/// How a secret's value was transformed into the bytes a [`Needle`] holds.
///
/// Ordered from the most to the least direct; when one place holds a secret
/// in several forms, the most direct one is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Encoding {
    /// The value as is, or without its trailing `\r`/`\n`.
    Raw,
    /// Standard base64 (`+`, `/`), padded, unpadded, or embedded in longer
    /// base64 text.
    Base64,
    /// URL-safe base64 (`-`, `_`), likewise.
    Base64Url,
    /// Lowercase hexadecimal.
    Hex,
    /// Uppercase hexadecimal.
    HexUpper,
    /// Percent-encoding: RFC 3986 unreserved characters as is, every other
    /// byte as `%XX` (uppercase or lowercase hex digits).
    UrlEncoded,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Raw => "raw",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
            Encoding::Hex => "hex",
            Encoding::HexUpper => "uppercase hex",
            Encoding::UrlEncoded => "url-encoded",
        })
    }
}

/// One byte string to look for, and the [`Encoding`] it stands for.
///
/// The bytes reveal the secret as much as the value does: they are wiped on
/// drop, and `Debug` shows only the form and length.
#[derive(Clone, PartialEq, Eq)]
pub struct Needle {
    form: Encoding,
    bytes: Zeroizing<Vec<u8>>,
}

impl Needle {
    /// The encoding this needle stands for.
    pub fn form(&self) -> Encoding {
        self.form
    }

    /// The bytes to look for.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Needle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Needle")
            .field("form", &self.form)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Every form in which `secret` is looked for, without duplicates (a byte
/// string that two forms share is kept under the more direct one).
///
/// - **Raw**: the value, and the value without trailing `\r` and `\n`
///   (file secrets usually end in a newline that a step's `$(cat ...)`
///   drops). Never skipped, however short; a value that is empty or only
///   line endings has no needles at all.
/// - **Base64**, standard and URL-safe, of the value and of the trimmed
///   value: the whole encoding, padded and unpadded, and the *stable
///   middle* of the value's encoding at each of the three alignments.
///   Base64 turns 3 bytes into 4 characters, so a value that sits inside
///   longer encoded text (`user:TOKEN` in HTTP basic auth) starts 0, 1 or 2
///   bytes into a 3-byte group. With `k` unknown bytes before it, the first
///   `ceil(8k/6)` characters (0, 2 or 3) mix in bits of those bytes, and the
///   character after the last complete 6 bits of the value mixes in bits of
///   whatever follows; the characters in between depend on the value alone,
///   so they appear verbatim in any base64 text that contains the value at
///   that alignment.
/// - **Hex**, lowercase and uppercase, of the value and the trimmed value.
/// - **UrlEncoded**: RFC 3986 unreserved bytes (`A-Z a-z 0-9 - . _ ~`) as
///   is, every other byte as `%XX`, once with uppercase and once with
///   lowercase hex digits.
///
/// Encoded needles shorter than [`MIN_ENCODED_LEN`] are left out. Text that
/// wraps base64 across lines (`base64` without `-w0`) is not covered.
pub fn needles(secret: &SecretValue) -> Vec<Needle> {
    let raw = secret.expose();
    let trimmed = trim_line_end(raw);
    let mut set = NeedleSet::default();
    if trimmed.is_empty() {
        // Only line endings (an empty file's newline): looking for "\n"
        // would flag every text file and mask every line break.
        return Vec::new();
    }
    set.add(Encoding::Raw, Zeroizing::new(raw.to_vec()));
    set.add(Encoding::Raw, Zeroizing::new(trimmed.to_vec()));
    let values: &[&[u8]] = if trimmed.len() == raw.len() {
        &[raw]
    } else {
        &[raw, trimmed]
    };
    let base64_forms: [(Encoding, &GeneralPurpose, &GeneralPurpose); 2] = [
        (Encoding::Base64, &STANDARD, &STANDARD_NO_PAD),
        (Encoding::Base64Url, &URL_SAFE, &URL_SAFE_NO_PAD),
    ];
    for (form, padded, unpadded) in base64_forms {
        for value in values.iter().filter(|v| !v.is_empty()) {
            set.add(form, encode_base64(padded, value, 0));
            set.add(form, encode_base64(unpadded, value, 0));
            for lead in 0..3 {
                set.add(form, stable_base64(unpadded, value, lead));
            }
        }
    }
    for value in values {
        set.add(Encoding::Hex, encode_hex(value, b"0123456789abcdef"));
        set.add(Encoding::HexUpper, encode_hex(value, b"0123456789ABCDEF"));
    }
    for value in values {
        set.add(
            Encoding::UrlEncoded,
            percent_encode(value, b"0123456789ABCDEF"),
        );
        set.add(
            Encoding::UrlEncoded,
            percent_encode(value, b"0123456789abcdef"),
        );
    }
    set.needles
}

/// `value` without trailing `\r` and `\n`.
pub(crate) fn trim_line_end(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    &value[..end]
}

/// Needles in the order they were added, each byte string once.
#[derive(Default)]
struct NeedleSet {
    needles: Vec<Needle>,
}

impl NeedleSet {
    fn add(&mut self, form: Encoding, bytes: Zeroizing<Vec<u8>>) {
        let too_short = form != Encoding::Raw && bytes.len() < MIN_ENCODED_LEN;
        if bytes.is_empty() || too_short || self.needles.iter().any(|n| n.bytes == bytes) {
            return;
        }
        self.needles.push(Needle { form, bytes });
    }
}

/// The base64 of `lead` zero bytes followed by `value`. Buffers holding the
/// value are sized up front, so no reallocation leaves a copy behind.
fn encode_base64(engine: &GeneralPurpose, value: &[u8], lead: usize) -> Zeroizing<Vec<u8>> {
    let mut input = Zeroizing::new(vec![0u8; lead + value.len()]);
    input[lead..].copy_from_slice(value);
    let padding = engine.config().encode_padding();
    let len = base64::encoded_len(input.len(), padding).unwrap_or(0);
    let mut out = Zeroizing::new(vec![0u8; len]);
    match engine.encode_slice(&*input, &mut out[..]) {
        Ok(written) => out.truncate(written),
        // Only a length overflow gets here; such a value has no base64 form
        // worth looking for.
        Err(_) => out.clear(),
    }
    out
}

/// The characters of the unpadded base64 of `value`, preceded by `lead`
/// unknown bytes, that depend on `value` alone (see [`needles`]).
fn stable_base64(engine: &GeneralPurpose, value: &[u8], lead: usize) -> Zeroizing<Vec<u8>> {
    let mut encoded = encode_base64(engine, value, lead);
    // Character i covers bits [6i, 6i + 6) of the input; the unknown lead
    // bytes are bits [0, 8 * lead), the value ends at bit 8 * (lead + len).
    let start = (8 * lead).div_ceil(6);
    let end = (8 * (lead + value.len()) / 6).min(encoded.len());
    if end <= start {
        encoded.clear();
    } else {
        encoded.truncate(end);
        encoded.drain(..start);
    }
    encoded
}

fn encode_hex(value: &[u8], digits: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 2));
    for b in value {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    out
}

fn percent_encode(value: &[u8], digits: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(digits[usize::from(b >> 4)]);
            out.push(digits[usize::from(b & 0xf)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needle_bytes(value: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
        needles(&SecretValue::new("s", value))
            .iter()
            .map(|n| (n.form(), n.bytes().to_vec()))
            .collect()
    }

    fn has(value: &[u8], form: Encoding, bytes: &[u8]) -> bool {
        needle_bytes(value)
            .iter()
            .any(|(f, b)| *f == form && b == bytes)
    }

    /// Whether some base64 needle of `value` occurs in `text` (a URL-safe
    /// needle without `-` or `_` is kept under the standard form).
    fn found_in_base64(value: &[u8], text: &[u8]) -> bool {
        needle_bytes(value)
            .iter()
            .filter(|(f, _)| matches!(f, Encoding::Base64 | Encoding::Base64Url))
            .any(|(_, n)| text.windows(n.len()).any(|w| w == n))
    }

    #[test]
    fn raw_and_trimmed_forms() {
        assert!(has(b"s3cr3t-token\r\n", Encoding::Raw, b"s3cr3t-token\r\n"));
        assert!(has(b"s3cr3t-token\r\n", Encoding::Raw, b"s3cr3t-token"));
        // A one-byte secret is still looked for raw; of its encodings only
        // the padded base64 "eA==" reaches the minimum length.
        assert_eq!(
            needle_bytes(b"x"),
            vec![
                (Encoding::Raw, b"x".to_vec()),
                (Encoding::Base64, b"eA==".to_vec())
            ]
        );
        assert!(needle_bytes(b"").is_empty());
        assert!(needle_bytes(b"\n").is_empty());
        assert!(needle_bytes(b"\r\n\n").is_empty());
    }

    #[test]
    fn whole_base64_forms() {
        // "ab?>" encodes to a '/' in standard base64, '_' in URL-safe.
        assert!(has(b"ab?>", Encoding::Base64, b"YWI/Pg=="));
        assert!(has(b"ab?>", Encoding::Base64, b"YWI/Pg"));
        assert!(has(b"ab?>", Encoding::Base64Url, b"YWI_Pg=="));
        // Of the trimmed value too: `$(cat file) | base64`.
        assert!(has(b"secret\n", Encoding::Base64, b"c2VjcmV0"));
        assert!(has(b"secret\n", Encoding::Base64, b"c2VjcmV0Cg=="));
    }

    #[test]
    fn base64_embedded_at_every_alignment_is_found() {
        // ">?" and "~" give '/' and '+' (URL-safe: '_' and '-').
        let secret = b"tok>?9f8e~~d6c5b4a";
        for prefix_len in 0..9 {
            for suffix_len in 0..4 {
                let mut plain = b"Authorization: Basic user:".to_vec();
                plain.truncate(prefix_len);
                plain.extend_from_slice(secret);
                plain.extend_from_slice(&b"@~?!"[..suffix_len]);
                for engine in [STANDARD, URL_SAFE] {
                    let text = engine.encode(&plain);
                    assert!(
                        found_in_base64(secret, text.as_bytes()),
                        "{prefix_len} bytes before, {suffix_len} after: {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn stable_base64_drops_exactly_the_unstable_characters() {
        // Alignment 1: base64("\0abc") = "AGFiYw"; the first two characters
        // carry bits of the unknown byte and the sixth bits of what follows,
        // leaving [2, floor(32 / 6) = 5) = "FiY".
        assert_eq!(&*stable_base64(&STANDARD_NO_PAD, b"abc", 1), b"FiY");
        // Alignment 2: "\0\0abc" = "AABhYmM", stable [3, 6) = "hYm".
        assert_eq!(&*stable_base64(&STANDARD_NO_PAD, b"abc", 2), b"hYm");
        assert_eq!(&*stable_base64(&STANDARD_NO_PAD, b"abc", 0), b"YWJj");
    }

    #[test]
    fn hex_and_url_forms() {
        assert!(has(b"\x01\xab key", Encoding::Hex, b"01ab206b6579"));
        assert!(has(b"\x01\xab key", Encoding::HexUpper, b"01AB206B6579"));
        assert!(has(
            b"p@ss w/rd~",
            Encoding::UrlEncoded,
            b"p%40ss%20w%2Frd~"
        ));
        assert!(has(
            b"p@ss w/rd~",
            Encoding::UrlEncoded,
            b"p%40ss%20w%2frd~"
        ));
        // A value with nothing to escape has no separate url-encoded form.
        assert!(
            !needle_bytes(b"plainvalue")
                .iter()
                .any(|(f, _)| *f == Encoding::UrlEncoded)
        );
    }

    #[test]
    fn short_encoded_forms_are_skipped() {
        for (form, bytes) in needle_bytes(b"ab") {
            assert!(form == Encoding::Raw || bytes.len() >= MIN_ENCODED_LEN);
        }
        assert!(has(b"ab", Encoding::Hex, b"6162"));
        assert!(has(b"ab", Encoding::Base64, b"YWI="));
        assert!(!has(b"ab", Encoding::Base64, b"YWI"));
    }

    #[test]
    fn needle_debug_hides_the_bytes() {
        for n in needles(&SecretValue::new("s", "hunter2-value")) {
            let shown = format!("{n:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("6875"), "{shown}");
        }
    }
}
