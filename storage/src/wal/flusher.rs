//! The node-wide fsync thread: group commit across every Raft group.
//!
//! Writers put their bytes into the segment file (page cache) and then hand a [`FlushRequest`]
//! to this thread. The thread takes every request pending at that moment, runs one
//! `fdatasync` per distinct segment file, and only then completes the requests. One fsync
//! therefore covers all appends of all groups that were written before it started; under load the
//! cost of an fsync is shared by many appends.

use std::fs::File;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

/// Called once the bytes it covers are on stable storage (or the sync failed).
pub type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

pub struct FlushRequest {
    pub file: Arc<File>,
    /// How many log entries this request covers (for the entries-per-fsync figure).
    pub entries: u64,
    pub done: Done,
}

/// Called after every fsync round with its duration and the log entries it covered.
pub type FsyncObserver = Box<dyn Fn(std::time::Duration, u64) + Send + Sync>;

/// Counters of the flusher, readable at any time.
#[derive(Default)]
pub struct FlushStats {
    pub fsyncs: AtomicU64,
    pub requests: AtomicU64,
    pub entries: AtomicU64,
    pub fsync_micros_total: AtomicU64,
    pub observer: std::sync::OnceLock<FsyncObserver>,
}

impl std::fmt::Debug for FlushStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushStats").field("fsyncs", &self.fsyncs).field("entries", &self.entries).finish()
    }
}

/// Bound on requests taken into one fsync round; the rest wait for the next round.
const BATCH_MAX: usize = 65_536;

pub fn spawn(rx: mpsc::Receiver<FlushRequest>, stats: Arc<FlushStats>) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("wal-fsync".into()).spawn(move || run(rx, &stats))
}

fn run(rx: mpsc::Receiver<FlushRequest>, stats: &FlushStats) {
    let mut batch: Vec<FlushRequest> = Vec::new();
    // recv() fails only when every sender is gone: the engine was dropped, so the thread ends.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut synced: Vec<(*const File, Result<(), io::ErrorKind>)> = Vec::new();
        for req in &batch {
            let key = Arc::as_ptr(&req.file);
            if !synced.iter().any(|(k, _)| *k == key) {
                let res = if crate::unsafe_knobs::on(crate::unsafe_knobs::Knob::SkipFsync) {
                    Ok(())
                } else {
                    req.file.sync_data().map_err(|e| e.kind())
                };
                synced.push((key, res));
            }
        }
        stats.fsyncs.fetch_add(synced.len() as u64, Ordering::Relaxed);
        stats.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let took = started.elapsed();
        stats.fsync_micros_total.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(observe) = stats.observer.get() {
            observe(took, batch.iter().map(|r| r.entries).sum());
        }
        for req in batch.drain(..) {
            stats.entries.fetch_add(req.entries, Ordering::Relaxed);
            let key = Arc::as_ptr(&req.file);
            let res = synced.iter().find(|(k, _)| *k == key).map(|(_, r)| *r).unwrap_or(Err(io::ErrorKind::Other));
            (req.done)(res.map_err(|kind| io::Error::new(kind, "fdatasync of WAL segment failed")));
        }
    }
}
