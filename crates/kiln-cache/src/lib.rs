//! kiln-cache: the layer cache.
//!
//! Every layer has a **key**: a sha256 over the parent's key (or the base's
//! manifest digest), the epoch, the layer's canonical definition from the
//! recipe, and every input entry as it will be stored (in-image path, kind,
//! mode, owner, and the content digest of each file). A secret's *name* may
//! appear in a definition; its value never does. Same key, same layer bytes,
//! so a hit reuses the stored blob without reading or compressing anything.
//!
//! - [`stat`]: a git-index-like cache of (path, size, mtime, ctime, inode)
//!   → content digest, so unchanged inputs are not hashed again; an entry
//!   modified too close to when it was hashed is re-hashed ("racily clean").
//! - [`key`]: the key and the inputs it is made of.
//! - [`entry`]: key → blob, written atomically and only after the blob is in
//!   the store; a blob that is missing or whose bytes changed is never a hit.
//! - [`shared`]: a registry repository as the cache machines share
//!   (`--cache-to`, `--cache-from`): entries as tagged manifests, taken
//!   only after the key, the blob's digest and its diff_id check out.
//! - [`stamps`]: a `rootfs:` folder's key remembered by the stamp of the
//!   walk that made it, so an unchanged root is known from its stats alone.
//! - [`explain`]: why a layer missed: which input file, which key of the
//!   recipe, or which parent changed, compared with the image's last build.
//!
//! ```no_run
//! use kiln_cache::{entry, key::{KeyInput, LayerKey}};
//! use kiln_image::Store;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/tmp/kiln-store")?;
//! let input = KeyInput {
//!     parent: "scratch".into(),
//!     epoch: 0,
//!     definition: serde_json::json!({ "files": [] }),
//!     inputs: Vec::new(),
//! };
//! let key = LayerKey::of(&input)?;
//! match entry::lookup(&store, &key)? {
//!     entry::Lookup::Hit(blob) => println!("reuse {}", blob.digest),
//!     entry::Lookup::Miss(why) => println!("build: {why:?}"),
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod entry;
mod error;
pub mod explain;
pub mod key;
pub mod shared;
pub mod stamps;
pub mod stat;
mod stat_file;

pub use error::CacheError;
pub use kiln_error_kind::ErrorKind;
