//! What the image scan reports: which secret, in which form, where. A leak
//! never carries the value, and its locations are redacted themselves (a
//! secret in a file name would otherwise be printed with the name).

use std::fmt;

use kiln_image::Digest;

use crate::Encoding;

/// A declared secret found in an image about to be stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Leak {
    /// The secret's name in the recipe.
    pub secret: String,
    /// The form it was found in (the most direct one, if several).
    pub form: Encoding,
    /// Where.
    pub location: LeakLocation,
}

/// Where in an image a secret was found. Paths, keys and pointers have every
/// secret in them replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeakLocation {
    /// In the content of a file of a layer.
    LayerFile {
        /// The layer's index in the manifest, the base's layers first (the
        /// caller maps it to the recipe's layer name).
        layer: usize,
        /// The layer blob's digest.
        digest: Digest,
        /// The file's absolute path in the image.
        path: String,
    },
    /// In the metadata of an entry of a layer: its path, its link target
    /// (symlink or hard link) or its PAX records.
    LayerPath {
        /// The layer's index in the manifest, the base's layers first.
        layer: usize,
        /// The layer blob's digest.
        digest: Digest,
        /// The entry's absolute path in the image.
        path: String,
    },
    /// In the image config, outside its history: env, labels, entrypoint,
    /// cmd, any other field, value or key.
    Config {
        /// A JSON pointer (RFC 6901) to the field, e.g. `/config/Env/2`.
        field: String,
    },
    /// In an entry of the config's history (`created_by`, `comment`, ...).
    History {
        /// The entry's index in the history list.
        index: usize,
    },
    /// In a manifest annotation, its key or its value.
    Annotation {
        /// The annotation's key.
        key: String,
    },
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret {} ({}) found ", self.secret, self.form)?;
        match &self.location {
            LeakLocation::LayerFile {
                layer,
                digest,
                path,
            } => write!(f, "in layer {layer} ({}…) at {path}", short(digest)),
            LeakLocation::LayerPath {
                layer,
                digest,
                path,
            } => write!(
                f,
                "in layer {layer} ({}…) in the name, link target or PAX records of {path}",
                short(digest)
            ),
            LeakLocation::Config { field } => write!(f, "in the image config at {field}"),
            LeakLocation::History { index } => {
                write!(f, "in entry {index} of the image history")
            }
            LeakLocation::Annotation { key } => write!(f, "in the manifest annotation {key}"),
        }
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &Digest) -> String {
    format!("sha256:{}", digest.short())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_secret_form_layer_and_path() {
        let digest = Digest::of(b"layer");
        let leak = Leak {
            secret: "api_token".into(),
            form: Encoding::Base64,
            location: LeakLocation::LayerFile {
                layer: 2,
                digest: digest.clone(),
                path: "/etc/motd".into(),
            },
        };
        assert_eq!(
            leak.to_string(),
            format!(
                "secret api_token (base64) found in layer 2 (sha256:{}…) at /etc/motd",
                digest.short()
            )
        );
        let config = Leak {
            secret: "db".into(),
            form: Encoding::Raw,
            location: LeakLocation::Config {
                field: "/config/Env/2".into(),
            },
        };
        assert_eq!(
            config.to_string(),
            "secret db (raw) found in the image config at /config/Env/2"
        );
    }
}
