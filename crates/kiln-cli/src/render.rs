//! Progress on stderr: indicatif spinners when stderr is a terminal, plain
//! lines otherwise (CI logs), nothing at all under `--json`... except plain
//! lines on stderr, which never disturb the JSON on stdout.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kiln::{BuildReport, CheckOutcome, LayerReport};

/// Renders pipeline events on stderr.
pub struct Progress {
    bar: Mutex<Option<ProgressBar>>,
    terminal: bool,
    explain: bool,
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Progress {
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
            explain: false,
        }
    }

    /// Also say why each layer was built or reused (`--explain`).
    pub fn explaining(self, explain: bool) -> Self {
        Progress { explain, ..self }
    }

    fn start(&self, message: String) {
        if !self.terminal {
            tell!("{message}");
            return;
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        bar.set_message(message);
        let old = self.bar.lock().ok().and_then(|mut slot| slot.replace(bar));
        if let Some(old) = old {
            old.finish_and_clear();
        }
    }

    fn finish(&self, line: String) {
        let bar = self.bar.lock().ok().and_then(|mut slot| slot.take());
        match bar {
            Some(bar) => {
                bar.finish_and_clear();
                tell!("{line}");
            }
            None => tell!("{line}"),
        }
    }
}

/// `1.5 MiB`: sizes for people; JSON keeps raw bytes.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

impl kiln::CheckEvents for Progress {
    fn check_started(&self, name: &str) {
        self.start(format!("  check {name}"));
    }
    fn check_finished(&self, outcome: &CheckOutcome) {
        let verdict = if outcome.passed { "pass" } else { "FAIL" };
        let mut line = format!("  {verdict} {} ({:.1?})", outcome.name, outcome.duration);
        if !outcome.passed {
            line.push_str(&format!(": {}", outcome.detail));
        }
        self.finish(line);
    }
}

impl kiln::Events for Progress {
    fn build_started(&self, image: &str, layers: usize) {
        tell!("building {image} ({layers} layers)");
    }
    fn layer_started(&self, _image: &str, layer: &str) {
        self.start(format!("  layer {layer}"));
    }
    fn layer_finished(&self, _image: &str, layer: &LayerReport) {
        let how = if layer.cached { "cached" } else { "built" };
        let mut line = format!(
            "  {how} {} {} ({})",
            layer.name,
            &layer.digest.as_str()[.."sha256:".len() + 12],
            human_size(layer.size)
        );
        if self.explain {
            if layer.cached {
                line.push_str(": hit, same inputs as a stored layer");
            } else {
                line.push_str(&format!(": miss, {}", layer.why.join("; ")));
            }
        }
        self.finish(line);
    }
    fn build_finished(&self, report: &BuildReport) {
        if let Some(base) = &report.base {
            tell!("  on {} = {}", base.reference, base.digest);
        }
        tell!(
            "built {}:{} {} in {} ms",
            report.name,
            report.tags.join(","),
            report.digest,
            report.duration_ms
        );
        for moved in &report.moved {
            tell!(
                "moved {}:{} {} -> {}",
                report.name,
                moved.tag,
                moved.from,
                moved.to
            );
        }
    }
    fn loading_image(&self, image: &str, digest: &kiln::Digest) {
        tell!("testing {image}@{digest}");
    }
}

/// `kiln fsck`'s findings on stdout, one line each, then a summary.
pub fn fsck(report: &kiln::FsckReport) {
    for p in &report.problems {
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let state = if p.repaired { "repaired" } else { "found" };
        say!("{state} {kind}: {}: {}", p.path.display(), p.detail);
    }
    if report.writers_active {
        say!("writers were running: temporary files were not judged");
    }
    let open = report.problems.iter().filter(|p| !p.repaired).count();
    say!(
        "{} blobs checked, {} unreferenced (gc removes them), {} problems, {} left",
        report.blobs,
        report.unreferenced,
        report.problems.len(),
        open
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(1536), "1.5 KiB");
        assert_eq!(super::human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
