//! kiln-promote (being written).
