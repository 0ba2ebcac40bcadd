//! Snapshots of one group: a small state file plus the message store's segment files.
//!
//! ```text
//! snapshots/g<group>/CURRENT         the name of the current snapshot directory
//! snapshots/g<group>/<name>/MANIFEST versioned Manifest: meta, store position, files and lengths
//! snapshots/g<group>/<name>/state    the mutable state (sled's keys; see below)
//! snapshots/g<group>/<name>/<id>.seg|.idx   segment files (hard links; the active prefix copied)
//!
//! state file: "RCSNAP\0\0" | format version u32 LE | meta len u32 LE | meta (versioned)
//!             records: key len u32 LE | value len u32 LE | key | value     (raw sled pairs)
//!             trailer: u32::MAX | record count u64 LE | crc32 of all record bytes u32 LE
//!
//! stream:     "RCSNAPS2" | manifest len u32 LE | manifest | each file of the manifest, in order
//! ```
//!
//! **Capture** ([`capture`]) runs between two applies: it writes the pending state to sled, copies
//! sled's keys of the group (chat heads, members, small records, applied state: the state
//! without the messages, small), and cuts the message store. **Build** ([`build`]) then writes
//! the state file and links the segment files, syncs sled, publishes the directory and lets
//! the store drop what retention trimmed. A snapshot costs the size of the mutable state and of
//! the active segment's prefix, not of the history.
//!
//! A snapshot is sent to a follower (and downloaded as a backup) as one stream ([`open_stream`]):
//! the receiving node writes it to a file, unpacks it into a new snapshot directory, checks
//! every record, publishes it and installs it ([`install_stream`]): a new sled generation and a
//! new store directory, made live by flipping the group's `current` pointer; a crash half-way
//! leaves the previous state intact.

mod reader;
mod records;
mod stream;

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
use serde::Deserialize;
use serde::Serialize;

pub use self::reader::StreamItem;
pub use self::reader::StreamReader;
pub(crate) use self::records::read_u32;
pub use self::records::RawRecord;
pub use self::records::RecordReader;
use self::records::RecordWriter;
pub use self::stream::Part;
pub use self::stream::SnapshotData;
use crate::chat_store::chat_of_key;
use crate::chat_store::dec;
use crate::chat_store::AppliedState;
use crate::chat_store::ChatHeader;
use crate::chat_store::ChatId;
use crate::chat_store::GroupState;
use crate::chat_store::PREFIX_CHAT;
use crate::codec;
use crate::error::StorageError;
use crate::identity::sync_dir;
use crate::messages::snapshot::install_files;
use crate::messages::snapshot::parse_name;
use crate::messages::snapshot::verify_segment;
use crate::messages::snapshot::StoreCut;
use crate::messages::StorePos;

pub type Meta = SnapshotMeta<u64, BasicNode>;

const MAGIC: &[u8; 8] = b"RCSNAP\0\0";
const STREAM_MAGIC: &[u8; 8] = b"RCSNAPS2";
const TRAILER_MARK: u32 = u32::MAX;
const FIELD_LEN_MAX: u32 = 64 * 1024 * 1024;
const MANIFEST_MAX: u32 = 64 * 1024 * 1024;
const INSTALL_BATCH: usize = 1000;
const STATE_FILE: &str = "state";
const MANIFEST_FILE: &str = "MANIFEST";
const CURRENT_FILE: &str = "CURRENT";

/// What a snapshot directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub meta: Meta,
    /// Where the message store stands at the snapshot (its checkpoint after an install).
    pub store: StorePos,
    /// Its files in stream order, the state file first, with their lengths.
    pub files: Vec<(String, u64)>,
}

/// The snapshot directory of one group.
#[derive(Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
}

impl SnapshotDir {
    /// Opens (creating) the group's snapshot directory; drops unfinished builds and installs.
    pub fn open(root: &Path, group: u32) -> Result<Self, StorageError> {
        let dir = root.join(format!("g{group}"));
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sd = SnapshotDir { dir };
        let current = sd.current_name()?;
        for ent in fs::read_dir(&sd.dir).map_err(io(&sd.dir))? {
            let path = ent.map_err(io(&sd.dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if name == CURRENT_FILE || Some(&name) == current.as_ref() {
                continue;
            }
            // Unfinished builds, installs and receives, and replaced snapshots.
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
        Ok(sd)
    }

    /// The group's snapshot directory as it is (nothing created or cleaned), for readers.
    pub fn open_existing(root: &Path, group: u32) -> Option<Self> {
        let dir = root.join(format!("g{group}"));
        dir.is_dir().then_some(SnapshotDir { dir })
    }

    fn current_name(&self) -> Result<Option<String>, StorageError> {
        let path = self.dir.join(CURRENT_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(&path, e)),
        }
    }

    /// The current snapshot's directory and manifest, if there is one.
    pub fn current(&self) -> Result<Option<(PathBuf, Manifest)>, StorageError> {
        let Some(name) = self.current_name()? else { return Ok(None) };
        let dir = self.dir.join(name);
        let manifest = read_manifest(&dir)?;
        Ok(Some((dir, manifest)))
    }

    /// Metadata of the current snapshot, if there is one.
    pub fn current_meta(&self) -> Result<Option<Meta>, StorageError> {
        Ok(self.current()?.map(|(_, m)| m.meta))
    }

    /// Bytes of the current snapshot's state file (its share that is rewritten per snapshot).
    pub fn current_state_bytes(&self) -> u64 {
        match self.current() {
            Ok(Some((_, m))) => m.files.first().map_or(0, |(_, len)| *len),
            _ => 0,
        }
    }

    /// A fresh temporary file to receive a snapshot stream into.
    pub fn receive_file(&self) -> Result<File, StorageError> {
        let path = self.dir.join(format!("recv-{}.tmp", uuid::Uuid::new_v4()));
        let f = fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io(&path))?;
        // Unlinked at once: the handle keeps it alive for as long as openraft holds it.
        let _ = fs::remove_file(&path);
        Ok(f)
    }

    fn tmp(&self, what: &str) -> Result<PathBuf, StorageError> {
        let path = self.dir.join(format!("{what}-{}.tmp", uuid::Uuid::new_v4()));
        fs::create_dir_all(&path).map_err(io(&path))?;
        Ok(path)
    }

    /// Makes the finished directory `tmp` the current snapshot and removes the one before.
    fn publish(&self, tmp: &Path, id: &str) -> Result<PathBuf, StorageError> {
        let name: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let name = format!("snap-{name}");
        let to = self.dir.join(&name);
        if to.exists() {
            fs::remove_dir_all(&to).map_err(io(&to))?;
        }
        sync_dir(tmp)?;
        fs::rename(tmp, &to).map_err(io(&to))?;
        let before = self.current_name()?;
        let cur_tmp = self.dir.join("CURRENT.tmp");
        let mut f = File::create(&cur_tmp).map_err(io(&cur_tmp))?;
        f.write_all(name.as_bytes()).map_err(io(&cur_tmp))?;
        f.sync_all().map_err(io(&cur_tmp))?;
        let cur = self.dir.join(CURRENT_FILE);
        fs::rename(&cur_tmp, &cur).map_err(io(&cur))?;
        sync_dir(&self.dir)?;
        if let Some(old) = before.filter(|o| *o != name) {
            let _ = fs::remove_dir_all(self.dir.join(old));
        }
        Ok(to)
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest, StorageError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(io(&path))?;
    codec::decode_versioned(&bytes).map_err(|e| StorageError::codec("snapshot manifest", e))
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), StorageError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = codec::encode_versioned(m).map_err(|e| StorageError::codec("snapshot manifest", e))?;
    let mut f = File::create(&path).map_err(io(&path))?;
    f.write_all(&bytes).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))
}

/// The consistent cut of a group's state taken between two applies.
pub struct Capture {
    state: GroupState,
    mutable: Vec<(sled::IVec, sled::IVec)>,
    /// Each chat's lowest kept seq (retention).
    floors: HashMap<ChatId, u64>,
    cut: StoreCut,
    pub applied: AppliedState,
}

/// Takes the cut. Call it while no apply runs.
pub fn capture(state: &GroupState) -> Result<Capture, StorageError> {
    state.flush_pending()?;
    let tree = state.flushed_tree();
    let applied = state.applied()?;
    let mut mutable = Vec::new();
    let mut floors = HashMap::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        if k.first() == Some(&PREFIX_CHAT) {
            if let Some(chat) = chat_of_key(&k) {
                let h: ChatHeader = dec("chat", &v)?;
                floors.insert(chat, h.first_seq);
            }
        }
        mutable.push((k, v));
    }
    let store = state.messages_store();
    let cut = store.cut(&|c| floors.get(c).copied().unwrap_or(u64::MAX))?;
    Ok(Capture { state: state.clone(), mutable, floors, cut, applied })
}

/// Writes the snapshot of `cap`, makes it the group's current snapshot and lets the message
/// store drop what retention trimmed. Blocking I/O.
pub fn build(cap: Capture, snapshot_id: String, dir: &SnapshotDir) -> Result<Meta, StorageError> {
    let meta = Meta {
        last_log_id: cap.applied.last_applied,
        last_membership: cap.applied.membership.clone(),
        snapshot_id: snapshot_id.clone(),
    };
    let tmp = dir.tmp("build")?;
    let state_path = tmp.join(STATE_FILE);
    let file = File::create(&state_path).map_err(io(&state_path))?;
    let mut w = RecordWriter::new(BufWriter::with_capacity(256 * 1024, file), &state_path);
    w.header(&meta)?;
    for (k, v) in &cap.mutable {
        w.record(k, v)?;
    }
    w.finish()?.sync_all().map_err(io(&state_path))?;
    let store = cap.state.messages_store();
    let names = cap.cut.materialize(&store, &tmp)?;
    let manifest = Manifest { meta: meta.clone(), store: cap.cut.pos, files: file_list(&tmp, names)? };
    write_manifest(&tmp, &manifest)?;
    // Make sled durable up to the capture too (its own flush is not an fsync), before the
    // snapshot is published and the log behind it purged: a restart after a crash then finds
    // the state at or past this snapshot and need not reinstall it.
    cap.state.sync_db()?;
    dir.publish(&tmp, &snapshot_id)?;
    let since = cap.applied.group_time_ms.saturating_sub(cap.applied.dedup_window_max_ms);
    let dropped = store.collect(&|c| cap.floors.get(c).copied().unwrap_or(u64::MAX), since)?;
    if dropped > 0 {
        tracing::debug!(group = cap.state.group(), dropped, "retention dropped message segments");
    }
    Ok(meta)
}

fn file_list(dir: &Path, names: Vec<String>) -> Result<Vec<(String, u64)>, StorageError> {
    std::iter::once(STATE_FILE.to_string())
        .chain(names)
        .map(|n| {
            let p = dir.join(&n);
            let len = fs::metadata(&p).map_err(io(&p))?.len();
            Ok((n, len))
        })
        .collect()
}

/// The current snapshot of a group as one stream (to a follower, or as a backup), with its
/// metadata and length; `None` without a snapshot. The files stay readable when a newer
/// snapshot replaces them.
pub fn open_stream(root: &Path, group: u32) -> Result<Option<(SnapshotData, Meta, u64)>, StorageError> {
    SnapshotDir { dir: root.join(format!("g{group}")) }.open_stream()
}

impl SnapshotDir {
    /// The current snapshot as one stream (see [`open_stream`]).
    pub fn open_stream(&self) -> Result<Option<(SnapshotData, Meta, u64)>, StorageError> {
        let Some((sub, manifest)) = self.current()? else { return Ok(None) };
        stream_of(&sub, manifest)
    }
}

fn stream_of(sub: &Path, manifest: Manifest) -> Result<Option<(SnapshotData, Meta, u64)>, StorageError> {
    let m = codec::encode_versioned(&manifest).map_err(|e| StorageError::codec("snapshot manifest", e))?;
    let mut head = Vec::with_capacity(12 + m.len());
    head.extend_from_slice(STREAM_MAGIC);
    head.extend_from_slice(&(m.len() as u32).to_le_bytes());
    head.extend_from_slice(&m);
    let mut parts = vec![Part::Mem(bytes::Bytes::from(head))];
    for (name, len) in &manifest.files {
        let path = sub.join(name);
        parts.push(Part::File(File::open(&path).map_err(io(&path))?, *len));
    }
    let data = SnapshotData::parts(parts);
    let len = data.len();
    Ok(Some((data, manifest.meta, len)))
}

/// Unpacks a received stream (from its start) into a new snapshot directory, checks every
/// record, publishes it and installs it into `state`.
pub fn install_stream(state: &GroupState, dir: &SnapshotDir, src: &mut File) -> Result<Meta, StorageError> {
    let src_path = dir.dir.join("received");
    src.seek(SeekFrom::Start(0)).map_err(io(&src_path))?;
    let mut r = BufReader::with_capacity(1024 * 1024, src);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(io(&src_path))?;
    if &magic != STREAM_MAGIC {
        return Err(corrupt(&src_path, "not a raftchat snapshot stream (bad magic)"));
    }
    let mlen = read_u32(&mut r, &src_path)?;
    if mlen > MANIFEST_MAX {
        return Err(corrupt(&src_path, "snapshot manifest too large"));
    }
    let mut m = vec![0u8; mlen as usize];
    r.read_exact(&mut m).map_err(io(&src_path))?;
    let manifest: Manifest = codec::decode_versioned(&m).map_err(|e| StorageError::codec("snapshot manifest", e))?;
    if manifest.files.first().map(|(n, _)| n.as_str()) != Some(STATE_FILE)
        || manifest.files.iter().skip(1).any(|(n, _)| parse_name(n).is_none())
    {
        return Err(corrupt(&src_path, "snapshot manifest names unexpected files"));
    }
    let tmp = dir.tmp("install")?;
    for (name, len) in &manifest.files {
        let path = tmp.join(name);
        let mut out = File::create(&path).map_err(io(&path))?;
        let copied = std::io::copy(&mut (&mut r).take(*len), &mut out).map_err(io(&src_path))?;
        if copied != *len {
            return Err(corrupt(&src_path, format!("{name}: stream cut short at {copied} of {len} bytes")));
        }
        out.sync_all().map_err(io(&path))?;
        if name.ends_with(".seg") {
            verify_segment(&path)?;
        }
    }
    // The state file must read to its trailer before anything is replaced.
    let state_path = tmp.join(STATE_FILE);
    let mut records =
        RecordReader::new(BufReader::new(File::open(&state_path).map_err(io(&state_path))?), &state_path)?;
    while records.next_record()?.is_some() {}
    if records.meta != manifest.meta {
        return Err(corrupt(&state_path, "state file and manifest disagree"));
    }
    write_manifest(&tmp, &manifest)?;
    let published = dir.publish(&tmp, &manifest.meta.snapshot_id)?;
    install_local(state, &published, &manifest)?;
    Ok(manifest.meta)
}

/// Installs the snapshot in directory `sub` into `state`: a new sled generation and a new store
/// directory, switched to together.
fn install_local(state: &GroupState, sub: &Path, manifest: &Manifest) -> Result<(), StorageError> {
    let (gen, tree, store_dir) = state.begin_generation()?;
    let state_path = sub.join(STATE_FILE);
    let mut r = RecordReader::new(
        BufReader::with_capacity(256 * 1024, File::open(&state_path).map_err(io(&state_path))?),
        &state_path,
    )?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    while let Some((k, v)) = r.next_record()? {
        batch.insert(k, v);
        in_batch += 1;
        if in_batch >= INSTALL_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    tree.apply_batch(batch)?;
    let names: Vec<String> = manifest.files.iter().skip(1).map(|(n, _)| n.clone()).collect();
    install_files(sub, &names, &store_dir, manifest.store)?;
    state.switch_generation(gen, tree, &store_dir, manifest.store)
}

/// Brings `state` up to the current snapshot when it is behind it (after a crash that lost
/// un-synced sled writes, or one between publishing a snapshot and switching to it).
pub fn restore_if_behind(state: &GroupState, dir: &SnapshotDir) -> Result<bool, StorageError> {
    let Some((sub, manifest)) = dir.current()? else { return Ok(false) };
    let applied = state.applied()?.last_applied;
    if manifest.meta.last_log_id <= applied {
        return Ok(false);
    }
    tracing::warn!(group = state.group(), ?applied, snapshot = ?manifest.meta.last_log_id, "state is behind its snapshot; reinstalling");
    install_local(state, &sub, &manifest)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
