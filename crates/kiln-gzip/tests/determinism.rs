//! The output depends on the input, level and block size only: not on the
//! thread count, nor on how the input is split into writes.

mod corpus;

use corpus::{decode, encode, mixed, options};

const MIB: usize = 1 << 20;

/// Encodes `data` with 1, 2 and 4 threads and each chunking, checks that all
/// give the bytes of the single-threaded, single-write encoding, and that
/// they decode to `data`. Returns the reference bytes.
fn check(data: &[u8], block_size: usize, chunks: &[usize]) -> Vec<u8> {
    let reference = encode(data, options(1, block_size), 0);
    assert_eq!(decode(&reference), data, "reference round trip");
    for threads in [1, 2, 4] {
        for &chunk in chunks {
            let out = encode(data, options(threads, block_size), chunk);
            assert!(
                out == reference,
                "{} bytes, block {block_size}, {threads} threads, {chunk}-byte writes: \
                 output differs from 1 thread, one write",
                data.len()
            );
        }
    }
    reference
}

#[test]
fn empty_input() {
    let out = check(&[], MIB, &[0, 1]);
    // Header, an empty final deflate block, trailer: a valid empty member.
    assert_eq!(out.len(), 10 + 2 + 8);
}

#[test]
fn one_byte() {
    check(b"k", MIB, &[0, 1]);
}

#[test]
fn exactly_one_block() {
    check(&mixed(MIB, 1), MIB, &[0, 7777]);
}

#[test]
fn one_block_and_one_byte() {
    check(&mixed(MIB + 1, 2), MIB, &[0, 7777]);
}

#[test]
fn several_mib_of_mixed_data_in_odd_writes() {
    check(&mixed(5 * MIB + 12_345, 3), MIB, &[0, 7777, 1 << 20 | 3]);
}

#[test]
fn one_byte_writes_across_many_small_blocks() {
    // Small blocks make many boundaries (and dictionaries shorter than the
    // 32 KiB window) cheap to cover with one-byte writes.
    check(&mixed(300_000, 4), 20_000, &[0, 1, 7777]);
}

#[test]
fn block_sizes_at_and_around_the_window() {
    let data = mixed(200_000, 5);
    for block_size in [1, 4096, 32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1] {
        let input = if block_size == 1 {
            &data[..3000]
        } else {
            &data[..]
        };
        check(input, block_size, &[0, 7777]);
    }
}

#[test]
fn every_level_is_thread_independent() {
    let data = mixed(3 * 65_536 + 17, 6);
    for level in 0..=9 {
        let reference = encode(
            &data,
            kiln_gzip::GzipOptions {
                level,
                ..options(1, 65_536)
            },
            0,
        );
        assert_eq!(decode(&reference), data, "level {level}");
        for threads in [2, 4] {
            let options = kiln_gzip::GzipOptions {
                level,
                ..options(threads, 65_536)
            };
            assert!(
                encode(&data, options, 7777) == reference,
                "level {level}, {threads} threads"
            );
        }
    }
}

#[test]
fn block_size_and_level_do_change_the_bytes() {
    // Guards the tests above against comparing outputs that ignore their
    // options: these two settings must matter.
    let data = mixed(3 * MIB, 7);
    let base = encode(&data, options(2, MIB), 0);
    assert!(encode(&data, options(2, MIB / 2), 0) != base);
    let level6 = kiln_gzip::GzipOptions {
        level: 6,
        ..options(2, MIB)
    };
    assert!(encode(&data, level6, 0) != base);
}

#[test]
fn repeated_runs_give_the_same_bytes() {
    let data = mixed(4 * MIB, 8);
    let first = encode(&data, options(4, 256 * 1024), 7777);
    for _ in 0..3 {
        assert!(encode(&data, options(4, 256 * 1024), 7777) == first);
    }
}
