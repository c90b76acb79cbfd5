//! kiln-image turns files into OCI images, deterministically, and keeps them
//! in kiln's store.
//!
//! - [`plan_copy`] turns a copy from the build context into [`LayerEntry`]s,
//!   refusing anything that leaves the context and normalising modes;
//! - [`write_layer`] writes entries as one gzip layer blob, the same bytes
//!   for the same entries and epoch on any machine;
//! - [`assemble`] lays layers on a base (or scratch) and writes the config and
//!   manifest as canonical JSON ([`to_canonical_json`]);
//! - [`Store`] is an OCI image layout (skopeo and umoci read it as it is),
//!   written atomically, blobs verified before they are trusted;
//! - [`import_oci_layout`], [`import_oci_archive`], [`import_docker_archive`],
//!   [`import_docker_save`] (a `docker save` stream, read once),
//!   [`import_engine_layers`] (an image the engine keeps on this host, its
//!   layers rebuilt from their files and tar-split records) and
//!   [`pull_registry`] bring bases into the store, streamed and verified
//!   blob by blob, every base layer checked by [`validate_layer_entries`];
//!   [`load_image`] reads one back, and [`read_image`] gives a stored
//!   image as oci-spec's `ImageManifest` and `ImageConfiguration`;
//! - [`write_docker_loadable`], [`write_oci_archive`] and
//!   [`write_oci_layout_dir`] write images out, and [`push_image`] sends one
//!   to a registry.
//!
//! **Async.** Only the [`registry`] module is async, because its HTTP client
//! (reqwest) is: it is the one reason this crate depends on tokio, and its
//! functions must run inside a Tokio runtime. Everything else is blocking
//! code.
//!
//! **API boundary.** This crate knows nothing of recipes, TOML or Docker's
//! API; it never prints. Everything it writes is fixed by its inputs: no
//! clock, host name, user name, umask or file order leaks into a digest.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use kiln_image::*;
//!
//! let store = Store::open("/tmp/kiln-store")?;
//! let copy = CopySpec {
//!     src: "site/".into(), dest: "/www/".into(), mode: None,
//!     uid: 0, gid: 0, exclude: vec!["**/*.tmp".into()], preserve: false,
//! };
//! let entries = plan_copy(Path::new("."), &copy)?;
//! let blob = write_layer(&store, entries, 0)?;
//! let spec = ImageSpec {
//!     platform: kiln_image::Platform::host(),
//!     base: None,
//!     config: RuntimeConfig { cmd: Some(vec!["/bin/sh".into()]), ..Default::default() },
//!     layers: vec![LayerRecord { blob, created_by: "kiln layer site: files".into() }],
//!     created_epoch: 0,
//!     annotations: BTreeMap::from([("org.opencontainers.image.created".into(), rfc3339(0))]),
//! };
//! let image = assemble(&store, &spec)?;
//! store.set_ref("web:1.0.0", &image.manifest)?;
//! # Ok::<(), ImageError>(())
//! ```
#![deny(missing_docs)]

/// The OCI types [`read_image`] returns, re-exported so that callers use the
/// same version.
pub use oci_spec;

pub mod archive;
pub mod base;
pub mod cancel;
pub mod canonical;
pub mod change_set;
pub mod compare;
pub mod descriptor;
pub mod digest;
pub mod docker_archive;
pub mod durable;
pub mod entry;
pub mod error;
pub mod image;
pub mod layer;
pub mod layer_policy;
pub mod lock;
pub mod oci;
pub mod oci_archive;
pub mod overlay;
pub mod registry;
pub mod rootfs;
pub mod store;
pub mod tar_split;
pub mod tree_stamp;
pub mod writers;

pub use archive::{
    Attached, add_to_oci_layout_dir, write_docker_loadable, write_docker_loadable_holding,
    write_oci_archive, write_oci_archive_with, write_oci_layout_dir,
};
pub use base::{BaseImage, import_oci_layout, import_oci_layout_for, load_image};
pub use cancel::Cancel;
pub use canonical::to_canonical_json;
pub use compare::layer_differences;
pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestParseError};
pub use docker_archive::{import_docker_archive, import_docker_save, import_engine_layers};
pub use durable::{
    remove_if_present, write_atomic, write_atomic_if_changed, write_atomic_unflushed,
    write_atomic_unflushed_if_changed,
};
pub use entry::{
    CopySpec, EntryKind, FileMetadata, LayerEntry, add_parent_folders, is_glob, link_hard_links,
    link_hard_links_noted, plan_copy, plan_copy_noting,
};
pub use error::ImageError;
pub use image::{BuiltImage, ImageSpec, LayerRecord, RuntimeConfig, assemble, rfc3339};
pub use kiln_error_kind::ErrorKind;
#[doc(hidden)]
pub use layer::write_layer_with_threads;
pub use layer::{
    LayerBlob, layer_diff_id, write_layer, write_layer_expecting, write_layer_hashing,
    write_layer_releasing,
};
pub use layer_policy::{LayerPolicy, validate_layer_entries};
pub use lock::{Lease, Section, Sweep};
pub use oci::{StoredImage, read_image};
pub use oci_archive::{import_oci_archive, import_oci_archive_for};
pub use registry::{
    BlobOutcome, CredentialFiles, PushReport, RegistryAuth, Remote, RemoteImage, RemoteManifest,
    pull_registry, push_image,
};
pub use rootfs::{
    FolderWalk, rootfs_folder_entries, rootfs_folder_walk, rootfs_is_folder, rootfs_staging,
    rootfs_tar_entries,
};
pub use store::{BlobFile, BlobState, GcReport, Roots, Store};
pub use tree_stamp::{TreeStamp, rootfs_folder_stamp};
