//! kiln (being written).
