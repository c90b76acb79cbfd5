//! The `Write` end: cuts the input into blocks at fixed offsets, has them
//! compressed inline or on the pool, and writes them out in order.

use std::fmt;
use std::io::{self, Write};
use std::mem;

use crate::block;
use crate::error::GzipError;
use crate::member::Member;
use crate::options::GzipOptions;
use crate::pool::{Job, Pool};

/// A gzip encoder whose output bytes depend only on the input, the level and
/// the block size, compressing blocks on several threads.
///
/// Write the input, then call [`finish`](Self::finish) to write the last
/// block and the trailer and get the writer back. How the input is split
/// into `write` calls, the thread count and timing never change the output.
///
/// Dropping the encoder without `finish` stops its threads (after at most
/// one block each), discards buffered input and writes no trailer: the
/// output is then an incomplete gzip stream, never a valid-looking short one.
pub struct ParallelGzEncoder<W: Write> {
    member: Member<W>,
    options: GzipOptions,
    /// Input of the block being filled; sent off when it reaches
    /// `options.block_size`.
    buffer: Vec<u8>,
    /// The last 32 KiB of input before `buffer`: its preset dictionary.
    window: Vec<u8>,
    /// Index of the block in `buffer`.
    index: u64,
    /// `None` means compress on the caller's thread.
    pool: Option<Pool>,
    /// Set by any error: the output has a hole, so nothing more is written.
    failed: bool,
    /// Set once the last block and trailer are written.
    finished: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// Creates an encoder writing to `inner`.
    ///
    /// Out-of-range options are brought into range (see [`GzipOptions`]).
    /// With more than one thread the workers start here; if the system
    /// refuses to start any, the encoder compresses inline, to the same
    /// bytes. Nothing is written to `inner` until the first block is done.
    pub fn new(inner: W, options: GzipOptions) -> Self {
        let options = options.normalized();
        let pool = if options.threads > 1 {
            Pool::start(options.threads)
        } else {
            None
        };
        ParallelGzEncoder {
            member: Member::new(inner, options.level),
            options,
            buffer: Vec::with_capacity(options.block_size),
            window: Vec::with_capacity(block::WINDOW),
            index: 0,
            pool,
            failed: false,
            finished: false,
        }
    }

    /// The options in use, after bringing them into range.
    pub fn options(&self) -> GzipOptions {
        self.options
    }

    /// The writer underneath.
    pub fn get_ref(&self) -> &W {
        match self.member.inner() {
            Some(inner) => inner,
            // The writer leaves only in `finish`, which consumes `self`.
            None => unreachable!("writer taken before finish returned"),
        }
    }

    /// Compresses what is left, writes the trailer, flushes and returns the
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.guard(|encoder| {
            encoder.send_block(true)?;
            encoder.drain(true)?;
            encoder.member.finish()
        })?;
        self.finished = true;
        if let Some(pool) = self.pool.as_mut() {
            pool.shut_down();
        }
        self.member
            .take_inner()
            .ok_or_else(|| GzipError::Failed.into())
    }

    /// Runs `step`, refusing to if an earlier step failed and marking the
    /// encoder failed if this one does.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if self.failed || self.finished {
            return Err(GzipError::Failed.into());
        }
        let result = step(self);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Sends the filled buffer off as the next block (the last one if
    /// `last`), compressing it here when there is no pool.
    fn send_block(&mut self, last: bool) -> io::Result<()> {
        let fresh = self
            .pool
            .as_mut()
            .and_then(Pool::spare_buffer)
            .unwrap_or_else(|| Vec::with_capacity(self.options.block_size));
        let data = mem::replace(&mut self.buffer, fresh);
        let index = self.index;
        self.index += 1;
        let dictionary = self.window.clone();
        block::slide(&mut self.window, &data);
        let level = self.options.level;
        match self.pool.as_mut() {
            None => {
                let compressed = block::compress(index, level, &dictionary, &data, last)?;
                self.member.push(&compressed)?;
                // Reuse the allocation for the next block.
                self.buffer = data;
                self.buffer.clear();
                Ok(())
            }
            Some(_) => {
                // Make room first, so at most the cap of blocks is out.
                while !self.pool.as_ref().is_some_and(Pool::has_room) {
                    if !self.write_next(true)? {
                        break;
                    }
                }
                if let Some(pool) = self.pool.as_mut() {
                    pool.submit(Job {
                        index,
                        level,
                        dictionary,
                        data,
                        last,
                    })?;
                }
                self.drain(false)
            }
        }
    }

    /// Writes the next block in order if it is done (or, with `wait`, once
    /// it is). Returns whether a block was written.
    fn write_next(&mut self, wait: bool) -> io::Result<bool> {
        let next = match self.pool.as_mut() {
            Some(pool) => pool.next_block(wait)?,
            None => None,
        };
        match next {
            Some(compressed) => {
                self.member.push(&compressed)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes every block that is done, in order; with `wait`, every block
    /// that is out.
    fn drain(&mut self, wait: bool) -> io::Result<()> {
        while self.write_next(wait)? {}
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.guard(|encoder| {
            let room = encoder.options.block_size - encoder.buffer.len();
            let taken = room.min(buf.len());
            encoder.buffer.extend_from_slice(&buf[..taken]);
            // A full block always goes out as a non-final block, even if the
            // input ends right there (the last block is then empty): the cut
            // depends on offsets alone, never on where writes stop.
            if encoder.buffer.len() == encoder.options.block_size {
                encoder.send_block(false)?;
            }
            Ok(taken)
        })
    }

    /// Writes every block compressed so far and flushes the writer.
    ///
    /// The partly filled block stays buffered: cutting it early would make
    /// the output depend on when `flush` was called.
    fn flush(&mut self) -> io::Result<()> {
        self.guard(|encoder| {
            encoder.drain(true)?;
            encoder.member.flush()
        })
    }
}

impl<W: Write> Drop for ParallelGzEncoder<W> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.as_mut() {
            pool.shut_down();
        }
    }
}

impl<W: Write> fmt::Debug for ParallelGzEncoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelGzEncoder")
            .field("options", &self.options)
            .field("buffered", &self.buffer.len())
            .field("next_block", &self.index)
            .field("threaded", &self.pool.is_some())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
