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
//! [`crate::snapshot`]). Every apply writes data and `A` in one atomic `sled::Batch`.

use std::collections::HashMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::RwLock;

use openraft::BasicNode;
use openraft::LogId;
use openraft::StoredMembership;
use serde::Deserialize;
use serde::Serialize;

use crate::codec;
use crate::error::StorageError;
pub use crate::records::*;

pub const KEY_APPLIED: &[u8] = b"A";
pub const PREFIX_CHAT: u8 = b'c';
pub const PREFIX_MEMBER: u8 = b'u';
pub const PREFIX_KV: u8 = b'K';
pub const PREFIX_MESSAGE: u8 = b'm';
pub const PREFIX_DEDUP: u8 = b'd';

/// Key-value pairs of the `K` keyspace.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One record of a backed-up group (a raw pair of a snapshot stream), decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreRecord {
    Chat(ChatId, ChatHeader),
    Member(ChatId, UserId, Member),
    Message(ChatId, MessageRecord),
    /// The full `d` key and its seq.
    Dedup(Vec<u8>, u64),
    /// A `K` key without its prefix, and its value.
    Kv(Vec<u8>, Vec<u8>),
}

impl RestoreRecord {
    /// Decodes a raw pair; an error says why this build cannot take it (the applied state `A`
    /// is never restored: the target cluster has its own log).
    pub fn parse(key: &[u8], value: &[u8]) -> Result<RestoreRecord, String> {
        fn de<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, String> {
            codec::decode_versioned(b).map_err(|e| format!("undecodable {what}: {e}"))
        }
        let prefix = key.first().copied();
        if prefix == Some(PREFIX_KV) && key.len() > 1 {
            return Ok(RestoreRecord::Kv(key[1..].to_vec(), value.to_vec()));
        }
        let chat = chat_of_key(key);
        let user = key.get(17..33).and_then(|b| uuid::Uuid::from_slice(b).ok());
        match (prefix, chat) {
            (Some(PREFIX_CHAT), Some(c)) if key.len() == 17 => Ok(RestoreRecord::Chat(c, de("chat", value)?)),
            (Some(PREFIX_MEMBER), Some(c)) if key.len() == 33 => match user {
                Some(u) => Ok(RestoreRecord::Member(c, u, de("member", value)?)),
                None => Err("bad member key".into()),
            },
            (Some(PREFIX_MESSAGE), Some(c)) if key.len() == 25 => {
                let m: MessageRecord = de("message", value)?;
                if message_key(&c, m.seq) != key {
                    return Err(format!("message key does not match its seq {}", m.seq));
                }
                Ok(RestoreRecord::Message(c, m))
            }
            (Some(PREFIX_DEDUP), Some(_)) if key.len() >= 33 => {
                Ok(RestoreRecord::Dedup(key.to_vec(), de("dedup seq", value)?))
            }
            _ => Err(format!(
                "not a chat, member, message, dedup or key record (key {:02x?})",
                &key[..key.len().min(40)]
            )),
        }
    }
}

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

fn enc<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StorageError> {
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
    dir: PathBuf,
}

impl StateDb {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let db = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(Some(1000)).open()?;
        let current = db.open_tree("current")?;
        Ok(StateDb { db, current, dir: dir.to_path_buf() })
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
        Ok(GroupState { db: self.clone(), group, gen: Arc::new(RwLock::new((gen, tree))) })
    }

    /// Removes every trace of a group (its replica left this node).
    pub fn drop_group(&self, group: u32) -> Result<(), StorageError> {
        if let Some(gen) = self.generation(group)? {
            self.db.drop_tree(Self::tree_name(group, gen).as_bytes())?;
        }
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

fn sync_tree_files(dir: &Path) -> Result<(), StorageError> {
    for ent in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let ent = ent.map_err(|e| StorageError::io(dir, e))?;
        let path = ent.path();
        if path.is_dir() {
            sync_tree_files(&path)?;
        } else {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| StorageError::io(&path, e))?;
        }
    }
    crate::identity::sync_dir(dir)
}

/// One group's live state. Cheap to clone; readers and the state machine share it.
#[derive(Clone)]
pub struct GroupState {
    db: StateDb,
    group: u32,
    gen: Arc<RwLock<(u64, sled::Tree)>>,
}

impl GroupState {
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The live tree (it changes when a snapshot is installed).
    pub fn tree(&self) -> sled::Tree {
        self.gen.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    pub fn applied(&self) -> Result<AppliedState, StorageError> {
        match self.tree().get(KEY_APPLIED)? {
            Some(v) => dec("applied state", &v),
            None => Ok(AppliedState::default()),
        }
    }

    pub fn chat(&self, chat: &ChatId) -> Result<Option<ChatHeader>, StorageError> {
        self.tree().get(chat_key(chat))?.map(|v| dec("chat", &v)).transpose()
    }

    pub fn member(&self, chat: &ChatId, user: &UserId) -> Result<Option<Member>, StorageError> {
        self.tree().get(member_key(chat, user))?.map(|v| dec("member", &v)).transpose()
    }

    /// Members of a chat, at most `limit`.
    pub fn members(&self, chat: &ChatId, limit: usize) -> Result<Vec<(UserId, Member)>, StorageError> {
        let mut prefix = vec![PREFIX_MEMBER];
        prefix.extend_from_slice(chat.as_bytes());
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(&prefix).take(limit) {
            let (k, v) = kv?;
            let user = k.get(17..33).and_then(|b| uuid::Uuid::from_slice(b).ok()).ok_or_else(|| {
                StorageError::Corrupt { path: PathBuf::from("state"), reason: "bad member key".into() }
            })?;
            out.push((user, dec("member", &v)?));
        }
        Ok(out)
    }

    pub fn kv_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree().get(kv_key(key))?.map(|v| v.to_vec()))
    }

    /// Every `K` entry whose key starts with `prefix`.
    pub fn kv_scan(&self, prefix: &[u8]) -> Result<KvPairs, StorageError> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(kv_key(prefix)) {
            let (k, v) = kv?;
            out.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(out)
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
        let range = self.tree().range(message_key(chat, from)..message_key(chat, to));
        let mut out = Vec::new();
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if reverse { Box::new(range.rev()) } else { Box::new(range) };
        for kv in iter.take(limit) {
            let (_, v) = kv?;
            out.push(dec("message", &v)?);
        }
        Ok(out)
    }

    pub fn dedup(&self, chat: &ChatId, sender: &UserId, client_msg_id: &str) -> Result<Option<u64>, StorageError> {
        self.tree().get(dedup_key(chat, sender, client_msg_id))?.map(|v| dec("dedup seq", &v)).transpose()
    }

    /// Starts an atomic write of one apply call.
    pub fn writer(&self) -> StateWriter {
        StateWriter {
            tree: self.tree(),
            chats: HashMap::new(),
            members: HashMap::new(),
            batch: sled::Batch::default(),
            dedup: HashMap::new(),
            messages: HashMap::new(),
            kv: HashMap::new(),
        }
    }

    /// Replaces the live tree with a freshly loaded generation (snapshot install).
    pub(crate) fn begin_generation(&self) -> Result<(u64, sled::Tree), StorageError> {
        let next = self.gen.read().unwrap_or_else(|p| p.into_inner()).0 + 1;
        let name = StateDb::tree_name(self.group, next);
        self.db.db.drop_tree(name.as_bytes())?;
        Ok((next, self.db.db.open_tree(name)?))
    }

    pub(crate) fn switch_generation(&self, gen: u64, tree: sled::Tree) -> Result<(), StorageError> {
        self.db.current.insert(self.group.to_be_bytes(), &gen.to_be_bytes())?;
        self.db.db.flush()?;
        let old = {
            let mut g = self.gen.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, (gen, tree))
        };
        self.db.db.drop_tree(StateDb::tree_name(self.group, old.0).as_bytes())?;
        Ok(())
    }
}

/// Collects one apply call's writes; reads see the writes made so far.
pub struct StateWriter {
    tree: sled::Tree,
    chats: HashMap<ChatId, Option<ChatHeader>>,
    members: HashMap<(ChatId, UserId), Option<Member>>,
    dedup: HashMap<Vec<u8>, u64>,
    messages: HashMap<(ChatId, u64), MessageRecord>,
    kv: HashMap<Vec<u8>, Option<Vec<u8>>>,
    batch: sled::Batch,
}

impl StateWriter {
    pub fn chat(&mut self, chat: &ChatId) -> Result<Option<ChatHeader>, StorageError> {
        if let Some(c) = self.chats.get(chat) {
            return Ok(c.clone());
        }
        let c: Option<ChatHeader> = self.tree.get(chat_key(chat))?.map(|v| dec("chat", &v)).transpose()?;
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
        let m: Option<Member> = self.tree.get(member_key(chat, user))?.map(|v| dec("member", &v)).transpose()?;
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
        self.tree.get(&key)?.map(|v| dec("dedup seq", &v)).transpose()
    }

    pub fn put_message(&mut self, chat: &ChatId, msg: &MessageRecord) -> Result<(), StorageError> {
        if !msg.client_msg_id.is_empty() {
            let key = dedup_key(chat, &msg.sender, &msg.client_msg_id);
            self.batch.insert(key.clone(), enc("dedup seq", &msg.seq)?);
            self.dedup.insert(key, msg.seq);
        }
        self.batch.insert(message_key(chat, msg.seq), enc("message", msg)?);
        self.messages.insert((*chat, msg.seq), msg.clone());
        Ok(())
    }

    pub fn message(&mut self, chat: &ChatId, seq: u64) -> Result<Option<MessageRecord>, StorageError> {
        if let Some(m) = self.messages.get(&(*chat, seq)) {
            return Ok(Some(m.clone()));
        }
        self.tree.get(message_key(chat, seq))?.map(|v| dec("message", &v)).transpose()
    }

    pub fn kv_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.kv.get(key) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(kv_key(key))?.map(|v| v.to_vec()))
    }

    pub fn kv_put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match &value {
            Some(v) => self.batch.insert(kv_key(key), v.clone()),
            None => self.batch.remove(kv_key(key)),
        }
        self.kv.insert(key.to_vec(), value);
    }

    /// True when the group holds nothing but its applied state (a fresh group).
    pub fn is_empty(&mut self) -> Result<bool, StorageError> {
        if !(self.chats.is_empty() && self.members.is_empty() && self.messages.is_empty() && self.kv.is_empty()) {
            return Ok(false);
        }
        for k in self.tree.iter().keys() {
            if k?.as_ref() != KEY_APPLIED {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes one record of a backed-up group unless its key is already present; `Ok(false)`
    /// when it was.
    pub fn restore_record(&mut self, r: RestoreRecord) -> Result<bool, StorageError> {
        Ok(match r {
            RestoreRecord::Chat(chat, h) => {
                let absent = self.chat(&chat)?.is_none();
                if absent {
                    self.put_chat(chat, h);
                }
                absent
            }
            RestoreRecord::Member(chat, user, m) => {
                let absent = self.member(&chat, &user)?.is_none();
                if absent {
                    self.put_member(chat, user, Some(m));
                }
                absent
            }
            RestoreRecord::Message(chat, m) => {
                let absent = self.message(&chat, m.seq)?.is_none();
                if absent {
                    self.batch.insert(message_key(&chat, m.seq), enc("message", &m)?);
                    self.messages.insert((chat, m.seq), m);
                }
                absent
            }
            RestoreRecord::Dedup(key, seq) => {
                let absent = !self.dedup.contains_key(&key) && self.tree.get(&key)?.is_none();
                if absent {
                    self.batch.insert(key.as_slice(), enc("dedup seq", &seq)?);
                    self.dedup.insert(key, seq);
                }
                absent
            }
            RestoreRecord::Kv(key, value) => {
                let absent = self.kv_get(&key)?.is_none();
                if absent {
                    self.kv_put(&key, Some(value));
                }
                absent
            }
        })
    }

    /// Writes everything plus `applied` in one atomic batch.
    pub fn commit(mut self, applied: &AppliedState) -> Result<(), StorageError> {
        for (chat, header) in self.chats.drain() {
            if let Some(h) = header {
                self.batch.insert(chat_key(&chat), enc("chat", &h)?);
            }
        }
        for ((chat, user), m) in self.members.drain() {
            match m {
                Some(m) => self.batch.insert(member_key(&chat, &user), enc("member", &m)?),
                None => self.batch.remove(member_key(&chat, &user)),
            }
        }
        self.batch.insert(KEY_APPLIED, enc("applied state", applied)?);
        self.tree.apply_batch(self.batch)?;
        Ok(())
    }
}
