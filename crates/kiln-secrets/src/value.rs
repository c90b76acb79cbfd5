//! A secret's value in memory, and reading it from its `env:` or `file:`
//! source: the only place where a value enters kiln.

use std::fmt;
use std::path::Path;

use kiln_recipe::SecretSource;
use zeroize::Zeroizing;

use crate::SecretError;

/// A secret's value, held in memory only.
///
/// The bytes are overwritten with zeros when the value is dropped (clones
/// too). `Debug` shows the name and `***`; there is no `Display` and no
/// `Serialize`, so a value cannot reach a log line or a file by accident:
/// only [`SecretValue::expose`] gives the bytes.
#[derive(Clone)]
pub struct SecretValue {
    name: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretValue {
    /// The secret `name` (as the recipe declares it) with value `bytes`.
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        SecretValue {
            name: name.into(),
            bytes: Zeroizing::new(bytes.into()),
        }
    }

    /// The secret's name in the recipe.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value. Callers hand it only to the step that mounts it and must
    /// never log or store it.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("value", &format_args!("***"))
            .finish()
    }
}

/// Read the secret `name` from `source`, now.
///
/// `env:VAR` reads the environment variable `VAR` of this process;
/// `file:PATH` reads the file, relative to `base_dir` (the recipe's folder)
/// unless absolute. A file's content is kept byte for byte, trailing newline
/// included; [`crate::needles`] also looks for the value without it. An
/// unset variable or an unreadable file is [`SecretError::Unavailable`],
/// naming the secret and its source. An empty value is accepted: it cannot
/// leak, and nothing is looked for.
pub fn read(
    name: &str,
    source: &SecretSource,
    base_dir: &Path,
) -> Result<SecretValue, SecretError> {
    let unavailable = |reason: String| SecretError::Unavailable {
        name: name.to_owned(),
        from: source.to_string(),
        reason,
    };
    let bytes = match source {
        SecretSource::Env(var) => std::env::var_os(var)
            .ok_or_else(|| unavailable(format!("the environment variable {var} is not set")))?
            .into_encoded_bytes(),
        SecretSource::File(path) => {
            let full = base_dir.join(path);
            std::fs::read(&full).map_err(|e| {
                unavailable(match e.kind() {
                    std::io::ErrorKind::NotFound => format!("{} does not exist", full.display()),
                    _ => format!("cannot read {}: {e}", full.display()),
                })
            })?
        }
    };
    Ok(SecretValue::new(name, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_name_and_never_the_value() {
        let s = SecretValue::new("api_token", "hunter2-value");
        let shown = format!("{s:?} {s:#?}");
        assert!(shown.contains("api_token"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_value_is_held_in_a_buffer_zeroized_on_drop() {
        fn zeroized_on_drop(_: &Zeroizing<Vec<u8>>) {}
        let s = SecretValue::new("t", b"v".to_vec());
        // Compiles only while the bytes are `Zeroizing`; a clone too.
        zeroized_on_drop(&s.bytes);
        zeroized_on_drop(&s.clone().bytes);
    }

    #[test]
    fn clones_keep_name_and_value() {
        let s = SecretValue::new("t", vec![0, 1, 2]);
        let c = s.clone();
        drop(s);
        assert_eq!((c.name(), c.expose()), ("t", &[0u8, 1, 2][..]));
    }
}
