//! Test records: the outcome of the checks on one exact manifest digest.
//!
//! One file per digest, `tests/<hex>.json`, holding the latest run. The
//! latest run decides: a digest that passed once and failed since is not
//! promotable.

use std::path::PathBuf;

use kiln_image::{Digest, Store};
use serde::{Deserialize, Serialize};

use crate::PromoteError;
use crate::file::{read_json, write_json};

/// The outcome of one run of an image's checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRecord {
    /// Image name.
    pub name: String,
    /// The manifest digest that was booted.
    pub digest: Digest,
    /// Whether every check passed.
    pub passed: bool,
    /// Each check, in recipe order.
    pub checks: Vec<CheckRecord>,
    /// When the run finished, in seconds since the Unix epoch.
    pub finished_at: u64,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// What was expected and what was seen.
    pub detail: String,
}

fn path(store: &Store, digest: &Digest) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("tests")
        .join(format!("{}.json", digest.hex()))
}

/// Keep `record` as the latest run of its digest.
pub fn save(store: &Store, record: &TestRecord) -> Result<(), PromoteError> {
    // A record is a root of gc: it is written under a lease.
    let _lease = store.lease()?;
    write_json(&path(store, &record.digest), record)
}

/// The latest run of `digest`, if it was ever tested.
pub fn latest(store: &Store, digest: &Digest) -> Result<Option<TestRecord>, PromoteError> {
    read_json(&path(store, digest))
}

/// Fails unless the latest run of `digest` passed and was of image `name`.
pub fn require_passed(
    store: &Store,
    name: &str,
    digest: &Digest,
) -> Result<TestRecord, PromoteError> {
    let record = latest(store, digest)?.ok_or_else(|| PromoteError::Untested {
        name: name.to_owned(),
        digest: digest.clone(),
    })?;
    if record.name != name {
        return Err(PromoteError::WrongImage {
            name: name.to_owned(),
            recorded: record.name,
            digest: digest.clone(),
        });
    }
    if !record.passed {
        let failed: Vec<&str> = record
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        return Err(PromoteError::Failed {
            name: name.to_owned(),
            digest: digest.clone(),
            failed: failed.join(", "),
        });
    }
    Ok(record)
}

/// A test record file and what it holds, or why it could not be read.
pub type StoredRecord = (PathBuf, Result<TestRecord, PromoteError>);

/// Every test record file in the store with what it holds (or why it
/// could not be read), sorted by file name.
pub fn stored(store: &Store) -> Result<Vec<StoredRecord>, PromoteError> {
    let mut found = Vec::new();
    for path in store.bookkeeping_files("tests")? {
        let record = read_json::<TestRecord>(&path).and_then(|r| {
            r.ok_or_else(|| PromoteError::Io {
                path: path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            })
        });
        found.push((path, record));
    }
    Ok(found)
}
