//! `kiln fsck`: check that everything the store holds is whole and that
//! everything that names something names what is there, and with
//! `--repair` remove what is broken and unreferenced.
//!
//! Checked: every blob against its digest; every entry of index.json (tags,
//! channel refs) down to its layers; every signature and attestation tag
//! layer by layer (kiln-sign's `attached::examine`) and against its image; every cache entry,
//! test record and stored recipe against the blobs; every channel history
//! against the blobs and against its `NAME:CHANNEL` ref. Temporary files
//! left by a killed process are judged only when no lease is held (a build
//! in progress has some too).
//!
//! `--repair` holds the sweep and never removes what is referenced and
//! whole: it removes corrupt blobs, leftover temporary files, refs whose
//! image is incomplete, and cache entries, test records and stored recipes
//! that name nothing; it points a channel's ref back at what its history
//! says. A history whose digests are gone is reported, never rewritten: it
//! is the only record of what shipped. A signature or attestation tag loses
//! only its broken layers; a whole one whose image is gone is kept.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_image::{BlobFile, BlobState, Digest, Store, Sweep};
use kiln_promote::{channel, record};
use serde::Serialize;

use kiln_sign::attached::{self, Attachment};

use crate::gc::{digest_of_file, signature_subject};
use crate::{KilnError, stored_recipe};

/// How `kiln fsck` runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Remove what is broken and unreferenced, fix channel refs.
    pub repair: bool,
}

impl FsckOptions {
    /// Check and repair.
    pub fn repair() -> Self {
        FsckOptions { repair: true }
    }
}

/// What kind of thing is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A blob whose bytes do not hash to its name.
    CorruptBlob,
    /// A file in `blobs/sha256/` that is not a blob (not kiln's: left alone).
    StrayFile,
    /// A temporary file of a write that was interrupted.
    LeftoverTemporary,
    /// An entry of index.json whose image is missing a blob or is corrupt.
    BrokenRef,
    /// A signature or attestation tag with a broken layer or manifest, or
    /// whose signed image is not whole.
    BrokenSignature,
    /// A cache entry that cannot be read or whose layer is not whole.
    BrokenCacheEntry,
    /// A test record that cannot be read or whose image is not whole.
    BrokenTestRecord,
    /// A stored recipe whose image is gone.
    BrokenStoredRecipe,
    /// A channel history that cannot be read or names a digest that is not
    /// whole.
    BrokenHistory,
    /// A channel's `NAME:CHANNEL` ref disagrees with its history.
    ChannelRefMismatch,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The file (or `index.json`) concerned.
    pub path: PathBuf,
    /// What is wrong, in words.
    pub detail: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// What `kiln fsck` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FsckReport {
    /// Blobs hashed.
    pub blobs: usize,
    /// Blobs that nothing references (gc's to remove; not a problem).
    pub unreferenced: usize,
    /// Whether builds or other writers were running (their temporary files
    /// were then not judged).
    pub writers_active: bool,
    /// Everything found wrong, sorted by kind and path.
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// Whether something is wrong that was not repaired.
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| p.repaired)
    }
}

/// Check the store (see the module's list); with `options.repair`, repair
/// it. Without `repair` it never blocks a build; with it, it waits for
/// builds, tests and promotions in progress (it holds the sweep).
pub fn fsck(store: &Store, options: &FsckOptions) -> Result<FsckReport, KilnError> {
    let sweep = if options.repair {
        Some(store.sweep()?)
    } else {
        store.try_sweep()?
    };
    let mut check = Check {
        store,
        repair: options.repair.then_some(()).and(sweep.as_ref()),
        report: FsckReport {
            writers_active: sweep.is_none(),
            ..FsckReport::default()
        },
        whole: BTreeSet::new(),
        channel_refs: BTreeSet::new(),
    };
    check.blobs()?;
    if sweep.is_some() {
        check.temporary_files()?;
    }
    let promoted = check.histories()?;
    check.refs()?;
    check.cache_entries()?;
    check.records(&promoted)?;
    check.recipes()?;
    let roots = crate::gc::roots(store)?;
    let reachable = store.reachable(&roots)?;
    check.report.unreferenced = check.whole.difference(&reachable).count();
    check
        .report
        .problems
        .sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    Ok(check.report)
}

struct Check<'a> {
    store: &'a Store,
    /// The sweep, when repairing.
    repair: Option<&'a Sweep>,
    report: FsckReport,
    /// Blobs present whose bytes match their digest.
    whole: BTreeSet<Digest>,
    /// `NAME:CHANNEL` of every channel with a history.
    channel_refs: BTreeSet<String>,
}

impl Check<'_> {
    fn problem(&mut self, kind: ProblemKind, path: &Path, detail: String, repaired: bool) {
        self.report.problems.push(Problem {
            kind,
            path: path.to_owned(),
            detail,
            repaired,
        });
    }

    fn blobs(&mut self) -> Result<(), KilnError> {
        for file in self.store.blob_files()? {
            match file {
                BlobFile::Blob(d) => {
                    self.report.blobs += 1;
                    match self.store.verify_blob(&d)? {
                        BlobState::Whole => {
                            self.whole.insert(d);
                        }
                        BlobState::Corrupt => {
                            let repaired = match self.repair {
                                Some(sweep) => self.store.remove_blob(sweep, &d)?,
                                None => false,
                            };
                            let path = self.store.blob_path(&d);
                            self.problem(
                                ProblemKind::CorruptBlob,
                                &path,
                                format!("content does not hash to {d}"),
                                repaired,
                            );
                        }
                        // Removed since it was listed: gc or a discard ran.
                        BlobState::Missing => {}
                    }
                }
                BlobFile::Stray(path) => self.problem(
                    ProblemKind::StrayFile,
                    &path,
                    "not a blob kiln wrote: remove it by hand if it is not yours".into(),
                    false,
                ),
                // Judged in `temporary_files`, only when no lease is held.
                BlobFile::Temporary(_) => {}
            }
        }
        Ok(())
    }

    /// Every `.tmp*` file under the store: with the sweep held, no write is
    /// in progress, so each is left over from a killed process.
    fn temporary_files(&mut self) -> Result<(), KilnError> {
        let mut pending = vec![self.store.root().to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| KilnError::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| KilnError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let path = entry.path();
                let is_tmp = entry.file_name().to_string_lossy().starts_with(".tmp");
                let kind = entry.file_type().map_err(|source| KilnError::Io {
                    path: path.clone(),
                    source,
                })?;
                if kind.is_dir() && !is_tmp {
                    pending.push(path);
                    continue;
                }
                if !is_tmp {
                    continue;
                }
                let repaired = self.repair.is_some() && remove_any(&path)?;
                self.problem(
                    ProblemKind::LeftoverTemporary,
                    &path,
                    "left by an interrupted write".into(),
                    repaired,
                );
            }
        }
        Ok(())
    }

    /// Whether `d` and everything it reaches is whole; else what is not.
    fn image_defect(&self, d: &kiln_image::Descriptor) -> Result<Option<String>, KilnError> {
        let mut reached = BTreeSet::new();
        self.store.reach(d, &mut reached)?;
        let missing: Vec<String> = reached
            .iter()
            .filter(|b| !self.whole.contains(*b))
            .map(ToString::to_string)
            .collect();
        Ok((!missing.is_empty()).then(|| format!("missing or corrupt: {}", missing.join(", "))))
    }

    fn refs(&mut self) -> Result<(), KilnError> {
        let index = self.store.root().join("index.json");
        for (ref_name, descriptor) in self.store.refs()? {
            if let Some(subject) = signature_subject(&ref_name) {
                self.attachment(&index, &ref_name, &descriptor, &subject)?;
                continue;
            }
            let Some(defect) = self.image_defect(&descriptor)? else {
                continue;
            };
            // A channel's ref is repaired from its history, not removed.
            let is_channel = self.channel_refs.contains(&ref_name);
            let repaired =
                self.repair.is_some() && !is_channel && self.store.remove_ref(&ref_name)?;
            self.problem(
                ProblemKind::BrokenRef,
                &index,
                format!("{ref_name}: {defect}"),
                repaired,
            );
        }
        Ok(())
    }

    /// A signature or attestation tag of image `subject`. Each layer must
    /// be whole and hold what cosign writes about that image; `--repair`
    /// drops only the layers that do not (a manifest none of whose layers
    /// is whole goes), never a whole signature, not even one whose image
    /// is gone: rebuilding the same recipe gives that digest again.
    fn attachment(
        &mut self,
        index: &Path,
        ref_name: &str,
        descriptor: &kiln_image::Descriptor,
        subject: &Digest,
    ) -> Result<(), KilnError> {
        let kind = if ref_name.ends_with(".att") {
            Attachment::Attestation
        } else {
            Attachment::Signature
        };
        let examined = match attached::examine(self.store, &descriptor.digest, kind, subject) {
            Ok(examined) => examined,
            Err(e) => {
                // The manifest itself is unreadable: nothing whole to keep.
                let repaired = self.repair.is_some() && self.store.remove_ref(ref_name)?;
                self.problem(
                    ProblemKind::BrokenSignature,
                    index,
                    format!("{ref_name}: {}", crate::Chain(&e)),
                    repaired,
                );
                return Ok(());
            }
        };
        if !examined.broken.is_empty() || examined.config_broken {
            let mut defects: Vec<String> = examined
                .broken
                .iter()
                .map(|b| format!("layer {}: {}", b.digest, b.reason))
                .collect();
            if examined.config_broken {
                defects.push("its config is missing or corrupt".into());
            }
            let repaired = match self.repair {
                None => false,
                Some(_) if examined.whole.is_empty() => self.store.remove_ref(ref_name)?,
                Some(_) => {
                    let mended = attached::with_layers(self.store, &examined.whole)?;
                    let mut written = BTreeSet::new();
                    self.store.reach(&mended, &mut written)?;
                    self.whole.extend(written);
                    self.store.set_ref(ref_name, &mended)?;
                    true
                }
            };
            self.problem(
                ProblemKind::BrokenSignature,
                index,
                format!("{ref_name}: {}", defects.join("; ")),
                repaired,
            );
        }
        if !self.whole.contains(subject) {
            self.problem(
                ProblemKind::BrokenSignature,
                index,
                format!(
                    "{ref_name}: signs {subject}, which is not in the store (kept: rebuilding \
                     the image gives that digest again)"
                ),
                false,
            );
        }
        Ok(())
    }

    fn cache_entries(&mut self) -> Result<(), KilnError> {
        for entry in kiln_cache::entry::stored(self.store)? {
            let detail = match &entry.blob {
                None => "not a cache entry kiln wrote".to_owned(),
                Some(d) if !self.whole.contains(d) => {
                    format!("its layer {d} is missing or corrupt")
                }
                Some(_) => continue,
            };
            let repaired = self.repair.is_some() && kiln_cache::entry::remove(&entry.path)?;
            self.problem(ProblemKind::BrokenCacheEntry, &entry.path, detail, repaired);
        }
        Ok(())
    }

    /// Test records: each must be readable, be the record of the digest its
    /// file is named after, and name a whole image. One a channel's history
    /// names is never removed.
    fn records(&mut self, promoted: &BTreeSet<Digest>) -> Result<(), KilnError> {
        for (path, stored) in record::stored(self.store)? {
            let named = digest_of_file(&path);
            let detail = match &stored {
                Err(e) => format!("unreadable: {e}"),
                Ok(r) if named.as_ref() != Some(&r.digest) => {
                    format!("holds the record of {} under another name", r.digest)
                }
                Ok(r) if !self.whole.contains(&r.digest) => {
                    format!("the image {} is missing or corrupt", r.digest)
                }
                Ok(_) => continue,
            };
            let referenced = named.as_ref().is_some_and(|d| promoted.contains(d));
            let repaired = self.repair.is_some() && !referenced && remove_any(&path)?;
            self.problem(ProblemKind::BrokenTestRecord, &path, detail, repaired);
        }
        Ok(())
    }

    fn recipes(&mut self) -> Result<(), KilnError> {
        for (path, digest) in stored_recipe::stored(self.store)? {
            if digest.as_ref().is_some_and(|d| self.whole.contains(d)) {
                continue;
            }
            let repaired = self.repair.is_some() && remove_any(&path)?;
            self.problem(
                ProblemKind::BrokenStoredRecipe,
                &path,
                "its image is missing or corrupt".into(),
                repaired,
            );
        }
        Ok(())
    }

    /// Channel histories, and their refs against them. Returns every digest
    /// a history names.
    fn histories(&mut self) -> Result<BTreeSet<Digest>, KilnError> {
        let mut named = BTreeSet::new();
        let index = self.store.root().join("index.json");
        for stored in channel::histories(self.store)? {
            self.channel_refs
                .insert(format!("{}:{}", stored.name, stored.channel));
            let events = match stored.events {
                Ok(events) => events,
                Err(e) => {
                    self.problem(
                        ProblemKind::BrokenHistory,
                        &stored.path,
                        format!("unreadable: {e}"),
                        false,
                    );
                    continue;
                }
            };
            let gone: BTreeSet<String> = events
                .iter()
                .filter(|e| !self.whole.contains(&e.digest))
                .map(|e| e.digest.to_string())
                .collect();
            named.extend(events.into_iter().map(|e| e.digest));
            if !gone.is_empty() {
                let list: Vec<String> = gone.into_iter().collect();
                self.problem(
                    ProblemKind::BrokenHistory,
                    &stored.path,
                    format!(
                        "names images that are missing or corrupt: {}",
                        list.join(", ")
                    ),
                    false,
                );
            }
            let current = channel::current(self.store, &stored.name, &stored.channel)?;
            let ref_name = format!("{}:{}", stored.name, stored.channel);
            let in_index = self.store.resolve(&ref_name)?.map(|d| d.digest);
            if current == in_index {
                continue;
            }
            let fixable = current.as_ref().is_none_or(|d| self.whole.contains(d));
            let repaired = self.repair.is_some() && fixable && {
                channel::sync_ref(self.store, &stored.name, &stored.channel)?;
                true
            };
            let show =
                |d: &Option<Digest>| d.as_ref().map_or("nothing".to_owned(), ToString::to_string);
            self.problem(
                ProblemKind::ChannelRefMismatch,
                &index,
                format!(
                    "{ref_name} names {} but the history says {}",
                    show(&in_index),
                    show(&current)
                ),
                repaired,
            );
        }
        Ok(named)
    }
}

/// Remove a leftover file or folder (`tempdir`s of a killed export or
/// import are folders).
fn remove_any(path: &Path) -> Result<bool, KilnError> {
    if !path.is_dir() {
        return Ok(kiln_image::remove_if_present(path)?);
    }
    std::fs::remove_dir_all(path).map_err(|source| KilnError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(true)
}
