//! Keys and signatures interoperate with the real cosign 2.x, both ways:
//! cosign's keys open in kiln and sign what cosign verifies; kiln's keys
//! sign blobs in cosign that kiln verifies.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_sign::{PublicKey, SignError, SigningKey};

/// cosign from `KILN_COSIGN` (`cargo xtask fetch-cosign`). Missing, the test
/// fails under `KILN_REQUIRE_ENGINE=1` and is skipped otherwise.
fn cosign() -> Option<PathBuf> {
    match std::env::var_os("KILN_COSIGN").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ if std::env::var_os("KILN_REQUIRE_ENGINE").is_some_and(|v| v == "1") => {
            panic!("KILN_COSIGN is not set to cosign's binary; run `cargo xtask fetch-cosign`")
        }
        _ => {
            eprintln!("skipped: KILN_COSIGN not set (cargo xtask fetch-cosign)");
            None
        }
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("cosign runs")
}

#[test]
fn a_key_cosign_made_opens_in_kiln_and_signs_what_cosign_verifies() {
    let Some(cosign) = cosign() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let made = run(Command::new(&cosign)
        .args(["generate-key-pair", "--output-key-prefix", "theirs"])
        .env("COSIGN_PASSWORD", "their password")
        .current_dir(dir.path()));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = SigningKey::read(&dir.path().join("theirs.key"), b"their password").expect("opens");
    let public = PublicKey::read(&dir.path().join("theirs.pub")).expect("public");
    assert_eq!(key.public_key(), public);

    let blob = dir.path().join("blob");
    std::fs::write(&blob, b"what kiln signs").expect("write");
    std::fs::write(
        dir.path().join("blob.sig"),
        base64_encode(&key.sign(b"what kiln signs")),
    )
    .expect("write");
    let verify = |file: &Path| {
        run(Command::new(&cosign)
            .args([
                "verify-blob",
                "--insecure-ignore-tlog=true",
                "--key",
                "theirs.pub",
            ])
            .args(["--signature", "blob.sig"])
            .arg(file)
            .current_dir(dir.path()))
    };
    let ok = verify(&blob);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A tampered payload fails in cosign too.
    std::fs::write(dir.path().join("tampered"), b"what kiln signed").expect("write");
    assert!(!verify(&dir.path().join("tampered")).status.success());

    let wrong = SigningKey::read(&dir.path().join("theirs.key"), b"not it").expect_err("wrong");
    assert!(matches!(wrong, SignError::WrongPassword { .. }), "{wrong}");
}

#[test]
fn a_key_kiln_made_signs_in_cosign_what_kiln_verifies() {
    let Some(cosign) = cosign() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate().expect("random");
    let files = key
        .write_pair(&dir.path().join("ours"), b"")
        .expect("written");
    assert!(files.private_key.ends_with("ours.key"));
    std::fs::write(dir.path().join("blob"), b"what cosign signs").expect("write");
    let signed = run(Command::new(&cosign)
        .args([
            "sign-blob",
            "--yes",
            "--tlog-upload=false",
            "--key",
            "ours.key",
            "blob",
        ])
        .env("COSIGN_PASSWORD", "")
        .current_dir(dir.path()));
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let signature = base64_decode(String::from_utf8_lossy(&signed.stdout).trim());
    let public = PublicKey::read(&files.public_key).expect("public");
    assert!(public.verifies(b"what cosign signs", &signature));
    assert!(!public.verifies(b"what cosign signed", &signature));
    let other = SigningKey::generate().expect("random").public_key();
    assert!(!other.verifies(b"what cosign signs", &signature));
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("cosign prints base64")
}
