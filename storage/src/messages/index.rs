//! Where each message of a segment is, and which idempotency keys a segment holds.
//!
//! The active segment keeps its index in memory ([`LiveIndex`]): per chat a run of record
//! locations by seq (a chat's seqs inside one segment are consecutive, so a run is a first seq
//! and a vector), and the originals of its idempotency keys by fingerprint. Sealing writes the
//! same into an index file next to the segment ([`write_sealed`]); afterwards memory holds only
//! the file's summary ([`SealedIndex`]: time range, Bloom filter, the dedup table's bucket
//! bounds and checksums) and the store's per-chat directory of runs.
//!
//! ```text
//! index file: "RCIDX\0\0\0" | version u32 | header crc u32 | header | runs dir | locations | dedup table | bloom
//! header:     segment u64 | records u64 | min ts u64 | max ts u64 | runs u64 | dedup entries u64
//!             | bloom words u64 | fanout [257 x u32] | bucket crc [256 x u32] | runs+bloom crc u32
//! runs dir:   per run: chat [16] | first seq u64 | count u32 | locations offset u64
//! locations:  per record: offset u32 | length u32 (length 0: no record at that seq)
//! dedup:      per key, sorted by fingerprint: fingerprint u128 | seq u64 | ts u64 | message id [16]
//! ```
//!
//! A location read from the file is checked by the record it leads to (its CRC, chat and seq);
//! a dedup bucket by its CRC; the header, runs and filter when the file is opened.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::RwLock;

use super::dedup::bucket;
use super::dedup::Bloom;
use super::dedup::Fingerprint;
use super::dedup::Original;
use crate::codec::FORMAT_VERSION;
use crate::error::StorageError;
use crate::records::ChatId;

const MAGIC: &[u8; 8] = b"RCIDX\0\0\0";
const FIXED_HEAD: usize = 8 + 4 + 4;
const HEADER_LEN: usize = 7 * 8 + 257 * 4 + 256 * 4 + 4;
const RUN_LEN: usize = 16 + 8 + 4 + 8;
const LOC_LEN: usize = 8;
const DEDUP_LEN: usize = 16 + 8 + 8 + 16;

/// Where one record is in its segment; `len == 0` marks a seq without a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub off: u32,
    pub len: u32,
}

/// One chat's records in the active segment, by seq from `first_seq`.
#[derive(Debug, Clone, Default)]
pub struct LiveRun {
    pub first_seq: u64,
    pub locs: Vec<Loc>,
}

impl LiveRun {
    fn put(&mut self, seq: u64, loc: Loc) {
        if self.locs.is_empty() {
            self.first_seq = seq;
        }
        if seq < self.first_seq {
            // Only a deliberately broken build (the seq_at_gateway knob) writes seqs backwards.
            let gap = (self.first_seq - seq) as usize;
            self.locs.splice(0..0, std::iter::repeat_n(Loc { off: 0, len: 0 }, gap));
            self.first_seq = seq;
        }
        let i = (seq - self.first_seq) as usize;
        if i >= self.locs.len() {
            self.locs.resize(i + 1, Loc { off: 0, len: 0 });
        }
        self.locs[i] = loc;
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.locs.len() as u64 - 1
    }
}

/// The in-memory index of the active (or a not yet sealed) segment.
#[derive(Debug, Default, Clone)]
pub struct LiveIndex {
    pub runs: HashMap<ChatId, LiveRun>,
    pub dedup: HashMap<Fingerprint, Original>,
    pub records: u64,
    pub min_ts: u64,
    pub max_ts: u64,
}

impl LiveIndex {
    pub fn put(&mut self, chat: ChatId, seq: u64, loc: Loc, fp: Option<Fingerprint>, original: Original) {
        self.runs.entry(chat).or_default().put(seq, loc);
        if let Some(fp) = fp {
            self.dedup.insert(fp, original);
        }
        self.min_ts = if self.records == 0 { original.ts_ms } else { self.min_ts.min(original.ts_ms) };
        self.max_ts = self.max_ts.max(original.ts_ms);
        self.records += 1;
    }
}

/// One chat's run in a sealed index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRun {
    pub first_seq: u64,
    pub count: u32,
    /// Offset of the run's locations in the index file.
    pub locs_off: u64,
}

/// What memory keeps of a sealed segment's index file.
#[derive(Debug)]
pub struct SealedIndex {
    pub path: PathBuf,
    file: File,
    pub records: u64,
    pub min_ts: u64,
    pub max_ts: u64,
    /// `None` once the segment is outside every dedup window ([`SealedIndex::release_filter`]):
    /// a lookup then goes to the file, so dropping it costs speed, never an answer.
    bloom: RwLock<Option<Bloom>>,
    fanout: Vec<u32>,
    bucket_crc: Vec<u32>,
    dedup_off: u64,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn dedup_entry(b: &[u8]) -> (Fingerprint, Original) {
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&b[..16]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[32..48]);
    (
        u128::from_le_bytes(fp),
        Original { seq: u64_at(b, 16), ts_ms: u64_at(b, 24), message_id: uuid::Uuid::from_bytes(id) },
    )
}

/// Writes the index file of a segment whose live index is `idx` (to a temporary name, synced,
/// then renamed into place) and returns its summary and runs.
pub fn write_sealed(
    path: &Path,
    segment: u64,
    idx: &LiveIndex,
) -> Result<(SealedIndex, Vec<(ChatId, SealedRun)>), StorageError> {
    let mut runs: Vec<(&ChatId, &LiveRun)> = idx.runs.iter().collect();
    runs.sort_unstable_by_key(|(c, _)| **c);
    let mut dedup: Vec<(&Fingerprint, &Original)> = idx.dedup.iter().collect();
    dedup.sort_unstable_by_key(|(fp, _)| **fp);
    let mut bloom = Bloom::with_keys(dedup.len());
    for (fp, _) in &dedup {
        bloom.insert(**fp);
    }
    let runs_off = (FIXED_HEAD + HEADER_LEN) as u64;
    let locs_off = runs_off + (runs.len() * RUN_LEN) as u64;
    let total_locs: usize = runs.iter().map(|(_, r)| r.locs.len()).sum();
    let dedup_off = locs_off + (total_locs * LOC_LEN) as u64;
    let bloom_off = dedup_off + (dedup.len() * DEDUP_LEN) as u64;

    let mut runs_dir = Vec::with_capacity(runs.len() * RUN_LEN);
    let mut locs = Vec::with_capacity(total_locs * LOC_LEN);
    let mut out_runs = Vec::with_capacity(runs.len());
    for (chat, run) in &runs {
        let at = locs_off + locs.len() as u64;
        runs_dir.extend_from_slice(chat.as_bytes());
        runs_dir.extend_from_slice(&run.first_seq.to_le_bytes());
        runs_dir.extend_from_slice(&(run.locs.len() as u32).to_le_bytes());
        runs_dir.extend_from_slice(&at.to_le_bytes());
        for l in &run.locs {
            locs.extend_from_slice(&l.off.to_le_bytes());
            locs.extend_from_slice(&l.len.to_le_bytes());
        }
        out_runs.push((**chat, SealedRun { first_seq: run.first_seq, count: run.locs.len() as u32, locs_off: at }));
    }
    let mut table = Vec::with_capacity(dedup.len() * DEDUP_LEN);
    let mut fanout = vec![0u32; 257];
    let mut bucket_crc = vec![0u32; 256];
    let mut hashers: Vec<crc32fast::Hasher> = (0..256).map(|_| crc32fast::Hasher::new()).collect();
    for (fp, o) in &dedup {
        let start = table.len();
        table.extend_from_slice(&fp.to_le_bytes());
        table.extend_from_slice(&o.seq.to_le_bytes());
        table.extend_from_slice(&o.ts_ms.to_le_bytes());
        table.extend_from_slice(o.message_id.as_bytes());
        let b = bucket(**fp);
        fanout[b + 1] += 1;
        hashers[b].update(&table[start..]);
    }
    for i in 1..257 {
        fanout[i] += fanout[i - 1];
    }
    for (i, h) in hashers.into_iter().enumerate() {
        bucket_crc[i] = h.finalize();
    }
    let bloom_bytes: Vec<u8> = bloom.words().iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut body_crc = crc32fast::Hasher::new();
    body_crc.update(&runs_dir);
    body_crc.update(&bloom_bytes);

    let mut header = Vec::with_capacity(HEADER_LEN);
    for v in [segment, idx.records, idx.min_ts, idx.max_ts, runs.len() as u64, dedup.len() as u64] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&(bloom.words().len() as u64).to_le_bytes());
    for f in &fanout {
        header.extend_from_slice(&f.to_le_bytes());
    }
    for c in &bucket_crc {
        header.extend_from_slice(&c.to_le_bytes());
    }
    header.extend_from_slice(&body_crc.finalize().to_le_bytes());
    let mut head = Vec::with_capacity(FIXED_HEAD);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
    head.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());

    let tmp = path.with_extension("idx.tmp");
    {
        let f = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, f);
        for part in [&head, &header, &runs_dir, &locs, &table, &bloom_bytes] {
            w.write_all(part).map_err(|e| StorageError::io(&tmp, e))?;
        }
        let f = w.into_inner().map_err(|e| StorageError::io(&tmp, e.into_error()))?;
        f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    }
    debug_assert_eq!(
        bloom_off + bloom_bytes.len() as u64,
        runs_off + (runs_dir.len() + locs.len() + table.len() + bloom_bytes.len()) as u64
    );
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let sealed = SealedIndex {
        path: path.to_path_buf(),
        file,
        records: idx.records,
        min_ts: idx.min_ts,
        max_ts: idx.max_ts,
        bloom: RwLock::new(Some(bloom)),
        fanout,
        bucket_crc,
        dedup_off,
    };
    Ok((sealed, out_runs))
}

/// Opens an index file: checks it and returns its summary and runs.
pub fn read_sealed(path: &Path, segment: u64) -> Result<(SealedIndex, Vec<(ChatId, SealedRun)>), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut head = vec![0u8; FIXED_HEAD + HEADER_LEN];
    file.read_exact_at(&mut head, 0).map_err(|e| StorageError::io(path, e))?;
    if &head[..8] != MAGIC {
        return Err(corrupt(path, "not a raftchat segment index (bad magic)"));
    }
    let version = u32_at(&head, 8);
    if version != u32::from(FORMAT_VERSION) {
        return Err(corrupt(path, format!("unknown segment index version {version}")));
    }
    let header = &head[FIXED_HEAD..];
    if crc32fast::hash(header) != u32_at(&head, 12) {
        return Err(corrupt(path, "segment index header checksum mismatch"));
    }
    let field = |i: usize| u64_at(header, i * 8);
    if field(0) != segment {
        return Err(corrupt(path, format!("index of segment {} found where segment {segment} belongs", field(0))));
    }
    let (records, min_ts, max_ts, n_runs, n_dedup, bloom_words) =
        (field(1), field(2), field(3), field(4) as usize, field(5) as usize, field(6) as usize);
    let fanout: Vec<u32> = (0..257).map(|i| u32_at(header, 56 + i * 4)).collect();
    let bucket_crc: Vec<u32> = (0..256).map(|i| u32_at(header, 56 + 257 * 4 + i * 4)).collect();
    let body_crc = u32_at(header, 56 + 513 * 4);
    if fanout[256] as usize != n_dedup || n_runs > records as usize + 1 {
        return Err(corrupt(path, "segment index header is inconsistent"));
    }
    let runs_off = (FIXED_HEAD + HEADER_LEN) as u64;
    let mut runs_dir = vec![0u8; n_runs * RUN_LEN];
    file.read_exact_at(&mut runs_dir, runs_off).map_err(|e| StorageError::io(path, e))?;
    let total_locs: u64 = (0..n_runs).map(|i| u64::from(u32_at(&runs_dir, i * RUN_LEN + 24))).sum();
    let dedup_off = runs_off + runs_dir.len() as u64 + total_locs * LOC_LEN as u64;
    let bloom_off = dedup_off + (n_dedup * DEDUP_LEN) as u64;
    let mut bloom_bytes = vec![0u8; bloom_words * 8];
    file.read_exact_at(&mut bloom_bytes, bloom_off).map_err(|e| StorageError::io(path, e))?;
    let mut h = crc32fast::Hasher::new();
    h.update(&runs_dir);
    h.update(&bloom_bytes);
    if h.finalize() != body_crc {
        return Err(corrupt(path, "segment index runs or filter checksum mismatch"));
    }
    let words = bloom_bytes.chunks_exact(8).map(|c| u64_at(c, 0)).collect();
    let bloom = Bloom::from_words(words).ok_or_else(|| corrupt(path, "segment index filter has a bad size"))?;
    let runs = (0..n_runs)
        .map(|i| {
            let r = &runs_dir[i * RUN_LEN..(i + 1) * RUN_LEN];
            let mut chat = [0u8; 16];
            chat.copy_from_slice(&r[..16]);
            let run = SealedRun { first_seq: u64_at(r, 16), count: u32_at(r, 24), locs_off: u64_at(r, 28) };
            (ChatId::from_bytes(chat), run)
        })
        .collect();
    let sealed = SealedIndex {
        path: path.to_path_buf(),
        file,
        records,
        min_ts,
        max_ts,
        bloom: RwLock::new(Some(bloom)),
        fanout,
        bucket_crc,
        dedup_off,
    };
    Ok((sealed, runs))
}

impl SealedIndex {
    /// Locations of the run's records at positions `from..from + n` (clamped to the run).
    pub fn locs(&self, run: &SealedRun, from: u32, n: u32) -> Result<Vec<Loc>, StorageError> {
        let n = n.min(run.count.saturating_sub(from));
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n as usize * LOC_LEN];
        self.file
            .read_exact_at(&mut buf, run.locs_off + u64::from(from) * LOC_LEN as u64)
            .map_err(|e| StorageError::io(&self.path, e))?;
        Ok(buf.chunks_exact(LOC_LEN).map(|c| Loc { off: u32_at(c, 0), len: u32_at(c, 4) }).collect())
    }

    /// The original this segment holds for `fp`, if any.
    pub fn find(&self, fp: Fingerprint) -> Result<Option<Original>, StorageError> {
        if let Some(bloom) = self.bloom.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if !bloom.may_contain(fp) {
                return Ok(None);
            }
        }
        let b = bucket(fp);
        let (lo, hi) = (self.fanout[b] as u64, self.fanout[b + 1] as u64);
        if lo == hi {
            return Ok(None);
        }
        let mut buf = vec![0u8; ((hi - lo) as usize) * DEDUP_LEN];
        self.file
            .read_exact_at(&mut buf, self.dedup_off + lo * DEDUP_LEN as u64)
            .map_err(|e| StorageError::io(&self.path, e))?;
        if crc32fast::hash(&buf) != self.bucket_crc[b] {
            return Err(corrupt(&self.path, format!("dedup bucket {b} checksum mismatch")));
        }
        let entries: Vec<(Fingerprint, Original)> = buf.chunks_exact(DEDUP_LEN).map(dedup_entry).collect();
        let i = entries.partition_point(|(f, _)| *f < fp);
        // Equal fingerprints: the newest original is the one a window can still hold.
        Ok(entries[i..].iter().take_while(|(f, _)| *f == fp).map(|(_, o)| *o).max_by_key(|o| o.ts_ms))
    }

    /// Drops the in-memory filter of a segment no dedup window reaches any more (its records
    /// stay readable), so memory does not grow with the history.
    pub fn release_filter(&self) {
        self.bloom.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether the in-memory filter is still held.
    pub fn has_filter(&self) -> bool {
        self.bloom.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// The index file, for snapshots (a hard link keeps it when the store drops it).
    pub fn file_path(&self) -> &Path {
        &self.path
    }
}

/// A shared sealed index.
pub type Sealed = Arc<SealedIndex>;
