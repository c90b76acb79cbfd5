//! The command check: run a program inside the booted container and judge
//! its exit code and output.

use kiln_engine::{EngineError, ExecOutput};
use kiln_recipe::CommandCheck;
use tokio::time::Instant;

use crate::Redaction;
use crate::excerpt::{contains, tail};
use crate::suite::{Container, Verdict};

/// How much of each output stream a detail shows.
const TAIL_LINES: usize = 10;
const TAIL_CHARS: usize = 1000;

pub(crate) async fn run(
    container: &Container<'_>,
    check: &CommandCheck,
) -> Result<Verdict, EngineError> {
    // A command has no timeout of its own: it gets what is left of the
    // suite's.
    let left = container.deadline.saturating_duration_since(Instant::now());
    match container
        .engine
        .exec(&container.id, &check.argv, left)
        .await
    {
        Ok(out) => Ok(judge(check, &out, container.redaction)),
        Err(EngineError::ExecTimedOut { .. }) => Ok(Verdict::Fail(format!(
            "{}; {:?} was still running",
            container.timeout_detail(),
            check.argv
        ))),
        // The engine refuses to exec in a stopped container: say why.
        Err(e) => match container.exit_code().await? {
            Some(code) => Ok(Verdict::Exited(code)),
            None => Err(e),
        },
    }
}

/// Compare what the command did with what the check expects.
pub(crate) fn judge(check: &CommandCheck, out: &ExecOutput, redaction: &Redaction) -> Verdict {
    let mut wrong = Vec::new();
    if out.exit_code != check.exit_code {
        wrong.push(format!(
            "exit code {} (expected {})",
            out.exit_code, check.exit_code
        ));
    }
    if let Some(needle) = &check.stdout_contains {
        if !contains(&out.stdout, needle) {
            wrong.push(format!("stdout does not contain {needle:?}"));
        }
    }
    if let Some(needle) = &check.stderr_contains {
        if !contains(&out.stderr, needle) {
            wrong.push(format!("stderr does not contain {needle:?}"));
        }
    }
    if wrong.is_empty() {
        return Verdict::Pass(format!("{:?}: exit code {}", check.argv, out.exit_code));
    }
    let mut detail = format!("{:?}: {}", check.argv, wrong.join("; "));
    if out.exit_code == check.exit_code {
        detail.push_str(&format!(" (exit code {})", out.exit_code));
    }
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let shown = tail(bytes, TAIL_LINES, TAIL_CHARS, redaction);
        if shown.is_empty() {
            detail.push_str(&format!("\n{name}: (empty)"));
        } else {
            detail.push_str(&format!("\n{name}:\n{shown}"));
        }
    }
    Verdict::Fail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(exit_code: i64, stdout: Option<&str>, stderr: Option<&str>) -> CommandCheck {
        CommandCheck {
            argv: vec!["/bin/busybox".into(), "echo".into(), "hi".into()],
            exit_code,
            stdout_contains: stdout.map(str::to_owned),
            stderr_contains: stderr.map(str::to_owned),
        }
    }

    fn out(exit_code: i64, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            exit_code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    fn detail(v: Verdict) -> (bool, String) {
        match v {
            Verdict::Pass(d) => (true, d),
            Verdict::Fail(d) => (false, d),
            Verdict::Exited(code) => panic!("unexpected exit {code}"),
        }
    }

    #[test]
    fn exit_code_and_output_are_judged() {
        let (ok, d) = detail(judge(
            &check(0, Some("hi"), None),
            &out(0, "hi\n", ""),
            &Redaction::none(),
        ));
        assert!(ok, "{d}");
        assert!(d.contains("exit code 0"), "{d}");

        let (ok, d) = detail(judge(
            &check(0, None, None),
            &out(2, "", "line1\nno such applet\n"),
            &Redaction::none(),
        ));
        assert!(!ok);
        assert!(d.contains("exit code 2 (expected 0)"), "{d}");
        assert!(d.contains("stderr:\nline1\nno such applet"), "{d}");
        assert!(d.contains("stdout: (empty)"), "{d}");

        let (ok, d) = detail(judge(
            &check(0, Some("hello"), Some("warn")),
            &out(0, "hi\n", ""),
            &Redaction::none(),
        ));
        assert!(!ok);
        assert!(
            d.contains(
                "stdout does not contain \"hello\"; stderr does not contain \"warn\" (exit code 0)"
            ),
            "{d}"
        );

        let (ok, _) = detail(judge(
            &check(3, None, Some("bad")),
            &out(3, "", "bad input"),
            &Redaction::none(),
        ));
        assert!(ok, "a non-zero exit code can be what is expected");
    }
}
