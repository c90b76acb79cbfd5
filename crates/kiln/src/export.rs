//! `kiln export`: write a stored image out to another transport.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_engine::Engine;
use kiln_image::{Attached, Cancel, Digest, Store};
use kiln_recipe::BaseRef;
use kiln_sign::attached::Attachment;

use crate::KilnError;
use crate::cancel::until_cancelled;
use crate::engine_images::load_into_engine;
use crate::reference;
use crate::registry::RegistryTarget;

/// The destinations, as an error message lists them.
const DESTINATIONS: &str = "oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG, docker://HOST/REPO[:TAG]";

/// Where an image is exported to, containers-transports(5) style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `oci:DIR[:REF]`.
    OciDir {
        /// The layout folder.
        dir: PathBuf,
        /// Ref name in its index.json.
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// Ref name in its index.json.
        reference: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// `NAME:TAG` to record.
        reference: Option<String>,
    },
    /// `docker-daemon:NAME:TAG`.
    DockerDaemon {
        /// `NAME:TAG`.
        reference: String,
    },
    /// `docker://HOST/REPO[:TAG]`: pushed, with the credentials docker or
    /// skopeo would use.
    Registry(RegistryTarget),
}

impl Destination {
    /// Whether writing there needs the container engine.
    pub fn needs_engine(&self) -> bool {
        matches!(self, Destination::DockerDaemon { .. })
    }
}

impl std::str::FromStr for Destination {
    type Err = KilnError;
    /// Destinations are spelled as bases are (containers-transports(5)), so
    /// they are parsed by the same code.
    fn from_str(s: &str) -> Result<Self, KilnError> {
        let invalid = |reason: String| KilnError::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        // A destination is one of a few transports, not any base: answer
        // with those, not with the list of base references.
        let known = [
            "oci:",
            "oci-archive:",
            "docker-archive:",
            "docker-daemon:",
            "docker://",
        ];
        if !known.iter().any(|t| s.starts_with(t)) {
            return Err(invalid(format!("a destination is one of {DESTINATIONS}")));
        }
        match crate::reference::parse_transport(s)? {
            BaseRef::Oci { dir, reference } => Ok(Destination::OciDir { dir, reference }),
            BaseRef::OciArchive { file, reference } => {
                Ok(Destination::OciArchive { file, reference })
            }
            BaseRef::DockerArchive { file, reference } => {
                Ok(Destination::DockerArchive { file, reference })
            }
            BaseRef::DockerDaemon { reference } => Ok(Destination::DockerDaemon { reference }),
            BaseRef::Registry { .. } => Ok(Destination::Registry(RegistryTarget::parse(s)?)),
            other => Err(invalid(format!(
                "{}: is not a place to export to; a destination is one of {DESTINATIONS}",
                other.transport()
            ))),
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> KilnError + '_ {
    move |source| KilnError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The folder a destination file or layout goes into, which must exist:
/// a missing one is the user's to create (exit 2, naming it), and
/// tempfile's own error would name its temporary file instead.
fn destination_folder(path: &Path) -> Result<&Path, KilnError> {
    let folder = parent(path);
    if folder.is_dir() {
        Ok(folder)
    } else {
        Err(KilnError::NoExportFolder {
            folder: folder.to_owned(),
        })
    }
}

/// The folder `path` is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `file` through `write`, into a temporary file beside it that is
/// renamed over it only once whole: a failed or killed export leaves the
/// old file (or none), never a truncated one.
fn write_file_atomically(
    file: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<(), KilnError>,
) -> Result<(), KilnError> {
    let folder = destination_folder(file)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)
        .map_err(io_error(folder))?;
    let mut out = std::io::BufWriter::new(tmp.as_file());
    write(&mut out)?;
    out.flush().map_err(io_error(tmp.path()))?;
    drop(out);
    tmp.as_file().sync_all().map_err(io_error(tmp.path()))?;
    tmp.persist(file).map_err(|e| KilnError::Io {
        path: file.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Write an OCI layout folder. A new folder is written beside `dir` and
/// renamed into place whole; an existing layout gets the image added (each
/// blob and index.json there is written atomically, blobs first).
fn write_layout_atomically(
    store: &Store,
    manifest: &kiln_image::Digest,
    ref_name: &str,
    attached: &[Attached],
    dir: &Path,
) -> Result<(), KilnError> {
    let write = |dir: &Path| -> Result<(), KilnError> {
        kiln_image::write_oci_layout_dir(store, manifest, ref_name, dir)?;
        for a in attached {
            kiln_image::add_to_oci_layout_dir(store, a, dir)?;
        }
        Ok(())
    };
    if dir.exists() {
        return write(dir);
    }
    let folder = destination_folder(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(folder)
        .map_err(io_error(folder))?;
    write(tmp.path())?;
    std::fs::rename(tmp.path(), dir).map_err(io_error(dir))?;
    // The folder moved: nothing is left for the guard to clean.
    let _ = tmp.keep();
    Ok(())
}

/// How `kiln export` runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Carry the image's signatures and attestations (its `sha256-HEX.sig`
    /// and `.att` in the store) to destinations that can hold them
    /// (`oci:`, `oci-archive:`, `docker://`). On by default.
    pub attachments: bool,
    /// Stops a push to a registry between (and in the middle of) requests:
    /// the export returns [`KilnError::Cancelled`] and the registry is left
    /// without the tag, since the manifest goes last.
    pub cancel: Cancel,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            attachments: true,
            cancel: Cancel::new(),
        }
    }
}

impl ExportOptions {
    /// Leave signatures and attestations behind.
    pub fn without_attachments() -> Self {
        ExportOptions {
            attachments: false,
            ..ExportOptions::default()
        }
    }

    /// The same, stopped by `cancel`.
    #[must_use]
    pub fn with_cancel(self, cancel: Cancel) -> Self {
        ExportOptions { cancel, ..self }
    }
}

/// What an export wrote (`kiln export --json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exported {
    /// The reference as given.
    pub reference: String,
    /// The manifest digest written.
    pub digest: Digest,
    /// The name the written image carries (`NAME:TAG`), for a tool that
    /// reads it next (`skopeo inspect oci:DIR:NAME:TAG`); for a registry,
    /// `HOST/REPO:TAG` (or `HOST/REPO@DIGEST` when pushed by digest only).
    pub name: String,
    /// The signature and attestation tags written beside it
    /// (`sha256-HEX.sig`, `sha256-HEX.att`).
    pub attachments: Vec<String>,
}

/// The image's signature and attestation manifests in the store, each with
/// the ref name it gets beside `ref_name` in a layout: the image's
/// repository (what precedes its tag) with cosign's tag, so that
/// `oci:DIR:NAME:sha256-HEX.sig` names it as the store does.
fn attachments_of(
    store: &Store,
    image: &reference::ImageRef,
    ref_name: &str,
) -> Result<Vec<Attached>, KilnError> {
    let mut found = Vec::new();
    for kind in [Attachment::Signature, Attachment::Attestation] {
        let tag = kind.tag(&image.digest);
        let Some(manifest) = store.resolve(&format!("{}:{tag}", image.name))? else {
            continue;
        };
        let ref_name = match ref_name.rsplit_once(':') {
            Some((repository, _)) => format!("{repository}:{tag}"),
            None => tag,
        };
        found.push(Attached { manifest, ref_name });
    }
    Ok(found)
}

/// The name an exported image carries when the destination names none: the
/// tag or channel it was asked by (`web:1.0.0`, `web:stable`); for a bare
/// `NAME`, the ref that resolved; for a digest, `NAME:` and 16 hex digits.
fn given_name(
    store: &Store,
    reference: &str,
    image: &reference::ImageRef,
) -> Result<String, KilnError> {
    if !reference.contains('@') {
        if reference.contains(':') {
            return Ok(reference.to_owned());
        }
        let refs = store.refs()?;
        let prefix = format!("{}:", image.name);
        let mine = || {
            refs.iter()
                .filter(|(r, d)| r.starts_with(&prefix) && d.digest == image.digest)
        };
        let latest = format!("{}:latest", image.name);
        if let Some((r, _)) = mine().find(|(r, _)| *r == latest).or_else(|| mine().next()) {
            return Ok(r.clone());
        }
    }
    Ok(format!("{}:{}", image.name, &image.digest.hex()[..16]))
}

/// Write the image `reference` names to `destination`, with its signatures
/// and attestations where the destination can hold them. `engine` is
/// needed only for `docker-daemon:`. The image is named by the
/// destination's own reference, else by the tag or channel it was asked by.
pub async fn export(
    store: &Store,
    engine: Option<&dyn Engine>,
    reference: &str,
    destination: &Destination,
) -> Result<Exported, KilnError> {
    export_with(
        store,
        engine,
        reference,
        destination,
        &ExportOptions::default(),
    )
    .await
}

/// [`export`], as `options` say. A docker-archive or docker-daemon
/// destination cannot hold signatures or attestations: they are left
/// behind there whatever `options` say.
pub async fn export_with(
    store: &Store,
    engine: Option<&dyn Engine>,
    reference: &str,
    destination: &Destination,
    options: &ExportOptions,
) -> Result<Exported, KilnError> {
    let image = reference::resolve(store, reference)?;
    // A reader, never blocked by a build: the lease only keeps gc from
    // removing the blobs while they are copied out.
    let _lease = store.lease()?;
    let given = given_name(store, reference, &image)?;
    let default_ref = || given.clone();
    let mut written = given.clone();
    let mut carried = Vec::new();
    let attachments = |r: &str| -> Result<Vec<Attached>, KilnError> {
        if options.attachments {
            attachments_of(store, &image, r)
        } else {
            Ok(Vec::new())
        }
    };
    match destination {
        Destination::OciDir { dir, reference } => {
            let r = reference.clone().unwrap_or_else(default_ref);
            written.clone_from(&r);
            let attached = attachments(&r)?;
            write_layout_atomically(store, &image.digest, &r, &attached, dir)?;
            carried = attached.into_iter().map(|a| a.ref_name).collect();
        }
        Destination::OciArchive { file, reference } => {
            let r = reference.clone().unwrap_or_else(default_ref);
            written.clone_from(&r);
            let attached = attachments(&r)?;
            write_file_atomically(file, |out| {
                Ok(kiln_image::write_oci_archive_with(
                    store,
                    &image.digest,
                    &r,
                    &attached,
                    out,
                )?)
            })?;
            carried = attached.into_iter().map(|a| a.ref_name).collect();
        }
        Destination::DockerArchive { file, reference } => {
            let r = reference.clone().unwrap_or_else(default_ref);
            written.clone_from(&r);
            write_file_atomically(file, |out| {
                Ok(kiln_image::write_docker_loadable(
                    store,
                    &image.digest,
                    &[r],
                    out,
                )?)
            })?;
        }
        Destination::DockerDaemon { reference } => {
            let engine = engine.ok_or_else(|| KilnError::InvalidReference {
                reference: reference.clone(),
                reason: "docker-daemon: needs the container engine".into(),
            })?;
            load_into_engine(store, engine, &image.digest, reference.clone()).await?;
            written.clone_from(reference);
        }
        Destination::Registry(target) => {
            // The tag given with the destination, else the tag or channel
            // the image was named by, else none (pushed by digest).
            let tag = target.tag.clone().or_else(|| ref_tag(reference));
            written = match &tag {
                Some(t) => format!("{}/{}:{t}", target.host, target.repository),
                None => format!("{}/{}@{}", target.host, target.repository, image.digest),
            };
            let remote = target.push_remote(store, &image.digest)?;
            let tags: Vec<String> = tag.into_iter().collect();
            let pushing = async {
                remote.push_image(store, &image.digest, &tags).await?;
                Ok(())
            };
            until_cancelled(&options.cancel, pushing).await?;
            if options.attachments {
                let attaching =
                    crate::sign::push_attachments(store, &image.name, &image.digest, &remote);
                carried = until_cancelled(&options.cancel, attaching).await?;
            }
        }
    }
    Ok(Exported {
        reference: reference.to_owned(),
        digest: image.digest,
        name: written,
        attachments: carried,
    })
}

/// The tag or channel of `NAME:TAG` / `NAME:CHANNEL`; none for `NAME` or
/// `NAME@DIGEST`.
fn ref_tag(reference: &str) -> Option<String> {
    if reference.contains('@') {
        return None;
    }
    reference.split_once(':').map(|(_, tag)| tag.to_owned())
}
