//! kiln-image (being written).
#![deny(missing_docs)]

pub mod digest;

pub use digest::Digest;
