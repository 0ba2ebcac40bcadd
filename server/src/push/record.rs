//! Push notification records, kept in the replicated state of the chat's group.
//!
//! - `pc/<chat>`: the seq through which the notifier has looked at the chat's messages;
//! - `pn/<chat><user>`: the user's current notification for the chat, pending or sent;
//! - `pd/<chat><user><first seq>`: a notification that failed every attempt (dead letters).
//!
//! A record is created when a message arrives for a member who is offline, folds in later
//! messages while it waits (coalescing), is marked sent once the webhook took it, and is removed
//! when the user comes back online, so each spell offline gives one notification per chat.

use raftchat_storage::codec;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

pub const CURSOR_PREFIX: &[u8] = b"pc/";
pub const PENDING_PREFIX: &[u8] = b"pn/";
pub const DEAD_PREFIX: &[u8] = b"pd/";

/// Characters of the last message shown in a notification.
pub const PREVIEW_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushState {
    Pending,
    Sent,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// The idempotency key: the same for every attempt and every node.
    pub id: String,
    pub chat: Uuid,
    pub user: Uuid,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    pub last_from: Uuid,
    pub last_kind: String,
    pub preview: String,
    pub last_ts_ms: u64,
    pub created_ms: u64,
    pub state: PushState,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: String,
}

impl PushRecord {
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode_versioned(self)
    }

    pub fn decode(bytes: &[u8]) -> Option<PushRecord> {
        codec::decode_versioned(bytes).ok()
    }

    /// The webhook's JSON body.
    pub fn payload(&self, now_ms: u64) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "type": "messages",
            "userId": self.user,
            "chatId": self.chat,
            "count": self.count,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
            "lastMessage": {
                "from": self.last_from,
                "type": self.last_kind,
                "preview": self.preview,
                "timestamp": crate::service::rfc3339(self.last_ts_ms),
            },
            "attempt": self.attempts + 1,
            "createdAt": crate::service::rfc3339(self.created_ms),
            "sentAt": crate::service::rfc3339(now_ms),
        })
    }
}

pub fn cursor_key(chat: &Uuid) -> Vec<u8> {
    [CURSOR_PREFIX, chat.as_bytes()].concat()
}

pub fn pending_key(chat: &Uuid, user: &Uuid) -> Vec<u8> {
    [PENDING_PREFIX, chat.as_bytes(), user.as_bytes()].concat()
}

pub fn chat_pending_prefix(chat: &Uuid) -> Vec<u8> {
    [PENDING_PREFIX, chat.as_bytes()].concat()
}

pub fn dead_key(r: &PushRecord) -> Vec<u8> {
    [DEAD_PREFIX, r.chat.as_bytes(), r.user.as_bytes(), &r.first_seq.to_be_bytes()].concat()
}

/// The start of a text, at most [`PREVIEW_CHARS`] characters.
pub fn preview(text: &str) -> String {
    let mut p: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        p.push('…');
    }
    p
}

/// Exponential backoff with jitter: about `base * 2^(attempt-1)`, capped, then a random 50-100%.
pub fn backoff_ms(base_ms: u64, max_ms: u64, attempt: u32, jitter: f64) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30)).min(max_ms);
    ((exp as f64) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_ms(1000, 300_000, 1, 1.0), 1000);
        assert_eq!(backoff_ms(1000, 300_000, 3, 1.0), 4000);
        assert_eq!(backoff_ms(1000, 300_000, 3, 0.0), 2000);
        assert_eq!(backoff_ms(1000, 300_000, 40, 1.0), 300_000);
    }

    #[test]
    fn previews_are_short() {
        assert_eq!(preview("hi"), "hi");
        let long = "é".repeat(150);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS + 1);
    }

    #[test]
    fn records_round_trip() {
        let r = PushRecord {
            id: "x".into(),
            chat: Uuid::new_v4(),
            user: Uuid::new_v4(),
            first_seq: 1,
            last_seq: 3,
            count: 3,
            last_from: Uuid::new_v4(),
            last_kind: "text".into(),
            preview: "hey".into(),
            last_ts_ms: 5,
            created_ms: 4,
            state: PushState::Pending,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: String::new(),
        };
        assert_eq!(PushRecord::decode(&r.encode().unwrap()), Some(r.clone()));
        assert_eq!(dead_key(&r).len(), 3 + 16 + 16 + 8);
        assert_eq!(r.payload(6)["lastMessage"]["preview"], "hey");
    }
}
