//! A registry as the cache that machines share: no kiln server, only the
//! OCI distribution protocol every registry speaks.
//!
//! The entry for layer key `K` is an OCI image manifest tagged
//! `cache-<hex of K>` in the cache repository: its config is the entry
//! itself (media type [`ENTRY_MEDIA_TYPE`]: the key, and the layer's
//! digest, diff_id and size, as canonical JSON) and its one layer is the
//! layer blob, so the registry keeps the blob for as long as the entry.
//! A machine that misses locally asks each `--cache-from` repository;
//! what it takes is verified three ways before it is recorded as a local
//! entry: the entry must name the key asked for, the blob must hash to its
//! digest as it streams into the store, and its uncompressed tar must hash
//! to the diff_id the entry gives (a lying cache is refused, not used).
//! Keys never hold a secret, so neither do tags or entries.

use kiln_image::{Descriptor, Digest, ImageError, LayerBlob, Remote, Store, to_canonical_json};
use serde::{Deserialize, Serialize};

use crate::CacheError;
use crate::key::LayerKey;

/// The media type of a shared cache entry (the manifest's config).
pub const ENTRY_MEDIA_TYPE: &str = "application/vnd.dev.kiln.cache.entry.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A shared cache entry as stored in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SharedEntry {
    key: Digest,
    digest: Digest,
    diff_id: Digest,
    size: u64,
}

/// The tag of `key`'s entry: `cache-` and the key's 64 hex digits.
pub fn tag(key: &LayerKey) -> String {
    format!("cache-{}", key.0.hex())
}

/// Publish that `key` produced `blob` (which must be in `store`) to the
/// cache repository `remote`: the blob unless it is there, the entry, and
/// the tag. Publishing an entry twice changes nothing.
pub async fn publish(
    remote: &Remote,
    store: &Store,
    key: &LayerKey,
    blob: &LayerBlob,
) -> Result<(), CacheError> {
    let layer = Descriptor::new(LAYER_MEDIA_TYPE, blob.digest.clone(), blob.size);
    remote
        .push_blob(store, &layer, &format!("cached layer for key {}", key.0))
        .await?;
    let entry = SharedEntry {
        key: key.0.clone(),
        digest: blob.digest.clone(),
        diff_id: blob.diff_id.clone(),
        size: blob.size,
    };
    let entry_bytes = to_canonical_json(&entry)?;
    let config = remote
        .push_blob_bytes(ENTRY_MEDIA_TYPE, entry_bytes)
        .await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config,
        "layers": [layer],
    });
    remote
        .push_manifest(
            &tag(key),
            MANIFEST_MEDIA_TYPE,
            to_canonical_json(&manifest)?,
        )
        .await?;
    Ok(())
}

/// Take `key`'s layer from the cache repository `remote` into `store` and
/// record it as a local entry; `None` when the registry has no entry for
/// it. An entry that does not hold up (another key, a blob or diff_id
/// that does not match) is [`ImageError::InvalidDocument`].
pub async fn fetch(
    remote: &Remote,
    store: &Store,
    key: &LayerKey,
) -> Result<Option<LayerBlob>, CacheError> {
    let manifest = match remote.manifest(&tag(key)).await {
        Ok(m) => m,
        Err(ImageError::RegistryNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let lie = |reason: String| {
        CacheError::Store(ImageError::InvalidDocument {
            what: "shared cache entry",
            digest: manifest.digest.clone(),
            reason: format!("in {}/{}: {reason}", remote.host(), remote.repository()),
        })
    };
    #[derive(Deserialize)]
    struct Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    }
    let parsed: Manifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| lie(format!("not an image manifest: {e}")))?;
    if parsed.config.media_type != ENTRY_MEDIA_TYPE {
        return Err(lie(format!(
            "its config is {}, not a kiln cache entry",
            parsed.config.media_type
        )));
    }
    let entry: SharedEntry =
        serde_json::from_slice(&remote.fetch_blob_bytes(&parsed.config).await?)
            .map_err(|e| lie(format!("its entry is not readable: {e}")))?;
    if entry.key != key.0 {
        return Err(lie(format!("it is the entry of key {}", entry.key)));
    }
    let [layer] = parsed.layers.as_slice() else {
        return Err(lie("it does not hold exactly one layer".into()));
    };
    if layer.digest != entry.digest || layer.size != entry.size {
        return Err(lie("its layer is not the blob its entry names".into()));
    }
    remote.fetch_blob(store, layer).await?;
    let diff_id = kiln_image::layer_diff_id(store, layer)?;
    if diff_id != entry.diff_id {
        return Err(lie(format!(
            "layer {} unpacks to {diff_id}, not the diff_id {} it names",
            layer.digest, entry.diff_id
        )));
    }
    let blob = LayerBlob {
        digest: entry.digest,
        diff_id: entry.diff_id,
        size: entry.size,
    };
    crate::entry::record(store, key, &blob)?;
    Ok(Some(blob))
}
