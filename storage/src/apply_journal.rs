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
//! Large write sets (the write-back flushes of `pending`, restore, retention) are journalled the
//! same way, in parts of at most [`JOURNAL_MAX_BYTES`] (one sled batch writes all parts, so they
//! land together or not at all), and then written key by key in key order, and the parts are
//! removed. Writing them in key order costs a quarter to a third less than one `apply_batch`,
//! which visits its keys in hash order (docs/BENCHMARKS.md, `bench_sled`). A crash while the
//! parts are removed leaves an incomplete set of parts, whose writes had all landed: replay
//! drops it.

use serde::Deserialize;
use serde::Serialize;

use crate::chat_store::dec;
use crate::chat_store::enc;
use crate::error::StorageError;

/// Write sets up to this many keys are journalled in one record.
const JOURNAL_MAX_WRITES: usize = 64;
/// And up to this many bytes of keys and values; larger sets are journalled in parts of about
/// this size (under sled's blob threshold, so each part is an ordinary log record).
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

/// One part of a large write set's journal.
#[derive(Serialize)]
struct PartRef<'a> {
    generation: u64,
    part: u64,
    parts: u64,
    writes: &'a [Write],
}

#[derive(Deserialize)]
struct PartRecord {
    generation: u64,
    part: u64,
    parts: u64,
    writes: Vec<Write>,
}

fn journal_key(group: u32) -> [u8; 4] {
    group.to_be_bytes()
}

const PART_KEY_LEN: usize = 12;

fn part_key(group: u32, part: u64) -> [u8; PART_KEY_LEN] {
    let mut k = [0u8; PART_KEY_LEN];
    k[..4].copy_from_slice(&group.to_be_bytes());
    k[4..].copy_from_slice(&part.to_be_bytes());
    k
}

/// Bytes `write` takes in a journal part, about: key, value and their encoded lengths.
fn part_bytes((key, value): &Write) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + 16
}

/// The ends of consecutive runs of `writes` of at most about `max_bytes` each.
fn part_ends(writes: &[Write], max_bytes: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut bytes = 0;
    for (i, write) in writes.iter().enumerate() {
        let len = part_bytes(write);
        if bytes > 0 && bytes + len > max_bytes {
            ends.push(i);
            bytes = 0;
        }
        bytes += len;
    }
    ends.push(writes.len());
    ends
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
    let in_parts = set.writes.len() > JOURNAL_MAX_WRITES || set.bytes > JOURNAL_MAX_BYTES;
    if in_parts {
        journal_parts(journal, group, generation, &set.writes, JOURNAL_MAX_BYTES)?;
    } else {
        let record = enc("apply journal", &JournalRef { generation, writes: &set.writes })?;
        journal.insert(journal_key(group), record)?;
    }
    write_each(tree, set.writes)?;
    if in_parts {
        forget_parts(journal, group)?;
    }
    Ok(())
}

/// Journals `writes` in parts of about `max_bytes`, in one batch that also drops the single
/// record (older, and already written).
fn journal_parts(
    journal: &sled::Tree,
    group: u32,
    generation: u64,
    writes: &[Write],
    max_bytes: usize,
) -> Result<(), StorageError> {
    let ends = part_ends(writes, max_bytes);
    let parts = ends.len() as u64;
    let mut batch = sled::Batch::default();
    batch.remove(journal_key(group).as_slice());
    let mut start = 0;
    for (part, end) in (0..parts).zip(ends) {
        let run = writes.get(start..end).unwrap_or_default();
        let record = enc("apply journal part", &PartRef { generation, part, parts, writes: run })?;
        batch.insert(part_key(group, part).as_slice(), record);
        start = end;
    }
    journal.apply_batch(batch)?;
    Ok(())
}

/// Removes `group`'s journal parts.
fn forget_parts(journal: &sled::Tree, group: u32) -> Result<(), StorageError> {
    for key in journal.scan_prefix(journal_key(group)).keys() {
        let key = key?;
        if key.len() == PART_KEY_LEN {
            journal.remove(key)?;
        }
    }
    Ok(())
}

/// Completes a large write set of `group` from its journal parts, when all of them are there
/// and belong to `generation`, and removes the parts. Returns how many writes were replayed.
fn replay_parts(journal: &sled::Tree, group: u32, generation: u64, tree: &sled::Tree) -> Result<usize, StorageError> {
    let mut parts = Vec::new();
    for kv in journal.scan_prefix(journal_key(group)) {
        let (key, value) = kv?;
        if key.len() == PART_KEY_LEN {
            parts.push(dec::<PartRecord>("apply journal part", &value)?);
        }
    }
    if parts.is_empty() {
        return Ok(0);
    }
    // Parts come in key order, which is part order.
    let whole = parts
        .iter()
        .enumerate()
        .all(|(i, p)| p.part == i as u64 && p.parts == parts.len() as u64 && p.generation == generation);
    let mut n = 0;
    if whole {
        for p in parts {
            n += p.writes.len();
            write_each(tree, p.writes)?;
        }
    }
    forget_parts(journal, group)?;
    Ok(n)
}

/// Completes the last journalled apply of `group` if it belongs to `generation` (a snapshot
/// install starts a new generation, whose tree owes nothing to an older record). Returns how
/// many writes were replayed.
pub fn replay(journal: &sled::Tree, group: u32, generation: u64, tree: &sled::Tree) -> Result<usize, StorageError> {
    // Parts and a single record never coexist: a large commit removes the record in the batch
    // that writes its parts, and removes its parts before it returns.
    let from_parts = replay_parts(journal, group, generation, tree)?;
    let Some(bytes) = journal.get(journal_key(group))? else {
        return Ok(from_parts);
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

/// Forgets `group`'s journal record and parts (the group left this node).
pub fn forget(journal: &sled::Tree, group: u32) -> Result<(), StorageError> {
    journal.remove(journal_key(group))?;
    forget_parts(journal, group)
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

    fn numbered(n: usize) -> Vec<Write> {
        (0..n).map(|i| (format!("k{i:05}").into_bytes(), Some(vec![i as u8; 100]))).collect()
    }

    #[test]
    fn parts_split_by_bytes_and_cover_every_write() {
        let writes = numbered(100);
        let ends = part_ends(&writes, 1000);
        assert_eq!(ends.last(), Some(&100));
        assert!(ends.len() >= 10, "{} parts", ends.len());
        let mut start = 0;
        for end in ends {
            assert!(end > start, "no empty part");
            let bytes: usize = writes[start..end].iter().map(part_bytes).sum();
            assert!(bytes <= 1000, "part of {bytes} bytes");
            start = end;
        }
        assert_eq!(part_ends(&[], 1000), vec![0]);
    }

    #[test]
    fn a_torn_large_set_is_completed_from_its_parts_and_an_incomplete_one_dropped() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g3.1").unwrap());
        // An older single record: the parts replace it.
        let mut small = WriteSet::default();
        small.insert(b"k00000".as_slice(), b"old".to_vec());
        commit(&journal, 3, 1, &tree, small).unwrap();
        // A crash after the parts and ten of the writes.
        let writes = numbered(500);
        journal_parts(&journal, 3, 1, &writes, 4096).unwrap();
        assert!(journal.get(journal_key(3)).unwrap().is_none(), "the parts replaced the record");
        write_each(&tree, writes[..10].to_vec()).unwrap();
        assert_eq!(replay(&journal, 3, 1, &tree).unwrap(), 500);
        assert_eq!(tree.len(), 500);
        assert_eq!(get(&tree, b"k00000"), Some(vec![0; 100]), "the record's older value stays replaced");
        assert_eq!(journal.scan_prefix(3u32.to_be_bytes()).count(), 0, "replay removes the parts");
        // A crash while the parts were being removed: they had all been written; drop the rest.
        journal_parts(&journal, 3, 1, &numbered(500), 4096).unwrap();
        journal.remove(part_key(3, 0)).unwrap();
        tree.insert(b"k00001", b"newer".to_vec()).unwrap();
        assert_eq!(replay(&journal, 3, 1, &tree).unwrap(), 0);
        assert_eq!(get(&tree, b"k00001"), Some(b"newer".to_vec()));
        assert_eq!(journal.scan_prefix(3u32.to_be_bytes()).count(), 0);
        // Parts of another generation are dropped unreplayed.
        journal_parts(&journal, 3, 1, &numbered(50), 4096).unwrap();
        assert_eq!(replay(&journal, 3, 2, &tree).unwrap(), 0);
        assert_eq!(journal.scan_prefix(3u32.to_be_bytes()).count(), 0);
    }

    #[test]
    fn a_large_commit_leaves_no_parts_behind() {
        let (_d, db) = db();
        let (journal, tree) = (db.open_tree("journal").unwrap(), db.open_tree("g6.1").unwrap());
        let mut set = WriteSet::default();
        for (k, v) in numbered(2000) {
            set.insert(k, v.unwrap_or_default());
        }
        set.remove(b"k00003".as_slice());
        commit(&journal, 6, 1, &tree, set).unwrap();
        assert_eq!(tree.len(), 1999);
        assert_eq!(get(&tree, b"k00003"), None, "a later delete wins");
        assert_eq!(journal.scan_prefix(6u32.to_be_bytes()).count(), 0);
        // The neighbouring group's record is untouched by this group's parts.
        let mut other = WriteSet::default();
        other.insert(b"x".as_slice(), b"1".to_vec());
        commit(&journal, 7, 1, &db.open_tree("g7.1").unwrap(), other).unwrap();
        forget(&journal, 6).unwrap();
        assert!(journal.get(7u32.to_be_bytes()).unwrap().is_some());
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
