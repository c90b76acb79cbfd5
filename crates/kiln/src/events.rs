//! Progress of a pipeline run, reported to whoever embeds it. The library
//! never prints: the CLI renders these events as progress bars or plain
//! lines.

use kiln_image::Digest;
use kiln_promote::channel::Move;

use crate::report::{BuildReport, LayerReport, TestReport};

/// Receives progress events. Every method has an empty default, so a sink
/// implements only what it shows.
///
/// A run reports, in order: [`build_started`](Events::build_started), then
/// for each layer [`layer_started`](Events::layer_started) and
/// [`layer_finished`](Events::layer_finished),
/// [`build_finished`](Events::build_finished); for a test,
/// [`loading_image`](Events::loading_image),
/// [`boot_started`](Events::boot_started), for each check
/// [`check_started`](kiln_check::CheckEvents::check_started) and
/// [`check_finished`](kiln_check::CheckEvents::check_finished), then
/// [`test_finished`](Events::test_finished); for a release, after a passing
/// test, [`promoted`](Events::promoted) once per channel.
///
/// # Threads
///
/// A sink is `Send + Sync` and its callbacks may come from several threads
/// at once: the layers of one image are written concurrently (their
/// `layer_finished` still comes in layer order), and with
/// [`BuildOptions::jobs`](crate::BuildOptions::jobs) above 1 the events of
/// independent images interleave. Every callback names its image; keep any
/// state behind a lock or atomics, and return quickly: the pipeline waits
/// for a callback to return.
pub trait Events: kiln_check::CheckEvents {
    /// An image's build started; it has `layers` layers of its own.
    fn build_started(&self, _image: &str, _layers: usize) {}
    /// A layer is being built (or looked up in the cache).
    fn layer_started(&self, _image: &str, _layer: &str) {}
    /// A layer is done: built or reused.
    fn layer_finished(&self, _image: &str, _layer: &LayerReport) {}
    /// An image is built and stored.
    fn build_finished(&self, _report: &BuildReport) {}
    /// The stored image `digest` is being loaded into the container engine
    /// to be tested.
    fn loading_image(&self, _image: &str, _digest: &Digest) {}
    /// The image is loaded; its container is being created and started, and
    /// the checks follow.
    fn boot_started(&self, _image: &str, _digest: &Digest) {}
    /// Every check ran (or the boot failed them all); the record is kept.
    fn test_finished(&self, _report: &TestReport) {}
    /// A release moved `channel` of `image` (`moved.to` is the new digest).
    fn promoted(&self, _image: &str, _channel: &str, _moved: &Move) {}
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl kiln_check::CheckEvents for NoEvents {}
impl Events for NoEvents {}
