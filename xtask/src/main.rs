//! kiln automation.
fn main() {}
