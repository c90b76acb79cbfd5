//! Random inputs, block sizes, write sizes and thread counts: the bytes
//! never move, and they always decode back to the input.

mod corpus;

use proptest::prelude::*;

use corpus::{decode, encode, mixed, options};

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..20_000),
        (0usize..400_000, any::<u64>()).prop_map(|(len, seed)| mixed(len, seed)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn output_depends_only_on_input_level_and_block_size(
        data in input(),
        block_size in prop_oneof![1usize..64, 64usize..70_000, Just(1 << 20)],
        chunk in 1usize..50_000,
        threads in 2usize..5,
        level in 0u32..10,
    ) {
        // One-byte blocks cost a deflate set-up each: keep those inputs short.
        let data = if block_size < 64 { &data[..data.len().min(2_000)] } else { &data[..] };
        let with = |threads, chunk| {
            let options = kiln_gzip::GzipOptions { level, ..options(threads, block_size) };
            encode(data, options, chunk)
        };
        let reference = with(1, 0);
        prop_assert_eq!(&decode(&reference), data);
        prop_assert!(with(threads, chunk) == reference);
    }
}
