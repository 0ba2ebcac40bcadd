//! History retention: reading a chat's oldest messages and trimming them.
//!
//! The decision (which seq to trim through) is made by a group's leader from its applied state
//! and a clock, and rides in a `Trim` command; apply only raises the chat's floor (its header's
//! `first_seq`), so every replica trims the same messages. Reads never go below the floor; the
//! message store drops a segment's records once every message in it is below its chat's floor,
//! at the next snapshot (see `crate::messages::MessageStore::collect`), and the log holding them
//! is purged behind that snapshot. Idempotency keys of trimmed messages stay for their window.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use crate::chat_store::chat_of_key;
use crate::chat_store::dec;
use crate::chat_store::ChatHeader;
use crate::chat_store::ChatId;
use crate::chat_store::GroupState;
use crate::chat_store::StateWriter;
use crate::chat_store::PREFIX_CHAT;
use crate::error::StorageError;

impl GroupState {
    /// Chats in key order after `after` (exclusive), at most `limit`.
    pub fn chats_after(&self, after: Option<ChatId>, limit: usize) -> Result<Vec<(ChatId, ChatHeader)>, StorageError> {
        let start = match after {
            Some(c) => Bound::Excluded(crate::chat_store::chat_key(&c)),
            None => Bound::Included(vec![PREFIX_CHAT]),
        };
        let mut out = Vec::new();
        for (k, v) in self.live.scan(start, Bound::Excluded(vec![PREFIX_CHAT + 1]), false, limit)? {
            if let Some(chat) = chat_of_key(&k) {
                out.push((chat, dec("chat", &v)?));
            }
        }
        Ok(out)
    }

    /// True (once) when retention trimmed messages since the last call: time for a snapshot
    /// without them, so that the log and the segments holding them can go.
    pub fn take_trimmed(&self) -> bool {
        self.trimmed.swap(false, Ordering::Relaxed)
    }

    /// `(seq, timestamp)` of a chat's oldest kept messages, oldest first, at most `limit`.
    pub fn oldest_messages(&self, chat: &ChatId, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        let mut out = Vec::new();
        for (seq, b) in self.message_bytes(chat, 0, u64::MAX, limit, false)? {
            let v = b.view().map_err(|e| StorageError::codec("message", e))?;
            out.push((seq, v.ts_ms));
        }
        Ok(out)
    }
}

impl StateWriter {
    /// Trims a chat's messages with seq <= `through`, at most `max` of them, oldest first;
    /// returns how many seqs went below the floor. The chat's next seq stays.
    pub fn trim_messages(&mut self, chat: &ChatId, through: u64, max: usize) -> Result<u32, StorageError> {
        let Some(mut h) = self.chat(chat)? else { return Ok(0) };
        let last = h.next_seq.saturating_sub(1);
        let through = through.min(last).min(h.first_seq.saturating_add(max as u64).saturating_sub(1));
        if through < h.first_seq {
            return Ok(0);
        }
        let removed = through + 1 - h.first_seq;
        h.first_seq = through + 1;
        self.put_chat(*chat, h);
        self.trimmed.store(true, Ordering::Relaxed);
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }
}
