//! Assembling an image: a base (or none), kiln's layers and a runtime
//! configuration become a config blob and a manifest blob in the store,
//! both canonical JSON, so the same spec always gives the same digest.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::descriptor::{
    MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::{BaseImage, Descriptor, Digest, ImageError, LayerBlob, Store, to_canonical_json};

/// The runtime configuration kiln sets. Every field is optional: on a base,
/// what is unset is inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `Entrypoint`. Setting it without `cmd` clears the base's `Cmd`, as
    /// Docker does.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`. An empty list clears the base's.
    pub cmd: Option<Vec<String>>,
    /// Environment, merged by key over the base's (ours win).
    pub env: BTreeMap<String, String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `User`, e.g. `1000:1000`.
    pub user: Option<String>,
    /// Exposed ports like `8080/tcp`, added to the base's.
    pub exposed_ports: Vec<String>,
    /// Labels, merged over the base's.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
    /// Volumes, added to the base's.
    pub volumes: Vec<String>,
}

/// One of kiln's layers, with its history line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// The blob in the store.
    pub blob: LayerBlob,
    /// History text, e.g. `kiln layer busybox: files`.
    pub created_by: String,
}

/// Everything an image is made of.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The base image, or `None` for scratch.
    pub base: Option<BaseImage>,
    /// The runtime configuration.
    pub config: RuntimeConfig,
    /// kiln's layers, in order, laid on the base's.
    pub layers: Vec<LayerRecord>,
    /// `created` of the config and of each history entry, in seconds since
    /// the Unix epoch.
    pub created_epoch: u64,
    /// Manifest annotations (`org.opencontainers.image.created`, `.version`,
    /// `.title`).
    pub annotations: BTreeMap<String, String>,
}

/// An assembled image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The manifest's descriptor; its digest is the image's digest.
    pub manifest: Descriptor,
    /// The config's digest (Docker's image id).
    pub config_digest: Digest,
    /// Every layer, the base's first.
    pub layers: Vec<Descriptor>,
}

/// Write the config and manifest of `spec` into `store`. The layer blobs
/// must already be there. Base layers are listed with their original
/// descriptors, byte for byte; nothing of the base is re-tarred or
/// re-serialised except its config, which kiln derives a new one from
/// (keeping the fields it does not know, such as `Healthcheck`).
pub fn assemble(store: &Store, spec: &ImageSpec) -> Result<BuiltImage, ImageError> {
    for layer in &spec.layers {
        if !store.has_blob(&layer.blob.digest) {
            return Err(ImageError::MissingBlob {
                digest: layer.blob.digest.clone(),
                path: store.blob_path(&layer.blob.digest),
            });
        }
    }
    let config = config_json(spec);
    let config_bytes = to_canonical_json(&config)?;
    let config_digest = store.put_blob(&config_bytes)?;

    let mut layers: Vec<Descriptor> = spec
        .base
        .as_ref()
        .map(|b| b.layers.clone())
        .unwrap_or_default();
    layers.extend(spec.layers.iter().map(|l| {
        Descriptor::new(
            MEDIA_TYPE_OCI_LAYER_GZIP,
            l.blob.digest.clone(),
            l.blob.size,
        )
    }));
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": Descriptor::new(MEDIA_TYPE_OCI_CONFIG, config_digest.clone(), config_bytes.len() as u64),
        "layers": layers,
    });
    if !spec.annotations.is_empty() {
        manifest["annotations"] = json!(spec.annotations);
    }
    let manifest_bytes = to_canonical_json(&manifest)?;
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    Ok(BuiltImage {
        manifest: Descriptor::new(
            MEDIA_TYPE_OCI_MANIFEST,
            manifest_digest,
            manifest_bytes.len() as u64,
        ),
        config_digest,
        layers,
    })
}

/// The image config as JSON: the base's (all of it, unknown fields too) with
/// kiln's settings laid over it, or a fresh one on scratch.
fn config_json(spec: &ImageSpec) -> Value {
    let created = rfc3339(spec.created_epoch);
    let mut config = match &spec.base {
        Some(base) if base.config.is_object() => base.config.clone(),
        _ => json!({"architecture": "amd64", "os": "linux"}),
    };
    let Some(top) = config.as_object_mut() else {
        return config;
    };
    top.insert("created".into(), json!(created));
    top.entry("architecture").or_insert_with(|| json!("amd64"));
    top.entry("os").or_insert_with(|| json!("linux"));

    let mut runtime = match top.remove("config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    apply_runtime(&mut runtime, &spec.config);
    top.insert("config".into(), Value::Object(runtime));

    let mut diff_ids: Vec<Value> = spec
        .base
        .as_ref()
        .map(|b| b.diff_ids.iter().map(|d| json!(d)).collect())
        .unwrap_or_default();
    diff_ids.extend(spec.layers.iter().map(|l| json!(l.blob.diff_id)));
    top.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );

    let history = match top.remove("history") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let mut history = history;
    history.extend(
        spec.layers
            .iter()
            .map(|l| json!({"created": created, "created_by": l.created_by})),
    );
    top.insert("history".into(), Value::Array(history));
    config
}

fn apply_runtime(c: &mut Map<String, Value>, r: &RuntimeConfig) {
    let set_list = |c: &mut Map<String, Value>, key: &str, v: &[String]| {
        if v.is_empty() {
            c.remove(key);
        } else {
            c.insert(key.into(), json!(v));
        }
    };
    let set_text = |c: &mut Map<String, Value>, key: &str, v: &str| {
        if v.is_empty() {
            c.remove(key);
        } else {
            c.insert(key.into(), json!(v));
        }
    };
    if let Some(entrypoint) = &r.entrypoint {
        set_list(c, "Entrypoint", entrypoint);
        if r.cmd.is_none() {
            c.remove("Cmd");
        }
    }
    if let Some(cmd) = &r.cmd {
        set_list(c, "Cmd", cmd);
    }

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(Value::Array(items)) = c.get("Env") {
        for item in items.iter().filter_map(Value::as_str) {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env.extend(r.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    set_list(c, "Env", &env);

    if let Some(w) = &r.workdir {
        set_text(c, "WorkingDir", w);
    }
    if let Some(u) = &r.user {
        set_text(c, "User", u);
    }
    if let Some(s) = &r.stop_signal {
        set_text(c, "StopSignal", s);
    }

    merge_set(c, "ExposedPorts", &r.exposed_ports);
    merge_set(c, "Volumes", &r.volumes);

    let mut labels: BTreeMap<String, Value> = match c.get("Labels") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => BTreeMap::new(),
    };
    labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), json!(v))));
    if labels.is_empty() {
        c.remove("Labels");
    } else {
        c.insert("Labels".into(), json!(labels));
    }
}

/// `{"8080/tcp": {}}`-style sets: the base's keys plus ours.
fn merge_set(c: &mut Map<String, Value>, key: &str, ours: &[String]) {
    let mut set: BTreeMap<String, Value> = match c.get(key) {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => BTreeMap::new(),
    };
    for item in ours {
        set.entry(item.clone()).or_insert_with(|| json!({}));
    }
    if set.is_empty() {
        c.remove(key);
    } else {
        c.insert(key.into(), json!(set));
    }
}

/// `epoch` (seconds since 1970-01-01 UTC) as RFC 3339 in UTC, e.g.
/// `1970-01-01T00:00:00Z`.
///
/// ```
/// assert_eq!(kiln_image::rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(kiln_image::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
/// ```
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never
/// negative here).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        for (epoch, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(epoch), expected, "{epoch}");
        }
    }

    fn runtime(base: Value, r: &RuntimeConfig) -> Value {
        let mut map = match base {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        apply_runtime(&mut map, r);
        Value::Object(map)
    }

    #[test]
    fn entrypoint_without_cmd_clears_base_cmd() {
        let r = RuntimeConfig {
            entrypoint: Some(vec!["/x".into()]),
            ..Default::default()
        };
        let got = runtime(json!({"Cmd": ["sh"], "Entrypoint": ["/old"]}), &r);
        assert_eq!(got, json!({"Entrypoint": ["/x"]}));
    }

    #[test]
    fn merges_env_labels_ports_volumes() {
        let r = RuntimeConfig {
            env: [
                ("PATH".to_owned(), "/bin".to_owned()),
                ("A".to_owned(), "1".to_owned()),
            ]
            .into(),
            labels: [("l".to_owned(), "new".to_owned())].into(),
            exposed_ports: vec!["8080/tcp".into()],
            volumes: vec!["/data".into()],
            ..Default::default()
        };
        let base = json!({
            "Env": ["PATH=/usr/bin", "Z=x=y"], "Labels": {"l": "old", "k": "v"},
            "ExposedPorts": {"53/udp": {}}, "Volumes": {"/var": {}}, "Cmd": ["sh"],
            "Healthcheck": {"Test": ["CMD", "true"]}
        });
        let got = runtime(base, &r);
        assert_eq!(
            got,
            json!({
                "Env": ["A=1", "PATH=/bin", "Z=x=y"], "Labels": {"k": "v", "l": "new"},
                "ExposedPorts": {"53/udp": {}, "8080/tcp": {}}, "Volumes": {"/data": {}, "/var": {}},
                "Cmd": ["sh"], "Healthcheck": {"Test": ["CMD", "true"]}
            })
        );
    }

    #[test]
    fn empty_config_on_scratch_has_no_keys() {
        assert_eq!(runtime(json!({}), &RuntimeConfig::default()), json!({}));
    }
}
