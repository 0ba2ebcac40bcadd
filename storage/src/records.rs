//! The typed records of the replicated chat state, as stored in sled.
//!
//! Each value is written with [`crate::codec::encode_versioned`]. Keys are built in
//! [`crate::chat_store`] and are big-endian so that range scans follow seq order.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Member,
    Admin,
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

/// One message of a chat's log. Immutable once written.
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
