//! kiln-sign: signatures, provenance and SBOMs for kiln's images, in the
//! formats cosign writes and verifies, so that `cosign verify` and any
//! admission policy built on it accept what kiln signs, and kiln accepts
//! what cosign signs.
//!
//! - [`SigningKey`] and [`PublicKey`]: ECDSA P-256 keys in cosign's files
//!   (`kiln keygen` = `cosign generate-key-pair`, either way round);
//! - [`sign_image`] / [`verify_image`]: cosign's simple signing payload,
//!   attached as the `sha256-HEX.sig` manifest beside the image, appended;
//! - [`attest_image`] / [`verify_attestations`]: in-toto statements in DSSE
//!   envelopes under `sha256-HEX.att`, of a SLSA provenance v1 predicate
//!   ([`Provenance`]) or an SPDX 2.3 SBOM ([`spdx_document`]);
//! - [`read_contents`]: what an image holds (its dpkg and apk databases,
//!   kiln's own files) for the SBOM.
//!
//! **API boundary.** This crate works on kiln's store ([`kiln_image::Store`])
//! and plain values: it knows nothing of recipes, engines or registries,
//! never prints and never reads the environment. A password is handed in by
//! the caller.
//!
//! **Invariant.** Attachments are appended, never replaced: a second signer
//! adds a layer beside the first.
//!
//! ```no_run
//! use kiln_sign::{SigningKey, sign_image, verify_image};
//! # fn example(store: &kiln_image::Store, digest: &kiln_image::Digest) -> Result<(), kiln_sign::SignError> {
//! let key = SigningKey::read("cosign.key".as_ref(), b"")?;
//! sign_image(store, "web", digest, "registry.example/team/web", &key)?;
//! verify_image(store, "web", digest, &key.public_key(), "cosign.pub".as_ref(), "web")?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod attached;
mod attestation;
pub mod contents;
pub mod dsse;
mod error;
mod key;
pub mod packages;
pub mod payload;
pub mod provenance;
pub mod sbom;
mod sealed;
mod signature;
pub mod statement;

pub use attestation::{attest_image, verify_attestations};
pub use contents::{Contents, read_contents};
pub use error::{SignError, VerifyFailure};
pub use key::{KeyFiles, PRIVATE_KEY_LABEL, PublicKey, SigningKey};
pub use provenance::{Provenance, ProvenanceCheck, ProvenanceLayer};
pub use sbom::{SbomSubject, spdx_document};
pub use signature::{Signed, sign_image, verify_image};
pub use statement::{PredicateKind, Statement};
