//! File layers written while the base resolves. A file layer's bytes
//! depend on its contents alone ([`Contents`]), not on what it is laid on;
//! only its cache key needs the base. So a layer whose contents changed
//! since the image's last build, which will almost surely miss the cache,
//! is written at once, beside the base's import or the walk of a `rootfs:`
//! folder, and [`super::layers`] takes that write when its key does miss:
//! the edit-and-rebuild loop pays for the walk and the write side by side,
//! not one after the other. A hit after all (a change undone) leaves the
//! blob written to gc, as a layer that ran early is left.
//!
//! Nothing else is written early: a first build, whose failed or cancelled
//! base leaves nothing stored, and a layer whose contents did not change
//! (it is a hit unless the base changed). Nor anything when a
//! `--cache-from` registry may serve a local miss: the write would be the
//! work the registry saves.

use kiln_cache::explain::LastBuild;
use kiln_image::{LayerBlob, Store};

use super::snapshot::{Contents, Part};

/// A file layer being written on the blocking pool.
pub(super) type Writing = tokio::task::JoinHandle<Result<LayerBlob, kiln_image::ImageError>>;

/// Start writing the file layer of `entries` with entries at `epoch`, each
/// file checked on the bytes written against the digest in `expected` (one
/// read). Tar and gzip are CPU and disk work: off the async threads, beside
/// the other layers' and builds'.
pub(super) fn write_files(
    store: &Store,
    entries: Vec<kiln_image::LayerEntry>,
    epoch: u64,
    expected: std::collections::BTreeMap<String, kiln_image::Digest>,
) -> Writing {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        kiln_image::write_layer_expecting(&store, entries, epoch, &expected)
    })
}

/// The writes started early, by layer index.
#[derive(Default)]
pub(super) struct EarlyWrites {
    writes: Vec<Option<Writing>>,
}

impl EarlyWrites {
    /// Start writing each file layer among `parts` whose contents are not
    /// what they were in `last`, the image's last build (see the module's
    /// documentation). A layer started is left without entries: its write
    /// has them.
    pub(super) fn start(
        store: &Store,
        parts: &mut [Part],
        last: &LastBuild,
        epoch: u64,
        options: &super::BuildOptions,
    ) -> EarlyWrites {
        if !options.no_cache && !options.cache_from.is_empty() {
            return EarlyWrites::default();
        }
        let writes = parts
            .iter_mut()
            .map(|part| {
                let previous = last.layers.iter().find(|l| l.name == part.name())?;
                let contents = part.files_mut()?;
                let changed = !contents.same_as(previous, epoch);
                changed.then(|| start_one(store, contents, epoch))
            })
            .collect();
        EarlyWrites { writes }
    }

    /// The write of layer `index`, if one was started.
    pub(super) fn take(&mut self, index: usize) -> Option<Writing> {
        self.writes.get_mut(index).and_then(Option::take)
    }

    /// Wait for every write not taken (its outcome no longer matters): none
    /// runs on, nor leaves a temporary file, once the build returns.
    pub(super) async fn settle(self) {
        for write in self.writes.into_iter().flatten() {
            let _ = write.await;
        }
    }
}

/// Start writing the layer of `contents`, taking its entries.
fn start_one(store: &Store, contents: &mut Contents, epoch: u64) -> Writing {
    let expected = super::snapshot::file_digests(&contents.inputs);
    write_files(
        store,
        std::mem::take(&mut contents.entries),
        epoch,
        expected,
    )
}
