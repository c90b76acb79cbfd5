//! The bearer-token flow every public registry uses, against a minimal fake
//! registry and token service on loopback (a real distribution registry
//! needs a signing token server to do this): the 401 challenge is answered
//! with a token fetched with Basic credentials for the repository's scope,
//! and the token is then used for every request. Needs no outside tool.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::*;
use kiln_image::{Digest, ImageError, RegistryAuth, Store, pull_registry};

const TOKEN: &str = "a-good-token";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
}

/// Serve `blobs` (by digest) and the tag `team/x:1` (pointing at
/// `manifest`) behind a bearer challenge whose token service wants
/// `kiln`/`pw`. Returns the host and the log of requests.
fn fake_registry(
    blobs: BTreeMap<Digest, Vec<u8>>,
    manifest: Digest,
) -> std::io::Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let host = listener.local_addr()?.to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let realm = format!("http://{host}/token");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve(stream, &blobs, &manifest, &realm, &log);
        }
    });
    Ok((host, seen))
}

fn serve(
    stream: TcpStream,
    blobs: &BTreeMap<Digest, Vec<u8>>,
    manifest: &Digest,
    realm: &str,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    if let Ok(mut log) = log.lock() {
        log.push(Seen {
            method: method.clone(),
            target: target.clone(),
            authorization: authorization.clone(),
        });
    }
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("kiln:pw")
    );
    let bearer = format!("Bearer {TOKEN}");
    let (status, extra, body): (&str, String, Vec<u8>) = if target.starts_with("/token?") {
        if authorization.as_deref() == Some(basic.as_str()) {
            (
                "200 OK",
                String::new(),
                format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
            )
        } else {
            ("401 Unauthorized", String::new(), b"{}".to_vec())
        }
    } else if authorization.as_deref() != Some(bearer.as_str()) {
        (
            "401 Unauthorized",
            format!(
                "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\",scope=\"repository:team/x:pull\"\r\n"
            ),
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
        )
    } else if target == "/v2/team/x/manifests/1" {
        match blobs.get(manifest) {
            Some(bytes) => (
                "200 OK",
                format!(
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {manifest}\r\n"
                ),
                bytes.clone(),
            ),
            None => ("404 Not Found", String::new(), Vec::new()),
        }
    } else if let Some(blob) = target
        .strip_prefix("/v2/team/x/blobs/")
        .and_then(|d| d.parse::<Digest>().ok())
        .and_then(|d| blobs.get(&d))
    {
        ("200 OK", String::new(), blob.clone())
    } else {
        ("404 Not Found", String::new(), Vec::new())
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(&body)?;
    }
    out.flush()
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_scoped_token() -> TestResult {
    let dir = tempfile::tempdir()?;
    make_context(&dir.path().join("ctx"), UMASK_002)?;
    let src = Store::open(dir.path().join("src"))?;
    let built = build_sample(&src, &dir.path().join("ctx"))?;
    let blobs: BTreeMap<Digest, Vec<u8>> = [
        &built.manifest.digest,
        &built.config_digest,
        &built.layers[0].digest,
    ]
    .into_iter()
    .map(|d| Ok((d.clone(), src.read_blob(d)?)))
    .collect::<Result<_, ImageError>>()?;
    let (host, seen) = fake_registry(blobs, built.manifest.digest.clone())?;

    let store = Store::open(dir.path().join("store"))?;
    let auth = RegistryAuth::Basic {
        username: "kiln".into(),
        password: "pw".into(),
    };
    let base = pull_registry(&store, &host, "team/x", Some("1"), None, auth).await?;
    assert_eq!(base.manifest_digest, built.manifest.digest);
    assert_eq!(base.layers, built.layers);

    let seen = seen.lock().map_err(|_| "log poisoned")?.clone();
    let token_requests: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/token"))
        .collect();
    assert_eq!(
        token_requests.len(),
        1,
        "one token serves the whole pull: {seen:#?}"
    );
    assert!(
        token_requests[0].target.contains("service=fake")
            && token_requests[0]
                .target
                .contains("scope=repository%3Ateam%2Fx%3Apull"),
        "{}",
        token_requests[0].target
    );
    let registry_requests: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/v2/"))
        .collect();
    // The first request met the challenge; all the others carried the token.
    assert_eq!(registry_requests[0].authorization, None);
    assert!(
        registry_requests[1..]
            .iter()
            .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")[..])),
        "{seen:#?}"
    );
    assert!(registry_requests.iter().all(|s| s.method == "GET"));
    assert_eq!(
        registry_requests.len(),
        4,
        "challenge, manifest, config, layer: {seen:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_token_is_access_denied() -> TestResult {
    let (host, _) = fake_registry(BTreeMap::new(), Digest::of(b"none"))?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let auth = RegistryAuth::Basic {
        username: "kiln".into(),
        password: "wrong".into(),
    };
    let result = pull_registry(&store, &host, "team/x", Some("1"), None, auth).await;
    assert!(
        matches!(
            result,
            Err(ImageError::RegistryAccessDenied { status: 401, .. })
        ),
        "{result:?}"
    );
    Ok(())
}
