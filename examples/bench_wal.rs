//! Raft-log storage choice: our WAL (group-committed fdatasync) against sled plus an explicit
//! fsync of its files, both with one shared flusher that covers every pending append.
//!
//! `cargo run --release -p raftchat-storage --example bench_wal -- [seconds]`
//!
//! W writers (one per group) each append a 200-byte entry and wait until it is durable, in a
//! closed loop; reported: durable appends/s, p50/p99 latency, appends per fsync.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use raftchat_storage::wal::LogEngine;

const ENTRY_BYTES: usize = 200;

struct Report {
    name: &'static str,
    writers: usize,
    appends: u64,
    secs: f64,
    fsyncs: u64,
    lat_us: Vec<u64>,
}

impl Report {
    fn print(mut self) {
        self.lat_us.sort_unstable();
        let pct = |p: f64| {
            self.lat_us
                .get(((self.lat_us.len() as f64 * p) as usize).min(self.lat_us.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "{:<14} writers={:<4} appends/s={:>9.0}  p50={:>6}us p99={:>6}us  appends/fsync={:>6.1}",
            self.name,
            self.writers,
            self.appends as f64 / self.secs,
            pct(0.50),
            pct(0.99),
            self.appends as f64 / self.fsyncs.max(1) as f64
        );
    }
}

fn run_wal(writers: usize, secs: u64) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = LogEngine::open(dir.path(), 64 << 20).expect("open wal");
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let start = Instant::now();
    for w in 0..writers {
        let engine = engine.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut idx = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (tx, rx) = mpsc::channel();
                engine
                    .append(
                        w as u32,
                        idx,
                        vec![vec![7u8; ENTRY_BYTES]],
                        Box::new(move |r| {
                            let _ = tx.send(r.is_ok());
                        }),
                    )
                    .expect("append");
                if !rx.recv().unwrap_or(false) {
                    break;
                }
                lat.push(t.elapsed().as_micros() as u64);
                idx += 1;
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let lat_us: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    let elapsed = start.elapsed().as_secs_f64();
    let fsyncs = engine.stats().fsyncs.load(Ordering::Relaxed);
    Report { name: "own-wal", writers, appends: lat_us.len() as u64, secs: elapsed, fsyncs, lat_us }
}

/// sled with the same group-commit shape: writers insert, then wait for a flusher thread that
/// runs `flush()` (sync_file_range) followed by `sync_data()` on sled's files.
fn run_sled(writers: usize, secs: u64) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().expect("sled");
    let tree = db.open_tree("log").expect("tree");
    let files: Vec<std::fs::File> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| std::fs::File::open(e.path()).ok())
        .collect();
    let (tx, rx) = mpsc::channel::<mpsc::Sender<bool>>();
    let fsyncs = Arc::new(AtomicU64::new(0));
    let f2 = fsyncs.clone();
    let db2 = db.clone();
    let flusher = std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let ok = db2.flush().is_ok() && files.iter().all(|f| f.sync_data().is_ok());
            f2.fetch_add(1, Ordering::Relaxed);
            for b in batch {
                let _ = b.send(ok);
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let start = Instant::now();
    for w in 0..writers {
        let tree = tree.clone();
        let stop = stop.clone();
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut idx = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut key = (w as u32).to_be_bytes().to_vec();
                key.extend_from_slice(&idx.to_be_bytes());
                tree.insert(key, vec![7u8; ENTRY_BYTES]).expect("insert");
                let (dtx, drx) = mpsc::channel();
                if tx.send(dtx).is_err() || !drx.recv().unwrap_or(false) {
                    break;
                }
                lat.push(t.elapsed().as_micros() as u64);
                idx += 1;
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let lat_us: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    let elapsed = start.elapsed().as_secs_f64();
    drop(tx);
    let _ = flusher.join();
    Report {
        name: "sled+fsync",
        writers,
        appends: lat_us.len() as u64,
        secs: elapsed,
        fsyncs: fsyncs.load(Ordering::Relaxed),
        lat_us,
    }
}

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    for writers in [1, 64] {
        run_wal(writers, secs).print();
        run_sled(writers, secs).print();
    }
}
