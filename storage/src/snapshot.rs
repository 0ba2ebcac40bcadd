//! Snapshot files of one group's state, built and installed as streams.
//!
//! ```text
//! "RCSNAP\0\0" | format version u32 LE | meta len u32 LE | meta (versioned SnapshotMeta)
//! records:  key len u32 LE | value len u32 LE | key | value      (raw sled pairs)
//! trailer:  u32::MAX | record count u64 LE | crc32 of all record bytes u32 LE
//! ```
//!
//! Building never holds a group in memory and never stops applies for long: [`capture`] copies
//! only the small mutable keys (chats, members, `K` entries, `A`) while the state machine is
//! between applies; the immutable messages and dedup keys are streamed afterwards, keeping those
//! whose seq is below the captured `next_seq` of their chat. That set is exactly the state at the
//! captured applied id, since messages and dedup keys are written once and never changed.
//!
//! Installing writes a new tree generation from the stream, checks count and CRC, and only then
//! flips the group's `current` pointer: a crash half-way leaves the previous state intact.

use std::collections::HashMap;
use std::fs;
use std::fs::File;
use std::io::BufReader;
use std::io::BufWriter;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use openraft::BasicNode;
use openraft::SnapshotMeta;

use crate::chat_store::chat_of_key;
use crate::chat_store::dec;
use crate::chat_store::AppliedState;
use crate::chat_store::ChatHeader;
use crate::chat_store::ChatId;
use crate::chat_store::GroupState;
use crate::chat_store::PREFIX_CHAT;
use crate::chat_store::PREFIX_DEDUP;
use crate::chat_store::PREFIX_MESSAGE;
use crate::codec;
use crate::codec::FORMAT_VERSION;
use crate::error::StorageError;
use crate::identity::sync_dir;

pub type Meta = SnapshotMeta<u64, BasicNode>;

// The capture and the build split a tree into key ranges around these two prefixes.
const _: () = assert!(PREFIX_DEDUP < PREFIX_MESSAGE);

const MAGIC: &[u8; 8] = b"RCSNAP\0\0";
const TRAILER_MARK: u32 = u32::MAX;
const FIELD_LEN_MAX: u32 = 64 * 1024 * 1024;
const INSTALL_BATCH: usize = 1000;

/// The snapshot directory of one group: `current.snap` plus temporary files.
#[derive(Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    pub fn open(root: &Path, group: u32) -> Result<Self, StorageError> {
        let dir = root.join(format!("g{group}"));
        fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        for ent in fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))? {
            let path = ent.map_err(|e| StorageError::io(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(SnapshotDir { dir })
    }

    pub fn current_path(&self) -> PathBuf {
        self.dir.join("current.snap")
    }

    /// Metadata of the current snapshot, if there is one.
    pub fn current_meta(&self) -> Result<Option<Meta>, StorageError> {
        let path = self.current_path();
        match File::open(&path) {
            Ok(f) => Ok(Some(read_header(&mut BufReader::new(f), &path)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(&path, e)),
        }
    }

    /// A fresh temporary file to receive a snapshot into.
    pub fn receive_file(&self) -> Result<File, StorageError> {
        let path = self.dir.join(format!("recv-{}.tmp", uuid::Uuid::new_v4()));
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        // Unlinked at once: the handle keeps it alive for as long as openraft holds it.
        let _ = fs::remove_file(&path);
        Ok(f)
    }

    fn publish(&self, tmp: &Path) -> Result<(), StorageError> {
        let cur = self.current_path();
        fs::rename(tmp, &cur).map_err(|e| StorageError::io(&cur, e))?;
        sync_dir(&self.dir)
    }

    fn tmp(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{what}-{}.tmp", uuid::Uuid::new_v4()))
    }
}

/// The consistent cut of a group's state taken between two applies.
pub struct Capture {
    tree: sled::Tree,
    state: GroupState,
    mutable: Vec<(sled::IVec, sled::IVec)>,
    next_seq: HashMap<ChatId, u64>,
    pub applied: AppliedState,
}

/// Copies the mutable part of the state. Call it while no apply runs.
pub fn capture(state: &GroupState) -> Result<Capture, StorageError> {
    // The build streams messages from the tree after the capture: they must be in it.
    state.flush_pending()?;
    let tree = state.flushed_tree();
    let applied = state.applied()?;
    let mut mutable = Vec::new();
    let mut next_seq = HashMap::new();
    // Only the mutable key ranges: the message and dedup ranges are most of a group and are
    // streamed later, outside the state machine.
    let mutable_ranges = tree
        .range(..[PREFIX_DEDUP].as_slice())
        .chain(tree.range([PREFIX_DEDUP + 1].as_slice()..[PREFIX_MESSAGE].as_slice()))
        .chain(tree.range([PREFIX_MESSAGE + 1].as_slice()..));
    for kv in mutable_ranges {
        let (k, v) = kv?;
        match k.first() {
            Some(&PREFIX_MESSAGE) | Some(&PREFIX_DEDUP) => continue,
            Some(&PREFIX_CHAT) => {
                if let Some(chat) = chat_of_key(&k) {
                    let h: ChatHeader = dec("chat", &v)?;
                    next_seq.insert(chat, h.next_seq);
                }
            }
            _ => {}
        }
        mutable.push((k, v));
    }
    Ok(Capture { tree, state: state.clone(), mutable, next_seq, applied })
}

/// Writes the snapshot of `cap` and makes it the group's current snapshot. Blocking I/O.
pub fn build(cap: Capture, snapshot_id: String, dir: &SnapshotDir) -> Result<Meta, StorageError> {
    let meta =
        Meta { last_log_id: cap.applied.last_applied, last_membership: cap.applied.membership.clone(), snapshot_id };
    let tmp = dir.tmp("build");
    let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    let mut w = RecordWriter::new(BufWriter::with_capacity(256 * 1024, file), &tmp);
    w.header(&meta)?;
    for (k, v) in &cap.mutable {
        w.record(k, v)?;
    }
    let immutable_ranges = cap
        .tree
        .range([PREFIX_DEDUP].as_slice()..[PREFIX_DEDUP + 1].as_slice())
        .chain(cap.tree.range([PREFIX_MESSAGE].as_slice()..[PREFIX_MESSAGE + 1].as_slice()));
    for kv in immutable_ranges {
        let (k, v) = kv?;
        let keep = match k.first() {
            Some(&PREFIX_MESSAGE) => {
                let seq = k.get(17..25).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0xff; 8])));
                matches!((chat_of_key(&k).and_then(|c| cap.next_seq.get(&c)), seq), (Some(n), Some(s)) if s < *n)
            }
            Some(&PREFIX_DEDUP) if crate::unsafe_knobs::on(crate::unsafe_knobs::Knob::DedupNotInSnapshot) => false,
            Some(&PREFIX_DEDUP) => {
                let seq: u64 = dec("dedup seq", &v)?;
                chat_of_key(&k).and_then(|c| cap.next_seq.get(&c)).is_some_and(|n| seq < *n)
            }
            _ => false,
        };
        if keep {
            w.record(&k, &v)?;
        }
    }
    let file = w.finish()?;
    file.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    // Make sled durable up to the capture too (its own flush is not an fsync), before the
    // snapshot is published and the log behind it purged: a restart after a crash then finds
    // the state at or past this snapshot and need not reinstall it.
    cap.state.sync_db()?;
    dir.publish(&tmp)?;
    Ok(meta)
}

/// Loads a snapshot stream into a new generation of `state`, then makes it live; with
/// `publish`, also stores the stream as the group's current snapshot. Blocking I/O.
pub fn install(state: &GroupState, dir: &SnapshotDir, src: &mut File, publish: bool) -> Result<Meta, StorageError> {
    let src_path = dir.current_path();
    src.seek(SeekFrom::Start(0)).map_err(|e| StorageError::io(&src_path, e))?;
    let tmp = dir.tmp("install");
    let mut copy = if publish {
        Some(RecordWriter::new(
            BufWriter::with_capacity(256 * 1024, File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?),
            &tmp,
        ))
    } else {
        None
    };
    let mut r = RecordReader::new(BufReader::with_capacity(256 * 1024, src), &src_path)?;
    let meta = r.meta.clone();
    if let Some(c) = copy.as_mut() {
        c.header(&meta)?;
    }
    let (gen, tree) = state.begin_generation()?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    while let Some((k, v)) = r.next_record()? {
        if let Some(c) = copy.as_mut() {
            c.record(&k, &v)?;
        }
        batch.insert(k, v);
        in_batch += 1;
        if in_batch >= INSTALL_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    tree.apply_batch(batch)?;
    if let Some(c) = copy {
        let f = c.finish()?;
        f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    }
    state.switch_generation(gen, tree)?;
    if publish {
        dir.publish(&tmp)?;
    }
    Ok(meta)
}

/// Brings `state` up to the current snapshot when it is behind it (after a crash that lost
/// un-synced sled writes, or one between publishing a snapshot and switching to it).
pub fn restore_if_behind(state: &GroupState, dir: &SnapshotDir) -> Result<bool, StorageError> {
    let Some(meta) = dir.current_meta()? else { return Ok(false) };
    let applied = state.applied()?.last_applied;
    if meta.last_log_id <= applied {
        return Ok(false);
    }
    tracing::warn!(group = state.group(), ?applied, snapshot = ?meta.last_log_id, "state is behind its snapshot; reinstalling");
    let path = dir.current_path();
    let mut f = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
    install(state, dir, &mut f, false)?;
    Ok(true)
}

/// Opens a group's current snapshot file under `root` (the node's `snapshots/` directory) with
/// its metadata, positioned at the start. The handle stays valid when a newer snapshot replaces
/// the file. Unlike [`SnapshotDir::open`], this touches nothing in the directory.
pub fn open_current(root: &Path, group: u32) -> Result<Option<(File, Meta)>, StorageError> {
    let path = root.join(format!("g{group}")).join("current.snap");
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let meta = read_header(&mut BufReader::new(&mut f), &path)?;
    f.seek(SeekFrom::Start(0)).map_err(|e| StorageError::io(&path, e))?;
    Ok(Some((f, meta)))
}

/// One raw (key, value) pair of a snapshot stream.
pub type RawRecord = (Vec<u8>, Vec<u8>);

/// Reads a snapshot stream record by record; the trailer's count and CRC are checked when the
/// last record has been read, so a caller must read to the end before trusting the records.
pub struct RecordReader<R: Read> {
    r: R,
    path: PathBuf,
    hasher: crc32fast::Hasher,
    count: u64,
    done: bool,
    pub meta: Meta,
}

impl<R: Read> RecordReader<R> {
    /// Reads and checks the header. `path` only names the source in errors.
    pub fn new(mut r: R, path: &Path) -> Result<Self, StorageError> {
        let meta = read_header(&mut r, path)?;
        Ok(RecordReader { r, path: path.to_path_buf(), hasher: crc32fast::Hasher::new(), count: 0, done: false, meta })
    }

    /// The next (key, value), or `None` after a trailer that matched everything read.
    pub fn next_record(&mut self) -> Result<Option<RawRecord>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let path = &self.path;
        let corrupt = |reason: String| StorageError::Corrupt { path: path.clone(), reason };
        let klen = read_u32(&mut self.r, path)?;
        if klen == TRAILER_MARK {
            let n = read_u64(&mut self.r, path)?;
            let crc = read_u32(&mut self.r, path)?;
            if n != self.count || crc != self.hasher.clone().finalize() {
                return Err(corrupt(format!("snapshot trailer mismatch: {n} records, read {}", self.count)));
            }
            self.done = true;
            return Ok(None);
        }
        let vlen = read_u32(&mut self.r, path)?;
        if klen > FIELD_LEN_MAX || vlen > FIELD_LEN_MAX {
            return Err(corrupt(format!("snapshot record too large ({klen}, {vlen})")));
        }
        let mut k = vec![0u8; klen as usize];
        let mut v = vec![0u8; vlen as usize];
        self.r.read_exact(&mut k).map_err(|e| StorageError::io(path, e))?;
        self.r.read_exact(&mut v).map_err(|e| StorageError::io(path, e))?;
        hash_record(&mut self.hasher, &k, &v);
        self.count += 1;
        Ok(Some((k, v)))
    }
}

fn hash_record(h: &mut crc32fast::Hasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u32).to_le_bytes());
    h.update(&(v.len() as u32).to_le_bytes());
    h.update(k);
    h.update(v);
}

struct RecordWriter<'p> {
    w: BufWriter<File>,
    path: &'p Path,
    hasher: crc32fast::Hasher,
    count: u64,
}

impl<'p> RecordWriter<'p> {
    fn new(w: BufWriter<File>, path: &'p Path) -> Self {
        RecordWriter { w, path, hasher: crc32fast::Hasher::new(), count: 0 }
    }

    fn put(&mut self, b: &[u8]) -> Result<(), StorageError> {
        self.w.write_all(b).map_err(|e| StorageError::io(self.path, e))
    }

    fn header(&mut self, meta: &Meta) -> Result<(), StorageError> {
        let m = codec::encode_versioned(meta).map_err(|e| StorageError::codec("snapshot meta", e))?;
        self.put(MAGIC)?;
        self.put(&u32::from(FORMAT_VERSION).to_le_bytes())?;
        self.put(&(m.len() as u32).to_le_bytes())?;
        self.put(&m)
    }

    fn record(&mut self, k: &[u8], v: &[u8]) -> Result<(), StorageError> {
        hash_record(&mut self.hasher, k, v);
        self.count += 1;
        self.put(&(k.len() as u32).to_le_bytes())?;
        self.put(&(v.len() as u32).to_le_bytes())?;
        self.put(k)?;
        self.put(v)
    }

    fn finish(mut self) -> Result<File, StorageError> {
        self.put(&TRAILER_MARK.to_le_bytes())?;
        self.put(&self.count.to_le_bytes())?;
        let crc = self.hasher.clone().finalize();
        self.put(&crc.to_le_bytes())?;
        self.w.into_inner().map_err(|e| StorageError::io(self.path, e.into_error()))
    }
}

fn read_u32(r: &mut impl Read, path: &Path) -> Result<u32, StorageError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|e| StorageError::io(path, e))?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read, path: &Path) -> Result<u64, StorageError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(|e| StorageError::io(path, e))?;
    Ok(u64::from_le_bytes(b))
}

fn read_header(r: &mut impl Read, path: &Path) -> Result<Meta, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { path: path.to_path_buf(), reason };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| StorageError::io(path, e))?;
    if &magic != MAGIC {
        return Err(corrupt("not a raftchat snapshot (bad magic)".into()));
    }
    let version = read_u32(r, path)?;
    if version != u32::from(FORMAT_VERSION) {
        return Err(corrupt(format!("unknown snapshot format version {version}")));
    }
    let len = read_u32(r, path)?;
    if len > FIELD_LEN_MAX {
        return Err(corrupt("snapshot meta too large".into()));
    }
    let mut m = vec![0u8; len as usize];
    r.read_exact(&mut m).map_err(|e| StorageError::io(path, e))?;
    codec::decode_versioned(&m).map_err(|e| StorageError::codec("snapshot meta", e))
}

#[cfg(test)]
mod tests;
