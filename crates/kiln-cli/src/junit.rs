//! JUnit XML of test reports, for CI systems that render it.

use std::fmt::Write as _;

use kiln::TestReport;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One `<testsuite>` per image, one `<testcase>` per check.
pub fn render(reports: &[TestReport]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for report in reports {
        let failures = report.checks.iter().filter(|c| !c.passed).count();
        let seconds: u64 = report.checks.iter().map(|c| c.duration_ms).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
            escape(&format!("{}@{}", report.name, report.digest)),
            report.checks.len(),
            seconds as f64 / 1000.0,
        );
        for check in &report.checks {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&report.name),
                escape(&check.name),
                check.duration_ms as f64 / 1000.0,
            );
            if check.passed {
                xml.push_str("/>\n");
            } else {
                let _ = writeln!(
                    xml,
                    ">\n      <failure message=\"{0}\">{0}</failure>\n    </testcase>",
                    escape(&check.detail)
                );
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln::CheckReport;

    #[test]
    fn failures_are_escaped_and_counted() {
        let report = TestReport {
            name: "web".into(),
            digest: kiln::Digest::of(b"web"),
            passed: false,
            checks: vec![
                CheckReport {
                    name: "ok".into(),
                    passed: true,
                    duration_ms: 5,
                    detail: "".into(),
                },
                CheckReport {
                    name: "<bad>".into(),
                    passed: false,
                    duration_ms: 1500,
                    detail: "a & \"b\"\u{1}".into(),
                },
            ],
        };
        let xml = render(&[report]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"&lt;bad&gt;\" time=\"1.500\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"a &amp; &quot;b&quot;\u{fffd}\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"web\" name=\"ok\" time=\"0.005\"/>"),
            "{xml}"
        );
    }
}
