//! `kiln gc`: remove what nothing needs any more, safely beside running
//! builds, tests and promotions.
//!
//! gc holds the store's sweep (see [`kiln_image::lock`]): it waits until no
//! build, test run or promotion holds a lease, so every build in progress
//! is a root without gc knowing what it wrote. The roots are index.json's
//! entries (tags, channel refs, `sha256-HEX.sig`/`.att` signature tags),
//! every digest a channel's history ever named, every test record's
//! digest, and every cache entry's layer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_engine::Engine;
use kiln_image::{Digest, Roots, Store, Sweep};
use kiln_promote::{channel, record};

use crate::{KilnError, stored_recipe};

/// What `kiln gc` should do besides removing unreferenced blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcOptions {
    /// Keep only the newest N images of each name that no channel ever
    /// pointed at; older ones lose their tags, test records and signature
    /// tags first. `None` keeps every image.
    pub keep: Option<usize>,
}

impl GcOptions {
    /// Keep the newest `n` unpromoted images of each name.
    pub fn keep(n: usize) -> Self {
        GcOptions { keep: Some(n) }
    }
}

/// What `kiln gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcOutcome {
    /// The blobs removed and kept.
    pub blobs: kiln_image::GcReport,
    /// Images dropped by `--keep`, as `NAME@DIGEST`, sorted.
    pub dropped_images: Vec<String>,
    /// Stored recipes removed with their images.
    pub removed_recipes: usize,
}

/// Remove what nothing references any more (see the module's roots). Waits
/// for builds, tests and promotions in progress to finish first; call it
/// without holding a lease.
pub fn gc(store: &Store, options: &GcOptions) -> Result<GcOutcome, KilnError> {
    let sweep = store.sweep()?;
    let mut outcome = GcOutcome::default();
    if let Some(n) = options.keep {
        outcome.dropped_images = drop_old_images(store, &sweep, n)?;
    }
    let roots = roots(store)?;
    outcome.blobs = store.gc(&sweep, &roots)?;
    outcome.removed_recipes = prune_recipes(store, &sweep)?;
    Ok(outcome)
}

/// Remove from `engine` what this store's builds and tests left there:
/// every image name under the store's
/// [`engine_namespace`](crate::engine_namespace) (the run layers' base
/// cache, and names a killed run could not remove) and kiln's containers
/// created from them; the names removed, sorted. Holds the store's sweep
/// meanwhile, so no build or test of this store is using them; another
/// store's names, and images the user or another store names too, stay.
pub async fn gc_engine(store: &Store, engine: &dyn Engine) -> Result<Vec<String>, KilnError> {
    let sweep = crate::store_lock::sweep(store).await?;
    let removed = crate::engine_images::remove_leftovers(store, engine).await;
    drop(sweep);
    removed
}

/// Every manifest and blob that bookkeeping needs, besides index.json.
pub(crate) fn roots(store: &Store) -> Result<Roots, KilnError> {
    let mut manifests = channel::referenced(store)?;
    for (path, stored) in record::stored(store)? {
        match stored {
            Ok(r) => {
                manifests.insert(r.digest);
            }
            // A record gc cannot read still names its digest in its file
            // name: keep that image rather than guess.
            Err(_) => {
                if let Some(d) = digest_of_file(&path) {
                    manifests.insert(d);
                }
            }
        }
    }
    let blobs = kiln_cache::entry::stored(store)?
        .into_iter()
        .filter_map(|e| e.blob)
        .collect();
    Ok(Roots { manifests, blobs })
}

/// `tests/HEX.json`, `recipes/HEX.json` -> `sha256:HEX`.
pub(crate) fn digest_of_file(path: &std::path::Path) -> Option<Digest> {
    let hex = path.file_name()?.to_str()?.strip_suffix(".json")?;
    format!("sha256:{hex}").parse().ok()
}

/// Stored recipes whose manifest is gone go too.
fn prune_recipes(store: &Store, _sweep: &Sweep) -> Result<usize, KilnError> {
    let mut removed = 0;
    for (path, digest) in stored_recipe::stored(store)? {
        if digest.is_some_and(|d| store.has_blob(&d)) {
            continue;
        }
        remove_file(&path)?;
        removed += 1;
    }
    Ok(removed)
}

fn remove_file(path: &std::path::Path) -> Result<(), KilnError> {
    kiln_image::remove_if_present(path)?;
    Ok(())
}

/// `--keep N`: per name, the images no channel ever named, newest first;
/// all but the first `n` lose their tags, signature tags and test records,
/// so that the sweep that follows removes them.
fn drop_old_images(store: &Store, _sweep: &Sweep, n: usize) -> Result<Vec<String>, KilnError> {
    let promoted = channel::referenced(store)?;
    let refs = store.refs()?;
    // name -> digest -> the ref names and record files that keep it.
    let mut images: BTreeMap<String, BTreeMap<Digest, Holders>> = BTreeMap::new();
    for (ref_name, descriptor) in &refs {
        let Some((name, _tag)) = ref_name.split_once(':') else {
            continue;
        };
        if is_signature_tag(ref_name) || promoted.contains(&descriptor.digest) {
            continue;
        }
        images
            .entry(name.to_owned())
            .or_default()
            .entry(descriptor.digest.clone())
            .or_default()
            .refs
            .push(ref_name.clone());
    }
    for (path, stored) in record::stored(store)? {
        let Ok(r) = stored else { continue };
        if promoted.contains(&r.digest) {
            continue;
        }
        images
            .entry(r.name.clone())
            .or_default()
            .entry(r.digest.clone())
            .or_default()
            .records
            .push(path);
    }
    let mut dropped = Vec::new();
    for (name, digests) in images {
        let mut newest: Vec<(std::time::SystemTime, Digest, Holders)> = digests
            .into_iter()
            .map(|(d, h)| (stored_recipe::built_at(store, &d), d, h))
            .collect();
        newest.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, digest, holders) in newest.into_iter().skip(n) {
            for ref_name in &holders.refs {
                store.remove_ref(ref_name)?;
            }
            for (ref_name, _) in &refs {
                if signature_subject(ref_name).as_ref() == Some(&digest) {
                    store.remove_ref(ref_name)?;
                }
            }
            for path in &holders.records {
                remove_file(path)?;
            }
            dropped.push(format!("{name}@{digest}"));
        }
    }
    dropped.sort();
    Ok(dropped)
}

#[derive(Debug, Default)]
struct Holders {
    refs: Vec<String>,
    records: Vec<PathBuf>,
}

/// cosign's tags for a digest's signatures and attestations:
/// `sha256-HEX.sig`, `sha256-HEX.att`.
pub(crate) fn is_signature_tag(ref_name: &str) -> bool {
    signature_subject(ref_name).is_some()
}

/// The digest a signature or attestation tag is about.
pub(crate) fn signature_subject(ref_name: &str) -> Option<Digest> {
    // In index.json they may stand alone or after `NAME:`.
    let tag = ref_name.rsplit(':').next()?;
    let hex = tag
        .strip_prefix("sha256-")?
        .strip_suffix(".sig")
        .or_else(|| tag.strip_prefix("sha256-")?.strip_suffix(".att"))?;
    format!("sha256:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tags_name_their_subject() -> Result<(), kiln_image::DigestParseError> {
        let hex = "a".repeat(64);
        let d: Digest = format!("sha256:{hex}").parse()?;
        assert_eq!(
            signature_subject(&format!("sha256-{hex}.sig")),
            Some(d.clone())
        );
        assert_eq!(signature_subject(&format!("web:sha256-{hex}.att")), Some(d));
        assert_eq!(signature_subject("web:1.0"), None);
        assert_eq!(signature_subject("sha256-zz.sig"), None);
        Ok(())
    }
}
