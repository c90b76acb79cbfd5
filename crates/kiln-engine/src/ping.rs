//! The first request to a local engine, made by hand: `HEAD /_ping` answers
//! whether the engine is there and, in its `Api-Version` header, which API
//! version it speaks. bollard's own negotiation asks `/version`, which
//! Docker 20.10 answers only after running `runc --version` and
//! `docker-init --version`: tens of milliseconds that every `kiln build`
//! paid before doing anything, more than a rebuild that changed nothing.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the engine may take to answer the ping.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of the answer that is read: headers only, a few hundred bytes.
const MAX_ANSWER: u64 = 16 << 10;

/// The API version (major, minor) the engine listening on `socket` speaks.
pub(crate) async fn api_version(socket: &Path) -> std::io::Result<(usize, usize)> {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        // HTTP/1.0: the engine closes the connection after answering.
        stream
            .write_all(b"HEAD /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(PING_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to a ping"))??;
    parse(&String::from_utf8_lossy(&answer)).map_err(std::io::Error::other)
}

/// The API version in a ping's answer: a `200` status and an
/// `Api-Version: MAJOR.MINOR` header.
fn parse(answer: &str) -> Result<(usize, usize), String> {
    let mut lines = answer.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1);
    if code != Some("200") {
        return Err(format!("the ping was answered with {status:?}"));
    }
    let version = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("api-version"))
        .map(|(_, value)| value.trim())
        .ok_or("the ping's answer names no API version")?;
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    parsed.ok_or_else(|| format!("the engine's API version {version:?} is not MAJOR.MINOR"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_the_api_version_header() {
        let answer = "HTTP/1.0 200 OK\r\napi-version: 1.41\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(answer), Ok((1, 41)));
        let answer = "HTTP/1.1 200 OK\r\nServer: Docker\r\nApi-Version:1.47\r\n\r\n";
        assert_eq!(parse(answer), Ok((1, 47)));
    }

    #[test]
    fn refuses_what_is_not_an_engine_answer() {
        for answer in [
            "",
            "HTTP/1.0 404 Not Found\r\nApi-Version: 1.41\r\n\r\n",
            "HTTP/1.0 200 OK\r\nServer: nginx\r\n\r\n",
            "HTTP/1.0 200 OK\r\nApi-Version: one\r\n\r\n",
            // A header after the blank line is body, not a header.
            "HTTP/1.0 200 OK\r\n\r\nApi-Version: 1.41\r\n",
        ] {
            assert!(parse(answer).is_err(), "{answer:?} was taken for an answer");
        }
    }
}
