//! Shared by the suite tests: a recording fake engine, and small network
//! servers that play the service inside the container.

pub mod fake;
pub mod server;
