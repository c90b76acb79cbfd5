//! Small value types of the recipe that can only hold valid values: a value
//! that exists has been parsed (parse, don't validate).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Why a single value did not parse. The parser attaches the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    /// Which kind of failure this is: a value that does not parse is bad
    /// input.
    pub fn kind(&self) -> kiln_error_kind::ErrorKind {
        kiln_error_kind::ErrorKind::Input
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(msg.into()))
}

/// An image repository name: `[a-z0-9][a-z0-9._-]*`, optionally with `/`
/// separated components of the same form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageName(String);

impl ImageName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ImageName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let ok_component = |c: &str| {
            let mut chars = c.chars();
            matches!(chars.next(), Some(ch) if ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && chars.all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
                })
        };
        if s.len() > 128 || !s.split('/').all(ok_component) {
            return err(format!(
                "invalid image name {s:?}: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
            ));
        }
        Ok(ImageName(s.to_owned()))
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration written with a unit: `500ms`, `2s`, `1m`, `1h`, or a sum of
/// them such as `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    /// As a std duration.
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            err(format!(
                "invalid duration {s:?}: write a number with a unit, like \"500ms\", \"2s\", \"1m\" or \"1h\""
            ))
        };
        if s.is_empty() {
            return bad();
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return bad();
            }
            let Ok(n) = rest[..digits].parse::<u64>() else {
                return bad();
            };
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return bad(),
            };
            rest = &rest[unit_len..];
            let Some(t) = n.checked_mul(factor).and_then(|ms| total.checked_add(ms)) else {
                return bad();
            };
            total = t;
        }
        Ok(Duration::from_millis(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// A target platform, `OS/ARCH[/VARIANT]` (`linux/arm64`, `linux/arm/v7`):
/// each part lowercase letters, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// The operating system (`linux`).
    pub fn os(&self) -> &str {
        &self.os
    }
    /// The CPU architecture in OCI's spelling (`arm64`, `amd64`).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }
    /// The CPU variant (`v7`, `v8`), if given.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }
}

impl FromStr for Platform {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = (2..=3).contains(&parts.len())
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if !ok {
            return err(format!(
                "invalid platform {s:?}: write OS/ARCH or OS/ARCH/VARIANT in lowercase, like \"linux/amd64\", \"linux/arm64\" or \"linux/arm/v7\""
            ));
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Unix permission bits, including setuid, setgid and sticky (`0..=0o7777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(u32);

impl Mode {
    /// A mode, if it fits in `0o7777`.
    pub fn new(bits: u32) -> Result<Self, ValueError> {
        if bits > 0o7777 {
            return err(format!(
                "invalid mode {bits:#o}: permission bits go up to 0o7777 (write them as 0o755)"
            ));
        }
        Ok(Mode(bits))
    }
    /// The bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// A numeric owner `UID:GID`. Names are refused: they differ between hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl FromStr for Owner {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let parsed = s
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
        match parsed {
            Some((uid, gid)) => Ok(Owner { uid, gid }),
            None => err(format!(
                "invalid owner {s:?}: write numeric ids as \"UID:GID\", like \"1000:1000\""
            )),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// A transport protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// tcp (the default).
    Tcp,
    /// udp.
    Udp,
    /// sctp.
    Sctp,
}

/// An exposed port: `8080` (tcp) or `"53/udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// Port number.
    pub number: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl FromStr for Port {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (num, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => {
                return err(format!(
                    "invalid port {s:?}: the protocol is tcp, udp or sctp"
                ));
            }
        };
        match num.parse::<u16>() {
            Ok(number) if number > 0 => Ok(Port { number, protocol }),
            _ => err(format!(
                "invalid port {s:?}: a port is a number from 1 to 65535"
            )),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        };
        write!(f, "{}/{proto}", self.number)
    }
}

/// Where a secret's value is read from, where kiln runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// `env:NAME`.
    Env(String),
    /// `file:PATH`, relative to the recipe's folder unless absolute.
    File(PathBuf),
}

impl FromStr for SecretSource {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Ok(SecretSource::Env(name.to_owned())),
            Some(("file", path)) if !path.is_empty() => Ok(SecretSource::File(PathBuf::from(path))),
            _ => err(format!(
                "invalid secret source {s:?}: write \"env:VARIABLE\" or \"file:PATH\""
            )),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(n) => write!(f, "env:{n}"),
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// What an image is built on (containers-transports(5) plus kiln's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BaseRef {
    /// No base.
    Scratch,
    /// `oci:DIR[:REF]`.
    Oci {
        /// The layout folder (relative to the recipe's folder unless absolute).
        dir: PathBuf,
        /// A ref name in its index.json.
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// A ref name in its index.json.
        reference: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`.
    DockerArchive {
        /// The `docker save` tar file.
        file: PathBuf,
        /// `NAME:TAG` inside it.
        reference: Option<String>,
    },
    /// `docker-daemon:NAME:TAG`.
    DockerDaemon {
        /// `NAME:TAG`.
        reference: String,
    },
    /// `docker://HOST/REPO[:TAG][@sha256:HEX]`.
    Registry {
        /// Registry host (with port).
        host: String,
        /// Repository path.
        repository: String,
        /// Tag, if given.
        tag: Option<String>,
        /// Digest (`sha256:HEX`), if given.
        digest: Option<String>,
    },
    /// `recipe:PATH`: another recipe, built first.
    Recipe {
        /// Path of the recipe file or its folder.
        path: PathBuf,
    },
    /// `kiln:NAME[:TAG]` or `kiln:NAME@DIGEST`: an image in kiln's store.
    Kiln {
        /// The image name.
        name: ImageName,
        /// Tag or channel, if given.
        tag: Option<String>,
        /// Digest (`sha256:HEX`), if given.
        digest: Option<String>,
    },
    /// `rootfs:PATH`: a root filesystem, a folder or a tar file (plain or
    /// gzip), taken as one layer exactly as it is.
    Rootfs {
        /// The folder or tar file (relative to the recipe's folder unless
        /// absolute).
        path: PathBuf,
    },
}

impl BaseRef {
    /// The transport's name as written in the recipe (`"oci"`, `"scratch"`...).
    pub fn transport(&self) -> &'static str {
        match self {
            BaseRef::Scratch => "scratch",
            BaseRef::Oci { .. } => "oci",
            BaseRef::OciArchive { .. } => "oci-archive",
            BaseRef::DockerArchive { .. } => "docker-archive",
            BaseRef::DockerDaemon { .. } => "docker-daemon",
            BaseRef::Registry { .. } => "docker",
            BaseRef::Recipe { .. } => "recipe",
            BaseRef::Kiln { .. } => "kiln",
            BaseRef::Rootfs { .. } => "rootfs",
        }
    }
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Checks `NAME:TAG` as the container engine reads an image name: an
/// optional registry host (`host.example:5000/`), then lowercase components
/// of letters and digits joined by `.`, `_` or `-`, then a tag. Refusing
/// here makes a bad name bad input, not an engine failure later.
fn engine_name(reference: &str) -> Result<(), String> {
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => return Err("it has no tag".into()),
    };
    if !crate::field::is_tag(tag) {
        return Err(format!(
            "tag {tag:?} is not a valid tag (letters, digits, '.', '_', '-', up to 128)"
        ));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    let component = |c: &str| {
        let bytes = c.as_bytes();
        !c.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
    };
    match parts.iter().find(|c| !component(c)) {
        Some(bad) => Err(format!(
            "{bad:?} is not a valid name component (lowercase letters and digits, joined by '.', '_' or '-')"
        )),
        None => Ok(()),
    }
}

fn split_path_ref(rest: &str) -> (PathBuf, Option<String>) {
    match rest.split_once(':') {
        Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_owned())),
        Some((p, _)) => (PathBuf::from(p), None),
        None => (PathBuf::from(rest), None),
    }
}

impl FromStr for BaseRef {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s == "scratch" {
            return Ok(BaseRef::Scratch);
        }
        let hint = "write \"scratch\", \"oci:DIR[:REF]\", \"oci-archive:FILE[:REF]\", \"docker-archive:FILE[:NAME:TAG]\", \"docker-daemon:NAME:TAG\", \"docker://HOST/REPO[:TAG][@DIGEST]\", \"recipe:PATH\", \"kiln:NAME[:TAG]\" or \"rootfs:PATH\"";
        if let Some(rest) = s.strip_prefix("docker://") {
            let (rest, digest) = match rest.split_once('@') {
                Some((r, d)) if valid_digest(d) => (r, Some(d.to_owned())),
                Some(_) => {
                    return err(format!(
                        "invalid base {s:?}: the digest must be sha256: and 64 lowercase hex digits"
                    ));
                }
                None => (rest, None),
            };
            let Some((host, path)) = rest.split_once('/') else {
                return err(format!(
                    "invalid base {s:?}: a registry reference is docker://HOST/REPO[:TAG]"
                ));
            };
            let (repository, tag) = match path.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, Some(t.to_owned())),
                _ => (path, None),
            };
            if host.is_empty() || repository.is_empty() || tag.as_deref() == Some("") {
                return err(format!(
                    "invalid base {s:?}: a registry reference is docker://HOST/REPO[:TAG]"
                ));
            }
            return Ok(BaseRef::Registry {
                host: host.to_owned(),
                repository: repository.to_owned(),
                tag,
                digest,
            });
        }
        let Some((transport, rest)) = s.split_once(':') else {
            return err(format!("invalid base {s:?}: {hint}"));
        };
        if rest.is_empty() {
            return err(format!(
                "invalid base {s:?}: {transport}: needs a location after the colon"
            ));
        }
        match transport {
            "oci" => {
                let (dir, reference) = split_path_ref(rest);
                Ok(BaseRef::Oci { dir, reference })
            }
            "oci-archive" => {
                let (file, reference) = split_path_ref(rest);
                Ok(BaseRef::OciArchive { file, reference })
            }
            "docker-archive" => {
                let (file, reference) = split_path_ref(rest);
                Ok(BaseRef::DockerArchive { file, reference })
            }
            "docker-daemon" => {
                if !rest.contains(':') {
                    return err(format!("invalid base {s:?}: write docker-daemon:NAME:TAG"));
                }
                if let Err(why) = engine_name(rest) {
                    return err(format!(
                        "invalid reference {s:?}: {why}; write docker-daemon:NAME:TAG, like docker-daemon:web:1.0.0"
                    ));
                }
                Ok(BaseRef::DockerDaemon {
                    reference: rest.to_owned(),
                })
            }
            "recipe" => Ok(BaseRef::Recipe {
                path: PathBuf::from(rest),
            }),
            "rootfs" => Ok(BaseRef::Rootfs {
                path: PathBuf::from(rest),
            }),
            "kiln" => {
                let (name, tag, digest) = if let Some((n, d)) = rest.split_once('@') {
                    if !valid_digest(d) {
                        return err(format!(
                            "invalid base {s:?}: the digest must be sha256: and 64 lowercase hex digits"
                        ));
                    }
                    (n, None, Some(d.to_owned()))
                } else if let Some((n, t)) = rest.split_once(':') {
                    (n, Some(t.to_owned()), None)
                } else {
                    (rest, None, None)
                };
                Ok(BaseRef::Kiln {
                    name: name.parse()?,
                    tag,
                    digest,
                })
            }
            _ => err(format!(
                "invalid base {s:?}: unknown transport {transport:?}; {hint}"
            )),
        }
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |r: &Option<String>| r.as_ref().map(|r| format!(":{r}")).unwrap_or_default();
        match self {
            BaseRef::Scratch => f.write_str("scratch"),
            BaseRef::Oci { dir, reference } => write!(f, "oci:{}{}", dir.display(), opt(reference)),
            BaseRef::OciArchive { file, reference } => {
                write!(f, "oci-archive:{}{}", file.display(), opt(reference))
            }
            BaseRef::DockerArchive { file, reference } => {
                write!(f, "docker-archive:{}{}", file.display(), opt(reference))
            }
            BaseRef::DockerDaemon { reference } => write!(f, "docker-daemon:{reference}"),
            BaseRef::Registry {
                host,
                repository,
                tag,
                digest,
            } => {
                write!(f, "docker://{host}/{repository}{}", opt(tag))?;
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            BaseRef::Recipe { path } => write!(f, "recipe:{}", path.display()),
            BaseRef::Rootfs { path } => write!(f, "rootfs:{}", path.display()),
            BaseRef::Kiln { name, tag, digest } => {
                write!(f, "kiln:{name}{}", opt(tag))?;
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |s: &str| s.parse::<Duration>().map(|d| d.as_std().as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2s"), Ok(2000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        for bad in ["", "5", "s", "1.5s", "2 s", "3d", "-1s"] {
            assert!(ms(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn bases() {
        let b = |s: &str| s.parse::<BaseRef>();
        assert_eq!(b("scratch"), Ok(BaseRef::Scratch));
        assert_eq!(
            b("oci:../base:v1"),
            Ok(BaseRef::Oci {
                dir: "../base".into(),
                reference: Some("v1".into())
            })
        );
        assert_eq!(
            b("docker://127.0.0.1:5000/team/web:1.2"),
            Ok(BaseRef::Registry {
                host: "127.0.0.1:5000".into(),
                repository: "team/web".into(),
                tag: Some("1.2".into()),
                digest: None
            })
        );
        assert!(b("ftp:x").is_err());
        assert!(b("kiln:Bad").is_err());
        assert!(b("docker://host").is_err());
        for ok in [
            "oci:dir",
            "kiln:web:stable",
            "docker-daemon:web:1",
            "recipe:../base",
            "rootfs:../debian/rootfs",
            "rootfs:/srv/root.tar.gz",
        ] {
            assert_eq!(b(ok).map(|r| r.to_string()).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn owners_ports_modes_names() {
        assert_eq!("1000:10".parse(), Ok(Owner { uid: 1000, gid: 10 }));
        assert!("root:root".parse::<Owner>().is_err());
        assert_eq!(
            "53/udp".parse::<Port>().map(|p| p.to_string()).as_deref(),
            Ok("53/udp")
        );
        assert!("0".parse::<Port>().is_err());
        assert!(Mode::new(0o10000).is_err());
        assert!("web-1.x".parse::<ImageName>().is_ok());
        assert!("-web".parse::<ImageName>().is_err());
        assert!("Web".parse::<ImageName>().is_err());
    }
}
