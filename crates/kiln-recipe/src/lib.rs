//! kiln-recipe: the recipe format (being written).
#![deny(missing_docs)]

pub mod model;
pub mod values;

pub use model::*;
