//! openraft's `RaftLogStorage` for one group, on the node's shared [`LogEngine`].
//!
//! Durability contract (openraft.md §2, §5): `append` returns once the entries are in the page
//! cache and readable; openraft's callback fires only after the flusher's `fdatasync` covered
//! them. `save_vote`, `truncate` and `purge` return only once their record is durable.
//!
//! The newest entries of the group are also kept in memory, as the entries themselves (their
//! payload is shared bytes, so a clone is cheap): replication and apply read them from there
//! instead of reading them back from the WAL and decoding them again. The cache always holds a
//! suffix of the log; reads before it go to the WAL.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::Mutex;

use openraft::storage::LogFlushed;
use openraft::storage::LogState;
use openraft::storage::RaftLogStorage;
use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::LogId;
use openraft::OptionalSend;
use openraft::RaftLogId;
use openraft::RaftLogReader;
use openraft::RaftTypeConfig;
use openraft::StorageError as RaftStorageError;
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::to_raft_io;
use crate::error::StorageError;
use crate::wal::LogEngine;

/// Entries kept in memory per group at most.
const CACHE_ENTRIES_MAX: usize = 4096;
/// Encoded bytes of the entries kept in memory per group at most.
const CACHE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The newest entries of a group: a suffix of its log, from index `first`.
struct Cache<E> {
    first: u64,
    entries: VecDeque<(E, usize)>,
    bytes: usize,
}

impl<E: Clone> Cache<E> {
    /// Entry `index` follows (or replaces a suffix of) what the cache holds.
    fn put(&mut self, index: u64, entry: E, bytes: usize) {
        let end = self.first + self.entries.len() as u64;
        if self.entries.is_empty() || index < self.first || index > end {
            self.entries.clear();
            self.bytes = 0;
            self.first = index;
        } else if index < end {
            self.truncate(index);
        }
        self.entries.push_back((entry, bytes));
        self.bytes += bytes;
        while self.entries.len() > CACHE_ENTRIES_MAX || self.bytes > CACHE_BYTES_MAX {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, b)) = self.entries.pop_front() {
            self.bytes -= b;
            self.first += 1;
        }
    }

    /// Drops entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while self.first + (self.entries.len() as u64) > index {
            match self.entries.pop_back() {
                Some((_, b)) => self.bytes -= b,
                None => break,
            }
        }
    }

    /// Drops entries up to `index`.
    fn purge(&mut self, index: u64) {
        while !self.entries.is_empty() && self.first <= index {
            self.pop_front();
        }
    }

    /// Entries `[start, end)` when the cache holds `start` (it then holds everything after it).
    fn get(&self, start: u64, end: u64) -> Option<Vec<E>> {
        if self.entries.is_empty() || start < self.first {
            return None;
        }
        let from = (start - self.first) as usize;
        let to = end.saturating_sub(self.first).min(self.entries.len() as u64) as usize;
        Some(self.entries.range(from.min(to)..to).map(|(e, _)| e.clone()).collect())
    }
}

/// One group's view of the node's log.
pub struct GroupLog<C: RaftTypeConfig> {
    engine: LogEngine,
    group: u32,
    cache: Arc<Mutex<Cache<C::Entry>>>,
}

impl<C: RaftTypeConfig> Clone for GroupLog<C> {
    fn clone(&self) -> Self {
        GroupLog { engine: self.engine.clone(), group: self.group, cache: self.cache.clone() }
    }
}

impl<C: RaftTypeConfig> GroupLog<C> {
    pub fn new(engine: LogEngine, group: u32) -> Self {
        let cache = Cache { first: 0, entries: VecDeque::new(), bytes: 0 };
        GroupLog { engine, group, cache: Arc::new(Mutex::new(cache)) }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache<C::Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the log holds nothing at all for this group: no vote, no entry, no purge.
    pub fn is_pristine(&self) -> bool {
        let st = self.engine.group_state(self.group);
        st.vote.is_none() && st.bounds.is_none() && st.purged.is_none()
    }
}

fn read_err(e: StorageError) -> RaftStorageError<u64> {
    to_raft_io(e, ErrorSubject::Logs, ErrorVerb::Read)
}

fn write_err(e: StorageError) -> RaftStorageError<u64> {
    to_raft_io(e, ErrorSubject::Logs, ErrorVerb::Write)
}

fn codec_err(what: &'static str, e: codec::CodecError) -> StorageError {
    StorageError::codec(what, e)
}

fn io_err(e: std::io::Error, subject: ErrorSubject<u64>) -> RaftStorageError<u64> {
    RaftStorageError::IO { source: openraft::StorageIOError::new(subject, ErrorVerb::Write, &e) }
}

impl<C> RaftLogReader<C> for GroupLog<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned + Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, RaftStorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(hit) = self.cache().get(start, end) {
            return Ok(hit);
        }
        let raw = self.engine.read(self.group, start, end).map_err(read_err)?;
        raw.iter().map(|b| codec::decode_versioned(b).map_err(|e| read_err(codec_err("log entry", e)))).collect()
    }
}

impl<C> RaftLogStorage<C> for GroupLog<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned + Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, RaftStorageError<u64>> {
        let st = self.engine.group_state(self.group);
        let last_purged_log_id: Option<LogId<u64>> = match &st.purged {
            Some((_, bytes)) => codec::decode_versioned(bytes).map_err(|e| read_err(codec_err("purged id", e)))?,
            None => None,
        };
        let last_log_id = match st.bounds {
            Some((_, last)) => {
                let mut v: Vec<C::Entry> = self.try_get_log_entries(last..=last).await?;
                match v.pop() {
                    Some(e) => Some(*e.get_log_id()),
                    None => last_purged_log_id,
                }
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError<u64>> {
        let bytes = codec::encode_versioned(vote).map_err(|e| write_err(codec_err("vote", e)))?;
        let wait = self.engine.save_vote(self.group, bytes).map_err(write_err)?;
        wait.wait().await.map_err(|e| io_err(e, ErrorSubject::Vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError<u64>> {
        match self.engine.group_state(self.group).vote {
            Some(b) => Ok(Some(codec::decode_versioned(&b).map_err(|e| read_err(codec_err("vote", e)))?)),
            None => Ok(None),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), RaftStorageError<u64>> {
        let bytes = codec::encode_versioned(&committed).map_err(|e| write_err(codec_err("committed", e)))?;
        self.engine.save_committed(self.group, bytes).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, RaftStorageError<u64>> {
        match self.engine.group_state(self.group).committed {
            Some(b) => codec::decode_versioned(&b).map_err(|e| read_err(codec_err("committed", e))),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), RaftStorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut first = None;
        let mut encoded = Vec::new();
        let mut cached = Vec::new();
        for e in entries {
            let index = e.get_log_id().index;
            first.get_or_insert(index);
            let bytes = codec::encode_versioned(&e).map_err(|e| write_err(codec_err("log entry", e)))?;
            cached.push((index, e, bytes.len()));
            encoded.push(bytes);
        }
        let Some(first) = first else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        {
            // Readable from memory as soon as from the WAL (openraft reads them at once).
            let mut cache = self.cache();
            for (index, e, len) in cached {
                cache.put(index, e, len);
            }
        }
        self.engine
            .append(self.group, first, encoded, Box::new(move |res| callback.log_io_completed(res)))
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError<u64>> {
        self.cache().truncate(log_id.index);
        let wait = self.engine.truncate(self.group, log_id.index).map_err(write_err)?;
        wait.wait().await.map_err(|e| io_err(e, ErrorSubject::Logs))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError<u64>> {
        let bytes = codec::encode_versioned(&Some(log_id)).map_err(|e| write_err(codec_err("purged id", e)))?;
        self.cache().purge(log_id.index);
        let wait = self.engine.purge(self.group, log_id.index, bytes).map_err(write_err)?;
        wait.wait().await.map_err(|e| io_err(e, ErrorSubject::Logs))?;
        self.engine.gc();
        Ok(())
    }
}
