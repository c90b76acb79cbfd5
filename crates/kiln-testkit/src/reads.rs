//! How many bytes this process has read, and a watcher that acts once a
//! given amount more has been read: a test of cancellation measures how
//! far work went in bytes, never in time.

use std::thread::JoinHandle;

/// The bytes this process has read so far, from any file or socket
/// (`rchar` of `/proc/self/io`).
pub fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("rchar in /proc/self/io")
}

/// Run `then` on a thread of its own once the process has read `bytes`
/// more than it had when this was called; join the handle after the work
/// under test returned.
pub fn once_read(bytes: u64, then: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    let before = bytes_read();
    std::thread::spawn(move || {
        while bytes_read() - before < bytes {
            std::thread::yield_now();
        }
        then();
    })
}
