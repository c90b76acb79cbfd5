//! Progress of a pipeline run, reported to whoever embeds it. The library
//! never prints: the CLI renders these events as progress bars or plain
//! lines.

use crate::report::{BuildReport, LayerReport};

/// Receives progress events. Every method has an empty default.
pub trait Events: kiln_check::CheckEvents {
    /// An image's build started.
    fn build_started(&self, _image: &str, _layers: usize) {}
    /// A layer is being built.
    fn layer_started(&self, _image: &str, _layer: &str) {}
    /// A layer is done.
    fn layer_finished(&self, _image: &str, _layer: &LayerReport) {}
    /// An image is built and stored.
    fn build_finished(&self, _report: &BuildReport) {}
    /// The image is being loaded into the container engine.
    fn loading_image(&self, _image: &str, _digest: &str) {}
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl kiln_check::CheckEvents for NoEvents {}
impl Events for NoEvents {}
