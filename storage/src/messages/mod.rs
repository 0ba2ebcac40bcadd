//! The message store of one group generation: append-only segment files written in apply.
//!
//! Messages (and their idempotency keys) live here rather than in sled: a message is one record
//! appended to the active segment, indexed in memory by (chat, seq) and by the fingerprint of
//! its idempotency key. Segments are sealed when they reach `segment_bytes`: the segment is
//! synced and an index file is written beside it ([`index`]), after which memory keeps only a
//! summary. History reads find a chat's runs in a per-chat directory, then the records.
//!
//! **Durability.** Nothing here is fsynced per apply: the Raft log is the durable copy. Each
//! apply call ends at a [`StorePos`], which the state machine stores in its applied state. The
//! applied state reaches sled only after [`MessageStore::sync`] made the segments durable up
//! to that position (see `crate::pending`), so whatever applied state sled holds after a
//! crash, the store holds at least as much; [`MessageStore::open`] cuts the store back to that
//! checkpoint (a torn tail, records applied after it) and openraft applies the log again from
//! there. A record that does not check *before* the checkpoint is corruption and refuses to
//! open, naming file and offset.
//!
//! **Idempotency** ([`MessageStore::find_original`]): the originals of the active segment are
//! in memory; a sealed segment has a Bloom filter in memory and its dedup table on disk. Only
//! segments whose newest message is inside the window are looked at, and of those only the
//! ones that hold the chat.
//!
//! **Retention** raises a chat's trim floor (its header's `first_seq`); a sealed segment all of
//! whose runs are below their floors loses its records ([`MessageStore::collect`]), and its
//! index file too once its newest message is older than the dedup window.
//!
//! One writer (the group's state machine) appends; readers are any thread.

pub mod dedup;
mod gc;
pub mod index;
mod read;
mod recent;
pub mod record;
pub mod snapshot;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs;
use std::fs::File;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use bytes::Bytes;
use serde::Deserialize;
use serde::Serialize;

use self::dedup::Fingerprint;
use self::dedup::Original;
use self::index::LiveIndex;
use self::index::Loc;
use self::index::Sealed;
use self::index::SealedRun;
use self::record::Scan;
use self::record::SEGMENT_HEADER_LEN;
use crate::error::StorageError;
use crate::identity::sync_dir;
use crate::message::MessageBytes;
use crate::records::ChatId;

/// Default size at which the active segment is sealed.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest segment size (record offsets are 32-bit).
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// How long an idempotency key answers with its original by default: a day.
pub const DEDUP_WINDOW_DEFAULT_MS: u64 = 24 * 60 * 60 * 1000;

/// A position in the store: everything of the segments before `segment`, and of `segment` up
/// to `offset`. `segment == 0` is the empty store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StorePos {
    pub segment: u64,
    pub offset: u64,
}

/// A message for the store, as apply hands it over.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat: ChatId,
    pub seq: u64,
    pub log_index: u64,
    pub body: MessageBytes,
    /// The fingerprint of its idempotency key (none without a clientMsgId).
    pub fp: Option<Fingerprint>,
    pub original: Original,
}

enum SegIndex {
    /// The active segment, or one waiting for its seal.
    Live(Arc<LiveIndex>),
    Sealed(Sealed),
}

struct Segment {
    /// Its records; `None` once retention removed them (its index file may stay for dedup).
    file: Option<Arc<File>>,
    /// Bytes of records (and header) written.
    len: u64,
    index: SegIndex,
}

/// One chat's run in one segment.
#[derive(Debug, Clone, Copy)]
struct RunRef {
    segment: u64,
    /// The run in the segment's index file, once sealed.
    sealed: Option<SealedRun>,
}

struct Inner {
    segments: BTreeMap<u64, Segment>,
    active: u64,
    /// Sealed segments before this one are not asked for originals (the
    /// `dedup_not_in_snapshot` negative control only).
    dedup_from: u64,
    /// Per chat, its runs in segment order.
    chats: HashMap<ChatId, Vec<RunRef>>,
    recent: recent::Recent,
}

/// One group generation's message store. Cheap to clone.
#[derive(Clone)]
pub struct MessageStore(Arc<Shared>);

struct Shared {
    dir: PathBuf,
    segment_bytes: u64,
    inner: RwLock<Inner>,
    /// Seals running in the background, oldest first.
    sealing: Mutex<Vec<std::thread::JoinHandle<Result<(), StorageError>>>>,
    /// The writer's encode buffer.
    buf: Mutex<Vec<u8>>,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

fn idx_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.idx"))
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
}

/// Segment ids found in `dir` with whether each has records and an index file.
fn list(dir: &Path) -> Result<BTreeMap<u64, (bool, bool)>, StorageError> {
    let mut found: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    for ent in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let path = ent.map_err(|e| StorageError::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(&path);
            continue;
        }
        let (stem, is_seg) = match (name.strip_suffix(".seg"), name.strip_suffix(".idx")) {
            (Some(s), _) => (s, true),
            (_, Some(s)) => (s, false),
            _ => continue,
        };
        let id: u64 = stem.parse().map_err(|_| corrupt(&path, "unexpected file name in a message store"))?;
        let e = found.entry(id).or_default();
        if is_seg {
            e.0 = true;
        } else {
            e.1 = true;
        }
    }
    Ok(found)
}

fn create_segment(dir: &Path, id: u64) -> Result<Arc<File>, StorageError> {
    let path = seg_path(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    file.write_all_at(&record::segment_header(), 0).map_err(|e| StorageError::io(&path, e))?;
    file.sync_all().map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(Arc::new(file))
}

/// Reads the records of a segment file up to `end` (all of it with `None`) into a live index.
/// Every record must check: the caller has cut the file back to a durable checkpoint first.
fn scan(path: &Path, end: Option<u64>) -> Result<(LiveIndex, u64), StorageError> {
    let data = Bytes::from(fs::read(path).map_err(|e| StorageError::io(path, e))?);
    record::check_segment_header(&data).map_err(|r| corrupt(path, r))?;
    let end = end.map_or(data.len(), |e| (e as usize).min(data.len()));
    let mut idx = LiveIndex::default();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    while pos < end {
        match record::decode(&data.slice(pos..end)) {
            Scan::Record(r, len) => {
                let v = r.body.view().map_err(|e| corrupt(path, format!("record at offset {pos}: {e}")))?;
                let fp = (!v.client_msg_id.is_empty()).then(|| dedup::fingerprint(&r.chat, &v.sender, v.client_msg_id));
                let original = Original { seq: r.seq, message_id: v.message_id, ts_ms: v.ts_ms };
                idx.put(r.chat, r.seq, Loc { off: pos as u32, len }, fp, original);
                pos += len as usize;
            }
            Scan::Short => return Err(corrupt(path, format!("record at offset {pos} is cut short before {end}"))),
            Scan::Bad(why) => return Err(corrupt(path, format!("{why} at offset {pos}"))),
        }
    }
    Ok((idx, pos as u64))
}

impl MessageStore {
    /// Opens the store in `dir` at `checkpoint` (see the module doc): records past it are cut
    /// off, segments before it are opened (and sealed, where a crash came first).
    pub fn open(dir: &Path, checkpoint: StorePos, segment_bytes: u64) -> Result<MessageStore, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let found = list(dir)?;
        let active = checkpoint.segment.max(1);
        let mut segments = BTreeMap::new();
        let mut chats: HashMap<ChatId, Vec<RunRef>> = HashMap::new();
        for (&id, &(has_seg, has_idx)) in &found {
            if id > active || (id == active && checkpoint.segment == 0) {
                // Written after the checkpoint: applied again from the log.
                let _ = fs::remove_file(seg_path(dir, id));
                let _ = fs::remove_file(idx_path(dir, id));
                continue;
            }
            if id == active {
                continue;
            }
            let seg = if has_idx {
                let (sealed, runs) = index::read_sealed(&idx_path(dir, id), id)?;
                let file = if has_seg { Some(open_ro(&seg_path(dir, id))?) } else { None };
                let len = file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
                add_sealed_runs(&mut chats, id, &runs);
                Segment { file, len, index: SegIndex::Sealed(Arc::new(sealed)) }
            } else if has_seg {
                // Frozen but not sealed when the node stopped: seal it now.
                let path = seg_path(dir, id);
                let (live, len) = scan(&path, None)?;
                open_ro(&path)?.sync_all().map_err(|e| StorageError::io(&path, e))?;
                let (sealed, runs) = index::write_sealed(&idx_path(dir, id), id, &live)?;
                sync_dir(dir)?;
                add_sealed_runs(&mut chats, id, &runs);
                Segment { file: Some(open_ro(&path)?), len, index: SegIndex::Sealed(Arc::new(sealed)) }
            } else {
                continue;
            };
            segments.insert(id, seg);
        }
        // The active segment, cut back to the checkpoint.
        let path = seg_path(dir, active);
        let want = checkpoint.offset.max(SEGMENT_HEADER_LEN);
        let (file, live, len) = match found.get(&active) {
            Some((true, _)) if checkpoint.segment != 0 => {
                let f =
                    OpenOptions::new().read(true).write(true).open(&path).map_err(|e| StorageError::io(&path, e))?;
                let have = f.metadata().map_err(|e| StorageError::io(&path, e))?.len();
                if have < want {
                    return Err(corrupt(
                        &path,
                        format!("segment holds {have} bytes but the checkpoint says {want} are durable"),
                    ));
                }
                if have > want {
                    tracing::debug!(path = %path.display(), have, want, "cutting the message segment back to its checkpoint");
                    f.set_len(want).map_err(|e| StorageError::io(&path, e))?;
                    f.sync_all().map_err(|e| StorageError::io(&path, e))?;
                }
                let _ = fs::remove_file(idx_path(dir, active));
                let (live, len) = scan(&path, Some(want))?;
                (Arc::new(f), live, len)
            }
            _ if checkpoint.offset > SEGMENT_HEADER_LEN => {
                return Err(corrupt(&path, "the checkpoint names records in a segment that is missing"));
            }
            _ => (create_segment(dir, active)?, LiveIndex::default(), SEGMENT_HEADER_LEN),
        };
        for chat in live.runs.keys() {
            chats.entry(*chat).or_default().push(RunRef { segment: active, sealed: None });
        }
        segments.insert(active, Segment { file: Some(file), len, index: SegIndex::Live(Arc::new(live)) });
        let inner = Inner { segments, active, dedup_from: 0, chats, recent: recent::Recent::default() };
        Ok(MessageStore(Arc::new(Shared {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.clamp(64 * 1024, SEGMENT_BYTES_MAX),
            inner: RwLock::new(inner),
            sealing: Mutex::new(Vec::new()),
            buf: Mutex::new(Vec::with_capacity(256 * 1024)),
        })))
    }

    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    fn read_inner(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.0.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.0.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The position after everything appended so far.
    pub fn position(&self) -> StorePos {
        let inner = self.read_inner();
        StorePos { segment: inner.active, offset: inner.segments.get(&inner.active).map_or(0, |s| s.len) }
    }

    /// Appends one apply call's messages (not synced) and returns the position after them.
    /// Readers see them once this returns.
    pub fn append(&self, batch: &[NewMessage]) -> Result<StorePos, StorageError> {
        if batch.is_empty() {
            return Ok(self.position());
        }
        let (active, file, at) = {
            let inner = self.read_inner();
            let seg = inner.segments.get(&inner.active);
            (inner.active, seg.and_then(|s| s.file.clone()), seg.map_or(0, |s| s.len))
        };
        let (active, file, at) = match file {
            Some(f) if at < self.0.segment_bytes => (active, f, at),
            _ => self.rotate()?,
        };
        let mut buf = self.0.buf.lock().unwrap_or_else(|p| p.into_inner());
        buf.clear();
        let mut locs = Vec::with_capacity(batch.len());
        for m in batch {
            let off = at + buf.len() as u64;
            let len = record::encode_message(&mut buf, m.log_index, &m.chat, m.seq, &m.body);
            let off = u32::try_from(off).map_err(|_| corrupt(&seg_path(&self.0.dir, active), "segment over 4 GiB"))?;
            locs.push(Loc { off, len });
        }
        file.write_all_at(&buf, at).map_err(|e| StorageError::io(seg_path(&self.0.dir, active), e))?;
        let end = at + buf.len() as u64;
        drop(buf);
        let mut inner = self.write_inner();
        let Inner { segments, chats, recent, .. } = &mut *inner;
        let seg = segments.get_mut(&active).ok_or_else(|| corrupt(&self.0.dir, "active segment vanished"))?;
        let SegIndex::Live(live) = &mut seg.index else {
            return Err(corrupt(&self.0.dir, "the active segment is sealed"));
        };
        let live = Arc::make_mut(live);
        for (m, loc) in batch.iter().zip(locs) {
            let runs = chats.entry(m.chat).or_default();
            if runs.last().is_none_or(|r| r.segment != active) {
                runs.push(RunRef { segment: active, sealed: None });
            }
            live.put(m.chat, m.seq, loc, m.fp, m.original);
            recent.put(m.chat, m.seq, m.body.clone());
        }
        seg.len = end;
        Ok(StorePos { segment: active, offset: end })
    }

    /// Freezes the active segment, starts the next one and seals the frozen one in the
    /// background. Returns the new active segment.
    fn rotate(&self) -> Result<(u64, Arc<File>, u64), StorageError> {
        let next = self.read_inner().active + 1;
        let file = create_segment(&self.0.dir, next)?;
        let frozen = {
            let mut inner = self.write_inner();
            let frozen = inner.active;
            inner.segments.insert(
                next,
                Segment {
                    file: Some(file.clone()),
                    len: SEGMENT_HEADER_LEN,
                    index: SegIndex::Live(Default::default()),
                },
            );
            inner.active = next;
            inner.segments.get(&frozen).and_then(|s| match &s.index {
                SegIndex::Live(l) => Some((frozen, l.clone(), s.file.clone())),
                SegIndex::Sealed(_) => None,
            })
        };
        if let Some((id, live, file)) = frozen {
            let store = self.clone();
            let thread = std::thread::Builder::new()
                .name(format!("seal-{id}"))
                .spawn(move || store.seal(id, &live, file))
                .map_err(|e| StorageError::io(&self.0.dir, e))?;
            self.0.sealing.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
        }
        Ok((next, file, SEGMENT_HEADER_LEN))
    }

    /// Makes a frozen segment durable and writes its index file; then memory keeps only the
    /// index's summary.
    fn seal(&self, id: u64, live: &LiveIndex, file: Option<Arc<File>>) -> Result<(), StorageError> {
        let dir = &self.0.dir;
        if let Some(f) = &file {
            f.sync_data().map_err(|e| StorageError::io(seg_path(dir, id), e))?;
        }
        let (sealed, runs) = index::write_sealed(&idx_path(dir, id), id, live)?;
        sync_dir(dir)?;
        let mut inner = self.write_inner();
        let Inner { segments, chats, .. } = &mut *inner;
        if let Some(seg) = segments.get_mut(&id) {
            seg.index = SegIndex::Sealed(Arc::new(sealed));
            for (chat, run) in &runs {
                if let Some(r) = chats.get_mut(chat).and_then(|v| v.iter_mut().rev().find(|r| r.segment == id)) {
                    r.sealed = Some(*run);
                }
            }
        }
        Ok(())
    }

    /// Waits for every seal in progress; the first error, if one failed.
    pub fn wait_sealed(&self) -> Result<(), StorageError> {
        let threads: Vec<_> = std::mem::take(&mut *self.0.sealing.lock().unwrap_or_else(|p| p.into_inner()));
        let mut result = Ok(());
        for t in threads {
            let r = t.join().unwrap_or_else(|_| Err(corrupt(&self.0.dir, "a segment seal panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Makes every appended record durable (fdatasync of the segments not sealed yet).
    pub fn sync(&self) -> Result<(), StorageError> {
        let files: Vec<(u64, Arc<File>)> = {
            let inner = self.read_inner();
            inner
                .segments
                .iter()
                .filter(|(_, s)| matches!(s.index, SegIndex::Live(_)))
                .filter_map(|(id, s)| s.file.clone().map(|f| (*id, f)))
                .collect()
        };
        for (id, f) in files {
            f.sync_data().map_err(|e| StorageError::io(seg_path(&self.0.dir, id), e))?;
        }
        Ok(())
    }

    /// Forgets every idempotency key the store holds so far: the `dedup_not_in_snapshot`
    /// negative control, which installs snapshots without them.
    pub fn forget_dedup(&self) {
        let mut inner = self.write_inner();
        inner.dedup_from = inner.active;
        for seg in inner.segments.values_mut() {
            if let SegIndex::Live(l) = &mut seg.index {
                Arc::make_mut(l).dedup.clear();
            }
        }
    }

    /// Bytes of this store's files.
    pub fn disk_bytes(&self) -> u64 {
        let Ok(entries) = fs::read_dir(&self.0.dir) else { return 0 };
        entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
    }
}

fn open_ro(path: &Path) -> Result<Arc<File>, StorageError> {
    Ok(Arc::new(File::open(path).map_err(|e| StorageError::io(path, e))?))
}

fn add_sealed_runs(chats: &mut HashMap<ChatId, Vec<RunRef>>, id: u64, runs: &[(ChatId, SealedRun)]) {
    for (chat, run) in runs {
        chats.entry(*chat).or_default().push(RunRef { segment: id, sealed: Some(*run) });
    }
}

#[cfg(test)]
mod tests;
