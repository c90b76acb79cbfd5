//! What each fuzz target does with one input, shared by the libFuzzer
//! binaries (`fuzz_targets/`) and the stable tests that replay the kept
//! inputs (`tests/seeds.rs`). Every function returns normally for any
//! input: a panic, an overflow or a hang is the bug the fuzzer looks for;
//! an error is the right answer to bad input.

use std::path::Path;
use std::sync::OnceLock;

use kiln_image::{Descriptor, Digest, LayerPolicy, Store};

/// The recipe parser: any text, valid TOML or not, nested however deep,
/// gives a recipe or a diagnostic.
pub fn recipe(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(recipe) = kiln_recipe::parse(&text, Path::new("fuzz/kiln.toml")) {
        // What parsed must print and compare without panicking too.
        let _ = format!("{:?} {}", recipe.image.name, recipe.image.base);
    }
}

/// One store per fuzzing process: opening one per input would measure the
/// file system, not the parsers.
fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder for the fuzz store");
        let store = Store::open(dir.path().join("store")).expect("a fuzz store");
        (dir, store)
    });
    store
}

/// The base-layer reader: any bytes, stored as a blob and read as a base
/// layer (gzip or plain tar), are accepted or refused with an error naming
/// the entry, never trusted half-way.
pub fn base_layer(data: &[u8]) {
    let store = store();
    let Ok(digest) = store.put_blob(data) else {
        return;
    };
    let size = data.len() as u64;
    for media_type in [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar",
    ] {
        let layer = Descriptor::new(media_type, digest.clone(), size);
        for allow_devices in [false, true] {
            let _ = kiln_image::validate_layer_entries(
                store,
                &layer,
                LayerPolicy { allow_devices },
            );
        }
    }
}

/// The separator between the parts of a `documents` input.
const SPLIT: u8 = 0xff;

/// The manifest, index and config parsers: the input is `config 0xFF
/// manifest 0xFF index`; `@C` in the manifest becomes the config's digest
/// and `@M` in the index the manifest's, so that the fuzzer reaches the
/// parsers behind the digest checks. The three become an OCI layout that
/// is imported as a base.
pub fn documents(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == SPLIT);
    let config = parts.next().unwrap_or_default();
    let manifest = parts.next().unwrap_or_default();
    let index = parts.next().unwrap_or_default();
    let config_digest = Digest::of(config);
    let manifest = replace(manifest, b"@C", config_digest.to_string().as_bytes());
    let manifest_digest = Digest::of(&manifest);
    let index = replace(index, b"@M", manifest_digest.to_string().as_bytes());

    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let blobs = dir.path().join("blobs/sha256");
    let written = std::fs::create_dir_all(&blobs).is_ok()
        && std::fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .is_ok()
        && std::fs::write(dir.path().join("index.json"), &index).is_ok()
        && std::fs::write(blobs.join(config_digest.hex()), config).is_ok()
        && std::fs::write(blobs.join(manifest_digest.hex()), &manifest).is_ok();
    if written {
        let _ = kiln_image::import_oci_layout(store(), dir.path(), None);
        // The stored manifest read back the way a `kiln:` base is.
        let _ = kiln_image::load_image(store(), &manifest_digest);
    }
}

/// `haystack` with every `needle` replaced by `with`.
fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            out.extend_from_slice(with);
            rest = &rest[needle.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}
