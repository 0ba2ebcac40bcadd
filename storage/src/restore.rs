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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_store::chat_key;
    use crate::chat_store::member_key;
    use crate::chat_store::ChatKind;
    use crate::chat_store::Role;
    use crate::chat_store::StateDb;

    /// A record as format 1 wrote it: version byte 1, then the bincode of the value.
    fn v1<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend(codec::encode(value).unwrap());
        b
    }

    #[test]
    fn format_1_records_restore_into_a_format_2_group() {
        let (chat, alice) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let header = ChatHeaderV1 {
            kind: ChatKind::Group,
            name: "climbing".into(),
            next_seq: 3,
            created_at_ms: 7,
            created_by: alice,
            member_count: 1,
        };
        let member = Member { role: Role::Admin, delivered: 2, read: 1, joined_at_ms: 7 };
        let message = |seq: u64| MessageRecord {
            seq,
            message_id: uuid::Uuid::new_v4(),
            sender: alice,
            client_msg_id: format!("c{seq}"),
            ts_ms: 10 + seq,
            kind: "text".into(),
            body: format!("hello {seq}"),
        };
        let (m1, m2) = (message(1), message(2));
        let mut dedup_key = vec![PREFIX_DEDUP];
        dedup_key.extend(chat.as_bytes());
        dedup_key.extend(alice.as_bytes());
        dedup_key.extend(b"c1");
        let pairs = [
            (chat_key(&chat), v1(&header)),
            (member_key(&chat, &alice), v1(&member)),
            (message_key(&chat, 1), v1(&m1)),
            (message_key(&chat, 2), v1(&m2)),
            (dedup_key, v1(&1u64)),
        ];
        let records: Vec<RestoreRecord> = pairs.iter().map(|(k, v)| RestoreRecord::parse(k, v).unwrap()).collect();
        assert_eq!(records[4], RestoreRecord::Dedup);
        assert!(RestoreRecord::parse(&message_key(&chat, 9), &v1(&m1)).is_err(), "a key must match its seq");

        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state"), &dir.path().join("messages"), 1 << 20, 1 << 20).unwrap();
        let state = db.open_group(1).unwrap();
        let mut w = state.writer().unwrap();
        assert!(w.is_empty().unwrap());
        let written: Vec<bool> = records.iter().cloned().map(|r| w.restore_record(r).unwrap()).collect();
        assert_eq!(written, [true, true, true, true, false]);
        assert!(!w.restore_record(records[2].clone()).unwrap(), "a present message is left alone");
        let mut applied = state.applied().unwrap();
        w.commit(&mut applied).unwrap();

        let mut w = state.writer().unwrap();
        let h = w.chat(&chat).unwrap().unwrap();
        assert_eq!((h.next_seq, h.first_seq, h.name.as_str()), (3, 1, "climbing"));
        assert_eq!(w.member(&chat, &alice).unwrap(), Some(member));
        // The message carries its idempotency key now: a retry of c1 finds seq 1.
        let original = w.find_original(&chat, &alice, "c1", 20, DEDUP_WINDOW_DEFAULT_MS).unwrap();
        assert_eq!(original.map(|o| o.seq), Some(1));
        let got = state.messages(&chat, 1, 10, 10, false).unwrap();
        assert_eq!(got, vec![m1, m2]);
    }
}
