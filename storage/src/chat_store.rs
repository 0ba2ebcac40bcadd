//! The replicated chat state of each Raft group, on one sled database per node.
//!
//! Trees:
//! - `current`: group (u32 BE) -> generation (u64 BE) of the group's live tree.
//! - `g<group>.<gen>`: one group's state. Installing a snapshot writes a new generation and
//!   then flips `current`, so a crash half-way leaves the previous state intact.
//!
//! Keys inside a group tree (all big-endian):
//!
//! | key                                   | value                      | mutable |
//! |---------------------------------------|----------------------------|---------|
//! | `A`                                   | [`AppliedState`]           | yes     |
//! | `c` chat(16)                          | [`ChatHeader`]             | yes     |
//! | `u` chat(16) user(16)                 | [`Member`]                 | yes     |
//! | `K` key...                            | opaque (meta group, users) | yes     |
//! | `m` chat(16) seq(8)                   | [`MessageRecord`]          | no      |
//! | `d` chat(16) sender(16) client_msg_id | seq (u64)                  | no      |
//!
//! Immutable keys carry a seq, which lets a snapshot stream them after the fact (see
//! [`crate::snapshot`]). Applies reach sled through [`crate::pending`]: data and `A` together,
//! atomically, in batches.

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

use crate::apply_journal::WriteSet;
use crate::codec;
use crate::dedup_filter::Scanner;
use crate::error::StorageError;
use crate::pending::prefix_end;
use crate::pending::Shared;
pub use crate::records::*;
pub use crate::restore::RestoreRecord;

pub const KEY_APPLIED: &[u8] = b"A";
pub const PREFIX_CHAT: u8 = b'c';
pub const PREFIX_MEMBER: u8 = b'u';
pub const PREFIX_KV: u8 = b'K';
pub const PREFIX_MESSAGE: u8 = b'm';
pub const PREFIX_DEDUP: u8 = b'd';

/// Key-value pairs of the `K` keyspace.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a group's state machine has applied, stored with its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
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

pub fn message_key(chat: &ChatId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(PREFIX_MESSAGE);
    k.extend_from_slice(chat.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn dedup_key(chat: &ChatId, sender: &UserId, client_msg_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(33 + client_msg_id.len());
    k.push(PREFIX_DEDUP);
    k.extend_from_slice(chat.as_bytes());
    k.extend_from_slice(sender.as_bytes());
    k.extend_from_slice(client_msg_id.as_bytes());
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

/// The node's state database.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    current: sled::Tree,
    /// Each group's last apply, for completing it after a crash (see `apply_journal`).
    journal: sled::Tree,
    dir: PathBuf,
    /// Fills each group generation's dedup filter in the background.
    scanner: Scanner,
}

impl StateDb {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        crate::compact::recover(dir)?;
        let config = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(Some(1000));
        let db = crate::compact::open_sled(&config)?;
        let current = db.open_tree("current")?;
        let journal = db.open_tree("journal")?;
        Ok(StateDb { db, current, journal, dir: dir.to_path_buf(), scanner: Scanner::start() })
    }

    fn tree_name(group: u32, gen: u64) -> String {
        format!("g{group}.{gen}")
    }

    fn generation(&self, group: u32) -> Result<Option<u64>, StorageError> {
        Ok(self.current.get(group.to_be_bytes())?.map(|v| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&v[..8.min(v.len())]);
            u64::from_be_bytes(a)
        }))
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
        let tree = self.db.open_tree(Self::tree_name(group, gen))?;
        let replayed = crate::apply_journal::replay(&self.journal, group, gen, &tree)?;
        if replayed > 0 {
            tracing::debug!(group, replayed, "completed the last journalled apply");
        }
        let live = Shared::new(gen, tree);
        self.scanner.scan(live.arc(), gen);
        Ok(GroupState { db: self.clone(), group, live, trimmed: Arc::new(AtomicBool::new(false)) })
    }

    /// Removes every trace of a group (its replica left this node).
    pub fn drop_group(&self, group: u32) -> Result<(), StorageError> {
        if let Some(gen) = self.generation(group)? {
            self.db.drop_tree(Self::tree_name(group, gen).as_bytes())?;
        }
        crate::apply_journal::forget(&self.journal, group)?;
        self.current.remove(group.to_be_bytes())?;
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
    /// The live tree and the applied writes not yet in it (see `pending`).
    pub(crate) live: Shared,
    /// Set when retention deleted messages; cleared by whoever takes a snapshot for it.
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

    /// Messages of `chat` with `from <= seq < to`, at most `limit`, newest first when `reverse`.
    pub fn messages(
        &self,
        chat: &ChatId,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<MessageRecord>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let range = (Bound::Included(message_key(chat, from)), Bound::Excluded(message_key(chat, to)));
        self.live.scan(range.0, range.1, reverse, limit)?.iter().map(|(_, v)| dec("message", v)).collect()
    }

    pub fn dedup(&self, chat: &ChatId, sender: &UserId, client_msg_id: &str) -> Result<Option<u64>, StorageError> {
        self.live.get(&dedup_key(chat, sender, client_msg_id))?.map(|v| dec("dedup seq", &v)).transpose()
    }

    /// Starts an atomic write of one apply call.
    pub fn writer(&self) -> StateWriter {
        StateWriter {
            trimmed: self.trimmed.clone(),
            journal: self.db.journal.clone(),
            group: self.group,
            live: self.live.clone(),
            chats: HashMap::new(),
            members: HashMap::new(),
            writes: WriteSet::default(),
            dedup: HashMap::new(),
            messages: HashMap::new(),
            kv: HashMap::new(),
        }
    }

    /// Replaces the live tree with a freshly loaded generation (snapshot install).
    pub(crate) fn begin_generation(&self) -> Result<(u64, sled::Tree), StorageError> {
        let next = self.live.read().generation + 1;
        let name = StateDb::tree_name(self.group, next);
        self.db.db.drop_tree(name.as_bytes())?;
        Ok((next, self.db.db.open_tree(name)?))
    }

    pub(crate) fn switch_generation(&self, gen: u64, tree: sled::Tree) -> Result<(), StorageError> {
        // No flush may still be writing into the generation about to be dropped.
        self.live.wait_for_flush()?;
        self.db.current.insert(self.group.to_be_bytes(), &gen.to_be_bytes())?;
        self.db.db.flush()?;
        let old_gen = self.live.replace(gen, tree);
        self.db.scanner.scan(self.live.arc(), gen);
        self.db.db.drop_tree(StateDb::tree_name(self.group, old_gen).as_bytes())?;
        Ok(())
    }
}

/// Collects one apply call's writes; reads see the writes made so far.
pub struct StateWriter {
    pub(crate) trimmed: Arc<AtomicBool>,
    /// Reads see the group's pending writes over its tree.
    pub(crate) live: Shared,
    pub(crate) chats: HashMap<ChatId, Option<ChatHeader>>,
    pub(crate) members: HashMap<(ChatId, UserId), Option<Member>>,
    pub(crate) dedup: HashMap<Vec<u8>, u64>,
    pub(crate) messages: HashMap<(ChatId, u64), MessageRecord>,
    pub(crate) kv: HashMap<Vec<u8>, Option<Vec<u8>>>,
    pub(crate) writes: WriteSet,
    journal: sled::Tree,
    group: u32,
}

impl StateWriter {
    pub fn chat(&mut self, chat: &ChatId) -> Result<Option<ChatHeader>, StorageError> {
        if let Some(c) = self.chats.get(chat) {
            return Ok(c.clone());
        }
        let c: Option<ChatHeader> = self.live.get_for_writer(&chat_key(chat))?.map(|v| dec("chat", &v)).transpose()?;
        self.chats.insert(*chat, c.clone());
        Ok(c)
    }

    pub fn put_chat(&mut self, chat: ChatId, header: ChatHeader) {
        self.chats.insert(chat, Some(header));
    }

    pub fn member(&mut self, chat: &ChatId, user: &UserId) -> Result<Option<Member>, StorageError> {
        if let Some(m) = self.members.get(&(*chat, *user)) {
            return Ok(m.clone());
        }
        let m: Option<Member> =
            self.live.get_for_writer(&member_key(chat, user))?.map(|v| dec("member", &v)).transpose()?;
        self.members.insert((*chat, *user), m.clone());
        Ok(m)
    }

    pub fn put_member(&mut self, chat: ChatId, user: UserId, member: Option<Member>) {
        self.members.insert((chat, user), member);
    }

    pub fn dedup(&mut self, chat: &ChatId, sender: &UserId, client_msg_id: &str) -> Result<Option<u64>, StorageError> {
        let key = dedup_key(chat, sender, client_msg_id);
        if let Some(s) = self.dedup.get(&key) {
            return Ok(Some(*s));
        }
        if self.live.dedup_surely_absent(&key) {
            return Ok(None);
        }
        self.live.get(&key)?.map(|v| dec("dedup seq", &v)).transpose()
    }

    pub fn put_message(&mut self, chat: &ChatId, msg: &MessageRecord) -> Result<(), StorageError> {
        if !msg.client_msg_id.is_empty() {
            let key = dedup_key(chat, &msg.sender, &msg.client_msg_id);
            self.writes.insert(key.clone(), enc("dedup seq", &msg.seq)?);
            self.dedup.insert(key, msg.seq);
        }
        self.writes.insert(message_key(chat, msg.seq), enc("message", msg)?);
        self.messages.insert((*chat, msg.seq), msg.clone());
        Ok(())
    }

    pub fn message(&mut self, chat: &ChatId, seq: u64) -> Result<Option<MessageRecord>, StorageError> {
        if let Some(m) = self.messages.get(&(*chat, seq)) {
            return Ok(Some(m.clone()));
        }
        self.live.get(&message_key(chat, seq))?.map(|v| dec("message", &v)).transpose()
    }

    pub fn kv_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.kv.get(key) {
            return Ok(v.clone());
        }
        self.live.get(&kv_key(key))
    }

    pub fn kv_put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match &value {
            Some(v) => self.writes.insert(kv_key(key), v.clone()),
            None => self.writes.remove(kv_key(key)),
        }
        self.kv.insert(key.to_vec(), value);
    }

    /// Writes everything plus `applied`, atomically: into the pending writes, which reach
    /// sled in one batch now and then (see `pending`).
    pub fn commit(mut self, applied: &AppliedState) -> Result<(), StorageError> {
        for (chat, header) in self.chats.drain() {
            if let Some(h) = header {
                self.writes.insert(chat_key(&chat), enc("chat", &h)?);
            }
        }
        for ((chat, user), m) in self.members.drain() {
            match m {
                Some(m) => self.writes.insert(member_key(&chat, &user), enc("member", &m)?),
                None => self.writes.remove(member_key(&chat, &user)),
            }
        }
        self.writes.insert(KEY_APPLIED, enc("applied state", applied)?);
        if self.live.merge(self.writes) {
            self.live.flush_in_background(&self.journal, self.group)?;
        }
        Ok(())
    }
}
