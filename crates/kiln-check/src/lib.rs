//! kiln-check (being written).
