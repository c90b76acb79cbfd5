//! The store's locks (see [`kiln_image::lock`]) taken from async code:
//! flock waits block a thread, so they wait on the blocking pool, never on
//! the async threads that drive the other builds of a `-j` run (a build
//! waiting there for the sweep would stop the very builds whose leases it
//! waits for).

use kiln_image::{Lease, Store, Sweep};

use crate::KilnError;

/// A [`Lease`] on `store`, waited for off the async threads.
pub(crate) async fn lease(store: &Store) -> Result<Lease, KilnError> {
    let store = store.clone();
    crate::blocking::run(move || store.lease()).await
}

/// The store's [`Sweep`], waited for off the async threads.
pub(crate) async fn sweep(store: &Store) -> Result<Sweep, KilnError> {
    let store = store.clone();
    crate::blocking::run(move || store.sweep()).await
}

/// Give up `lease` and take the [`Sweep`], waited for off the async
/// threads.
pub(crate) async fn sweep_after(lease: Lease) -> Result<Sweep, KilnError> {
    crate::blocking::run(move || lease.into_sweep()).await
}
