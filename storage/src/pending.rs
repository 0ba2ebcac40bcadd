//! Write-back of applied state: a group's applies land in memory first and reach sled in
//! large batches.
//!
//! An apply merges its sled writes (chat heads, members, small records, the applied state;
//! messages go to the message store) into the group's `pending` map, and once that holds
//! [`FLUSH_WRITES`] distinct keys or [`FLUSH_BYTES`] bytes they go to sled as one batch
//! (through `apply_journal::commit`, so atomically), the applied state with them. A chat head
//! or the applied state, rewritten by every message, reaches sled once per batch; a snapshot's
//! capture and shutdown flush whatever is pending.
//!
//! A full `pending` becomes `flushing` and a short-lived thread writes it to sled while applies
//! go on into a new `pending`: a flush of 4,096 keys takes tens of milliseconds, which used to
//! stall every apply of the group (the p999 commit latency). One flush at a time per group: the
//! next waits for the one before, so flushes reach sled in apply order, and a failed flush fails
//! the next apply. Snapshot capture, install and shutdown wait for it too.
//!
//! Readers see `pending` over `flushing` over the tree: point reads look in that order; range
//! reads merge them in key order, newer layers winning and their deletes hiding older keys. A
//! flush writes the tree before it drops `flushing`, and readers look at `flushing` before the
//! tree, so a reader never misses a write that was applied before it started.
//!
//! Durability: sled is never fsynced per apply. After a crash sled holds the state of some
//! earlier flush, which is the state after some apply, and openraft applies the log again from
//! its applied id. A flush first syncs the message store, so the store holds at least what the
//! applied state in sled names (it is cut back to it on open). The log is purged only behind a
//! snapshot, and a snapshot's capture flushes first.
//!
//! One thread writes: a group's state machine (applies, snapshot capture and install). Readers
//! are any thread.
//!
//! Every message apply reads its chat head and its sender's membership. Those reads are served
//! from `clean`, a bounded map of chat and member keys as they are in the tree, so that a hot
//! chat costs no sled lookup per message (a sled read is a tree walk of several microseconds).
//! Only the writer fills `clean` (on a read miss, and with each key it flushes), so no reader
//! can put a value there that a flush has since replaced; a snapshot install empties it.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;
use std::sync::RwLockWriteGuard;

use crate::apply_journal::WriteSet;
use crate::error::StorageError;
use crate::messages::MessageStore;

/// Pending keys that make a flush.
pub const FLUSH_WRITES: usize = 4096;
/// Pending bytes (keys and values) that make a flush.
pub const FLUSH_BYTES: usize = 1024 * 1024;

/// Tree values of chat and member keys kept in `clean`, per group; past it `clean` starts over.
pub const CLEAN_MAX: usize = 4096;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Key -> value, or `None` for a delete.
type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The flush in progress: the thread writing `flushing` to sled.
type FlushThread = std::thread::JoinHandle<Result<(), StorageError>>;

/// One group's live state: the sled tree of its current generation and the applied writes
/// that have not reached it yet.
pub(crate) struct Live {
    pub(crate) generation: u64,
    pub(crate) tree: sled::Tree,
    pending: Overlay,
    pending_bytes: usize,
    /// The writes a flush thread is putting into the tree (between `pending` and the tree).
    flushing: Option<Arc<Overlay>>,
    /// Chat and member keys as the tree holds them (`None`: absent); see the module doc.
    clean: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The generation's message store: synced before any flush writes an applied state that
    /// names its position.
    pub(crate) store: MessageStore,
}

/// Keys that every message apply reads: chat heads and members.
fn cacheable(key: &[u8]) -> bool {
    matches!(key.first(), Some(&crate::chat_store::PREFIX_CHAT) | Some(&crate::chat_store::PREFIX_MEMBER))
}

impl Live {
    /// What `pending`, `flushing` or `clean` say of `key`, newest first.
    fn overlaid(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.pending
            .get(key)
            .or_else(|| self.flushing.as_ref().and_then(|f| f.get(key)))
            .or_else(|| self.clean.get(key))
    }

    fn remember(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.clean.len() >= CLEAN_MAX && !self.clean.contains_key(&key) {
            self.clean.clear();
        }
        self.clean.insert(key, value);
    }
}

/// The live state shared by the state machine and readers, and the group's flush thread.
#[derive(Clone)]
pub(crate) struct Shared(Arc<RwLock<Live>>, Arc<Mutex<Option<FlushThread>>>);

impl Shared {
    pub(crate) fn new(generation: u64, tree: sled::Tree, store: MessageStore) -> Self {
        let live = Live {
            generation,
            tree,
            pending: Overlay::new(),
            pending_bytes: 0,
            flushing: None,
            clean: HashMap::new(),
            store,
        };
        Shared(Arc::new(RwLock::new(live)), Arc::new(Mutex::new(None)))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Live> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Live> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`, pending writes first.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tree = {
            let live = self.read();
            if let Some(v) = live.overlaid(key) {
                return Ok(v.clone());
            }
            live.tree.clone()
        };
        Ok(tree.get(key)?.map(|v| v.to_vec()))
    }

    /// [`Shared::get`] for the writer: a chat or member key read from the tree is kept in
    /// `clean`. Only the group's one writer may call it (see the module doc).
    pub(crate) fn get_for_writer(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let (generation, tree) = {
            let live = self.read();
            if let Some(v) = live.overlaid(key) {
                return Ok(v.clone());
            }
            (live.generation, live.tree.clone())
        };
        let value = tree.get(key)?.map(|v| v.to_vec());
        if cacheable(key) {
            let mut live = self.write();
            if live.generation == generation {
                live.remember(key.to_vec(), value.clone());
            }
        }
        Ok(value)
    }

    /// Pairs with keys in `(lo, hi)`, in key order (descending with `reverse`), at most `limit`.
    pub(crate) fn scan(
        &self,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StorageError> {
        if limit == 0 || is_empty_range(&lo, &hi) {
            return Ok(Vec::new());
        }
        // Pending over flushing first (see the module doc), then the tree.
        let (mut over, tree) = {
            let live = self.read();
            let range = (lo.clone(), hi.clone());
            let over: Vec<(Vec<u8>, Option<Vec<u8>>)> = match &live.flushing {
                None => live.pending.range(range).map(|(k, v)| (k.clone(), v.clone())).collect(),
                Some(flushing) => {
                    let mut both: Overlay =
                        flushing.range(range.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                    both.extend(live.pending.range(range).map(|(k, v)| (k.clone(), v.clone())));
                    both.into_iter().collect()
                }
            };
            (over, live.tree.clone())
        };
        if reverse {
            over.reverse();
        }
        let mut over = over.into_iter().peekable();
        let range = tree.range((lo, hi));
        let mut tree_iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if reverse { Box::new(range.rev()) } else { Box::new(range) };
        let mut next_tree = tree_iter.next().transpose()?;
        let mut out = Vec::new();
        while out.len() < limit {
            // Which side holds the next key in scan order?
            let take_over = match (over.peek(), &next_tree) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ok, _)), Some((tk, _))) => {
                    let ord = ok.as_slice().cmp(tk.as_ref());
                    if ord == std::cmp::Ordering::Equal {
                        // The pending write replaces the tree's value.
                        next_tree = tree_iter.next().transpose()?;
                        true
                    } else {
                        (ord == std::cmp::Ordering::Less) != reverse
                    }
                }
            };
            if take_over {
                if let Some((k, Some(v))) = over.next() {
                    out.push((k, v));
                }
            } else if let Some((k, v)) = next_tree.take() {
                out.push((k.to_vec(), v.to_vec()));
                next_tree = tree_iter.next().transpose()?;
            }
        }
        Ok(out)
    }

    /// Merges one apply's writes; true when it is time to [`Shared::flush`].
    pub(crate) fn merge(&self, set: WriteSet) -> bool {
        let mut live = self.write();
        for (key, value) in set.into_writes() {
            let added = key.len() + value.as_ref().map_or(0, Vec::len);
            // A key rewritten by every apply (a chat head, `A`) takes its room once.
            let replaced = live.pending.get(&key).map_or(0, |old| key.len() + old.as_ref().map_or(0, Vec::len));
            live.pending_bytes = (live.pending_bytes + added).saturating_sub(replaced);
            live.pending.insert(key, value);
        }
        live.pending.len() >= FLUSH_WRITES || live.pending_bytes >= FLUSH_BYTES
    }

    /// Writes every pending write to the tree, atomically, and returns once they are there
    /// (with any flush already in progress).
    pub(crate) fn flush(&self, journal: &sled::Tree, group: u32) -> Result<(), StorageError> {
        self.wait_for_flush()?;
        if let Some(job) = self.start_flush(journal, group) {
            job.run()?;
        }
        Ok(())
    }

    /// Starts writing every pending write to the tree on a thread of its own, once the flush
    /// before it is done; an error of that one is returned here.
    pub(crate) fn flush_in_background(&self, journal: &sled::Tree, group: u32) -> Result<(), StorageError> {
        let mut slot = self.1.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = slot.take() {
            join(thread)?;
        }
        let Some(job) = self.start_flush(journal, group) else { return Ok(()) };
        // Shared with the thread, so that the job survives a thread that cannot be started.
        let job = Arc::new(Mutex::new(Some(job)));
        let for_thread = job.clone();
        let spawned = std::thread::Builder::new().name(format!("flush-g{group}")).spawn(move || {
            match for_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(job) => job.run(),
                None => Ok(()),
            }
        });
        match spawned {
            Ok(thread) => *slot = Some(thread),
            Err(e) => {
                tracing::warn!(group, error = %e, "could not start a flush thread; flushing inline");
                let job = job.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(job) = job {
                    job.run()?;
                }
            }
        }
        Ok(())
    }

    /// Waits for the flush in progress, if any; its error, if it failed.
    pub(crate) fn wait_for_flush(&self) -> Result<(), StorageError> {
        let thread = self.1.lock().unwrap_or_else(|p| p.into_inner()).take();
        match thread {
            Some(t) => join(t),
            None => Ok(()),
        }
    }

    /// Moves `pending` to `flushing`; `None` when there is nothing to write. The caller has
    /// waited for the previous flush.
    fn start_flush(&self, journal: &sled::Tree, group: u32) -> Option<FlushJob> {
        let mut live = self.write();
        if live.pending.is_empty() {
            return None;
        }
        let writes = Arc::new(std::mem::take(&mut live.pending));
        live.pending_bytes = 0;
        live.flushing = Some(writes.clone());
        Some(FlushJob {
            live: self.0.clone(),
            journal: journal.clone(),
            group,
            generation: live.generation,
            tree: live.tree.clone(),
            store: live.store.clone(),
            writes,
        })
    }

    /// Makes `tree` and `store` the live generation and returns the old generation's number;
    /// pending writes of the old one are dropped with it. The caller has waited for the flush
    /// in progress ([`Shared::wait_for_flush`]).
    pub(crate) fn replace(&self, generation: u64, tree: sled::Tree, store: MessageStore) -> u64 {
        let mut live = self.write();
        live.pending.clear();
        live.pending_bytes = 0;
        live.flushing = None;
        live.clean.clear();
        live.tree = tree;
        live.store = store;
        std::mem::replace(&mut live.generation, generation)
    }

    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.read().pending.len()
    }

    #[cfg(test)]
    pub(crate) fn clean_len(&self) -> usize {
        self.read().clean.len()
    }
}

/// One flush: `writes` of `generation` into its tree.
struct FlushJob {
    live: Arc<RwLock<Live>>,
    journal: sled::Tree,
    group: u32,
    generation: u64,
    tree: sled::Tree,
    store: MessageStore,
    writes: Arc<Overlay>,
}

impl FlushJob {
    fn run(self) -> Result<(), StorageError> {
        // The applied state in `writes` names a position of the message store: the store must
        // hold everything up to it durably before sled can (see `crate::messages`).
        self.store.sync()?;
        let mut set = WriteSet::default();
        for (k, v) in self.writes.iter() {
            match v {
                Some(v) => set.insert(k.clone(), v.clone()),
                None => set.remove(k.clone()),
            }
        }
        crate::apply_journal::commit(&self.journal, self.group, self.generation, &self.tree, set)?;
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        if live.generation == self.generation {
            live.flushing = None;
            for (key, value) in self.writes.iter() {
                if cacheable(key) {
                    live.remember(key.clone(), value.clone());
                }
            }
        }
        Ok(())
    }
}

/// The flush thread's result; a panic becomes an error that carries its message.
fn join(thread: FlushThread) -> Result<(), StorageError> {
    thread.join().map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        StorageError::Corrupt {
            path: std::path::PathBuf::from("state"),
            reason: format!("a flush of applied writes panicked: {message}"),
        }
    })?
}

/// The end bound of the keys that start with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

/// True when no key lies in `(lo, hi)` (BTreeMap::range panics on such a range).
fn is_empty_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
#[path = "pending/tests.rs"]
mod tests;
