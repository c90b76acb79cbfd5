//! The SPDX 2.3 JSON document of an image: one package for the image
//! itself, one per installed dpkg or apk package (exact version, package
//! URL), and one file per regular file of kiln's own `files` layers with its
//! sha256, each contained by the image.
//!
//! The document is a function of the image alone: its creation time is the
//! image's `created`, its namespace is derived from the digest, and every
//! list is sorted, so the same image always has the same SBOM.

use kiln_image::Digest;
use serde_json::{Value, json};

use crate::contents::Contents;
use crate::packages::{Ecosystem, Package, parse_apk_installed, parse_dpkg_status};

/// What the SBOM describes besides the image's contents.
#[derive(Debug, Clone)]
pub struct SbomSubject<'a> {
    /// The image's name.
    pub name: &'a str,
    /// Its manifest digest.
    pub digest: &'a Digest,
    /// Its `created` time (RFC 3339), used as the document's creation time.
    pub created: &'a str,
    /// The version of kiln writing the document.
    pub kiln_version: &'a str,
}

/// The installed packages `contents` records, dpkg's then apk's.
pub fn installed_packages(contents: &Contents) -> Vec<Package> {
    let mut packages = Vec::new();
    if let Some(status) = &contents.dpkg_status {
        packages.extend(parse_dpkg_status(&String::from_utf8_lossy(status)));
    }
    if let Some(installed) = &contents.apk_installed {
        packages.extend(parse_apk_installed(&String::from_utf8_lossy(installed)));
    }
    packages
}

/// The SPDX 2.3 document of the image `subject` whose contents are
/// `contents`.
pub fn spdx_document(subject: &SbomSubject<'_>, contents: &Contents) -> Value {
    let namespace = contents.os_id().unwrap_or_else(|| match () {
        () if contents.apk_installed.is_some() => "alpine".to_owned(),
        () => "debian".to_owned(),
    });
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": subject.name,
        "versionInfo": subject.digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": subject.digest.hex()}],
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{}@{}", purl_escape(subject.name), purl_escape(subject.digest.as_str())),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (n, package) in installed_packages(contents).iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{}-{n}",
            package.ecosystem.purl_type(),
            spdx_id_part(&package.name)
        );
        let mut purl = format!(
            "pkg:{}/{}/{}@{}",
            package.ecosystem.purl_type(),
            purl_escape(&namespace),
            purl_escape(&package.name),
            purl_escape(&package.version)
        );
        let mut qualifiers = Vec::new();
        if let Some(arch) = &package.architecture {
            qualifiers.push(format!("arch={}", purl_escape(arch)));
        }
        if let Some(source) = &package.source {
            let key = match package.ecosystem {
                Ecosystem::Deb => "upstream",
                Ecosystem::Apk => "origin",
            };
            qualifiers.push(format!("{key}={}", purl_escape(source)));
        }
        if !qualifiers.is_empty() {
            purl.push('?');
            purl.push_str(&qualifiers.join("&"));
        }
        let supplier = package
            .maintainer
            .as_ref()
            .map(|m| format!("Person: {m}"))
            .unwrap_or_else(|| "NOASSERTION".to_owned());
        packages.push(json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "supplier": supplier,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut files = Vec::new();
    for (n, (path, sha256)) in contents.files.iter().enumerate() {
        let id = format!("SPDXRef-File-{n}");
        files.push(json!({
            "SPDXID": id,
            "fileName": format!(".{path}"),
            "checksums": [{"algorithm": "SHA256", "checksumValue": sha256}],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", subject.name, subject.digest),
        "documentNamespace": format!("urn:kiln:spdx:{}:{}", subject.name, subject.digest),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: kiln-{}", subject.kiln_version)],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "files": files,
        "relationships": relationships,
    })
}

/// An SPDX id may hold letters, digits, `.` and `-` only.
fn spdx_id_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Percent-encoding of a package URL component: everything but letters,
/// digits and `.-_~` (so a Debian epoch's `:` and a `+` are escaped).
fn purl_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_files_are_listed_with_versions_and_digests() {
        let contents = Contents {
            dpkg_status: Some(
                b"Package: perl-base\nStatus: install ok installed\nArchitecture: amd64\nSource: perl\nVersion: 1:5.36.0-7+deb12u2\n"
                    .to_vec(),
            ),
            os_release: Some(b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n".to_vec()),
            files: [("/www/index.html".to_owned(), "ab".repeat(32))].into(),
            ..Contents::default()
        };
        let digest = Digest::of(b"m");
        let doc = spdx_document(
            &SbomSubject {
                name: "web",
                digest: &digest,
                created: "1970-01-01T00:00:00Z",
                kiln_version: "0.1.0",
            },
            &contents,
        );
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"][1]["name"], "perl-base");
        assert_eq!(doc["packages"][1]["versionInfo"], "1:5.36.0-7+deb12u2");
        assert_eq!(
            doc["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/perl-base@1%3A5.36.0-7%2Bdeb12u2?arch=amd64&upstream=perl"
        );
        assert_eq!(doc["files"][0]["fileName"], "./www/index.html");
        assert_eq!(
            doc["files"][0]["checksums"][0]["checksumValue"],
            "ab".repeat(32)
        );
        assert_eq!(doc["relationships"].as_array().map(Vec::len), Some(3));
    }
}
