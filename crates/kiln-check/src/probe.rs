//! Readiness checks that retry until the service answers: http and tcp,
//! each attempt bounded by the probe's timeout, `interval` between
//! attempts, `healthy_threshold` successes in a row, given up at the
//! probe's deadline or the suite's, whichever comes first.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use kiln_engine::EngineError;
use kiln_recipe::{HttpCheck, Probe, TcpCheck};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Redaction;
use crate::excerpt::{contains, head, human};
use crate::suite::{Container, Verdict};

/// How much of a response body is read: enough to find a marker in a
/// health page, bounded for a service that streams forever.
const BODY_CAP: usize = 1 << 20;

/// How long a tcp connection must stay open to count. Docker's userland
/// proxy accepts on the published port whatever happens inside the
/// container, and closes the connection at once (within a millisecond or
/// so) when nothing listens there: an accepted connection proves nothing
/// until it has survived a moment.
const CLOSE_WINDOW: Duration = Duration::from_millis(250);

/// An http check.
pub(crate) async fn http(
    container: &Container<'_>,
    check: &HttpCheck,
) -> Result<Verdict, EngineError> {
    let addr = match published(container, check.port).await? {
        Ok(addr) => addr,
        Err(verdict) => return Ok(verdict),
    };
    let path = if check.path.starts_with('/') {
        check.path.clone()
    } else {
        format!("/{}", check.path)
    };
    let label = format!("GET http://{addr}{path}");
    let expected = check.status;
    let needle = check.body_contains.as_deref();
    let redaction = container.redaction;
    retry(container, &check.probe, &label, |_| {
        http_attempt(addr, &path, expected, needle, redaction)
    })
    .await
}

/// A tcp check.
pub(crate) async fn tcp(
    container: &Container<'_>,
    check: &TcpCheck,
) -> Result<Verdict, EngineError> {
    let addr = match published(container, check.port).await? {
        Ok(addr) => addr,
        Err(verdict) => return Ok(verdict),
    };
    let label = format!("connect to {addr} (container port {})", check.port);
    retry(container, &check.probe, &label, |budget| {
        tcp_attempt(addr, budget)
    })
    .await
}

/// Where the host reaches `port`; a container that exited has none.
async fn published(
    container: &Container<'_>,
    port: u16,
) -> Result<Result<SocketAddr, Verdict>, EngineError> {
    match container.engine.published_addr(&container.id, port).await {
        Ok(addr) => Ok(Ok(addr)),
        Err(e) => match container.exit_code().await? {
            Some(code) => Ok(Err(Verdict::Exited(code))),
            None => Err(e),
        },
    }
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

/// Run `attempt` (given its time budget) until `probe.healthy_threshold`
/// successes in a row, or the deadline. An attempt says what it saw:
/// `Ok` for a success, `Err` for a failure. The container's state is read
/// before every attempt, so that a crash ends the wait at once.
pub(crate) async fn retry<F, Fut>(
    container: &Container<'_>,
    probe: &Probe,
    label: &str,
    mut attempt: F,
) -> Result<Verdict, EngineError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let own_limit = Instant::now() + probe.deadline.as_std();
    let limit = own_limit.min(container.deadline);
    let threshold = probe.healthy_threshold.max(1);
    let (mut count, mut streak, mut best) = (0u32, 0u32, 0u32);
    let mut last_failure: Option<String> = None;
    loop {
        if let Some(code) = container.exit_code().await? {
            return Ok(Verdict::Exited(code));
        }
        count += 1;
        let budget = probe
            .timeout
            .as_std()
            .min(limit.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(budget, attempt(budget)).await {
            Ok(Ok(seen)) => {
                streak += 1;
                best = best.max(streak);
                if streak >= threshold {
                    let in_a_row = if threshold > 1 {
                        format!(", {threshold} in a row")
                    } else {
                        String::new()
                    };
                    return Ok(Verdict::Pass(format!(
                        "{label}: {seen} after {}{in_a_row}",
                        attempts(count)
                    )));
                }
            }
            Ok(Err(why)) => {
                streak = 0;
                last_failure = Some(why);
            }
            // An attempt cut short by the deadline says less than the full
            // attempts before it: keep what they saw.
            Err(_) if budget < probe.timeout.as_std() && last_failure.is_some() => streak = 0,
            Err(_) => {
                streak = 0;
                last_failure = Some(format!("no answer within {}", human(budget)));
            }
        }
        let next = Instant::now() + probe.interval.as_std();
        if next >= limit {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    // The service may have failed because the container just died.
    if let Some(code) = container.exit_code().await? {
        return Ok(Verdict::Exited(code));
    }
    let mut detail = match last_failure {
        Some(why) if streak == 0 => {
            let mut detail = format!("{label}: {why} after {}", attempts(count));
            if best > 0 {
                detail.push_str(&format!(
                    " (at best {best} of {threshold} successes in a row)"
                ));
            }
            detail
        }
        _ => format!(
            "{label}: only {streak} of {threshold} successes in a row, after {}",
            attempts(count)
        ),
    };
    if container.deadline < own_limit {
        detail = format!("{}; {detail}", container.timeout_detail());
    }
    Ok(Verdict::Fail(detail))
}

/// Why a connection could not be made, in a few words.
fn connect_failure(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => format!("cannot connect: {e}"),
    }
}

/// Why an http exchange failed, in a few words.
fn http_failure(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "connection closed before a response (does anything listen on the port inside the container?)".to_owned()
    } else {
        format!("http error: {e}")
    }
}

/// Aborts the task driving an http connection when the attempt ends, in
/// time or not.
struct AbortOnDrop(JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One GET: the status and the first [`BODY_CAP`] bytes of the body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| connect_failure(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_failure(&e))?;
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .header(USER_AGENT, "kiln-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request for {path:?}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http_failure(&e))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < BODY_CAP {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Some(data) = frame.map_err(|e| http_failure(&e))?.data_ref() {
            let room = BODY_CAP - bytes.len();
            bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok((status, bytes))
}

async fn http_attempt(
    addr: SocketAddr,
    path: &str,
    expected: u16,
    needle: Option<&str>,
    redaction: &Redaction,
) -> Result<String, String> {
    let (status, body) = get(addr, path).await?;
    if status != expected {
        return Err(format!("status {status} (expected {expected})"));
    }
    match needle {
        Some(needle) if !contains(&body, needle) => Err(format!(
            "status {status} but the body does not contain {needle:?} (body: {:?})",
            head(&body, 200, redaction)
        )),
        _ => Ok(format!("status {status}")),
    }
}

async fn tcp_attempt(addr: SocketAddr, budget: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| connect_failure(&e))?;
    // The window must end inside the attempt's budget, or a good
    // connection would count as no answer.
    let window = CLOSE_WINDOW.min(budget / 2);
    let mut byte = [0u8; 1];
    match tokio::time::timeout(window, stream.read(&mut byte)).await {
        Err(_) | Ok(Ok(1..)) => Ok("connection accepted".to_owned()),
        Ok(Ok(0)) => Err(
            "connection accepted, then closed at once (does anything listen on the port inside the container?)"
                .to_owned(),
        ),
        Ok(Err(e)) => Err(format!("connection accepted, then {}", connect_failure(&e))),
    }
}
