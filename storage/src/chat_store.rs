//! The replicated chat state of each Raft group: small mutable records on sled, messages in
//! the group's message store ([`crate::messages`]).
//!
//! sled trees:
//! - `current`: group (u32 BE) -> generation (u64 BE) of the group's live state.
//! - `g<group>.<gen>`: one group's records. Installing a snapshot writes a new generation (a new
//!   tree and a new message store directory, `messages/g<group>.<gen>`) and then flips
//!   `current`, so a crash half-way leaves the previous state intact.
//!
//! Keys inside a group tree (all big-endian):
//!
//! | key                    | value                      |
//! |------------------------|----------------------------|
//! | `A`                    | [`AppliedState`]           |
//! | `c` chat(16)           | [`ChatHeader`]             |
//! | `u` chat(16) user(16)  | [`Member`]                 |
//! | `K` key...             | opaque (meta group, users) |
//!
//! Messages and their idempotency keys are not in sled: an apply appends them to the message
//! store, whose position after the apply is part of `A`. Applies reach sled through
//! [`crate::pending`] (data and `A` together, atomically, in batches), and the store is synced
//! before any `A` naming its position reaches sled.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use openraft::BasicNode;
use openraft::LogId;
use openraft::StoredMembership;
use serde::Deserialize;
use serde::Serialize;

pub use self::writer::StateWriter;
use crate::apply_journal::WriteSet;
use crate::codec;
use crate::error::StorageError;
use crate::message::MessageBytes;
use crate::messages::dedup::fingerprint;
use crate::messages::MessageStore;
use crate::messages::StorePos;
use crate::pending::prefix_end;
use crate::pending::Shared;
pub use crate::records::*;
pub use crate::restore::RestoreRecord;

mod writer;

pub const KEY_APPLIED: &[u8] = b"A";
pub const PREFIX_CHAT: u8 = b'c';
pub const PREFIX_MEMBER: u8 = b'u';
pub const PREFIX_KV: u8 = b'K';
/// Messages and idempotency keys of format 1 (restore reads them from old backups).
pub const PREFIX_MESSAGE: u8 = b'm';
pub const PREFIX_DEDUP: u8 = b'd';

/// Key-value pairs of the `K` keyspace.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a group's state machine has applied, stored with its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    /// The message store's position after the last applied entry: its checkpoint.
    pub store: StorePos,
    /// The latest message time applied: the group's clock for the dedup window. It only moves
    /// forward and comes from the commands, so every replica has the same.
    pub group_time_ms: u64,
    /// The widest dedup window any applied message asked for.
    pub dedup_window_max_ms: u64,
}

pub fn chat_key(chat: &ChatId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(PREFIX_CHAT);
    k.extend_from_slice(chat.as_bytes());
    k
}

pub fn member_key(chat: &ChatId, user: &UserId) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(PREFIX_MEMBER);
    k.extend_from_slice(chat.as_bytes());
    k.extend_from_slice(user.as_bytes());
    k
}

/// The format-1 key of a message (backups of format 1).
pub fn message_key(chat: &ChatId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(PREFIX_MESSAGE);
    k.extend_from_slice(chat.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn kv_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(PREFIX_KV);
    k.extend_from_slice(key);
    k
}

/// The chat id inside a `c`, `u`, `m` or `d` key.
pub fn chat_of_key(key: &[u8]) -> Option<ChatId> {
    key.get(1..17).and_then(|b| uuid::Uuid::from_slice(b).ok())
}

pub(crate) fn enc<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StorageError> {
    codec::encode_versioned(v).map_err(|e| StorageError::codec(what, e))
}

pub(crate) fn dec<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StorageError> {
    codec::decode_versioned(b).map_err(|e| StorageError::codec(what, e))
}

/// The node's state database and message stores.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    current: sled::Tree,
    /// Each group's last apply, for completing it after a crash (see `apply_journal`).
    journal: sled::Tree,
    dir: PathBuf,
    /// Where the groups' message stores live.
    messages: PathBuf,
    segment_bytes: u64,
}

impl StateDb {
    /// Opens the sled database in `dir` and the message stores under `messages`.
    pub fn open(dir: &Path, messages: &Path, cache_bytes: u64, segment_bytes: u64) -> Result<Self, StorageError> {
        crate::compact::recover(dir)?;
        let config = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(Some(1000));
        let db = crate::compact::open_sled(&config)?;
        let current = db.open_tree("current")?;
        let journal = db.open_tree("journal")?;
        std::fs::create_dir_all(messages).map_err(|e| StorageError::io(messages, e))?;
        Ok(StateDb { db, current, journal, dir: dir.to_path_buf(), messages: messages.to_path_buf(), segment_bytes })
    }

    fn tree_name(group: u32, gen: u64) -> String {
        format!("g{group}.{gen}")
    }

    fn store_dir(&self, group: u32, gen: u64) -> PathBuf {
        self.messages.join(Self::tree_name(group, gen))
    }

    fn generation(&self, group: u32) -> Result<Option<u64>, StorageError> {
        Ok(self.current.get(group.to_be_bytes())?.map(|v| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&v[..8.min(v.len())]);
            u64::from_be_bytes(a)
        }))
    }

    /// Message store directories of `group` other than generation `keep`.
    fn stale_store_dirs(&self, group: u32, keep: Option<u64>) -> Vec<PathBuf> {
        let prefix = format!("g{group}.");
        let Ok(entries) = std::fs::read_dir(&self.messages) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix(&prefix).and_then(|g| g.parse::<u64>().ok()).is_some_and(|g| Some(g) != keep)
            })
            .map(|e| e.path())
            .collect()
    }

    /// Opens the live state of `group`, creating generation 1 if it has none, and drops any
    /// generation left behind by an interrupted snapshot install.
    pub fn open_group(&self, group: u32) -> Result<GroupState, StorageError> {
        let gen = match self.generation(group)? {
            Some(g) => g,
            None => {
                self.current.insert(group.to_be_bytes(), &1u64.to_be_bytes())?;
                1
            }
        };
        let prefix = format!("g{group}.");
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).to_string();
            if let Some(g) = name.strip_prefix(&prefix).and_then(|g| g.parse::<u64>().ok()) {
                if g != gen {
                    tracing::info!(group, stale_generation = g, "dropping stale state generation");
                    self.db.drop_tree(name.as_bytes())?;
                }
            }
        }
        for dir in self.stale_store_dirs(group, Some(gen)) {
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        let tree = self.db.open_tree(Self::tree_name(group, gen))?;
        let replayed = crate::apply_journal::replay(&self.journal, group, gen, &tree)?;
        if replayed > 0 {
            tracing::debug!(group, replayed, "completed the last journalled apply");
        }
        let applied: AppliedState = match tree.get(KEY_APPLIED)? {
            Some(v) => dec("applied state", &v)?,
            None => AppliedState::default(),
        };
        let store = MessageStore::open(&self.store_dir(group, gen), applied.store, self.segment_bytes)?;
        let live = Shared::new(gen, tree, store);
        Ok(GroupState { db: self.clone(), group, live, trimmed: Arc::new(AtomicBool::new(false)) })
    }

    /// Removes every trace of a group (its replica left this node).
    pub fn drop_group(&self, group: u32) -> Result<(), StorageError> {
        if let Some(gen) = self.generation(group)? {
            self.db.drop_tree(Self::tree_name(group, gen).as_bytes())?;
        }
        crate::apply_journal::forget(&self.journal, group)?;
        self.current.remove(group.to_be_bytes())?;
        for dir in self.stale_store_dirs(group, None) {
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        Ok(())
    }

    /// Flushes sled and then fsyncs its files: sled's own flush is only sync_file_range.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        sync_tree_files(&self.dir)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Bytes of every group's message store.
    pub fn messages_bytes(&self) -> u64 {
        crate::compact::dir_bytes(&self.messages)
    }
}

pub(crate) fn sync_tree_files(dir: &Path) -> Result<(), StorageError> {
    for ent in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let ent = ent.map_err(|e| StorageError::io(dir, e))?;
        let path = ent.path();
        if path.is_dir() {
            sync_tree_files(&path)?;
        } else {
            match std::fs::File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                // sled removes blob files of overwritten or deleted values while it runs: a file
                // gone since the listing holds nothing to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&path, e)),
            }
        }
    }
    crate::identity::sync_dir(dir)
}

/// One group's live state. Cheap to clone; readers and the state machine share it.
#[derive(Clone)]
pub struct GroupState {
    db: StateDb,
    group: u32,
    /// The live tree, its message store and the applied writes not yet in sled (see `pending`).
    pub(crate) live: Shared,
    /// Set when retention trimmed messages; cleared by whoever takes a snapshot for it.
    pub(crate) trimmed: Arc<AtomicBool>,
}

impl GroupState {
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The live tree (it changes when a snapshot is installed). It lacks the writes still
    /// pending: call [`GroupState::flush_pending`] first, from the state machine's thread.
    pub fn flushed_tree(&self) -> sled::Tree {
        self.live.read().tree.clone()
    }

    /// The live message store (it changes when a snapshot is installed).
    pub fn messages_store(&self) -> MessageStore {
        self.live.read().store.clone()
    }

    /// Writes the pending applied writes to sled. Only the group's state machine may call it
    /// (it is their one writer; see `pending`).
    pub fn flush_pending(&self) -> Result<(), StorageError> {
        self.live.flush(&self.db.journal, self.group)
    }

    /// Flushes and fsyncs the node's whole state database (see [`StateDb::sync`]).
    pub fn sync_db(&self) -> Result<(), StorageError> {
        self.db.sync()
    }

    pub fn applied(&self) -> Result<AppliedState, StorageError> {
        match self.live.get(KEY_APPLIED)? {
            Some(v) => dec("applied state", &v),
            None => Ok(AppliedState::default()),
        }
    }

    pub fn chat(&self, chat: &ChatId) -> Result<Option<ChatHeader>, StorageError> {
        self.live.get(&chat_key(chat))?.map(|v| dec("chat", &v)).transpose()
    }

    pub fn member(&self, chat: &ChatId, user: &UserId) -> Result<Option<Member>, StorageError> {
        self.live.get(&member_key(chat, user))?.map(|v| dec("member", &v)).transpose()
    }

    /// Members of a chat, at most `limit`.
    pub fn members(&self, chat: &ChatId, limit: usize) -> Result<Vec<(UserId, Member)>, StorageError> {
        let mut prefix = vec![PREFIX_MEMBER];
        prefix.extend_from_slice(chat.as_bytes());
        let mut out = Vec::new();
        for (k, v) in self.live.scan(Bound::Included(prefix.clone()), prefix_end(&prefix), false, limit)? {
            let user = k.get(17..33).and_then(|b| uuid::Uuid::from_slice(b).ok()).ok_or_else(|| {
                StorageError::Corrupt { path: PathBuf::from("state"), reason: "bad member key".into() }
            })?;
            out.push((user, dec("member", &v)?));
        }
        Ok(out)
    }

    pub fn kv_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.live.get(&kv_key(key))
    }

    /// `K` entries whose key starts with `prefix`, after `after` (exclusive) when given, in key
    /// order, at most `limit`.
    pub fn kv_scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<KvPairs, StorageError> {
        let start = match after {
            Some(a) if a > prefix => Bound::Excluded(kv_key(a)),
            _ => Bound::Included(kv_key(prefix)),
        };
        let pairs = self.live.scan(start, prefix_end(&kv_key(prefix)), false, limit)?;
        Ok(pairs.into_iter().map(|(k, v)| (k[1..].to_vec(), v)).collect())
    }

    /// Encoded messages of `chat` with `from <= seq < to` that retention kept, at most `limit`,
    /// newest first when `reverse`.
    pub fn message_bytes(
        &self,
        chat: &ChatId,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(u64, MessageBytes)>, StorageError> {
        let floor = match self.chat(chat)? {
            Some(h) => h.first_seq,
            None => return Ok(Vec::new()),
        };
        self.messages_store().read(chat, from.max(floor), to, limit, reverse)
    }

    /// Messages of `chat` with `from <= seq < to`, at most `limit`, newest first when `reverse`.
    pub fn messages(
        &self,
        chat: &ChatId,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<MessageRecord>, StorageError> {
        self.message_bytes(chat, from, to, limit, reverse)?
            .into_iter()
            .map(|(seq, b)| b.record(seq).map_err(|e| StorageError::codec("message", e)))
            .collect()
    }

    /// The seq of the message `client_msg_id` of `sender` in `chat`, if the dedup window still
    /// holds it (at the group's clock).
    pub fn dedup(&self, chat: &ChatId, sender: &UserId, client_msg_id: &str) -> Result<Option<u64>, StorageError> {
        let a = self.applied()?;
        let since = a.group_time_ms.saturating_sub(a.dedup_window_max_ms);
        let fp = fingerprint(chat, sender, client_msg_id);
        Ok(self.messages_store().find_original(chat, fp, since)?.map(|o| o.seq))
    }

    /// Starts an atomic write of one apply call.
    pub fn writer(&self) -> Result<StateWriter, StorageError> {
        let applied = self.applied()?;
        Ok(StateWriter {
            trimmed: self.trimmed.clone(),
            journal: self.db.journal.clone(),
            group: self.group,
            live: self.live.clone(),
            store: self.messages_store(),
            chats: HashMap::new(),
            members: HashMap::new(),
            writes: WriteSet::default(),
            kv: HashMap::new(),
            staged: Vec::new(),
            staged_dedup: HashMap::new(),
            staged_at: HashMap::new(),
            log_index: 0,
            group_time_ms: applied.group_time_ms,
            dedup_window_max_ms: applied.dedup_window_max_ms,
        })
    }

    /// Starts a new generation for a snapshot install: its tree and store directory (empty).
    pub(crate) fn begin_generation(&self) -> Result<(u64, sled::Tree, PathBuf), StorageError> {
        let next = self.live.read().generation + 1;
        let name = StateDb::tree_name(self.group, next);
        self.db.db.drop_tree(name.as_bytes())?;
        Ok((next, self.db.db.open_tree(name)?, self.db.store_dir(self.group, next)))
    }

    /// Makes a generation built by an install live, with its message store opened at `pos`.
    pub(crate) fn switch_generation(
        &self,
        gen: u64,
        tree: sled::Tree,
        store_dir: &Path,
        pos: StorePos,
    ) -> Result<(), StorageError> {
        let store = MessageStore::open(store_dir, pos, self.db.segment_bytes)?;
        if crate::unsafe_knobs::on(crate::unsafe_knobs::Knob::DedupNotInSnapshot) {
            store.forget_dedup();
        }
        // No flush may still be writing into the generation about to be dropped.
        self.live.wait_for_flush()?;
        self.db.current.insert(self.group.to_be_bytes(), &gen.to_be_bytes())?;
        self.db.db.flush()?;
        let old_gen = self.live.replace(gen, tree, store);
        self.db.db.drop_tree(StateDb::tree_name(self.group, old_gen).as_bytes())?;
        for dir in self.db.stale_store_dirs(self.group, Some(gen)) {
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        Ok(())
    }
}
