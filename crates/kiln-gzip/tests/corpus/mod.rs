//! Reproducible test inputs and the encode/decode helpers the tests share.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::io::{Read, Write};

use kiln_gzip::{GzipOptions, ParallelGzEncoder};

/// splitmix64: a fixed sequence from a seed, so inputs (and the golden
/// digest built on them) never change.
pub struct Sequence(u64);

impl Sequence {
    pub fn new(seed: u64) -> Self {
        Sequence(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `len` bytes that mix what layers hold: text-like runs (compressible,
/// with repeats far enough back to reach across block boundaries), random
/// bytes (incompressible, like already-compressed files) and zero runs.
pub fn mixed(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "usr", "lib", "kiln", "layer", "digest", "sha256", "manifest", " ", "\n", "/", "gzip",
        "0755",
    ];
    let mut seq = Sequence::new(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = 1 + seq.below(48 * 1024) as usize;
        match seq.below(4) {
            0 => {
                let end = out.len() + run;
                while out.len() < end {
                    let word = WORDS[seq.below(WORDS.len() as u64) as usize];
                    out.extend_from_slice(word.as_bytes());
                }
            }
            1 => {
                for _ in 0..run / 8 + 1 {
                    out.extend_from_slice(&seq.next_u64().to_le_bytes());
                }
            }
            // A copy of recent input: matches that reach back across a
            // block boundary exercise the preset dictionary.
            2 if out.len() > 1024 => {
                let back = 1 + seq.below(out.len().min(32 * 1024) as u64) as usize;
                let start = out.len() - back;
                for i in 0..run.min(4096) {
                    out.push(out[start + i % back]);
                }
            }
            _ => out.resize(out.len() + run, 0),
        }
    }
    out.truncate(len);
    out
}

/// Compresses `data` written in `chunk`-byte writes (the whole at once if
/// `chunk` is 0).
pub fn encode(data: &[u8], options: GzipOptions, chunk: usize) -> Vec<u8> {
    let mut encoder = ParallelGzEncoder::new(Vec::new(), options);
    if chunk == 0 {
        encoder.write_all(data).expect("write to a Vec");
    } else {
        for piece in data.chunks(chunk) {
            encoder.write_all(piece).expect("write to a Vec");
        }
    }
    encoder.finish().expect("finish into a Vec")
}

/// Decompresses one gzip member with flate2.
pub fn decode(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("flate2 reads the stream");
    out
}

pub fn options(threads: usize, block_size: usize) -> GzipOptions {
    GzipOptions {
        level: 1,
        block_size,
        threads,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
