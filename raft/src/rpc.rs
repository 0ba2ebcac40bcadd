//! Messages between nodes: Raft RPCs of a group, and client work forwarded to a group's leader.

use openraft::error::InstallSnapshotError;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use raftchat_storage::chat_store::ChatHeader;
use raftchat_storage::chat_store::Member;
use raftchat_storage::chat_store::MessageRecord;
use serde::Deserialize;
use serde::Serialize;

use crate::batch::EncodedCommand;
use crate::command::ChatId;
use crate::command::CommandOutcome;
use crate::command::UserId;
use crate::meta::MetaCommand;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::TypeConfig;

type RaftRpcError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Chat commands for groups the receiver leads, forwarded together by a gateway (the
    /// frame's group is ignored); answered in order.
    WriteBatch(Vec<(GroupId, EncodedCommand)>),
    /// A change of the cluster layout, for the meta group's leader.
    MetaWrite(MetaCommand),
    /// A query; `linearizable` asks the leader to confirm its leadership first.
    Read {
        query: ReadQuery,
        linearizable: bool,
    },
    /// Recent committed events of the group after `after` (see `events::EventLog::poll`).
    PollEvents {
        epoch: u64,
        after: Option<u64>,
        wait_ms: u32,
    },
    /// Soft state between nodes (presence gossip, typing), handled by the application; never
    /// touches Raft. The group id of the frame is ignored.
    App {
        topic: u16,
        body: Vec<u8>,
    },
    /// A membership change, for the group's leader.
    Membership(crate::membership::MembershipChange),
    /// Yield or resume leadership (answered with `RpcResponse::Membership`).
    Leadership(crate::leadership::LeadershipOp),
    /// The sender's layout of `epoch` no longer lists the receiver: it was removed and stops.
    Removed {
        epoch: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    Append(Result<AppendEntriesResponse<NodeId>, RaftRpcError>),
    Vote(Result<VoteResponse<NodeId>, RaftRpcError>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>>),
    WriteBatch(Vec<Result<CommandOutcome, AppError>>),
    MetaWrite(Result<(), AppError>),
    Read(Result<ReadResult, AppError>),
    Events(crate::events::EventBatch),
    App(Vec<u8>),
    /// The receiving node has no replica of that group.
    GroupNotHosted,
    /// The answer to a `Membership` or `Leadership` request.
    Changed(Result<(), AppError>),
}

/// Why client work routed to a group did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("not the leader of this group (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("this node holds no replica of the group")]
    GroupNotHosted,
    /// Surely not applied: it never reached a leader.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// May or may not have been applied; retrying with the same client message id is safe.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    #[error("no such chat")]
    NoSuchChat,
    #[error("overloaded: {0}")]
    Overloaded(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadQuery {
    /// Messages with `after < seq < before`, oldest first, or newest first when `newest_first`.
    History { chat: ChatId, after: u64, before: u64, limit: u32, newest_first: bool },
    /// A chat's header and up to `member_limit` members.
    Chat { chat: ChatId, member_limit: u32 },
    /// One member's record.
    Member { chat: ChatId, user: UserId },
    /// A replicated key.
    Key { key: Vec<u8> },
    /// Replicated keys starting with `prefix`, at most `limit`.
    KeyPrefix { prefix: Vec<u8>, limit: u32 },
    /// Replicated keys starting with `prefix` after `after` (exclusive), at most `limit`: paging.
    KeysAfter { prefix: Vec<u8>, after: Vec<u8>, limit: u32 },
    /// Chats after `after` whose newest seq is past a per-chat cursor kept under the replicated
    /// key `cursor_prefix + chat id` (8 bytes big-endian; missing = 0). Looks at `limit` chats;
    /// `next` continues the scan.
    ChatsPastCursor { after: Option<ChatId>, cursor_prefix: Vec<u8>, limit: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadResult {
    History {
        messages: Vec<MessageRecord>,
        has_more: bool,
        head: u64,
    },
    Chat {
        header: ChatHeader,
        members: Vec<(UserId, Member)>,
    },
    Member(Option<Member>),
    Key(Option<Vec<u8>>),
    Keys(Vec<(Vec<u8>, Vec<u8>)>),
    /// (chat, newest seq, cursor) of chats past their cursor; `next`: where to go on.
    ChatsPastCursor {
        chats: Vec<(ChatId, u64, u64)>,
        next: Option<ChatId>,
    },
}
