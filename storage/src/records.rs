//! The typed records of the replicated chat state, as stored in sled.
//!
//! Each value is written with [`crate::codec::encode_versioned`]. Keys are built in
//! [`crate::chat_store`] and are big-endian so that range scans follow key order.

use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

pub type ChatId = Uuid;
pub type UserId = Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatKind {
    Direct,
    Group,
}

/// The mutable head of a chat: its next sequence number and descriptive fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatHeader {
    pub kind: ChatKind,
    pub name: String,
    /// Seq the next appended message gets; messages are 1..next_seq.
    pub next_seq: u64,
    pub created_at_ms: u64,
    pub created_by: UserId,
    pub member_count: u32,
    /// The oldest seq history still holds: retention trimmed everything below it.
    pub first_seq: u64,
}

/// A chat head as format 1 stored it (before retention kept a floor): read by restore only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatHeaderV1 {
    pub kind: ChatKind,
    pub name: String,
    pub next_seq: u64,
    pub created_at_ms: u64,
    pub created_by: UserId,
    pub member_count: u32,
}

impl From<ChatHeaderV1> for ChatHeader {
    fn from(h: ChatHeaderV1) -> Self {
        ChatHeader {
            kind: h.kind,
            name: h.name,
            next_seq: h.next_seq,
            created_at_ms: h.created_at_ms,
            created_by: h.created_by,
            member_count: h.member_count,
            first_seq: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Member,
    Admin,
    /// A member of a direct chat whom the other member blocked: may read, may not send.
    /// (Last, so that the encodings of the others stay as they were.)
    Blocked,
}

/// A member of a chat and that member's receipt watermarks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub role: Role,
    /// Highest seq this member's devices acknowledged as delivered.
    pub delivered: u64,
    /// Highest seq this member read.
    pub read: u64,
    pub joined_at_ms: u64,
}

/// One message of a chat's log, as readers get it (the store keeps its encoded form,
/// [`crate::message::MessageBytes`]). Immutable once written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub seq: u64,
    pub message_id: Uuid,
    pub sender: UserId,
    pub client_msg_id: String,
    pub ts_ms: u64,
    /// "text", "image", "video", "file", "system".
    pub kind: String,
    pub body: String,
}
