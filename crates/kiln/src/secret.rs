//! Secret values: read from their source only when needed, held in memory,
//! never printed. `Debug` shows the name only.

use std::fmt;
use std::path::Path;

use kiln_recipe::{Recipe, SecretSource};

use crate::KilnError;

/// A secret's value in memory.
#[derive(Clone)]
pub struct SecretValue {
    name: String,
    value: Vec<u8>,
}

impl SecretValue {
    /// The secret's name in the recipe.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value. Callers must not log or store it.
    pub fn expose(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({}: ***)", self.name)
    }
}

/// Read the declared secret `name` of `recipe` from its source.
pub fn read(recipe: &Recipe, name: &str) -> Result<SecretValue, KilnError> {
    let unavailable = |source_desc: String, reason: String| KilnError::SecretUnavailable {
        name: name.to_owned(),
        source_desc,
        reason,
    };
    let decl = recipe.secrets.get(name).ok_or_else(|| {
        unavailable(
            "the recipe".into(),
            "it is not declared under [secrets]".into(),
        )
    })?;
    let value = match &decl.from {
        SecretSource::Env(var) => std::env::var_os(var)
            .ok_or_else(|| unavailable(decl.from.to_string(), format!("{var} is not set")))?
            .into_encoded_bytes(),
        SecretSource::File(path) => {
            let base = recipe.path.parent().unwrap_or(Path::new("."));
            std::fs::read(base.join(path))
                .map_err(|e| unavailable(decl.from.to_string(), e.to_string()))?
        }
    };
    Ok(SecretValue {
        name: name.to_owned(),
        value,
    })
}

/// Replace every occurrence of every secret in `text` with `***`.
pub fn redact(text: &str, secrets: &[SecretValue]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if let Ok(value) = std::str::from_utf8(&secret.value) {
            // A value with a trailing newline (common in files) is also
            // redacted without it.
            for needle in [value, value.trim_end_matches(['\n', '\r'])] {
                if !needle.is_empty() {
                    out = out.replace(needle, "***");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_and_trimmed_values() {
        let s = |v: &str| SecretValue {
            name: "t".into(),
            value: v.as_bytes().to_vec(),
        };
        assert_eq!(
            redact("a hunter2 b hunter2", &[s("hunter2")]),
            "a *** b ***"
        );
        assert_eq!(redact("token=abc", &[s("abc\n")]), "token=***");
        assert_eq!(redact("nothing", &[s("")]), "nothing");
        assert_eq!(format!("{:?}", s("hunter2")), "SecretValue(t: ***)");
    }
}
