//! The package databases an SBOM lists: dpkg's `/var/lib/dpkg/status` and
//! apk's `/lib/apk/db/installed`, parsed from their bytes. A package is
//! listed only when its database says it is installed, with the version
//! exactly as recorded (epoch and revision included).

/// Which package manager recorded a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Ecosystem {
    /// dpkg (Debian, Ubuntu).
    Deb,
    /// apk (Alpine).
    Apk,
}

impl Ecosystem {
    /// The package URL type (`deb`, `apk`).
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Who recorded it.
    pub ecosystem: Ecosystem,
    /// Its name.
    pub name: String,
    /// Its version, exactly as the database holds it.
    pub version: String,
    /// Its architecture (`amd64`, `all`, `x86_64`), when recorded.
    pub architecture: Option<String>,
    /// Its maintainer, when recorded.
    pub maintainer: Option<String>,
    /// Its source package (dpkg `Source:`, apk `o:`), when recorded and
    /// different from the name.
    pub source: Option<String>,
    /// Its license as apk records it (dpkg records none).
    pub license: Option<String>,
}

/// The installed packages of a dpkg status file, sorted by name.
/// Paragraphs whose `Status` is not `... installed` (removed packages that
/// left configuration files, half-installed ones) are not listed.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let field = |name: &str| -> Option<String> {
            paragraph.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (!line.starts_with([' ', '\t']) && key.eq_ignore_ascii_case(name))
                    .then(|| value.trim().to_owned())
            })
        };
        let (Some(name), Some(version), Some(status)) =
            (field("Package"), field("Version"), field("Status"))
        else {
            continue;
        };
        if status.split_whitespace().nth(2) != Some("installed") {
            continue;
        }
        // `Source: foo (1.2-3)` names the source and, when it differs, its
        // version; only the name is kept.
        let source = field("Source")
            .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned())
            .filter(|s| !s.is_empty() && *s != name);
        out.push(Package {
            ecosystem: Ecosystem::Deb,
            name,
            version,
            architecture: field("Architecture"),
            maintainer: field("Maintainer"),
            source,
            license: None,
        });
    }
    out.sort();
    out
}

/// The packages of an apk `installed` database, sorted by name.
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let field = |key: char| -> Option<String> {
            block.lines().find_map(|line| {
                let mut chars = line.chars();
                (chars.next() == Some(key) && chars.next() == Some(':'))
                    .then(|| line[2..].trim().to_owned())
            })
        };
        let (Some(name), Some(version)) = (field('P'), field('V')) else {
            continue;
        };
        let source = field('o').filter(|s| *s != name);
        out.push(Package {
            ecosystem: Ecosystem::Apk,
            name,
            version,
            architecture: field('A'),
            maintainer: field('m'),
            source,
            license: field('L'),
        });
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6
Status: install ok installed
Priority: optional
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u10
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u11
Conffiles:
 /etc/debian_version 2d0e3ea3f6f7f1e5d2b5b1d6b1c6b8b4

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1:0.9-1

Package: tzdata
Status: install ok installed
Architecture: all
Source: tzdata (2024a-0+deb12u1)
Version: 2025b-0+deb12u1
";

    #[test]
    fn dpkg_lists_installed_packages_with_exact_versions() {
        let packages = parse_dpkg_status(STATUS);
        let got: Vec<(&str, &str)> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("base-files", "12.4+deb12u11"),
                ("libc6", "2.36-9+deb12u10"),
                ("tzdata", "2025b-0+deb12u1"),
            ]
        );
        assert_eq!(packages[1].source.as_deref(), Some("glibc"));
        assert_eq!(packages[1].architecture.as_deref(), Some("amd64"));
        // A source with the package's own name is no information.
        assert_eq!(packages[2].source, None);
    }

    #[test]
    fn continuation_lines_are_not_fields() {
        let text =
            "Package: a\nStatus: install ok installed\nDescription: x\n Version: 9\nVersion: 1\n";
        assert_eq!(parse_dpkg_status(text)[0].version, "1");
    }

    #[test]
    fn apk_lists_every_package() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\nm:Natanael Copa <ncopa@alpinelinux.org>\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\n";
        let packages = parse_apk_installed(text);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "busybox");
        assert_eq!(packages[1].version, "1.2.5-r0");
        assert_eq!(packages[1].license.as_deref(), Some("MIT"));
    }

    #[test]
    fn garbage_gives_no_packages_and_no_panic() {
        assert!(parse_dpkg_status("\u{0}\n\n:::\nPackage:").is_empty());
        assert!(parse_apk_installed("P\nV:\n\nx").is_empty());
    }
}
