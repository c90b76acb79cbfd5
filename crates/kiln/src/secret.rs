//! Secret values for the pipeline, through kiln-secrets: read from their
//! source only when needed, held in memory, never printed, redacted from
//! anything shown or stored.

use kiln_recipe::Recipe;
pub use kiln_secrets::{Redactor, SecretValue};

use crate::KilnError;
use crate::plan::recipe_dir;

/// Read the declared secret `name` of `recipe` from its source.
pub fn read(recipe: &Recipe, name: &str) -> Result<SecretValue, KilnError> {
    let decl = recipe
        .secrets
        .get(name)
        .ok_or_else(|| KilnError::SecretUnavailable {
            name: name.to_owned(),
            source_desc: "the recipe".into(),
            reason: "it is not declared under [secrets]".into(),
        })?;
    kiln_secrets::read(name, &decl.from, &recipe_dir(recipe)).map_err(|e| match e {
        kiln_secrets::SecretError::Unavailable { name, from, reason } => {
            KilnError::SecretUnavailable {
                name,
                source_desc: from,
                reason,
            }
        }
        other => KilnError::Secrets(other),
    })
}

/// Every declared secret whose source can be read here: what a build is
/// scanned for. A secret that cannot be read was not available to the build
/// either, so it cannot have leaked through it.
pub fn readable(recipe: &Recipe) -> Vec<SecretValue> {
    recipe
        .secrets
        .keys()
        .filter_map(|name| read(recipe, name).ok())
        .collect()
}

/// Replace every occurrence of every secret in `text`, in any of the forms
/// kiln-secrets knows, with `***`.
pub fn redact(text: &str, secrets: &[SecretValue]) -> String {
    Redactor::new(secrets).redact(text)
}
