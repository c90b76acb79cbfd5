//! A TCP proxy on loopback in front of a registry: it writes down each
//! HTTP request line its clients send, so a test can count what reached
//! the registry, and can cut or stall a connection to play a network
//! fault.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The longest request line written down; longer lines are bodies.
const MAX_LINE: usize = 8 << 10;
/// HTTP methods a registry client sends.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: every byte passes both ways.
    Nothing,
    /// Cut the first connection over which the client has sent more than
    /// this many bytes, mid-stream: half of that read reaches the server,
    /// the rest never does, and both directions are shut (a connection
    /// lost mid-chunk).
    CutAfter(u64),
    /// Stop passing a connection's bytes to the server once its client
    /// starts a blob upload (`PATCH`), so the client hangs mid-upload.
    StallUploads,
    /// Cut every connection, both ways, as soon as its client starts a
    /// blob upload (`PATCH`): no chunk ever reaches the server.
    CutUploads,
    /// Answer the first this many connections itself, each after reading
    /// its request's head, in turn: `503 Service Unavailable`, `429 Too
    /// Many Requests` with `Retry-After: 1`, and no answer at all (the
    /// connection closed: a reset); later connections pass.
    Busy(u32),
}

/// A proxy listening on a free loopback port, passing to `upstream`. Its
/// threads live as long as the test process.
pub struct Proxy {
    /// `127.0.0.1:PORT`: give it to the client instead of the upstream.
    pub host: String,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<String>>,
    faulted: AtomicBool,
}

impl Proxy {
    /// Start one in front of `upstream` (`HOST:PORT`) doing `fault`.
    pub fn start(upstream: &str, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let host = listener.local_addr().expect("its address").to_string();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().flatten().enumerate() {
                if matches!(fault, Fault::Busy(busy) if n < busy as usize) {
                    let state = Arc::clone(&shared);
                    std::thread::spawn(move || answer_busy(client, n, &state));
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(client_r), Ok(server_w)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (mut server_r, mut client_w) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut client_w);
                    let _ = client_w.shutdown(Shutdown::Both);
                });
                let state = Arc::clone(&shared);
                std::thread::spawn(move || upstream_half(client_r, server_w, &state, fault));
            }
        });
        Proxy { host, state }
    }

    /// Every request line clients sent (`GET /v2/ HTTP/1.1`), in the order
    /// they were sent.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Whether the fault was played (a connection cut, an upload stalled).
    pub fn faulted(&self) -> bool {
        self.state.faulted.load(Ordering::SeqCst)
    }
}

/// Client to server: pass the bytes, write down request lines, play the
/// fault.
fn upstream_half(mut client: TcpStream, mut server: TcpStream, state: &State, fault: Fault) {
    let mut buf = [0u8; 16 << 10];
    let mut line = Vec::new();
    let mut sent = 0u64;
    let mut stalled = false;
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let started = request_lines(&buf[..n], &mut line);
        let uploads = started.iter().any(|l| l.starts_with("PATCH "));
        if let Ok(mut requests) = state.requests.lock() {
            requests.extend(started);
        }
        sent += n as u64;
        match fault {
            Fault::CutAfter(after)
                if sent > after && !state.faulted.swap(true, Ordering::SeqCst) =>
            {
                let _ = server.write_all(&buf[..n / 2]);
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Fault::CutUploads if uploads => {
                state.faulted.store(true, Ordering::SeqCst);
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Fault::StallUploads if stalled || uploads => {
                stalled = true;
                state.faulted.store(true, Ordering::SeqCst);
                continue;
            }
            _ => {}
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(if stalled {
        Shutdown::Both
    } else {
        Shutdown::Write
    });
}

/// [`Fault::Busy`]'s answer to the `n`th connection (from 0), once the
/// head of its request arrived.
fn answer_busy(mut client: TcpStream, n: usize, state: &State) {
    let mut head = Vec::new();
    let mut line = Vec::new();
    let mut buf = [0u8; 4 << 10];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                let started = request_lines(&buf[..read], &mut line);
                if let Ok(mut requests) = state.requests.lock() {
                    requests.extend(started);
                }
                head.extend_from_slice(&buf[..read]);
            }
        }
    }
    state.faulted.store(true, Ordering::SeqCst);
    let answer: &[u8] = match n % 3 {
        0 => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        1 => b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        _ => b"",
    };
    let _ = client.write_all(answer);
    let _ = client.shutdown(Shutdown::Both);
}

/// The request lines that end in `bytes`, given the unfinished `line`
/// carried over from the bytes before (and carried on).
fn request_lines(bytes: &[u8], line: &mut Vec<u8>) -> Vec<String> {
    let mut found = Vec::new();
    for &b in bytes {
        if b == b'\n' {
            if let Some(request) = request_line(line) {
                found.push(request);
            }
            line.clear();
        } else if line.len() <= MAX_LINE {
            line.push(b);
        }
    }
    found
}

/// `METHOD /PATH HTTP/1.x`, or `None` for a header, a body or anything
/// else.
fn request_line(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line.strip_suffix(b"\r")?).ok()?;
    let mut parts = text.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none()
        && METHODS.contains(&method)
        && target.starts_with('/')
        && version.starts_with("HTTP/1."))
    .then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_found_across_reads_and_bodies_are_not() {
        let mut line = Vec::new();
        let first = request_lines(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nPAT", &mut line);
        assert_eq!(first, ["GET /v2/ HTTP/1.1"]);
        let second = request_lines(
            b"CH /v2/a/blobs/uploads/u HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET / HTTP/1.1 body\r\n",
            &mut line,
        );
        assert_eq!(second, ["PATCH /v2/a/blobs/uploads/u HTTP/1.1"]);
    }
}
