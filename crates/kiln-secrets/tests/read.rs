//! read(): values come from the environment or a file, byte for byte; a
//! missing source is an error that names the secret and the source.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use kiln_recipe::SecretSource;
use kiln_secrets::{SecretError, read};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CHILD_VAR: &str = "KILN_SECRETS_TEST_ENV_VALUE";
/// Not UTF-8, with a newline: an environment value is kept as it is.
const CHILD_VALUE: &[u8] = b"tok\xff-value\n";

/// Tests cannot set environment variables (that is `unsafe` in edition 2024
/// and the workspace forbids unsafe code), so this test runs itself again
/// with the variable set, and the run with it set does the reading.
#[test]
fn env_source_is_read_byte_for_byte() -> TestResult {
    if std::env::var_os(CHILD_VAR).is_some() {
        let source: SecretSource = format!("env:{CHILD_VAR}").parse()?;
        let value = read("api_token", &source, Path::new("/nonexistent"))?;
        assert_eq!(value.expose(), CHILD_VALUE);
        assert_eq!(value.name(), "api_token");
        return Ok(());
    }
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "env_source_is_read_byte_for_byte",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, OsStr::from_bytes(CHILD_VALUE))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn an_unset_variable_names_secret_and_source() -> TestResult {
    let source: SecretSource = "env:KILN_SECRETS_TEST_SURELY_UNSET_8D3F".parse()?;
    let err = read("api_token", &source, Path::new("."))
        .err()
        .ok_or("an unset variable gave a value")?;
    match &err {
        SecretError::Unavailable { name, from, .. } => {
            assert_eq!(name, "api_token");
            assert_eq!(from, "env:KILN_SECRETS_TEST_SURELY_UNSET_8D3F");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "secret api_token is not available from env:KILN_SECRETS_TEST_SURELY_UNSET_8D3F: \
         the environment variable KILN_SECRETS_TEST_SURELY_UNSET_8D3F is not set"
    );
    Ok(())
}

#[test]
fn a_file_is_read_relative_to_the_base_folder_newline_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("keys"))?;
    std::fs::write(dir.path().join("keys/db"), b"pw-1234\n")?;
    let source: SecretSource = "file:keys/db".parse()?;
    let value = read("db_password", &source, dir.path())?;
    assert_eq!(value.expose(), b"pw-1234\n");
    assert_eq!(value.name(), "db_password");

    // An absolute path ignores the base folder.
    let absolute = SecretSource::File(dir.path().join("keys/db"));
    let value = read("db_password", &absolute, Path::new("/nonexistent"))?;
    assert_eq!(value.expose(), b"pw-1234\n");
    Ok(())
}

#[test]
fn a_missing_file_names_secret_source_and_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let source: SecretSource = "file:keys/missing".parse()?;
    let err = read("db_password", &source, dir.path())
        .err()
        .ok_or("a missing file gave a value")?;
    assert!(
        matches!(&err, SecretError::Unavailable { name, from, .. }
            if name == "db_password" && from == "file:keys/missing"),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with("secret db_password is not available from file:keys/missing: "),
        "{shown}"
    );
    assert!(
        shown.contains(&dir.path().join("keys/missing").display().to_string()),
        "{shown}"
    );
    assert!(shown.ends_with("does not exist"), "{shown}");
    Ok(())
}

#[test]
fn an_unreadable_file_says_why() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A folder where the file should be: it exists but cannot be read.
    std::fs::create_dir(dir.path().join("token"))?;
    let source: SecretSource = "file:token".parse()?;
    let err = read("api_token", &source, dir.path())
        .err()
        .ok_or("a folder gave a value")?;
    let shown = err.to_string();
    assert!(shown.contains("cannot read"), "{shown}");
    assert!(shown.contains("file:token"), "{shown}");
    Ok(())
}
