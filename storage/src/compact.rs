//! Offline compaction of a node's state database (`raftchat node --compact-state`).
//!
//! sled reuses the space of deleted data for new writes but rarely gives it back to the file
//! system. Compaction copies every tree into a fresh database next to the old one, fsyncs it,
//! and swaps the directories; like etcd's defrag, it runs while the node is not serving (at
//! start-up). Every step survives a crash:
//!
//! ```text
//! state.compact/  being built: removed at the next start unless `state/` is missing
//! state.old/      the previous database after the swap: removed at the next start
//! ```

use std::fs;
use std::path::Path;
use std::path::PathBuf;

use crate::error::StorageError;
use crate::identity::sync_dir;

/// Trees are copied in batches of this many pairs.
const COPY_BATCH: usize = 1000;

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "state".into());
    dir.with_file_name(format!("{name}.{suffix}"))
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// How long opening waits for the lock of a database that was just closed in this process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a sled database, waiting while its file lock is still held by a handle of this process
/// that was just dropped: sled's background flusher lets go of the lock a moment after the last
/// `Db` is dropped, so opening right after a compaction (or a test's reopen) can find it taken.
pub fn open_sled(config: &sled::Config) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Finishes or undoes a compaction that a crash interrupted. Call before opening `dir`.
pub fn recover(dir: &Path) -> Result<(), StorageError> {
    let (tmp, old) = (sibling(dir, "compact"), sibling(dir, "old"));
    if tmp.exists() && !dir.exists() && old.exists() {
        // Crashed between the two renames: the new database is complete.
        fs::rename(&tmp, dir).map_err(|e| StorageError::io(&tmp, e))?;
    }
    for leftover in [&tmp, &old] {
        if leftover.exists() {
            fs::remove_dir_all(leftover).map_err(|e| StorageError::io(leftover.as_path(), e))?;
        }
    }
    if let Some(parent) = dir.parent() {
        if parent.exists() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Rewrites the sled database in `dir` into a fresh one; returns its size before and after.
pub fn compact(dir: &Path) -> Result<(u64, u64), StorageError> {
    recover(dir)?;
    let before = dir_bytes(dir);
    let (tmp, old) = (sibling(dir, "compact"), sibling(dir, "old"));
    {
        let src = open_sled(&sled::Config::new().path(dir))?;
        let dst = open_sled(&sled::Config::new().path(&tmp))?;
        for name in src.tree_names() {
            let (from, to) = (src.open_tree(&name)?, dst.open_tree(&name)?);
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in from.iter() {
                let (k, v) = kv?;
                batch.insert(k, v);
                n += 1;
                if n == COPY_BATCH {
                    to.apply_batch(std::mem::take(&mut batch))?;
                    n = 0;
                }
            }
            to.apply_batch(batch)?;
        }
        dst.flush()?;
    }
    crate::chat_store::sync_tree_files(&tmp)?;
    fs::rename(dir, &old).map_err(|e| StorageError::io(dir, e))?;
    fs::rename(&tmp, dir).map_err(|e| StorageError::io(&tmp, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    fs::remove_dir_all(&old).map_err(|e| StorageError::io(&old, e))?;
    Ok((before, dir_bytes(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_every_tree_and_frees_deleted_space() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        {
            let db = sled::Config::new().path(&dir).open().unwrap();
            let t = db.open_tree("g1.1").unwrap();
            for i in 0u32..2000 {
                t.insert(i.to_be_bytes(), vec![7u8; 8192]).unwrap();
            }
            for i in 0u32..1990 {
                t.remove(i.to_be_bytes()).unwrap();
            }
            db.insert(b"default-key", b"v".to_vec()).unwrap();
            db.flush().unwrap();
        }
        let (before, after) = compact(&dir).unwrap();
        assert!(after * 4 < before, "{before} -> {after}");
        let db = open_sled(&sled::Config::new().path(&dir)).unwrap();
        let t = db.open_tree("g1.1").unwrap();
        assert_eq!(t.len(), 10);
        assert_eq!(t.get(1995u32.to_be_bytes()).unwrap().unwrap().len(), 8192);
        assert_eq!(db.get(b"default-key").unwrap().unwrap().as_ref(), b"v");
        assert!(!sibling(&dir, "old").exists() && !sibling(&dir, "compact").exists());
    }

    #[test]
    fn a_crash_between_the_renames_is_finished_at_the_next_start() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let (tmp, old) = (sibling(&dir, "compact"), sibling(&dir, "old"));
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("marker"), b"new").unwrap();
        fs::create_dir_all(&old).unwrap();
        recover(&dir).unwrap();
        assert_eq!(fs::read(dir.join("marker")).unwrap(), b"new");
        assert!(!old.exists() && !tmp.exists());
        // An unfinished build next to a live database is dropped.
        fs::create_dir_all(&tmp).unwrap();
        recover(&dir).unwrap();
        assert!(!tmp.exists() && dir.join("marker").exists());
    }
}
