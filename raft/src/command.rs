//! Chat commands: what clients ask the replicated state to do, and what came of it.
//!
//! Every field that apply needs and that is not in the state rides in the command: the
//! timestamp, the message id and the client's message id. Apply never reads a clock or draws a
//! random number, so every replica computes the same state.

use raftchat_storage::message::MessageBytes;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

pub use raftchat_storage::chat_store::ChatId;
pub use raftchat_storage::chat_store::ChatKind;
pub use raftchat_storage::chat_store::UserId;
pub use raftchat_storage::messages::DEDUP_WINDOW_DEFAULT_MS;

/// Limits enforced in apply as well as at the edge, so that no replica stores oversize data.
pub const CLIENT_MSG_ID_MAX: usize = 128;
pub const CHAT_NAME_MAX: usize = 256;
pub const MEMBERS_MAX: usize = 10_000;
/// Messages one `Trim` command deletes at most, so that one apply stays short.
pub const TRIM_MAX: usize = 5_000;
/// Keys one `PutMany` sets at most.
pub const PUT_MANY_MAX: usize = 4_096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatCommand {
    /// Creates a chat; creating an existing chat with the same id is a no-op that reports it.
    CreateChat { chat: ChatId, kind: ChatKind, name: String, creator: UserId, members: Vec<UserId>, ts_ms: u64 },
    /// `by` adds `user` (group chats: `by` must be an admin).
    AddMember { chat: ChatId, by: UserId, user: UserId, ts_ms: u64 },
    /// `by` removes `user` (an admin, or `user` themself leaving).
    RemoveMember { chat: ChatId, by: UserId, user: UserId, ts_ms: u64 },
    /// Appends a message (sender, ids, time and body, encoded once by the gateway);
    /// deduplicated on (chat, sender, client_msg_id) against originals no older than
    /// `dedup_window_ms` by the group's clock (see `raftchat_storage::messages`).
    Append { chat: ChatId, message: MessageBytes, dedup_window_ms: u64 },
    /// Raises a member's delivered and read watermarks (never lowers them).
    Receipt { chat: ChatId, user: UserId, delivered: u64, read: u64 },
    /// Sets or clears a replicated key (accounts and other small records).
    Put { key: Vec<u8>, value: Option<Vec<u8>>, only_if_absent: bool },
    /// Writes records of a backed-up group (`raftchat admin restore`), each unless its key is
    /// present. With `require_empty`, refused unless the group holds nothing yet (the check a
    /// restore makes before it writes anything).
    Restore { records: Vec<(Vec<u8>, Vec<u8>)>, require_empty: bool },
    /// Deletes a chat's messages with seq <= `through_seq`, at most [`TRIM_MAX`] per command
    /// (history retention; the group's leader decides `through_seq` from its clock).
    Trim { chat: ChatId, through_seq: u64 },
    /// Sets or clears several replicated keys at once (push notification records with their
    /// chat cursors), at most [`PUT_MANY_MAX`].
    PutMany { puts: Vec<(Vec<u8>, Option<Vec<u8>>)> },
    /// In the direct chat of `by` and `user`, `by` blocks (or unblocks) `user`: a blocked
    /// member keeps reading the chat but may not send in it.
    SetBlocked { chat: ChatId, by: UserId, user: UserId, blocked: bool },
    /// `by` (a group admin) invites `user`, who becomes a member only by accepting ([`Join`]).
    ///
    /// [`Join`]: ChatCommand::Join
    Invite { chat: ChatId, by: UserId, user: UserId, ts_ms: u64 },
    /// `user` accepts an invite (joining again as a member is a no-op).
    Join { chat: ChatId, user: UserId, ts_ms: u64 },
    /// `user` declines an invite (or an admin withdraws it: `by` is that admin).
    Decline { chat: ChatId, by: UserId, user: UserId },
    /// An `Append` at a seq the gateway chose: the `seq_at_gateway` negative control. Last, so
    /// that it shifts no other variant's encoding.
    #[cfg(feature = "unsafe-knobs")]
    AppendAt { seq: u64, append: Box<ChatCommand> },
}

impl ChatCommand {
    /// The chat whose group orders this command, if any.
    pub fn chat(&self) -> Option<ChatId> {
        match self {
            ChatCommand::CreateChat { chat, .. }
            | ChatCommand::AddMember { chat, .. }
            | ChatCommand::RemoveMember { chat, .. }
            | ChatCommand::Append { chat, .. }
            | ChatCommand::Receipt { chat, .. }
            | ChatCommand::Trim { chat, .. }
            | ChatCommand::SetBlocked { chat, .. }
            | ChatCommand::Invite { chat, .. }
            | ChatCommand::Join { chat, .. }
            | ChatCommand::Decline { chat, .. } => Some(*chat),
            ChatCommand::Put { .. } | ChatCommand::Restore { .. } | ChatCommand::PutMany { .. } => None,
            #[cfg(feature = "unsafe-knobs")]
            ChatCommand::AppendAt { append, .. } => append.chat(),
        }
    }
}

/// Why a command was refused. Refusals are deterministic: every replica refuses alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("no such chat")]
    NoSuchChat,
    #[error("not a member of this chat")]
    NotMember,
    #[error("only a chat admin may do this")]
    NotAdmin,
    #[error("a direct chat has exactly two members")]
    DirectChatFixed,
    #[error("the key already exists")]
    KeyExists,
    #[error("invalid command: {0}")]
    Invalid(String),
    #[error("this user blocked you")]
    Blocked,
    #[error("no invite to this chat")]
    NotInvited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Created { chat: ChatId, existed: bool },
    Appended { chat: ChatId, seq: u64, message_id: Uuid, ts_ms: u64, duplicate: bool },
    MembersChanged { chat: ChatId, member_count: u32 },
    Receipt { chat: ChatId, user: UserId, delivered: u64, read: u64 },
    Put,
    Restored { written: u32, present: u32 },
    Trimmed { chat: ChatId, removed: u32 },
    Rejected(Rejection),
}
