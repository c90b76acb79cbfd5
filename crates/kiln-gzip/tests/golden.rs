//! Pins the exact bytes: a change of flate2, zlib-rs or of this crate that
//! alters the output (and so every layer digest) fails here.

mod corpus;

use corpus::{encode, mixed, options, sha256_hex};

const MIB: usize = 1 << 20;

/// sha256 of the level-1, 1 MiB-block encoding of `mixed(3 MiB, 2024)`.
///
/// An intentional change of the output (a new zlib-rs that compresses
/// differently, a different block layout) updates this string, and is
/// called out in the change: every layer digest kiln produces moves with it.
const GOLDEN_SHA256: &str = "40d15c47f55c6672ae612d7e6c584f5d0890d891935bdbfaa7bee30c0af429a2";

/// sha256 of the input itself, so a change of the test generator is told
/// apart from a change of the compressor.
const INPUT_SHA256: &str = "f491ac554e8ca3085fdbc12659e9b41d1d38d4984461b8ca7b0908c181844023";

#[test]
fn three_mib_at_level_1_has_the_pinned_digest() {
    let data = mixed(3 * MIB, 2024);
    assert_eq!(
        sha256_hex(&data),
        INPUT_SHA256,
        "the generated input changed"
    );
    for threads in [1, 2] {
        let gz = encode(&data, options(threads, MIB), 7777);
        assert_eq!(sha256_hex(&gz), GOLDEN_SHA256, "{threads} threads");
    }
}
