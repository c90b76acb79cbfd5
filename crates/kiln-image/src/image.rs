//! Assembling an image: a base (or none), kiln's layers and a runtime
//! configuration become a config blob and a manifest blob in the store,
//! both canonical JSON, so the same spec always gives the same digest.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::image::Config;

use serde_json::{Map, Value, json};

use crate::descriptor::{
    MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::{
    BaseImage, Descriptor, Digest, ImageError, LayerBlob, Platform, Store, to_canonical_json,
};

/// The runtime configuration kiln sets. Every field is optional: on a base,
/// what is unset is inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `Entrypoint`. Setting it without `cmd` clears the base's `Cmd`, as
    /// Docker does.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`. An empty list clears the base's.
    pub cmd: Option<Vec<String>>,
    /// Environment in the order given, merged by key over the base's: the
    /// base's variables first, in their order; a name the base has keeps
    /// its place and takes our value; new names follow in our order.
    pub env: indexmap::IndexMap<String, String>,
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
    /// The platform the config records (`os`, `architecture`, `variant`)
    /// when the base's config names none, as on scratch.
    pub platform: Platform,
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
    let config = config_json(spec)?;
    let config_bytes = to_canonical_json(&config)?;
    let config_digest = Digest::of(&config_bytes);

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
    let manifest_digest = Digest::of(&manifest_bytes);
    // Both are written once both are made, and the folder flushed once.
    store.put_blobs(&[&config_bytes, &manifest_bytes])?;
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
fn config_json(spec: &ImageSpec) -> Result<Value, ImageError> {
    let created = rfc3339(spec.created_epoch);
    let mut config = match &spec.base {
        Some(base) if base.config.is_object() => base.config.clone(),
        _ => json!({}),
    };
    let Some(top) = config.as_object_mut() else {
        return Ok(config);
    };
    top.insert("created".into(), json!(created));
    if !top.contains_key("architecture") && !top.contains_key("os") {
        top.insert("architecture".into(), json!(spec.platform.architecture));
        top.insert("os".into(), json!(spec.platform.os));
        if let Some(variant) = &spec.platform.variant {
            top.insert("variant".into(), json!(variant));
        }
    }

    let mut runtime = match top.remove("config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    apply_runtime(&mut runtime, &spec.config).map_err(|e| match &spec.base {
        Some(base) => ImageError::InvalidDocument {
            what: "config of base image",
            digest: base.manifest_digest.clone(),
            reason: e.to_string(),
        },
        None => ImageError::Serialize {
            what: "the runtime config",
            source: e,
        },
    })?;
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
    Ok(config)
}

/// The keys of the config's runtime section that kiln sets; every other
/// key of a base's section (`Healthcheck`, `OnBuild`...) is kept as it is.
const RUNTIME_KEYS: [&str; 9] = [
    "Entrypoint",
    "Cmd",
    "Env",
    "WorkingDir",
    "User",
    "StopSignal",
    "ExposedPorts",
    "Volumes",
    "Labels",
];

/// Lay `r` over the runtime section `c` (the base's, or empty). The result
/// is an oci-spec `Config`, serialised into the keys kiln sets: canonical
/// JSON sorts what oci-spec leaves in hash order, so the bytes stay fixed.
///
/// Fails only when the base's section holds a known key that is not what
/// the OCI spec says it is.
fn apply_runtime(c: &mut Map<String, Value>, r: &RuntimeConfig) -> Result<(), serde_json::Error> {
    let known: Map<String, Value> = RUNTIME_KEYS
        .iter()
        .filter_map(|k| c.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let mut config: Config = serde_json::from_value(Value::Object(known))?;
    let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let text = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    if let Some(entrypoint) = &r.entrypoint {
        config.set_entrypoint(list(entrypoint.clone()));
        if r.cmd.is_none() {
            config.set_cmd(None);
        }
    }
    if let Some(cmd) = &r.cmd {
        config.set_cmd(list(cmd.clone()));
    }

    // `insert` on a name already present keeps its place: the base's order,
    // then ours, each name once.
    let mut env: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    for item in config.env().iter().flatten() {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        env.insert(k.to_owned(), v.to_owned());
    }
    env.extend(r.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    config.set_env(list(
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
    ));

    if let Some(w) = &r.workdir {
        config.set_working_dir(text(w));
    }
    if let Some(u) = &r.user {
        config.set_user(text(u));
    }
    if let Some(s) = &r.stop_signal {
        config.set_stop_signal(text(s));
    }
    let merged = |base: &Option<Vec<String>>, ours: &[String]| {
        let set: BTreeSet<String> = base.iter().flatten().chain(ours).cloned().collect();
        list(set.into_iter().collect())
    };
    config.set_exposed_ports(merged(config.exposed_ports(), &r.exposed_ports));
    config.set_volumes(merged(config.volumes(), &r.volumes));
    let mut labels = config.labels().clone().unwrap_or_default();
    labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    config.set_labels((!labels.is_empty()).then_some(labels));

    let Value::Object(typed) = serde_json::to_value(&config)? else {
        return Ok(());
    };
    for key in RUNTIME_KEYS {
        c.remove(key);
    }
    c.extend(typed);
    Ok(())
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
        apply_runtime(&mut map, r).expect("apply");
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
                "Env": ["PATH=/bin", "Z=x=y", "A=1"], "Labels": {"k": "v", "l": "new"},
                "ExposedPorts": {"53/udp": {}, "8080/tcp": {}}, "Volumes": {"/data": {}, "/var": {}},
                "Cmd": ["sh"], "Healthcheck": {"Test": ["CMD", "true"]}
            })
        );
    }

    #[test]
    fn env_keeps_the_order_given_after_the_base_and_overrides_in_place() {
        let r = RuntimeConfig {
            env: [
                ("ZED".to_owned(), "1".to_owned()),
                ("PATH".to_owned(), "/opt/bin".to_owned()),
                ("ALPHA".to_owned(), "2".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let got = runtime(
            json!({"Env": ["TERM=xterm", "PATH=/usr/bin", "HOME=/"]}),
            &r,
        );
        assert_eq!(
            got,
            json!({"Env": ["TERM=xterm", "PATH=/opt/bin", "HOME=/", "ZED=1", "ALPHA=2"]})
        );
        assert_eq!(
            got,
            runtime(
                json!({"Env": ["TERM=xterm", "PATH=/usr/bin", "HOME=/"]}),
                &r
            )
        );
    }

    #[test]
    fn a_base_runtime_key_of_the_wrong_shape_is_refused() {
        let mut map = json!({"ExposedPorts": ["80/tcp"]})
            .as_object()
            .cloned()
            .expect("object");
        let err = apply_runtime(&mut map, &RuntimeConfig::default()).expect_err("a list");
        assert!(err.to_string().contains("map"), "{err}");
    }

    #[test]
    fn empty_config_on_scratch_has_no_keys() {
        assert_eq!(runtime(json!({}), &RuntimeConfig::default()), json!({}));
    }
}
