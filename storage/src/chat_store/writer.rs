//! One apply call's writes to a group: chat heads, members, small records and messages,
//! committed together with the applied state.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::apply_journal::WriteSet;
use crate::error::StorageError;
use crate::message::MessageBytes;
use crate::message::MessageView;
use crate::messages::dedup::fingerprint;
use crate::messages::dedup::Fingerprint;
use crate::messages::dedup::Original;
use crate::messages::MessageStore;
use crate::messages::NewMessage;
use crate::pending::Shared;
use crate::records::*;

use super::*;

/// Collects one apply call's writes; reads see the writes made so far.
pub struct StateWriter {
    pub(crate) trimmed: Arc<AtomicBool>,
    /// Reads see the group's pending writes over its tree.
    pub(crate) live: Shared,
    pub(crate) store: MessageStore,
    pub(crate) chats: HashMap<ChatId, Option<ChatHeader>>,
    pub(crate) members: HashMap<(ChatId, UserId), Option<Member>>,
    pub(crate) kv: HashMap<Vec<u8>, Option<Vec<u8>>>,
    pub(crate) writes: WriteSet,
    /// Messages of this apply call, for the store.
    pub(crate) staged: Vec<NewMessage>,
    pub(super) staged_dedup: HashMap<Fingerprint, Original>,
    pub(super) staged_at: HashMap<(ChatId, u64), usize>,
    /// The log index of the entry being applied.
    pub(super) log_index: u64,
    pub(super) group_time_ms: u64,
    pub(super) dedup_window_max_ms: u64,
    pub(super) journal: sled::Tree,
    pub(super) group: u32,
}

impl StateWriter {
    /// The log index of the entry whose commands follow (stored with their messages).
    pub fn set_log_index(&mut self, index: u64) {
        self.log_index = index;
    }

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

    /// The original of `client_msg_id` of `sender` in `chat`, for a message at `ts_ms` with a
    /// dedup window of `window_ms`: the group's clock (the latest message time applied, this one
    /// included) minus the window is how old an original may be.
    pub fn find_original(
        &mut self,
        chat: &ChatId,
        sender: &UserId,
        client_msg_id: &str,
        ts_ms: u64,
        window_ms: u64,
    ) -> Result<Option<Original>, StorageError> {
        let fp = fingerprint(chat, sender, client_msg_id);
        let since = self.group_time_ms.max(ts_ms).saturating_sub(window_ms);
        if let Some(o) = self.staged_dedup.get(&fp).filter(|o| o.ts_ms >= since) {
            return Ok(Some(*o));
        }
        self.store.find_original(chat, fp, since)
    }

    /// Appends a message at `seq` (its seq assigned by apply); `window_ms` is its dedup window.
    pub fn put_message(
        &mut self,
        chat: &ChatId,
        seq: u64,
        body: &MessageBytes,
        view: &MessageView<'_>,
        window_ms: u64,
    ) {
        let fp = (!view.client_msg_id.is_empty()).then(|| fingerprint(chat, &view.sender, view.client_msg_id));
        let original = Original { seq, message_id: view.message_id, ts_ms: view.ts_ms };
        if let Some(fp) = fp {
            self.staged_dedup.insert(fp, original);
        }
        self.group_time_ms = self.group_time_ms.max(view.ts_ms);
        self.dedup_window_max_ms = self.dedup_window_max_ms.max(window_ms);
        self.staged_at.insert((*chat, seq), self.staged.len());
        self.staged.push(NewMessage { chat: *chat, seq, log_index: self.log_index, body: body.clone(), fp, original });
    }

    /// A message of this apply call or of the store (whatever retention did).
    pub fn message(&mut self, chat: &ChatId, seq: u64) -> Result<Option<MessageBytes>, StorageError> {
        if let Some(i) = self.staged_at.get(&(*chat, seq)) {
            return Ok(self.staged.get(*i).map(|m| m.body.clone()));
        }
        Ok(self.store.read(chat, seq, seq + 1, 1, false)?.into_iter().next().map(|(_, b)| b))
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

    /// Writes everything, atomically: the messages into the store (not synced), then the
    /// records and `applied` (updated with the store's position and the group's clock) into
    /// the pending writes, which reach sled in one batch now and then (see `pending`).
    pub fn commit(mut self, applied: &mut AppliedState) -> Result<(), StorageError> {
        applied.store = self.store.append(&self.staged)?;
        applied.group_time_ms = applied.group_time_ms.max(self.group_time_ms);
        applied.dedup_window_max_ms = applied.dedup_window_max_ms.max(self.dedup_window_max_ms);
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
        self.writes.insert(KEY_APPLIED, enc("applied state", &*applied)?);
        if self.live.merge(self.writes) {
            self.live.flush_in_background(&self.journal, self.group)?;
        }
        Ok(())
    }
}
