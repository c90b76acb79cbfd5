//! The metadata check: the image's configuration as the engine holds it,
//! against what the recipe expects. User, entrypoint, cmd and workdir are
//! exact; exposed ports, env and labels must be included (more may exist).

use std::collections::BTreeMap;

use kiln_engine::{EngineError, ImageConfig};
use kiln_recipe::MetadataCheck;

use crate::suite::{Container, Verdict};

pub(crate) async fn run(
    container: &Container<'_>,
    check: &MetadataCheck,
) -> Result<Verdict, EngineError> {
    let config = container.engine.image_config(container.image).await?;
    Ok(judge(check, &config))
}

/// An argv for a detail; unset shows as `[]`, as it behaves.
fn argv(v: &Option<Vec<String>>) -> String {
    format!("{:?}", v.as_deref().unwrap_or_default())
}

/// What a map holds under `expected`'s keys, compared.
fn includes(
    what: &str,
    actual: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
    wrong: &mut Vec<String>,
) {
    for (key, value) in expected {
        match actual.get(key) {
            None => wrong.push(format!("{what} {key} is not set (expected {value:?})")),
            Some(v) if v != value => {
                wrong.push(format!("{what} {key} is {v:?} (expected {value:?})"))
            }
            Some(_) => {}
        }
    }
}

/// Compare the image's configuration with what the check expects.
pub(crate) fn judge(check: &MetadataCheck, config: &ImageConfig) -> Verdict {
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    if let Some(user) = &check.user {
        let actual = config.user.as_deref().unwrap_or_default();
        if actual == user {
            seen.push(format!("user {user:?}"));
        } else if actual.is_empty() {
            wrong.push(format!("user is not set, so root (expected {user:?})"));
        } else {
            wrong.push(format!("user {actual:?} (expected {user:?})"));
        }
    }
    if let Some(ports) = &check.exposed {
        let missing: Vec<String> = ports
            .iter()
            .map(ToString::to_string)
            .filter(|p| !config.exposed.contains(p))
            .collect();
        if missing.is_empty() {
            seen.push(format!(
                "exposes {}",
                ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            let exposed = if config.exposed.is_empty() {
                "nothing".to_owned()
            } else {
                config.exposed.join(", ")
            };
            wrong.push(format!(
                "{} not exposed (the image exposes {exposed})",
                missing.join(", ")
            ));
        }
    }
    // An unset entrypoint or cmd behaves as an empty one.
    for (what, expected, actual) in [
        ("entrypoint", &check.entrypoint, &config.entrypoint),
        ("cmd", &check.cmd, &config.cmd),
    ] {
        let Some(expected) = expected else { continue };
        if actual.as_deref().unwrap_or_default() == expected.as_slice() {
            seen.push(format!("{what} {expected:?}"));
        } else {
            wrong.push(format!("{what} {} (expected {expected:?})", argv(actual)));
        }
    }
    if let Some(expected) = &check.workdir {
        let actual = config.workdir.as_deref().unwrap_or_default();
        if actual == expected {
            seen.push(format!("workdir {expected:?}"));
        } else {
            wrong.push(format!("workdir {actual:?} (expected {expected:?})"));
        }
    }
    if let Some(expected) = &check.env {
        // A later entry of the same name wins, as in the container.
        let actual: BTreeMap<String, String> = config.env.iter().cloned().collect();
        let before = wrong.len();
        includes("env", &actual, expected, &mut wrong);
        if wrong.len() == before {
            seen.push(format!(
                "env {}",
                expected.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Some(expected) = &check.labels {
        let before = wrong.len();
        includes("label", &config.labels, expected, &mut wrong);
        if wrong.len() == before {
            seen.push(format!(
                "labels {}",
                expected.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if wrong.is_empty() {
        if seen.is_empty() {
            Verdict::Pass("nothing to compare".to_owned())
        } else {
            Verdict::Pass(seen.join("; "))
        }
    } else {
        Verdict::Fail(wrong.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_recipe::Port;

    fn config() -> ImageConfig {
        ImageConfig {
            id: "sha256:00".into(),
            user: Some("1000:1000".into()),
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("MODE".into(), "old".into()),
                ("MODE".into(), "golden".into()),
            ],
            entrypoint: Some(vec!["/bin/busybox".into(), "httpd".into()]),
            cmd: None,
            workdir: Some("/www".into()),
            exposed: vec!["53/udp".into(), "8080/tcp".into()],
            labels: BTreeMap::from([("team".into(), "web".into())]),
            diff_ids: vec![],
        }
    }

    fn port(s: &str) -> Port {
        s.parse().expect("port")
    }

    #[track_caller]
    fn check(check: MetadataCheck, passed: bool, detail: &str) {
        let (ok, d) = match judge(&check, &config()) {
            Verdict::Pass(d) => (true, d),
            Verdict::Fail(d) => (false, d),
            Verdict::Exited(c) => panic!("exit {c}"),
        };
        assert_eq!((ok, d.as_str()), (passed, detail));
    }

    #[test]
    fn matching_configuration_passes() {
        check(
            MetadataCheck {
                user: Some("1000:1000".into()),
                exposed: Some(vec![port("8080")]),
                entrypoint: Some(vec!["/bin/busybox".into(), "httpd".into()]),
                cmd: Some(vec![]),
                env: Some(BTreeMap::from([("MODE".into(), "golden".into())])),
                workdir: Some("/www".into()),
                labels: Some(BTreeMap::from([("team".into(), "web".into())])),
            },
            true,
            "user \"1000:1000\"; exposes 8080/tcp; entrypoint [\"/bin/busybox\", \"httpd\"]; cmd []; workdir \"/www\"; env MODE; labels team",
        );
        check(MetadataCheck::default(), true, "nothing to compare");
    }

    #[test]
    fn each_mismatch_is_named() {
        check(
            MetadataCheck {
                user: Some("0:0".into()),
                ..Default::default()
            },
            false,
            "user \"1000:1000\" (expected \"0:0\")",
        );
        check(
            MetadataCheck {
                exposed: Some(vec![port("8080"), port("9090"), port("53/tcp")]),
                ..Default::default()
            },
            false,
            "9090/tcp, 53/tcp not exposed (the image exposes 53/udp, 8080/tcp)",
        );
        check(
            MetadataCheck {
                entrypoint: Some(vec!["/bin/sh".into()]),
                cmd: Some(vec!["x".into()]),
                ..Default::default()
            },
            false,
            "entrypoint [\"/bin/busybox\", \"httpd\"] (expected [\"/bin/sh\"]); cmd [] (expected [\"x\"])",
        );
        check(
            MetadataCheck {
                env: Some(BTreeMap::from([
                    ("MODE".into(), "old".into()),
                    ("HOME".into(), "/".into()),
                ])),
                ..Default::default()
            },
            false,
            "env HOME is not set (expected \"/\"); env MODE is \"golden\" (expected \"old\")",
        );
        check(
            MetadataCheck {
                workdir: Some("/".into()),
                labels: Some(BTreeMap::from([("team".into(), "db".into())])),
                ..Default::default()
            },
            false,
            "workdir \"/www\" (expected \"/\"); label team is \"web\" (expected \"db\")",
        );
    }

    #[test]
    fn an_unset_user_is_root() {
        let config = ImageConfig {
            user: None,
            ..config()
        };
        let verdict = judge(
            &MetadataCheck {
                user: Some("1000".into()),
                ..Default::default()
            },
            &config,
        );
        assert!(
            matches!(verdict, Verdict::Fail(d) if d == "user is not set, so root (expected \"1000\")")
        );
    }
}
