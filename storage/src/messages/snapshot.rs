//! The message store's part of a group snapshot: which segment files a snapshot holds, and
//! how a store is set up again from them.
//!
//! A snapshot never copies what it can link: sealed segments and their index files are
//! immutable, so a snapshot directory holds hard links to them; only the active segment's
//! prefix up to the captured position is copied (the store goes on appending to it). Sealed
//! segments whose messages retention trimmed entirely contribute their index file only (their
//! idempotency keys may still be inside the dedup window).

use std::fs;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::gc::live_segments;
use super::idx_path;
use super::seg_path;
use super::MessageStore;
use super::StorePos;
use crate::error::StorageError;
use crate::records::ChatId;

/// The segment files of one snapshot, decided between two applies.
pub struct StoreCut {
    pub pos: StorePos,
    /// Segments before the active one: (id, keep its records).
    sealed: Vec<(u64, bool)>,
    /// The active segment's file and the length captured.
    active: Option<(u64, Arc<File>, u64)>,
}

impl MessageStore {
    /// The files a snapshot of the store as it is now consists of. Call it between applies.
    /// An active segment of at least a quarter of the segment size is sealed first, so that the
    /// snapshot links it rather than copying it.
    pub fn cut(&self, floor: &dyn Fn(&ChatId) -> u64) -> Result<StoreCut, StorageError> {
        if self.position().offset >= self.0.segment_bytes / 4 {
            self.rotate()?;
        }
        let inner = self.read_inner();
        let live = live_segments(&inner, floor);
        let active = inner.segments.get(&inner.active).and_then(|s| s.file.clone().map(|f| (inner.active, f, s.len)));
        let sealed = inner
            .segments
            .iter()
            .filter(|(id, _)| **id != inner.active)
            .map(|(id, s)| (*id, s.file.is_some() && live.contains(id)))
            .collect();
        let pos = StorePos { segment: inner.active, offset: active.as_ref().map_or(0, |a| a.2) };
        Ok(StoreCut { pos, sealed, active })
    }
}

impl StoreCut {
    /// Puts the cut's files into `dir`: hard links of sealed segments and index files, a copy of
    /// the active segment's captured prefix. Returns the file names, in segment order.
    pub fn materialize(&self, store: &MessageStore, dir: &Path) -> Result<Vec<String>, StorageError> {
        // Segments frozen before the cut must have their index files first.
        store.wait_sealed()?;
        let src = store.dir();
        let mut names = Vec::new();
        for (id, keep_records) in &self.sealed {
            let idx = idx_path(src, *id);
            if !idx.exists() {
                // Dropped by retention and past the dedup window since the cut: nothing left.
                continue;
            }
            if *keep_records {
                link(&seg_path(src, *id), &seg_path(dir, *id))?;
                names.push(file_name(*id, "seg"));
            }
            link(&idx, &idx_path(dir, *id))?;
            names.push(file_name(*id, "idx"));
        }
        if let Some((id, file, len)) = &self.active {
            let to = seg_path(dir, *id);
            copy_prefix(file, &seg_path(src, *id), &to, *len)?;
            names.push(file_name(*id, "seg"));
        }
        Ok(names)
    }
}

pub fn file_name(id: u64, ext: &str) -> String {
    format!("{id:016}.{ext}")
}

/// Whether `name` is a file of a message store, and its segment id.
pub fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg").or_else(|| name.strip_suffix(".idx"))?;
    (stem.len() == 16).then(|| stem.parse().ok()).flatten()
}

fn link(from: &Path, to: &Path) -> Result<(), StorageError> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        // Another file system: copy instead.
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            fs::copy(from, to).map_err(|e| StorageError::io(to, e))?;
            File::open(to).and_then(|f| f.sync_all()).map_err(|e| StorageError::io(to, e))
        }
        Err(e) => Err(StorageError::io(to, e)),
    }
}

/// Copies the first `len` bytes of `file` (named `path`) to a new, synced file `to`, with
/// positioned reads (the handle is shared; its cursor is nobody's).
fn copy_prefix(file: &File, path: &Path, to: &Path, len: u64) -> Result<(), StorageError> {
    let mut out = File::create(to).map_err(|e| StorageError::io(to, e))?;
    let mut buf = vec![0u8; (1024 * 1024).min(len as usize)];
    let mut at = 0u64;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        file.read_exact_at(&mut buf[..n], at).map_err(|e| StorageError::io(path, e))?;
        out.write_all(&buf[..n]).map_err(|e| StorageError::io(to, e))?;
        at += n as u64;
    }
    out.sync_all().map_err(|e| StorageError::io(to, e))
}

/// Sets up the store directory `to` from the segment files of a snapshot directory `from`:
/// sealed files are linked, the segment at `pos` (the one the store will append to) is copied.
pub fn install_files(from: &Path, names: &[String], to: &Path, pos: StorePos) -> Result<(), StorageError> {
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| StorageError::io(to, e))?;
    }
    fs::create_dir_all(to).map_err(|e| StorageError::io(to, e))?;
    for name in names {
        let Some(id) = parse_name(name) else {
            return Err(StorageError::Corrupt { path: from.join(name), reason: "not a segment file".into() });
        };
        let (src, dst) = (from.join(name), to.join(name));
        if id == pos.segment && name.ends_with(".seg") {
            let f = File::open(&src).map_err(|e| StorageError::io(&src, e))?;
            let len = f.metadata().map_err(|e| StorageError::io(&src, e))?.len();
            copy_prefix(&f, &src, &dst, len)?;
        } else {
            link(&src, &dst)?;
        }
    }
    crate::identity::sync_dir(to)
}

/// Checks every record of a segment file (a received snapshot's segments, before they are used).
pub fn verify_segment(path: &Path) -> Result<(), StorageError> {
    super::scan(path, None).map(|_| ())
}
