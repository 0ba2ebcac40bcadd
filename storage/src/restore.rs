//! Restoring a backed-up group: its records, checked and written unless present.
//!
//! A restore carries records in one form whatever format the backup has: the key and value of
//! a chat head (`c`), a member (`u`), a small record (`K`) as sled holds them, and a message as
//! `m` chat seq -> [`MessageRecord`]. Format-1 backups hold exactly these pairs (plus `d`
//! idempotency entries, now part of the messages themselves); `raftchat admin restore` turns the
//! message store's segments of a format-2 backup into `m` pairs.

use crate::chat_store::chat_of_key;
use crate::chat_store::message_key;
use crate::chat_store::ChatHeader;
use crate::chat_store::ChatHeaderV1;
use crate::chat_store::ChatId;
use crate::chat_store::Member;
use crate::chat_store::MessageRecord;
use crate::chat_store::StateWriter;
use crate::chat_store::UserId;
use crate::chat_store::KEY_APPLIED;
use crate::chat_store::PREFIX_CHAT;
use crate::chat_store::PREFIX_DEDUP;
use crate::chat_store::PREFIX_KV;
use crate::chat_store::PREFIX_MEMBER;
use crate::chat_store::PREFIX_MESSAGE;
use crate::codec;
use crate::error::StorageError;
use crate::message::MessageBytes;
use crate::messages::DEDUP_WINDOW_DEFAULT_MS;

/// One record of a backed-up group, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreRecord {
    Chat(ChatId, ChatHeader),
    Member(ChatId, UserId, Member),
    Message(ChatId, MessageRecord),
    /// A format-1 idempotency entry: its message carries the key now, so it restores nothing.
    Dedup,
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
            (Some(PREFIX_CHAT), Some(c)) if key.len() == 17 => {
                let h = if value.first() == Some(&1) {
                    de::<ChatHeaderV1>("format-1 chat", value)?.into()
                } else {
                    de("chat", value)?
                };
                Ok(RestoreRecord::Chat(c, h))
            }
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
            (Some(PREFIX_DEDUP), Some(_)) if key.len() >= 33 => Ok(RestoreRecord::Dedup),
            _ => Err(format!(
                "not a chat, member, message, dedup or key record (key {:02x?})",
                &key[..key.len().min(40)]
            )),
        }
    }
}

impl StateWriter {
    /// True when the group holds nothing but its applied state (a fresh group).
    pub fn is_empty(&mut self) -> Result<bool, StorageError> {
        let untouched = self.chats.is_empty() && self.members.is_empty() && self.kv.is_empty();
        if !(untouched && self.staged.is_empty()) {
            return Ok(false);
        }
        if self.store.position().offset > crate::messages::record::SEGMENT_HEADER_LEN {
            return Ok(false);
        }
        let first = self.live.scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, false, 2)?;
        Ok(first.iter().all(|(k, _)| k.as_slice() == KEY_APPLIED))
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
                    let body = MessageBytes::of_record(&m).map_err(|e| StorageError::codec("message", e))?;
                    let view = body.view().map_err(|e| StorageError::codec("message", e))?;
                    self.put_message(&chat, m.seq, &body, &view, DEDUP_WINDOW_DEFAULT_MS);
                }
                absent
            }
            RestoreRecord::Dedup => false,
            RestoreRecord::Kv(key, value) => {
                let absent = self.kv_get(&key)?.is_none();
                if absent {
                    self.kv_put(&key, Some(value));
                }
                absent
            }
        })
    }
}
