//! A Bloom filter over one group's idempotency keys (`d` chat sender client_msg_id), so that
//! the dedup check of a new message, which nearly always misses, costs no sled lookup.
//!
//! A sled lookup walks the tree whether the key is there or not: several microseconds, on
//! every replica, for every message (docs/BENCHMARKS.md). The filter answers "surely absent"
//! for most new keys; "maybe present" falls back to sled, so a false positive costs only the
//! lookup that every message used to pay, and a key that the filter has not seen is never
//! reported absent.
//!
//! The filter of a group generation holds every `d` key merged since the generation went live
//! (`pending` inserts them as applies merge) plus every `d` key its tree held before that, which
//! the node's one scanner thread reads in the background. It answers only once that scan is
//! complete; until then every check goes to sled. The filter has a fixed size: past about
//! [`FILTER_BITS`] / 10 keys its false positives grow and more checks go to sled, which costs
//! speed, never correctness. Deleted keys (retention keeps them anyway) stay in the filter.

use std::hash::Hasher;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::Weak;

use crate::chat_store::PREFIX_DEDUP;
use crate::pending::Live;

/// Bits of one group's filter (512 KiB): under 1% false positives up to about 400,000 keys.
pub const FILTER_BITS: usize = 1 << 22;
/// Bit positions per key.
const HASHES: u64 = 7;
/// Keys the scanner adds per lock hold, so that applies never wait long for it.
const SCAN_CHUNK: usize = 4096;
/// Groups waiting for a scan; past it a group keeps asking sled (see [`Scanner::scan`]).
const SCAN_QUEUE: usize = 1024;

pub(crate) struct DedupFilter {
    bits: Vec<u64>,
    /// True once the tree's keys from before the generation went live are all in.
    complete: bool,
}

impl DedupFilter {
    pub(crate) fn new() -> Self {
        DedupFilter { bits: vec![0; FILTER_BITS / 64], complete: false }
    }

    pub(crate) fn insert(&mut self, key: &[u8]) {
        for bit in positions(key) {
            if let Some(word) = self.bits.get_mut(bit / 64) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    /// True only when `key` was surely never inserted and the filter is complete.
    pub(crate) fn surely_absent(&self, key: &[u8]) -> bool {
        self.complete && positions(key).any(|bit| self.bits.get(bit / 64).is_some_and(|w| w & (1 << (bit % 64)) == 0))
    }

    pub(crate) fn set_complete(&mut self) {
        self.complete = true;
    }
}

/// Double hashing: the i-th position is `h1 + i * h2` of one 64-bit hash (Kirsch-Mitzenmacher).
fn positions(key: &[u8]) -> impl Iterator<Item = usize> {
    let mut h = std::hash::DefaultHasher::new();
    h.write(key);
    let hash = h.finish();
    let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
    (0..HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % FILTER_BITS as u64) as usize)
}

/// A group generation whose tree the scanner should read into its filter.
struct ScanJob {
    live: Weak<RwLock<Live>>,
    generation: u64,
}

/// The node's one background scanner thread. It ends when every handle is dropped.
#[derive(Clone)]
pub(crate) struct Scanner {
    tx: mpsc::SyncSender<ScanJob>,
}

impl Scanner {
    pub(crate) fn start() -> Self {
        let (tx, rx) = mpsc::sync_channel(SCAN_QUEUE);
        let spawned = std::thread::Builder::new().name("dedup-scan".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                scan(job);
            }
        });
        if let Err(e) = spawned {
            // The jobs then go nowhere: every filter stays incomplete and every check asks sled.
            tracing::warn!(error = %e, "could not start the dedup filter scanner; dedup checks all read sled");
        }
        Scanner { tx }
    }

    /// Queues a scan; when the queue is full the group's filter stays incomplete (correct,
    /// only slower).
    pub(crate) fn scan(&self, live: &Arc<RwLock<Live>>, generation: u64) {
        if self.tx.try_send(ScanJob { live: Arc::downgrade(live), generation }).is_err() {
            tracing::warn!(generation, "dedup filter scan queue full; this group's dedup checks read sled");
        }
    }
}

/// Reads every `d` key of the job's tree into its filter, a chunk per lock hold, and marks the
/// filter complete. Gives up when the group is gone or has moved to another generation.
fn scan(job: ScanJob) {
    let Some(tree) = with_live(&job, |live| live.tree.clone()) else { return };
    let mut keys = Vec::with_capacity(SCAN_CHUNK);
    let mut iter = tree.range([PREFIX_DEDUP].as_slice()..[PREFIX_DEDUP + 1].as_slice()).keys();
    loop {
        keys.clear();
        let mut done = true;
        for k in iter.by_ref() {
            match k {
                Ok(k) => keys.push(k),
                Err(e) => {
                    tracing::warn!(error = %e, "dedup filter scan failed; this group's dedup checks read sled");
                    return;
                }
            }
            if keys.len() == SCAN_CHUNK {
                done = false;
                break;
            }
        }
        let added = with_live(&job, |live| {
            for k in &keys {
                live.dedup.insert(k);
            }
            if done {
                live.dedup.set_complete();
            }
        });
        if added.is_none() || done {
            return;
        }
    }
}

/// Runs `f` on the job's live state under its write lock, unless the group is gone or has
/// moved to another generation.
fn with_live<T>(job: &ScanJob, f: impl FnOnce(&mut Live) -> T) -> Option<T> {
    let live = job.live.upgrade()?;
    let mut live = live.write().unwrap_or_else(|p| p.into_inner());
    (live.generation == job.generation).then(|| f(&mut live))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        let mut k = vec![PREFIX_DEDUP];
        k.extend_from_slice(&i.to_be_bytes());
        k.extend_from_slice(format!("client-{i}").as_bytes());
        k
    }

    #[test]
    fn inserted_keys_are_never_absent_and_few_others_are_present() {
        let mut f = DedupFilter::new();
        for i in 0..100_000 {
            f.insert(&key(i));
        }
        assert!(!f.surely_absent(&key(1)), "an incomplete filter answers nothing");
        f.set_complete();
        for i in 0..100_000 {
            assert!(!f.surely_absent(&key(i)), "key {i} was inserted");
        }
        let false_positives = (100_000..200_000).filter(|i| !f.surely_absent(&key(*i))).count();
        // At 100,000 keys in 2^22 bits with 7 hashes the expected rate is about 0.002%.
        assert!(false_positives < 20, "{false_positives} false positives in 100,000");
    }
}
