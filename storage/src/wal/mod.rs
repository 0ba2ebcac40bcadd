//! The node's write-ahead log for every Raft group it hosts (TiKV raft-engine style).
//!
//! - One append-only stream of segment files (`wal/<id>.wal`, 64 MiB by default) shared by all
//!   groups; an in-memory index maps (group, log index) to a location in a segment.
//! - Writes go to the page cache under one short lock (so entries are readable at once, as
//!   openraft requires), then the [`flusher`] thread makes them durable with one `fdatasync`
//!   for every request pending at that moment: group commit across groups.
//! - Each new segment begins with a checkpoint of every group's vote, committed and purged ids,
//!   so a segment can be deleted once no group has live entries in it. Purge frees disk: the
//!   few live entries of small groups (an idle group, the meta group) are copied forward into
//!   a new segment so they never hold old segments alive ([`gc`]).
//! - Replay on open checks every CRC ([`replay`]); a torn record at the very tail (a crash
//!   mid-write) is cut off; a bad record with intact records after it refuses to open with
//!   [`StorageError::Corrupt`] naming the file and offset, unless the operator asks for a repair.

pub mod flusher;
mod gc;
pub mod record;
mod replay;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

use flusher::Done;
use flusher::FlushRequest;
pub use flusher::FlushStats;
use record::Record;
use record::SEGMENT_HEADER_LEN;

use crate::error::StorageError;
use crate::identity::sync_dir;

pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Where one entry's bytes live.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u64,
    off: u64,
    len: u32,
}

/// What the log knows of one group.
#[derive(Debug, Default, Clone)]
struct GroupIndex {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    /// Log index of `entries[0]`.
    first: u64,
    entries: VecDeque<Loc>,
}

impl GroupIndex {
    fn next_index(&self) -> Option<u64> {
        if !self.entries.is_empty() {
            Some(self.first + self.entries.len() as u64)
        } else {
            self.purged.as_ref().map(|(p, _)| p + 1)
        }
    }

    fn truncate_from(&mut self, from: u64) {
        if from <= self.first {
            self.entries.clear();
        } else {
            self.entries.truncate((from - self.first) as usize);
        }
    }

    fn purge_upto(&mut self, upto: u64) {
        while !self.entries.is_empty() && self.first <= upto {
            self.entries.pop_front();
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.first = upto.saturating_add(1);
        }
    }

    /// Applies entries at `first_index` whose locations are `locs` (replay and live writes).
    fn put_entries(&mut self, first_index: u64, locs: impl Iterator<Item = Loc>) {
        if self.entries.is_empty() {
            self.first = first_index;
        } else {
            self.truncate_from(first_index);
            if self.entries.is_empty() {
                self.first = first_index;
            }
        }
        self.entries.extend(locs);
    }
}

/// A snapshot of one group's durable metadata and log bounds.
#[derive(Debug, Clone, Default)]
pub struct GroupLogState {
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    pub purged: Option<(u64, Vec<u8>)>,
    /// `(first index, last index)` of live entries, if any.
    pub bounds: Option<(u64, u64)>,
}

struct Segment {
    id: u64,
    file: Arc<File>,
    len: u64,
}

struct EngineState {
    active: Segment,
    /// Every segment still on disk, the active one included, for reads.
    segments: BTreeMap<u64, Arc<File>>,
    groups: HashMap<u32, GroupIndex>,
    buf: Vec<u8>,
}

/// The shared log engine of a node. Cheap to clone.
#[derive(Clone)]
pub struct LogEngine {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<EngineState>,
    /// Not bounded by a capacity: openraft 0.9 keeps at most one append per group in flight
    /// (plus its vote, truncate or purge), so the queue holds at most a few entries per group.
    flush_tx: Mutex<Option<mpsc::Sender<FlushRequest>>>,
    stats: Arc<FlushStats>,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.wal"))
}

impl LogEngine {
    /// Opens (or creates) the log in `dir`, replaying every segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, StorageError> {
        Self::open_with(dir, segment_bytes, false)
    }

    /// [`Self::open`]; with `repair`, a bad record in the last segment is cut off with what
    /// follows it (logged with the bytes dropped) instead of refusing to open
    /// (`raftchat node --repair-wal`).
    pub fn open_with(dir: &Path, segment_bytes: u64, repair: bool) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut ids = Vec::new();
        for ent in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let ent = ent.map_err(|e| StorageError::io(dir, e))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".wal") {
                let id = stem.parse::<u64>().map_err(|_| StorageError::Corrupt {
                    path: ent.path(),
                    reason: "unexpected file name in WAL directory".into(),
                })?;
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut groups: HashMap<u32, GroupIndex> = HashMap::new();
        let mut segments = BTreeMap::new();
        let mut active = None;
        for (i, &id) in ids.iter().enumerate() {
            let is_last = i + 1 == ids.len();
            let path = seg_path(dir, id);
            let len = replay::replay_segment(&path, id, is_last, repair, &mut groups)?;
            let file = Arc::new(
                OpenOptions::new().read(true).write(true).open(&path).map_err(|e| StorageError::io(&path, e))?,
            );
            segments.insert(id, file.clone());
            if is_last {
                active = Some(Segment { id, file, len });
            }
        }
        let active = match active {
            Some(a) => a,
            None => {
                let seg = create_segment(dir, 1)?;
                segments.insert(1, seg.file.clone());
                seg
            }
        };
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(FlushStats::default());
        flusher::spawn(rx, stats.clone()).map_err(|e| StorageError::io(dir, e))?;
        let state = EngineState { active, segments, groups, buf: Vec::with_capacity(64 * 1024) };
        Ok(LogEngine {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                segment_bytes,
                state: Mutex::new(state),
                flush_tx: Mutex::new(Some(tx)),
                stats,
            }),
        })
    }

    pub fn stats(&self) -> &FlushStats {
        &self.inner.stats
    }

    /// Groups that have any state in the log.
    pub fn groups(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.lock().groups.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn lock(&self) -> MutexGuard<'_, EngineState> {
        // A poisoned lock means a writer panicked mid-update; the index may be inconsistent with
        // the file, but the file itself is still valid, so continuing reads is the lesser harm.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn group_state(&self, group: u32) -> GroupLogState {
        let st = self.lock();
        match st.groups.get(&group) {
            None => GroupLogState::default(),
            Some(g) => GroupLogState {
                vote: g.vote.clone(),
                committed: g.committed.clone(),
                purged: g.purged.clone(),
                bounds: (!g.entries.is_empty()).then(|| (g.first, g.first + g.entries.len() as u64 - 1)),
            },
        }
    }

    /// Writes `entries` (encoded) starting at `first_index` for `group`; they are readable when
    /// this returns and `done` runs once they are durable.
    pub fn append(&self, group: u32, first_index: u64, entries: Vec<Vec<u8>>, done: Done) -> Result<(), StorageError> {
        let n = entries.len() as u64;
        let file = {
            let mut st = self.lock();
            // Overwriting a suffix is allowed (it implies truncation); a hole never is
            // (openraft #1795: gap-tolerant stores corrupt silently).
            if let Some(next) = st.groups.get(&group).and_then(GroupIndex::next_index) {
                if first_index > next {
                    return Err(StorageError::LogGap { group, expected: next, got: first_index });
                }
            }
            let rec = Record::Entries { group, first_index, entries };
            self.write_locked(&mut st, &rec)?
        };
        self.submit(file, n, done)
    }

    pub fn save_vote(&self, group: u32, vote: Vec<u8>) -> Result<DurableWait, StorageError> {
        self.write_meta(Record::Vote { group, vote })
    }

    /// Records the committed id without asking for an fsync: the next fsync of any write covers
    /// it, and a lost committed id is only re-learned from the leader.
    pub fn save_committed(&self, group: u32, committed: Vec<u8>) -> Result<(), StorageError> {
        let mut st = self.lock();
        self.write_locked(&mut st, &Record::Committed { group, committed }).map(|_| ())
    }

    pub fn truncate(&self, group: u32, from: u64) -> Result<DurableWait, StorageError> {
        self.write_meta(Record::Truncate { group, from })
    }

    pub fn purge(&self, group: u32, upto: u64, log_id: Vec<u8>) -> Result<DurableWait, StorageError> {
        let wait = self.write_meta(Record::Purged { group, upto, log_id })?;
        Ok(wait)
    }

    /// Forgets a group entirely (its replica moved away).
    pub fn drop_group(&self, group: u32) -> Result<DurableWait, StorageError> {
        self.write_meta(Record::DropGroup { group })
    }

    fn write_meta(&self, rec: Record) -> Result<DurableWait, StorageError> {
        let file = {
            let mut st = self.lock();
            self.write_locked(&mut st, &rec)?
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            file,
            0,
            Box::new(move |res| {
                let _ = tx.send(res);
            }),
        )?;
        Ok(DurableWait(rx))
    }

    fn submit(&self, file: Arc<File>, entries: u64, done: Done) -> Result<(), StorageError> {
        let guard = self.inner.flush_tx.lock().unwrap_or_else(|p| p.into_inner());
        let tx = guard.as_ref().ok_or(StorageError::Closed)?;
        tx.send(FlushRequest { file, entries, done }).map_err(|_| StorageError::Closed)
    }

    /// Frames `rec`, writes it at the end of the active segment and updates the index.
    fn write_locked(&self, st: &mut EngineState, rec: &Record) -> Result<Arc<File>, StorageError> {
        if st.active.len >= self.inner.segment_bytes {
            self.rotate_locked(st)?;
        }
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let offsets = rec.encode_into(&mut buf);
        let at = st.active.len;
        let res = st.active.file.write_all_at(&buf, at);
        let len = buf.len() as u64;
        st.buf = buf;
        res.map_err(|e| StorageError::io(seg_path(&self.inner.dir, st.active.id), e))?;
        st.active.len += len;
        let seg = st.active.id;
        apply_to_index(&mut st.groups, rec, offsets.iter().map(|&(off, len)| Loc { seg, off: at + off, len }));
        Ok(st.active.file.clone())
    }

    /// Starts a new segment that opens with a checkpoint of every group's metadata.
    fn rotate_locked(&self, st: &mut EngineState) -> Result<(), StorageError> {
        let dir = &self.inner.dir;
        st.active.file.sync_data().map_err(|e| StorageError::io(seg_path(dir, st.active.id), e))?;
        let mut seg = create_segment(dir, st.active.id + 1)?;
        let mut buf = Vec::new();
        let mut ids: Vec<u32> = st.groups.keys().copied().collect();
        ids.sort_unstable();
        for group in ids {
            let g = &st.groups[&group];
            if let Some(v) = &g.vote {
                Record::Vote { group, vote: v.clone() }.encode_into(&mut buf);
            }
            if let Some(c) = &g.committed {
                Record::Committed { group, committed: c.clone() }.encode_into(&mut buf);
            }
            if let Some((upto, id)) = &g.purged {
                Record::Purged { group, upto: *upto, log_id: id.clone() }.encode_into(&mut buf);
            }
        }
        let carried = self.carry_forward(st, &mut buf)?;
        let path = seg_path(dir, seg.id);
        seg.file.write_all_at(&buf, seg.len).map_err(|e| StorageError::io(&path, e))?;
        seg.file.sync_data().map_err(|e| StorageError::io(&path, e))?;
        for (rec, offsets) in &carried {
            let (id, base) = (seg.id, seg.len);
            apply_to_index(
                &mut st.groups,
                rec,
                offsets.iter().map(|&(off, len)| Loc { seg: id, off: base + off, len }),
            );
        }
        seg.len += buf.len() as u64;
        st.segments.insert(seg.id, seg.file.clone());
        st.active = seg;
        // Every record so far is durable now (both segments were synced): segments that only
        // carried copies hold can go.
        self.gc_locked(st);
        Ok(())
    }

    /// Reads entries `[start, end)` of `group`; stops at the first missing index.
    pub fn read(&self, group: u32, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let locs: Vec<(Loc, Arc<File>)> = {
            let st = self.lock();
            let Some(g) = st.groups.get(&group) else { return Ok(Vec::new()) };
            let from = start.max(g.first);
            let to = end.min(g.first + g.entries.len() as u64);
            let mut v = Vec::with_capacity(to.saturating_sub(from) as usize);
            for i in from..to {
                let loc = g.entries[(i - g.first) as usize];
                let file = st.segments.get(&loc.seg).cloned().ok_or_else(|| StorageError::Corrupt {
                    path: seg_path(&self.inner.dir, loc.seg),
                    reason: format!("segment of group {group} entry {i} is missing"),
                })?;
                v.push((loc, file));
            }
            v
        };
        let mut out = Vec::with_capacity(locs.len());
        for (loc, file) in locs {
            let mut buf = vec![0u8; loc.len as usize];
            file.read_exact_at(&mut buf, loc.off)
                .map_err(|e| StorageError::io(seg_path(&self.inner.dir, loc.seg), e))?;
            out.push(buf);
        }
        Ok(out)
    }

    /// Stops the fsync thread once pending requests are done.
    pub fn close(&self) {
        self.inner.flush_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Bytes on disk over all segments.
    /// Bytes of the log entries `group` holds (not yet purged).
    pub fn group_bytes(&self, group: u32) -> u64 {
        let st = self.lock();
        st.groups.get(&group).map_or(0, |g| g.entries.iter().map(|l| u64::from(l.len)).sum())
    }

    pub fn disk_bytes(&self) -> u64 {
        let st = self.lock();
        st.segments.values().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
    }
}

/// Resolves once a metadata record is durable.
pub struct DurableWait(tokio::sync::oneshot::Receiver<io::Result<()>>);

impl DurableWait {
    pub async fn wait(self) -> io::Result<()> {
        match self.0.await {
            Ok(res) => res,
            Err(_) => Err(io::Error::other("WAL fsync thread stopped")),
        }
    }
}

fn apply_to_index(groups: &mut HashMap<u32, GroupIndex>, rec: &Record, locs: impl Iterator<Item = Loc>) {
    if let Record::DropGroup { group } = rec {
        groups.remove(group);
        return;
    }
    let g = groups.entry(rec.group()).or_default();
    match rec {
        Record::Entries { first_index, .. } => g.put_entries(*first_index, locs),
        Record::Vote { vote, .. } => g.vote = Some(vote.clone()),
        Record::Committed { committed, .. } => g.committed = Some(committed.clone()),
        Record::Purged { upto, log_id, .. } => {
            g.purge_upto(*upto);
            g.purged = Some((*upto, log_id.clone()));
        }
        Record::Truncate { from, .. } => g.truncate_from(*from),
        Record::DropGroup { .. } => {}
    }
}

fn create_segment(dir: &Path, id: u64) -> Result<Segment, StorageError> {
    let path = seg_path(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    file.write_all_at(&record::segment_header(), 0).map_err(|e| StorageError::io(&path, e))?;
    file.sync_all().map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(Segment { id, file: Arc::new(file), len: SEGMENT_HEADER_LEN })
}

#[cfg(test)]
mod tests;
