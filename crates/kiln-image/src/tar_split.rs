//! A layer's tar rebuilt byte for byte from the folder of its files and its
//! tar-split record, as the container engine rebuilds it for `docker save`
//! (Docker keeps each layer unpacked on overlay2, beside a gzip JSON-lines
//! record of the tar it came from).
//!
//! Each line of the record is one of two kinds: a segment (`"type": 2`),
//! whose `payload` is base64 bytes of the tar itself (headers, padding, the
//! end of archive), written as they are; and a file entry (`"type": 1`),
//! whose `size` bytes are the content of the file `name` (or `name_raw`,
//! base64, for a name that is not UTF-8) below the folder. Nothing here is
//! trusted: a name that leaves the folder or goes through a symlink at its
//! last step is refused, a file shorter than its entry is an error, and
//! the reader of the stream checks it against the layer's diff_id.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

/// One line of a tar-split record.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    payload: Option<String>,
}

/// What a segment line is (`"type": 2`).
const SEGMENT: u8 = 2;
/// What a file entry line is (`"type": 1`).
const FILE: u8 = 1;

/// What is being read now.
enum Current {
    /// Bytes of a segment, and how many were given out.
    Bytes(Vec<u8>, usize),
    /// A file's content, and how many of its bytes are still owed.
    File(File, PathBuf, u64),
    /// Between lines.
    Next,
    /// The record ended.
    Done,
}

/// The tar a layer was made from, read from its files and its tar-split
/// record (see the module's doc).
pub struct TarSplitReader {
    record: BufReader<MultiGzDecoder<File>>,
    record_path: PathBuf,
    files: PathBuf,
    line: String,
    current: Current,
}

impl TarSplitReader {
    /// Read the layer whose files are in the folder `files` and whose
    /// tar-split record is the file `record`.
    pub fn open(files: &Path, record: &Path) -> io::Result<TarSplitReader> {
        let file = File::open(record)?;
        Ok(TarSplitReader {
            record: BufReader::new(MultiGzDecoder::new(file)),
            record_path: record.to_path_buf(),
            files: files.to_path_buf(),
            line: String::new(),
            current: Current::Next,
        })
    }

    /// The record is wrong at its current line.
    fn invalid(&self, reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tar-split record {}: {reason}", self.record_path.display()),
        )
    }

    /// Move to what the next line of the record gives.
    fn advance(&mut self) -> io::Result<()> {
        self.line.clear();
        if self.record.read_line(&mut self.line)? == 0 {
            self.current = Current::Done;
            return Ok(());
        }
        if self.line.trim().is_empty() {
            return Ok(());
        }
        let line: Line = serde_json::from_str(&self.line)
            .map_err(|e| self.invalid(&format!("a line is not a record entry: {e}")))?;
        let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text);
        match line.kind {
            SEGMENT => {
                let bytes = match line.payload.as_deref() {
                    Some(text) => {
                        decode(text).map_err(|e| self.invalid(&format!("bad segment: {e}")))?
                    }
                    None => Vec::new(),
                };
                self.current = Current::Bytes(bytes, 0);
            }
            FILE => {
                let size = line.size.unwrap_or(0);
                if size == 0 {
                    return Ok(());
                }
                let name = match (&line.name_raw, &line.name) {
                    (Some(raw), _) => {
                        decode(raw).map_err(|e| self.invalid(&format!("bad name_raw: {e}")))?
                    }
                    (None, Some(name)) => name.as_bytes().to_vec(),
                    (None, None) => return Err(self.invalid("a file entry has no name")),
                };
                let path = self.inside(OsStr::from_bytes(&name))?;
                let file = open_no_follow(&path)?;
                self.current = Current::File(file, path, size);
            }
            other => return Err(self.invalid(&format!("unknown entry type {other}"))),
        }
        Ok(())
    }

    /// `name` below the files' folder; refused if it would leave it.
    fn inside(&self, name: &OsStr) -> io::Result<PathBuf> {
        let mut path = self.files.clone();
        for part in Path::new(name).components() {
            match part {
                Component::Normal(p) => path.push(p),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(self.invalid(&format!(
                        "the file entry {:?} leaves the layer's folder",
                        Path::new(name)
                    )));
                }
            }
        }
        Ok(path)
    }
}

/// Open `path` for reading, refusing a symlink at its last step.
fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW.bits();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(i32::try_from(flags).unwrap_or(i32::MAX))
        .open(path)
}

impl Read for TarSplitReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.current {
                Current::Done => return Ok(0),
                Current::Next => self.advance()?,
                Current::Bytes(bytes, given) => {
                    let n = (bytes.len() - *given).min(buf.len());
                    if n == 0 {
                        self.current = Current::Next;
                        continue;
                    }
                    buf[..n].copy_from_slice(&bytes[*given..*given + n]);
                    *given += n;
                    return Ok(n);
                }
                Current::File(file, path, owed) => {
                    if *owed == 0 {
                        self.current = Current::Next;
                        continue;
                    }
                    let want = usize::try_from(*owed).map_or(buf.len(), |o| o.min(buf.len()));
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "{} is shorter than the layer's tar-split record says",
                                path.display()
                            ),
                        ));
                    }
                    *owed -= n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip tar-split record of `lines` at `path`.
    fn record(path: &Path, lines: &[String]) {
        let file = File::create(path).expect("create");
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        for line in lines {
            writeln!(gz, "{line}").expect("write");
        }
        gz.finish().expect("finish");
    }

    fn segment(bytes: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(r#"{{"type":2,"payload":"{b64}","position":0}}"#)
    }

    fn read_all(files: &Path, rec: &Path) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        TarSplitReader::open(files, rec)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn segments_and_files_come_out_in_the_record_s_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = tmp.path().join("diff");
        std::fs::create_dir_all(files.join("etc")).expect("mkdir");
        std::fs::write(files.join("etc/hostname"), b"box\n").expect("write");
        std::fs::write(files.join("\u{e9}t\u{e9}"), b"summer").expect("write");
        let raw = base64::engine::general_purpose::STANDARD.encode("\u{e9}t\u{e9}".as_bytes());
        let rec = tmp.path().join("tar-split.json.gz");
        record(
            &rec,
            &[
                segment(b"HEADER1"),
                r#"{"type":1,"name":"./etc/","payload":null,"position":1}"#.to_owned(),
                segment(b"HEADER2"),
                r#"{"type":1,"name":"./etc/hostname","size":4,"payload":"x","position":3}"#
                    .to_owned(),
                segment(b"PAD"),
                format!(r#"{{"type":1,"name_raw":"{raw}","size":6,"position":5}}"#),
                segment(b"END"),
            ],
        );
        assert_eq!(
            read_all(&files, &rec).expect("read"),
            b"HEADER1HEADER2box\nPADsummerEND"
        );
    }

    #[test]
    fn a_name_leaving_the_folder_a_symlink_or_a_short_file_is_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = tmp.path().join("diff");
        std::fs::create_dir_all(&files).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), b"outside").expect("write");
        std::os::unix::fs::symlink("../secret", files.join("link")).expect("symlink");
        std::fs::write(files.join("short"), b"ab").expect("write");
        let rec = tmp.path().join("rec.gz");
        for (name, kind) in [
            ("../secret", io::ErrorKind::InvalidData),
            ("link", io::ErrorKind::Other),
            ("short", io::ErrorKind::UnexpectedEof),
        ] {
            record(&rec, &[format!(r#"{{"type":1,"name":"{name}","size":7}}"#)]);
            let err = read_all(&files, &rec).expect_err(name);
            if kind != io::ErrorKind::Other {
                assert_eq!(err.kind(), kind, "{name}: {err}");
            }
            assert!(!err.to_string().contains("outside"), "{err}");
        }
        record(&rec, &["not json".to_owned()]);
        let err = read_all(&files, &rec).expect_err("not json");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        record(&rec, &[r#"{"type":9}"#.to_owned()]);
        assert!(read_all(&files, &rec).is_err());
    }
}
