//! Canonical JSON: one value, one byte string. Digests of configs, manifests
//! and index.json depend on it, so this is where their reproducibility lives.
//!
//! Keys are sorted here, by their UTF-8 bytes, at every depth, rather than
//! left to `serde_json::Map`: with serde_json's `preserve_order` feature
//! (which any crate in the dependency graph may turn on) the map keeps
//! insertion order, and digests would silently change.

use serde::Serialize;
use serde_json::Value;

use crate::ImageError;

/// Serialise `v` as canonical JSON: object keys sorted at every depth, no
/// whitespace, strings escaped as serde_json escapes them.
///
/// ```
/// let v = serde_json::json!({"b": 1, "a": {"d": [true, null], "c": "x"}});
/// let bytes = kiln_image::to_canonical_json(&v)?;
/// assert_eq!(bytes, br#"{"a":{"c":"x","d":[true,null]},"b":1}"#);
/// # Ok::<(), kiln_image::ImageError>(())
/// ```
pub fn to_canonical_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(v).map_err(|source| ImageError::Serialize {
        what: "a value",
        source,
    })?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), ImageError> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out)?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out)?,
    }
    Ok(())
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) -> Result<(), ImageError> {
    serde_json::to_writer(out, value).map_err(|source| ImageError::Serialize {
        what: "a value",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: Value, expected: &str) {
        let got = to_canonical_json(&input).unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    #[test]
    fn sorts_keys_at_every_depth() {
        check(
            serde_json::json!({"z": {"y": 1, "b": 2}, "a": [{"k": 1, "c": 2}]}),
            r#"{"a":[{"c":2,"k":1}],"z":{"b":2,"y":1}}"#,
        );
    }

    #[test]
    fn sorts_by_bytes_not_case_folded() {
        check(
            serde_json::json!({"b": 1, "B": 2, "a": 3}),
            r#"{"B":2,"a":3,"b":1}"#,
        );
    }

    #[test]
    fn escapes_strings_and_keeps_scalars() {
        check(
            serde_json::json!({"s": "a\"b\n\u{1}", "n": -3, "f": 1.5, "t": true, "z": null}),
            r#"{"f":1.5,"n":-3,"s":"a\"b\n\u0001","t":true,"z":null}"#,
        );
    }

    #[test]
    fn empty_containers() {
        check(serde_json::json!({"o": {}, "a": []}), r#"{"a":[],"o":{}}"#);
    }
}
