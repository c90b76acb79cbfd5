//! The compression threads: blocks go out in order, may finish in any
//! order, and come back in order, with a cap on how many are out at once.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::block::{self, Compressed};
use crate::error::GzipError;

/// A block waiting for a thread.
pub(crate) struct Job {
    pub(crate) index: u64,
    pub(crate) level: u32,
    /// The 32 KiB of input before the block (shorter near the start).
    pub(crate) dictionary: Vec<u8>,
    pub(crate) data: Vec<u8>,
    pub(crate) last: bool,
}

/// A block back from a thread, with its input buffer for reuse.
struct Done {
    index: u64,
    result: Result<Compressed, GzipError>,
    data: Vec<u8>,
}

/// Threads that compress [`Job`]s, handing results back in job order.
pub(crate) struct Pool {
    jobs: Option<Sender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Results that arrived ahead of an earlier block.
    ready: BTreeMap<u64, Done>,
    /// Index of the next block to hand back.
    next: u64,
    /// Blocks submitted and not yet handed back (queued, compressing, or
    /// waiting in `ready`); this is what bounds memory.
    outstanding: usize,
    limit: usize,
    /// Input buffers handed back, ready for the next blocks.
    spare: Vec<Vec<u8>>,
}

impl Pool {
    /// Starts up to `threads` workers; `None` if not even one would start,
    /// in which case the caller compresses inline (the bytes are the same).
    pub(crate) fn start(threads: usize) -> Option<Pool> {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            let (jobs, done, stop) = (Arc::clone(&job_rx), done_tx.clone(), Arc::clone(&stop));
            let spawned = thread::Builder::new()
                .name(format!("kiln-gzip-{n}"))
                .spawn(move || work(&jobs, &done, &stop));
            // Fewer threads than asked only costs speed, never bytes.
            if let Ok(handle) = spawned {
                workers.push(handle);
            }
        }
        if workers.is_empty() {
            return None;
        }
        // Two blocks per thread: one compressing, one queued behind it so a
        // thread never idles while the caller refills.
        let limit = 2 * workers.len();
        Some(Pool {
            jobs: Some(job_tx),
            results: done_rx,
            workers,
            stop,
            ready: BTreeMap::new(),
            next: 0,
            outstanding: 0,
            limit,
            spare: Vec::new(),
        })
    }

    /// Whether another block may be submitted without exceeding the cap.
    pub(crate) fn has_room(&self) -> bool {
        self.outstanding < self.limit
    }

    /// A reusable input buffer, if a finished block left one.
    pub(crate) fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    pub(crate) fn submit(&mut self, job: Job) -> Result<(), GzipError> {
        let index = job.index;
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => {
                self.outstanding += 1;
                Ok(())
            }
            // Every worker has gone: nobody will ever compress this block.
            _ => Err(GzipError::WorkerLost { block: index }),
        }
    }

    /// The next block in order: waits for it if `wait`, otherwise returns
    /// `None` when it is not done yet. Also `None` when nothing is out.
    pub(crate) fn next_block(&mut self, wait: bool) -> Result<Option<Compressed>, GzipError> {
        loop {
            if let Some(done) = self.ready.remove(&self.next) {
                self.next += 1;
                self.outstanding -= 1;
                let mut data = done.data;
                data.clear();
                self.spare.push(data);
                return done.result.map(Some);
            }
            if self.outstanding == 0 {
                return Ok(None);
            }
            let received = if wait {
                self.results.recv().ok()
            } else {
                match self.results.try_recv() {
                    Ok(done) => Some(done),
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            match received {
                Some(done) => {
                    self.ready.insert(done.index, done);
                }
                None => return Err(GzipError::WorkerLost { block: self.next }),
            }
        }
    }

    /// Stops the workers and waits for them: each finishes at most the block
    /// in its hands, then sees the stop flag or the closed queue.
    pub(crate) fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = worker.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn work(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, stop: &AtomicBool) {
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // The lock is held only while waiting for a job; a poisoned lock or
        // a closed queue both mean the encoder is gone.
        let job = match jobs.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // A panic inside deflate must not leave the encoder waiting forever
        // for this block: it becomes an error for this block instead.
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            block::compress(job.index, job.level, &job.dictionary, &job.data, job.last)
        }))
        .unwrap_or(Err(GzipError::WorkerLost { block: job.index }));
        let reply = Done {
            index: job.index,
            result,
            data: job.data,
        };
        if done.send(reply).is_err() {
            return;
        }
    }
}
