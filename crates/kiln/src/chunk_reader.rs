//! A blocking reader over the chunks an async task sends, so that a
//! stream from the engine (a `docker save`) is read by blocking work (an
//! import) as it arrives, with no temporary file between them.

use std::io::Read;

use kiln_engine::Bytes;
use tokio::sync::mpsc::Receiver;

/// Reads the chunks of `rx` in order. An empty chunk marks the stream's
/// complete end; a sender gone without it is an error, so that a stream
/// cut short is never taken for a whole one.
pub(crate) struct ChunkReader {
    rx: Receiver<Bytes>,
    current: Bytes,
    ended: bool,
}

impl ChunkReader {
    /// Read what `rx` receives; call only from blocking work (it waits on
    /// the channel).
    pub(crate) fn new(rx: Receiver<Bytes>) -> ChunkReader {
        ChunkReader {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(chunk) if chunk.is_empty() => self.ended = true,
                Some(chunk) => self.current = chunk,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the engine's stream stopped before its end",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_read_in_order_up_to_the_end_marker() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let sender = std::thread::spawn(move || {
            for chunk in [&b"ab"[..], b"cde", b"", b"ignored"] {
                let _ = tx.blocking_send(Bytes::copy_from_slice(chunk));
            }
        });
        let mut all = Vec::new();
        ChunkReader::new(rx).read_to_end(&mut all).expect("read");
        assert_eq!(all, b"abcde");
        sender.join().expect("sender");
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_an_end() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Bytes::from_static(b"half")).expect("send");
        drop(tx);
        let mut all = Vec::new();
        let err = ChunkReader::new(rx)
            .read_to_end(&mut all)
            .expect_err("no end marker");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(all, b"half");
    }
}
