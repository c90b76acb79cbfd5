//! kiln-promote: what happened to an image after it was built.
//!
//! Three things live here, all kept in kiln's store beside the OCI layout
//! (under [`Store::bookkeeping_dir`]):
//!
//! - **test records** ([`record`]): the outcome of the checks run on one
//!   exact manifest digest;
//! - **channels** ([`channel`]): `stable`, `canary`... each points at one
//!   digest of an image. A promotion moves it and appends to its history; a
//!   rollback moves it back to the previous digest that passed. The store's
//!   `index.json` names the current digest `NAME:CHANNEL`, so that OCI tools
//!   ship what a channel is.
//!
//! Architecture invariant: a channel only ever points at a digest whose
//! latest test record passed. Nothing in this crate runs checks; it only
//! believes the records.
//!
//! ```no_run
//! use kiln_image::{Digest, Store};
//! use kiln_promote::{channel, record};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/tmp/kiln-store")?;
//! let digest: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! if record::latest(&store, &digest)?.is_some_and(|r| r.passed) {
//!     channel::promote(&store, "web", &digest, "stable")?;
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod channel;
mod error;
mod file;
pub mod record;

pub use error::PromoteError;
pub use kiln_error_kind::ErrorKind;
pub use kiln_image::{Digest, Store};
