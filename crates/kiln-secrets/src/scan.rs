//! The scan that stands between a built image and the store: every layer
//! kiln made (entry names, link targets, PAX records, file content), the
//! whole config, its history and the manifest annotations are searched for
//! every form of every declared secret.
//!
//! All needles of all secrets go into one Aho-Corasick automaton, and each
//! layer is read once, streamed: gzip is decoded, the tar is walked entry by
//! entry, and content is searched in 64 KiB windows that keep the last
//! `longest needle - 1` bytes of the previous window, so a needle that
//! crosses a read boundary is found and memory stays bounded whatever the
//! layer's size. The search is *overlapping*: aho-corasick's own stream
//! search reports non-overlapping matches only, and would miss a secret
//! that overlaps another one's match (or lies inside it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use aho_corasick::AhoCorasick;
use flate2::bufread::MultiGzDecoder;
use kiln_image::{Digest, ImageError, Store, load_image};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{Encoding, Leak, LeakLocation, Redactor, SecretError, SecretValue, needles};

/// How much layer content is searched at once.
const WINDOW: usize = 64 * 1024;

/// Search the image whose manifest is `manifest` in `store` for every form
/// ([`needles`]) of every secret in `secrets`, before the image is given a
/// name.
///
/// The first `skip_layers` layers (the base's, which the recipe did not
/// make) are not read; more than the image has skips them all. The config
/// (every field, key and value, labels included), its history and the
/// manifest annotations are always searched. Every leak is reported, once
/// per secret and location, in the most direct form found there, sorted by
/// location. An empty list means the image is clean.
///
/// Each layer blob is hashed while it is read; one whose bytes do not match
/// its digest is [`ImageError::CorruptBlob`]. A layer that is not a (gzip)
/// tar is [`SecretError::Io`] naming it.
pub fn scan_image(
    store: &Store,
    manifest: &Digest,
    secrets: &[SecretValue],
    skip_layers: usize,
) -> Result<Vec<Leak>, SecretError> {
    let image = load_image(store, manifest)?;
    let Some(scanner) = Scanner::new(secrets)? else {
        return Ok(Vec::new());
    };
    let mut findings = Findings::default();
    let mut window = Vec::new();
    for (index, layer) in image.layers.iter().enumerate().skip(skip_layers) {
        let mut layer_scan = LayerScan {
            store,
            index,
            digest: &layer.digest,
            scanner: &scanner,
            findings: &mut findings,
            window: &mut window,
        };
        // However the reader's error was wrapped, a cancelled scan says so.
        layer_scan.run().map_err(|e| {
            if store.cancel().is_cancelled() {
                ImageError::Cancelled.into()
            } else {
                e
            }
        })?;
    }
    scan_config(&image.config, &scanner, &mut findings)?;
    if let Some(Value::Object(annotations)) = image.manifest.get("annotations") {
        for (key, value) in annotations {
            let mut hits = BTreeSet::new();
            scanner.hits_in(key.as_bytes(), &mut hits)?;
            walk_json(value, &mut String::new(), &mut |_, text| {
                scanner.hits_in(text, &mut hits)
            })?;
            findings.record(&scanner, &hits, || LeakLocation::Annotation {
                key: scanner.redactor.redact(key),
            });
        }
    }
    Ok(findings.into_leaks(secrets))
}

/// The config outside `history` by JSON pointer, then each history entry.
fn scan_config(
    config: &Value,
    scanner: &Scanner,
    findings: &mut Findings,
) -> Result<(), SecretError> {
    let history = match config.get("history") {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    let mut pointer = String::new();
    walk_json(config, &mut pointer, &mut |pointer, text| {
        if pointer.starts_with("/history/") && !history.is_empty() {
            return Ok(());
        }
        let mut hits = BTreeSet::new();
        scanner.hits_in(text, &mut hits)?;
        findings.record(scanner, &hits, || LeakLocation::Config {
            field: scanner.redactor.redact(pointer),
        });
        Ok(())
    })?;
    for (index, entry) in history.iter().enumerate() {
        let mut hits = BTreeSet::new();
        walk_json(entry, &mut String::new(), &mut |_, text| {
            scanner.hits_in(text, &mut hits)
        })?;
        findings.record(scanner, &hits, || LeakLocation::History { index });
    }
    Ok(())
}

/// What [`walk_json`] calls with a JSON pointer and the text found there.
type Visit<'a> = dyn FnMut(&str, &[u8]) -> Result<(), SecretError> + 'a;

/// Call `visit` with the JSON pointer and text of every string, number and
/// object key under `value` (a key's pointer is that of its member).
/// serde_json's parser bounds the nesting depth, and so this recursion.
fn walk_json(
    value: &Value,
    pointer: &mut String,
    visit: &mut Visit<'_>,
) -> Result<(), SecretError> {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let len = pointer.len();
                pointer.push('/');
                // RFC 6901: `~` and `/` in a key are escaped.
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                visit(pointer, key.as_bytes())?;
                walk_json(member, pointer, visit)?;
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk_json(item, pointer, visit)?;
                pointer.truncate(len);
            }
        }
        Value::String(text) => visit(pointer, text.as_bytes())?,
        Value::Number(n) => visit(pointer, n.to_string().as_bytes())?,
        Value::Bool(_) | Value::Null => {}
    }
    Ok(())
}

/// One automaton for every needle of every secret, searched with
/// overlapping semantics, plus what each pattern stands for.
struct Scanner {
    automaton: AhoCorasick,
    /// Per pattern: the index of its secret and its form.
    owners: Vec<(usize, Encoding)>,
    longest: usize,
    /// Locations are redacted before they are reported.
    redactor: Redactor,
}

impl Scanner {
    /// `None` when there is nothing to look for.
    fn new(secrets: &[SecretValue]) -> Result<Option<Scanner>, SecretError> {
        let mut patterns = Vec::new();
        let mut owners = Vec::new();
        for (i, secret) in secrets.iter().enumerate() {
            for needle in needles(secret) {
                owners.push((i, needle.form()));
                patterns.push(needle);
            }
        }
        if patterns.is_empty() {
            return Ok(None);
        }
        let longest = patterns.iter().map(|n| n.bytes().len()).max().unwrap_or(0);
        let automaton = AhoCorasick::builder()
            .build(patterns.iter().map(|n| n.bytes()))
            .map_err(|e| SecretError::Scanner {
                reason: e.to_string(),
            })?;
        Ok(Some(Scanner {
            automaton,
            owners,
            longest,
            redactor: Redactor::new(secrets),
        }))
    }

    /// Add the patterns found anywhere in `haystack` to `hits`.
    fn hits_in(&self, haystack: &[u8], hits: &mut BTreeSet<usize>) -> Result<(), SecretError> {
        self.hits_ending_after(haystack, 0, hits)
    }

    /// Add the patterns found in `haystack` that end after its first `from`
    /// bytes to `hits`.
    fn hits_ending_after(
        &self,
        haystack: &[u8],
        from: usize,
        hits: &mut BTreeSet<usize>,
    ) -> Result<(), SecretError> {
        let matches = self
            .automaton
            .try_find_overlapping_iter(haystack)
            .map_err(|e| SecretError::Scanner {
                reason: e.to_string(),
            })?;
        hits.extend(
            matches
                .filter(|m| m.end() > from)
                .map(|m| m.pattern().as_usize()),
        );
        Ok(())
    }

    /// Add the patterns found in everything `reader` yields to `hits`,
    /// window by window in `window` (reused between calls).
    fn hits_in_stream(
        &self,
        reader: &mut dyn Read,
        window: &mut Vec<u8>,
        hits: &mut BTreeSet<usize>,
    ) -> Result<(), io::Error> {
        // The bytes of a match that starts in one window and ends in the
        // next are all in the next: it begins with the previous window's
        // last `longest - 1` bytes.
        let keep_max = self.longest.saturating_sub(1);
        if window.len() != keep_max + WINDOW {
            // Sized once per scan, not per entry: a layer of many small
            // files would otherwise spend its time zeroing buffers.
            window.clear();
            window.resize(keep_max + WINDOW, 0);
        }
        let mut carry = 0;
        loop {
            // Each window adds at most WINDOW new bytes, so they split the
            // content at multiples of 64 KiB.
            let filled = fill(reader, &mut window[..carry + WINDOW], carry)?;
            if filled == carry {
                return Ok(());
            }
            // Matches ending within the carried bytes were counted with the
            // previous window.
            self.hits_ending_after(&window[..filled], carry, hits)
                .map_err(io::Error::other)?;
            let keep = keep_max.min(filled);
            window.copy_within(filled - keep..filled, 0);
            carry = keep;
        }
    }
}

/// Read into `buf[from..]` until it is full or the reader ends; how much of
/// `buf` is filled.
fn fill(reader: &mut dyn Read, buf: &mut [u8], from: usize) -> io::Result<usize> {
    let mut filled = from;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Leaks by (location, secret index), each with the most direct form seen.
#[derive(Default)]
struct Findings {
    found: BTreeMap<(LeakLocation, usize), Encoding>,
}

impl Findings {
    fn record(
        &mut self,
        scanner: &Scanner,
        hits: &BTreeSet<usize>,
        location: impl Fn() -> LeakLocation,
    ) {
        if hits.is_empty() {
            return;
        }
        let location = location();
        for &(secret, form) in hits.iter().filter_map(|&p| scanner.owners.get(p)) {
            self.found
                .entry((location.clone(), secret))
                .and_modify(|f| *f = (*f).min(form))
                .or_insert(form);
        }
    }

    fn into_leaks(self, secrets: &[SecretValue]) -> Vec<Leak> {
        self.found
            .into_iter()
            .map(|((location, secret), form)| Leak {
                secret: secrets
                    .get(secret)
                    .map_or_else(String::new, |s| s.name().to_owned()),
                form,
                location,
            })
            .collect()
    }
}

/// The scan of one layer blob.
struct LayerScan<'a> {
    store: &'a Store,
    index: usize,
    digest: &'a Digest,
    scanner: &'a Scanner,
    findings: &'a mut Findings,
    window: &'a mut Vec<u8>,
}

impl LayerScan<'_> {
    fn io_error(&self, source: io::Error) -> SecretError {
        SecretError::Io {
            layer: self.index,
            digest: self.digest.clone(),
            source,
        }
    }

    /// Stream the blob through the hash and (if gzip) the decoder into the
    /// tar walk, then check the hash over every byte of the blob.
    fn run(&mut self) -> Result<(), SecretError> {
        let file = self.store.open_blob(self.digest)?;
        let mut reader =
            BufReader::with_capacity(2 * WINDOW, Hashing::new(file, self.store.cancel().clone()));
        let magic = reader.fill_buf().map_err(|e| self.io_error(e))?;
        let reader = if magic.starts_with(&[0x1f, 0x8b]) {
            self.walk_tar(MultiGzDecoder::new(reader))?.into_inner()
        } else {
            self.walk_tar(reader)?
        };
        // Bytes after the end of the tar (or of the gzip stream) are no
        // file of the image, but they are part of the blob's digest.
        let mut hashing = reader.into_inner();
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| self.io_error(e))?;
        if Digest::from_hasher(hashing.hasher) != *self.digest {
            return Err(ImageError::CorruptBlob {
                digest: self.digest.clone(),
                path: self.store.blob_path(self.digest),
            }
            .into());
        }
        Ok(())
    }

    /// Search every entry's name, link target, PAX records and content.
    fn walk_tar<R: Read>(&mut self, reader: R) -> Result<R, SecretError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| self.io_error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.io_error(e))?;
            let path = entry.path_bytes().into_owned();
            let mut meta = BTreeSet::new();
            self.scanner.hits_in(&path, &mut meta)?;
            if let Some(link) = entry.link_name_bytes() {
                self.scanner.hits_in(&link, &mut meta)?;
            }
            if let Some(records) = entry.pax_extensions().map_err(|e| self.io_error(e))? {
                for record in records {
                    let record = record.map_err(|e| self.io_error(e))?;
                    self.scanner.hits_in(record.key_bytes(), &mut meta)?;
                    self.scanner.hits_in(record.value_bytes(), &mut meta)?;
                }
            }
            let mut content = BTreeSet::new();
            self.scanner
                .hits_in_stream(&mut entry, self.window, &mut content)
                .map_err(|e| self.io_error(e))?;
            let shown = || image_path(&self.scanner.redactor.redact_bytes(&path));
            let (layer, digest) = (self.index, self.digest);
            self.findings
                .record(self.scanner, &meta, || LeakLocation::LayerPath {
                    layer,
                    digest: digest.clone(),
                    path: shown(),
                });
            self.findings
                .record(self.scanner, &content, || LeakLocation::LayerFile {
                    layer,
                    digest: digest.clone(),
                    path: shown(),
                });
        }
        Ok(archive.into_inner())
    }
}

/// A tar entry's name as an absolute image path: `./etc/motd`, `etc/motd`
/// and `etc/motd/` all become `/etc/motd`.
fn image_path(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut rest: &str = &text;
    loop {
        let next = rest.trim_start_matches('/');
        let next = next.strip_prefix("./").unwrap_or(next);
        if next == rest {
            break;
        }
        rest = next;
    }
    format!("/{}", rest.trim_end_matches('/'))
}

/// A reader that hashes what passes through it.
struct Hashing {
    inner: File,
    hasher: Sha256,
    /// The store handle's token: a cancelled scan stops within one read.
    cancel: kiln_image::Cancel,
}

impl Hashing {
    fn new(inner: File, cancel: kiln_image::Cancel) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            cancel,
        }
    }
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other(ImageError::Cancelled));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn scanner(values: &[&str]) -> Scanner {
        let secrets: Vec<SecretValue> = values
            .iter()
            .enumerate()
            .map(|(i, v)| SecretValue::new(format!("s{i}"), *v))
            .collect();
        match Scanner::new(&secrets) {
            Ok(Some(s)) => s,
            _ => panic!("no scanner for {values:?}"),
        }
    }

    /// The secrets (by index) found in `data` when streamed in `step`-byte
    /// reads.
    fn secrets_in_stream(s: &Scanner, data: &[u8], step: usize) -> BTreeSet<usize> {
        let mut hits = BTreeSet::new();
        let mut reader = Trickle { data, step };
        s.hits_in_stream(&mut reader, &mut Vec::new(), &mut hits)
            .expect("reading from memory");
        hits.iter().map(|&p| s.owners[p].0).collect()
    }

    #[test]
    fn needles_across_every_window_boundary_offset_are_found() {
        let s = scanner(&["0123456789-secret"]);
        let offsets = (WINDOW - 20..WINDOW + 4).chain(2 * WINDOW - 20..2 * WINDOW + 4);
        for offset in offsets {
            let mut data = vec![b'.'; 3 * WINDOW];
            data[offset..offset + 17].copy_from_slice(b"0123456789-secret");
            for step in [7, 4096, 3 * WINDOW] {
                assert_eq!(
                    secrets_in_stream(&s, &data, step),
                    BTreeSet::from([0]),
                    "offset {offset}, step {step}"
                );
            }
        }
        assert!(secrets_in_stream(&s, &vec![b'.'; 3 * WINDOW], WINDOW).is_empty());
    }

    #[test]
    fn overlapping_secrets_are_all_found() {
        // Non-overlapping search would stop at the first and miss the
        // second, which starts inside it.
        let s = scanner(&["abcdef", "defghi", "bcd"]);
        assert_eq!(
            secrets_in_stream(&s, b"xxabcdefghixx", 3),
            BTreeSet::from([0, 1, 2])
        );
    }

    #[test]
    fn json_pointers_escape_and_reach_keys() {
        let value = serde_json::json!({"a/b": {"c~d": ["x", 12]}, "k": true});
        let mut seen = Vec::new();
        walk_json(&value, &mut String::new(), &mut |p, t| {
            seen.push((p.to_owned(), String::from_utf8_lossy(t).into_owned()));
            Ok(())
        })
        .expect("walk");
        assert_eq!(
            seen,
            [
                ("/a~1b", "a/b"),
                ("/a~1b/c~0d", "c~d"),
                ("/a~1b/c~0d/0", "x"),
                ("/a~1b/c~0d/1", "12"),
                ("/k", "k"),
            ]
            .map(|(p, t)| (p.to_owned(), t.to_owned()))
        );
    }

    #[test]
    fn image_paths() {
        for (raw, shown) in [
            ("etc/motd", "/etc/motd"),
            ("./etc/motd", "/etc/motd"),
            ("/etc/", "/etc"),
            ("./", "/"),
        ] {
            assert_eq!(image_path(raw.as_bytes()), shown, "{raw}");
        }
    }
}
