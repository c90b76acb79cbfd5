//! Reading and writing the JSON bookkeeping files, atomically.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PromoteError;

/// Read a JSON file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, PromoteError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| PromoteError::Corrupt {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PromoteError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Write a JSON file whole or not at all.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PromoteError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| PromoteError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    kiln_image::write_atomic(path, &bytes)?;
    Ok(())
}
