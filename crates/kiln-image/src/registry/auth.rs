//! Registry authentication: parsing `WWW-Authenticate` challenges, so that
//! a 401 can be answered with Basic credentials or a bearer token fetched
//! from the registry's token service (the flow every public registry uses).

use std::collections::BTreeMap;
use std::fmt;

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials (anonymous tokens are still fetched when the registry
    /// asks for a bearer token).
    #[default]
    Anonymous,
    /// A user name and password (or access token), sent as HTTP Basic
    /// credentials to the registry or to its token service.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
}

/// The password never shows in logs or error reports.
impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// One `WWW-Authenticate` challenge: its scheme (lowercase) and its
/// parameters (keys lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse the first challenge of a `WWW-Authenticate` header, e.g.
/// `Bearer realm="https://auth.example/token",service="registry"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            key.push(c);
        }
        if chars.next_if_eq(&'=').is_none() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        let c = c.unwrap_or_else(|| Challenge {
            scheme: String::new(),
            params: BTreeMap::new(),
        });
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull,push");
    }

    #[test]
    fn basic_challenge_and_escapes() {
        let c = parse_challenge(r#"Basic realm="a \"quoted\" realm", charset=UTF-8"#);
        assert_eq!(
            c,
            Some(Challenge {
                scheme: "basic".into(),
                params: BTreeMap::from([
                    ("realm".into(), "a \"quoted\" realm".into()),
                    ("charset".into(), "UTF-8".into()),
                ]),
            })
        );
        assert_eq!(parse_challenge("  "), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let auth = RegistryAuth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
