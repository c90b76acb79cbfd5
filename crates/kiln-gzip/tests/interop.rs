//! Other gzip readers accept the output, the header and trailer are exactly
//! as specified, and failures of the writer underneath come back as errors.

mod corpus;

use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use corpus::{decode, encode, mixed, options};
use flate2::Crc;
use kiln_gzip::{GzipError, GzipOptions, ParallelGzEncoder};

const MIB: usize = 1 << 20;

/// Runs the system `gzip` with `args`, `input` on stdin; returns stdout.
fn system_gzip(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(input).expect("write temp file");
    io::Seek::rewind(&mut file).expect("rewind temp file");
    let output = Command::new("gzip")
        .args(args)
        .stdin(Stdio::from(file))
        .output()
        .expect("the system gzip must be installed for this test");
    assert!(
        output.status.success(),
        "gzip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn system_gzip_tests_and_decompresses_the_output() {
    let cases = [
        Vec::new(),
        b"k".to_vec(),
        mixed(MIB, 11),
        mixed(MIB + 1, 12),
        mixed(3 * MIB + 999, 13),
    ];
    for data in &cases {
        for threads in [1, 2] {
            let gz = encode(data, options(threads, MIB), 7777);
            system_gzip(&["-t"], &gz);
            assert!(
                system_gzip(&["-dc"], &gz) == *data,
                "gzip -dc of {} bytes, {threads} threads",
                data.len()
            );
            assert!(decode(&gz) == *data, "flate2 of {} bytes", data.len());
        }
    }
}

#[test]
fn system_gzip_reads_every_level_with_small_blocks() {
    let data = mixed(400_000, 14);
    for level in 0..=9 {
        let options = GzipOptions {
            level,
            ..options(2, 50_000)
        };
        let gz = encode(&data, options, 0);
        assert!(system_gzip(&["-dc"], &gz) == data, "level {level}");
    }
}

#[test]
fn header_has_no_name_no_time_and_os_255() {
    let gz = encode(&mixed(100_000, 15), options(2, MIB), 0);
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "magic");
    assert_eq!(gz[2], 8, "CM deflate");
    assert_eq!(gz[3], 0, "FLG: no FNAME, FCOMMENT, FEXTRA, FHCRC");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "MTIME 0");
    assert_eq!(gz[8], 4, "XFL for level 1");
    assert_eq!(gz[9], 255, "OS unknown");
}

#[test]
fn trailer_holds_crc_and_length_of_all_input() {
    let data = mixed(2 * MIB + 5, 16);
    let gz = encode(&data, options(4, 300_000), 7777);
    let mut crc = Crc::new();
    crc.update(&data);
    let trailer = &gz[gz.len() - 8..];
    assert_eq!(trailer[..4], crc.sum().to_le_bytes());
    assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
}

/// Takes at most one byte per `write` call.
#[derive(Debug, Default)]
struct TrickleWriter(Vec<u8>);

impl Write for TrickleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match buf.first() {
            Some(&byte) => {
                self.0.push(byte);
                Ok(1)
            }
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn short_writes_underneath_do_not_change_the_bytes() {
    let data = mixed(MIB + 70_000, 17);
    let reference = encode(&data, options(1, 200_000), 0);
    for threads in [1, 2] {
        let mut encoder =
            ParallelGzEncoder::new(TrickleWriter::default(), options(threads, 200_000));
        encoder.write_all(&data).expect("write");
        let out = encoder.finish().expect("finish").0;
        assert!(out == reference, "{threads} threads");
    }
}

/// Accepts `budget` bytes, then fails every write.
#[derive(Debug)]
struct FailingWriter {
    budget: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_surfaces_its_error_and_the_encoder_stays_failed() {
    let data = mixed(6 * MIB, 18);
    for threads in [1, 2, 4] {
        for budget in [0, 5, 100_000] {
            let mut encoder =
                ParallelGzEncoder::new(FailingWriter { budget }, options(threads, 256 * 1024));
            let error = encoder
                .write_all(&data)
                .expect_err("the writer fails long before 6 MiB of output");
            assert_eq!(
                error.kind(),
                io::ErrorKind::StorageFull,
                "{threads} threads"
            );
            // Later calls refuse rather than write a stream with a hole.
            let later = encoder.write(b"more").expect_err("encoder is failed");
            let inner = later.get_ref().and_then(|e| e.downcast_ref::<GzipError>());
            assert!(matches!(inner, Some(GzipError::Failed)), "{later:?}");
            assert!(encoder.finish().is_err());
        }
    }
}

#[test]
fn a_failing_writer_at_finish_is_an_error() {
    // All of the output comes out in finish when the input is one block.
    let mut encoder = ParallelGzEncoder::new(FailingWriter { budget: 12 }, options(2, MIB));
    encoder
        .write_all(&mixed(10_000, 19))
        .expect("buffered only");
    let error = encoder.finish().expect_err("the writer fails");
    assert_eq!(error.kind(), io::ErrorKind::StorageFull);
}

#[test]
fn dropping_without_finish_returns_promptly() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let data = mixed(8 * MIB, 20);
        for threads in [1, 2, 4] {
            let mut encoder = ParallelGzEncoder::new(Vec::new(), options(threads, 256 * 1024));
            encoder.write_all(&data).expect("write to a Vec");
            drop(encoder);
        }
        // And an encoder that never received a byte.
        drop(ParallelGzEncoder::new(Vec::new(), options(4, MIB)));
        let _ = done_tx.send(());
    });
    // A hang would otherwise stall the test run; fail it instead.
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("dropping encoders finished within 60 s");
}

#[test]
fn flush_writes_finished_blocks_without_changing_the_bytes() {
    let data = mixed(3 * MIB + 10, 21);
    let reference = encode(&data, options(2, MIB), 0);
    let mut encoder = ParallelGzEncoder::new(Vec::new(), options(2, MIB));
    for piece in data.chunks(500_000) {
        encoder.write_all(piece).expect("write to a Vec");
        encoder.flush().expect("flush a Vec");
    }
    // After the flush, the three full blocks are in the writer.
    assert!(encoder.get_ref().len() > 10);
    assert!(encoder.finish().expect("finish") == reference);
}
