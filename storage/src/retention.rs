//! History retention: reading a chat's oldest messages and deleting them in bounded steps.
//!
//! The decision (which seq to trim through) is made by a group's leader from its applied state
//! and a clock, and rides in a `Trim` command; apply only deletes, so every replica deletes the
//! same messages. Deleted messages leave the next snapshot, and with it the purged Raft log.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use crate::chat_store::chat_of_key;
use crate::chat_store::dec;
use crate::chat_store::message_key;
use crate::chat_store::ChatHeader;
use crate::chat_store::ChatId;
use crate::chat_store::GroupState;
use crate::chat_store::MessageRecord;
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

    /// True (once) when retention deleted messages since the last call: time for a snapshot
    /// without them, so that the log holding them can be purged.
    pub fn take_trimmed(&self) -> bool {
        self.trimmed.swap(false, Ordering::Relaxed)
    }

    /// `(seq, timestamp)` of a chat's oldest stored messages, oldest first, at most `limit`.
    pub fn oldest_messages(&self, chat: &ChatId, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        let mut out = Vec::new();
        let (lo, hi) = (Bound::Included(message_key(chat, 0)), Bound::Included(message_key(chat, u64::MAX)));
        for (_, v) in self.live.scan(lo, hi, false, limit)? {
            let m: MessageRecord = dec("message", &v)?;
            out.push((m.seq, m.ts_ms));
        }
        Ok(out)
    }
}

impl StateWriter {
    /// Deletes a chat's stored messages with seq <= `through`, at most `max` of them, oldest
    /// first; returns how many. Their dedup entries stay (a late retry still gets its answer).
    pub fn trim_messages(&mut self, chat: &ChatId, through: u64, max: usize) -> Result<u32, StorageError> {
        let mut n = 0u32;
        let (lo, hi) = (Bound::Included(message_key(chat, 0)), Bound::Included(message_key(chat, through)));
        for (k, _) in self.live.scan(lo, hi, false, max)? {
            if let Some(seq) = k.get(17..25).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes) {
                self.messages.remove(&(*chat, seq));
            }
            self.writes.remove(k);
            n += 1;
        }
        if n > 0 {
            self.trimmed.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}
