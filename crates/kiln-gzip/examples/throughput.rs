//! Measures compression speed on real files, one thread against several,
//! and checks that every thread count gives the same bytes.
//!
//! `cargo run --release -p kiln-gzip --example throughput -- [DIR] [MIB] [LEVEL]`
//! (defaults: /usr/lib/x86_64-linux-gnu, 200, 1).

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use kiln_gzip::{GzipOptions, ParallelGzEncoder};
use sha2::{Digest, Sha256};

/// Hashes what it is given instead of storing it, so the measurement holds
/// compression and nothing else of size.
struct HashingSink {
    hasher: Sha256,
    len: u64,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends regular files under `dir`, in name order, until `out` holds
/// `limit` bytes.
fn gather(dir: &Path, out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if out.len() >= limit {
            break;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            gather(&entry.path(), out, limit)?;
        } else if kind.is_file() {
            // Unreadable files are skipped: any 200 MiB of real data will do.
            if let Ok(bytes) = fs::read(entry.path()) {
                out.extend_from_slice(&bytes);
            }
        }
    }
    out.truncate(limit);
    Ok(())
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".into());
    let mib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let level: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);

    let mut input = Vec::with_capacity(mib << 20);
    gather(Path::new(&dir), &mut input, mib << 20)?;
    println!(
        "input: {} MiB from {dir}, level {level}, block 1 MiB",
        input.len() >> 20
    );

    let mut digests = Vec::new();
    for threads in [1, 2] {
        let options = GzipOptions {
            level,
            threads,
            ..GzipOptions::default()
        };
        let sink = HashingSink {
            hasher: Sha256::new(),
            len: 0,
        };
        let start = Instant::now();
        let mut encoder = ParallelGzEncoder::new(sink, options);
        for piece in input.chunks(64 * 1024) {
            encoder.write_all(piece)?;
        }
        let sink = encoder.finish()?;
        let seconds = start.elapsed().as_secs_f64();
        let digest: String = sink
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!(
            "{threads} thread(s): {:.2} s, {:.0} MB/s, ratio {:.3}, sha256 {digest}",
            seconds,
            input.len() as f64 / seconds / 1e6,
            sink.len as f64 / input.len() as f64,
        );
        digests.push(digest);
    }
    if digests.windows(2).any(|pair| pair[0] != pair[1]) {
        return Err(io::Error::other("thread counts gave different bytes"));
    }
    Ok(())
}
