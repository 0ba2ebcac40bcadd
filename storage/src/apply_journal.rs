//! How one apply call's writes reach sled, atomically, without a sled batch per call.
//!
//! sled 0.34's `Tree::apply_batch` rolls its I/O buffer on every call (`PageCache::pin_log`),
//! so every batch costs a log write by sled's I/O threads. With 64 groups each Raft entry is
//! its own apply call and that was the largest single cost of a node (docs/BENCHMARKS.md).
//!
//! An apply instead writes its whole write set as one value under its group's key in the
//! `journal` tree, then writes the keys one by one. sled recovers a prefix of its log in LSN
//! order (recovery stops at the first torn message or missing segment), and one group's writes
//! come from one thread in program order. So after a crash a group's tree holds every apply up
//! to the last journal record that survived, plus a part (maybe none, maybe all) of that
//! record's writes. Opening the group replays that record: its writes are final values, so
//! replaying them completes the apply, and is harmless when they had all landed. The state is
//! then exactly the state after some apply, with its last-applied id: a prefix of the log.
//!
//! Large write sets (big Raft batches, restore, retention) still go through `apply_batch`, after
//! the journal record is removed so that it can never be replayed over newer values.

use serde::Deserialize;
use serde::Serialize;

use crate::chat_store::dec;
use crate::chat_store::enc;
use crate::error::StorageError;

/// Write sets up to this many keys go through the journal. Above it one batch's log roll is
/// shared by many writes, and the journal would write every byte twice.
const JOURNAL_MAX_WRITES: usize = 64;
/// And up to this many bytes of keys and values.
const JOURNAL_MAX_BYTES: usize = 64 * 1024;

type Write = (Vec<u8>, Option<Vec<u8>>);

/// The writes of one apply call, in order; a key written twice keeps its last value.
#[derive(Debug, Default)]
pub struct WriteSet {
    writes: Vec<Write>,
    bytes: usize,
}

impl WriteSet {
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        let key = key.into();
        self.bytes += key.len() + value.len();
        self.writes.push((key, Some(value)));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += key.len();
        self.writes.push((key, None));
    }

    /// The writes, in order.
    pub(crate) fn into_writes(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.writes
    }
}

#[derive(Serialize)]
struct JournalRef<'a> {
    generation: u64,
    writes: &'a [Write],
}

#[derive(Deserialize)]
struct JournalRecord {
    generation: u64,
    writes: Vec<Write>,
}

fn journal_key(group: u32) -> [u8; 4] {
    group.to_be_bytes()
}

/// Writes `set` into `tree` (generation `generation` of `group`) so that a crash leaves either
/// all of it or a journal record that [`replay`] completes it from.
pub fn commit(
    journal: &sled::Tree,
    group: u32,
    generation: u64,
    tree: &sled::Tree,
    set: WriteSet,
) -> Result<(), StorageError> {
    if set.writes.len() <= JOURNAL_MAX_WRITES && set.bytes <= JOURNAL_MAX_BYTES {
        let record = enc("apply journal", &JournalRef { generation, writes: &set.writes })?;
        journal.insert(journal_key(group), record)?;
        write_each(tree, set.writes)?;
    } else {
        journal.remove(journal_key(group))?;
        let mut batch = sled::Batch::default();
        for (key, value) in set.writes {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        tree.apply_batch(batch)?;
    }
    Ok(())
}

/// Completes the last journalled apply of `group` if it belongs to `generation` (a snapshot
/// install starts a new generation, whose tree owes nothing to an older record). Returns how
/// many writes were replayed.
pub fn replay(journal: &sled::Tree, group: u32, generation: u64, tree: &sled::Tree) -> Result<usize, StorageError> {
    let Some(bytes) = journal.get(journal_key(group))? else {
        return Ok(0);
    };
    let record: JournalRecord = dec("apply journal", &bytes)?;
    if record.generation != generation {
        journal.remove(journal_key(group))?;
        return Ok(0);
    }
    let n = record.writes.len();
    write_each(tree, record.writes)?;
    Ok(n)
}

fn write_each(tree: &sled::Tree, writes: Vec<Write>) -> Result<(), StorageError> {
    for (key, value) in writes {
        match value {
            Some(v) => tree.insert(key, v)?,
            None => tree.remove(key)?,
        };
    }
    Ok(())
}

/// Forgets `group`'s journal record (the group left this node).
pub fn forget(journal: &sled::Tree, group: u32) -> Result<(), StorageError> {
    journal.remove(journal_key(group))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    fn get(tree: &sled::Tree, k: &[u8]) -> Option<Vec<u8>> {
        tree.get(k).unwrap().map(|v| v.to_vec())
    }

    #[test]
    fn small_sets_are_journalled_and_written() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g1.1").unwrap());
        tree.insert(b"gone", b"x".to_vec()).unwrap();
        let mut set = WriteSet::default();
        set.insert(b"a".as_slice(), b"1".to_vec());
        set.insert(b"a".as_slice(), b"2".to_vec());
        set.remove(b"gone".as_slice());
        commit(&journal, 1, 1, &tree, set).unwrap();
        assert_eq!(get(&tree, b"a"), Some(b"2".to_vec()), "the last write of a key wins");
        assert_eq!(get(&tree, b"gone"), None);
        assert!(journal.get(1u32.to_be_bytes()).unwrap().is_some());
    }

    #[test]
    fn a_torn_apply_is_completed_by_replay() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g7.3").unwrap());
        tree.insert(b"old", b"x".to_vec()).unwrap();
        // A crash after the journal record and the first of three writes.
        let writes = vec![
            (b"m1".to_vec(), Some(b"hello".to_vec())),
            (b"old".to_vec(), None),
            (b"A".to_vec(), Some(b"applied 9".to_vec())),
        ];
        let record = enc("apply journal", &JournalRef { generation: 3, writes: &writes }).unwrap();
        journal.insert(7u32.to_be_bytes(), record).unwrap();
        tree.insert(b"m1", b"hello".to_vec()).unwrap();

        assert_eq!(replay(&journal, 7, 3, &tree).unwrap(), 3);
        assert_eq!(get(&tree, b"m1"), Some(b"hello".to_vec()));
        assert_eq!(get(&tree, b"old"), None);
        assert_eq!(get(&tree, b"A"), Some(b"applied 9".to_vec()));
        // Replaying again changes nothing.
        assert_eq!(replay(&journal, 7, 3, &tree).unwrap(), 3);
        assert_eq!(tree.len(), 2);
    }

    #[test]
    fn a_large_set_drops_the_record_so_it_never_replays_over_newer_values() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g2.1").unwrap());
        let mut small = WriteSet::default();
        small.insert(b"k".as_slice(), b"old".to_vec());
        commit(&journal, 2, 1, &tree, small).unwrap();
        let mut large = WriteSet::default();
        for i in 0..(JOURNAL_MAX_WRITES + 1) {
            large.insert(format!("n{i}").into_bytes(), vec![0; 8]);
        }
        large.insert(b"k".as_slice(), b"new".to_vec());
        commit(&journal, 2, 1, &tree, large).unwrap();
        assert!(journal.get(2u32.to_be_bytes()).unwrap().is_none());
        assert_eq!(replay(&journal, 2, 1, &tree).unwrap(), 0);
        assert_eq!(get(&tree, b"k"), Some(b"new".to_vec()));
    }

    #[test]
    fn a_record_of_another_generation_is_dropped_unreplayed() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g4.2").unwrap());
        let mut set = WriteSet::default();
        set.insert(b"k".as_slice(), b"v".to_vec());
        commit(&journal, 4, 1, &db.open_tree("g4.1").unwrap(), set).unwrap();
        assert_eq!(replay(&journal, 4, 2, &tree).unwrap(), 0);
        assert_eq!(get(&tree, b"k"), None);
        assert!(journal.get(4u32.to_be_bytes()).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g5.1").unwrap());
        journal.insert(5u32.to_be_bytes(), b"\xff\xffgarbage".to_vec()).unwrap();
        assert!(replay(&journal, 5, 1, &tree).is_err());
    }
}
