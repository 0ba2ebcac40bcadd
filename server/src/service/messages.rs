//! Sending messages, reading history, receipts.

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_storage::chat_store::MessageRecord;
use raftchat_storage::message::MessageBytes;
use raftchat_storage::message::MessageView;
use uuid::Uuid;

use super::ChatService;
use crate::http::error::ApiError;

/// Where a message goes.
pub enum Target {
    User(Uuid),
    Chat(Uuid),
}

/// A committed message, as its sender learns it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat: Uuid,
    pub seq: u64,
    pub message_id: Uuid,
    pub ts_ms: u64,
    pub client_msg_id: String,
}

pub const KINDS: [&str; 4] = ["text", "image", "video", "file"];
/// Longest message type the core API takes.
pub const KIND_MAX: usize = 32;

impl ChatService {
    pub async fn send(
        &self,
        me: Uuid,
        target: Target,
        text: String,
        kind: &str,
        client_msg_id: Option<String>,
        media: Option<super::media::MediaRef>,
    ) -> Result<Sent, ApiError> {
        if text.len() > self.config.max_text_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("message is {} bytes; the limit is {}", text.len(), self.config.max_text_bytes),
            ));
        }
        if !KINDS.contains(&kind) {
            return Err(ApiError::bad_request(format!("type must be one of {KINDS:?}")));
        }
        let client_msg_id = client_msg_id.unwrap_or_else(|| Uuid::new_v4().to_string());
        if client_msg_id.is_empty() || client_msg_id.len() > raftchat_raft::command::CLIENT_MSG_ID_MAX {
            return Err(ApiError::bad_request("clientMsgId must be 1 to 128 bytes"));
        }
        self.check_send(me)?;
        let blob = self.check_media_ref(me, kind, media.as_ref()).await?;
        let chat = match target {
            Target::Chat(c) => c,
            Target::User(u) => self.direct_chat(me, u).await?,
        };
        let body = match (&blob, &media) {
            (Some(sha), Some(m)) => {
                // Before the message: a member who sees it may download at once. A reference
                // left by a send that then fails grants the chat's members nothing they could
                // not be sent again.
                self.reference_media(sha, chat).await?;
                super::media::encode_body(&text, m)
            }
            _ => text,
        };
        let cmd = self.append_command(chat, me, &client_msg_id, kind, &body)?;
        #[cfg(feature = "unsafe-knobs")]
        let cmd = match self.unsafe_plan(chat, cmd).await? {
            super::unsafe_send::Plan::Commit(cmd) => cmd,
            super::unsafe_send::Plan::Answered(sent) => return Ok(sent),
        };
        let started = std::time::Instant::now();
        match self.write(self.group(&chat)?, cmd).await? {
            CommandOutcome::Appended { chat, seq, message_id, ts_ms, .. } => {
                self.metrics.messages_committed.inc();
                self.metrics.commit_latency.observe(started.elapsed().as_secs_f64());
                Ok(Sent { chat, seq, message_id, ts_ms, client_msg_id })
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// The command that appends a message to `chat`: its fields checked, stamped with a message
    /// id and this gateway's time (apply never reads a clock), and encoded once, here; the
    /// same bytes are replicated, stored and delivered. Both the chat API and the core API
    /// append through it.
    pub fn append_command(
        &self,
        chat: Uuid,
        sender: Uuid,
        client_msg_id: &str,
        kind: &str,
        body: &str,
    ) -> Result<ChatCommand, ApiError> {
        if body.len() > self.config.max_text_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("message is {} bytes; the limit is {}", body.len(), self.config.max_text_bytes),
            ));
        }
        if client_msg_id.is_empty() || client_msg_id.len() > raftchat_raft::command::CLIENT_MSG_ID_MAX {
            return Err(ApiError::bad_request("clientMsgId must be 1 to 128 bytes"));
        }
        if kind.is_empty() || kind.len() > KIND_MAX {
            return Err(ApiError::bad_request(format!("type must be 1 to {KIND_MAX} bytes")));
        }
        let view =
            MessageView { sender, message_id: Uuid::new_v4(), ts_ms: super::now_ms(), client_msg_id, kind, body };
        let message = MessageBytes::encode(&view)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("encoding: {e}")))?;
        Ok(ChatCommand::Append { chat, message, dedup_window_ms: self.config.dedup_window_ms })
    }

    /// Messages of `chat` for a member: `after` (oldest first) or `before` (newest first).
    pub async fn history(
        &self,
        me: Uuid,
        chat: Uuid,
        after: Option<u64>,
        before: Option<u64>,
        limit: u32,
        c: Consistency,
    ) -> Result<(Vec<MessageRecord>, bool, u64), ApiError> {
        self.membership(me, chat, c).await?;
        let newest_first = before.is_some() && after.is_none();
        self.messages(chat, after.unwrap_or(0), before, limit, newest_first, c).await
    }

    /// Messages without a membership check (delivery already knows the reader is a member).
    pub async fn messages(
        &self,
        chat: Uuid,
        after: u64,
        before: Option<u64>,
        limit: u32,
        newest_first: bool,
        c: Consistency,
    ) -> Result<(Vec<MessageRecord>, bool, u64), ApiError> {
        let query = ReadQuery::History {
            chat,
            after,
            before: before.unwrap_or(u64::MAX),
            limit: limit.clamp(1, 1000),
            newest_first,
        };
        match self.read(self.group(&chat)?, query, c).await? {
            ReadResult::History { messages, has_more, head } => Ok((messages, has_more, head)),
            other => Err(super::unexpected(other)),
        }
    }

    /// The lowest delivered and read watermarks over the members of `chat` other than `me`:
    /// a message of `me` with a seq at or below them is delivered to (read by) everyone.
    pub async fn receipt_floor(&self, me: Uuid, chat: Uuid) -> Result<(u64, u64), ApiError> {
        let query = ReadQuery::Chat { chat, member_limit: super::chats::MEMBERS_LISTED_MAX };
        match self.read(self.group(&chat)?, query, Consistency::Linearizable).await? {
            ReadResult::Chat { members, .. } => {
                let others = members.iter().filter(|(u, _)| *u != me);
                let delivered = others.clone().map(|(_, m)| m.delivered).min().unwrap_or(u64::MAX);
                let read = others.map(|(_, m)| m.read).min().unwrap_or(u64::MAX);
                Ok((delivered, read))
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// [`Self::mark`] for a caller not known to be a member: a receipt for a chat the caller is
    /// not in is refused here, and never reaches the chat's log.
    pub async fn mark_member(&self, me: Uuid, chat: Uuid, delivered: u64, read: u64) -> Result<(u64, u64), ApiError> {
        self.membership(me, chat, Consistency::Local).await?;
        self.mark(me, chat, delivered, read).await
    }

    /// Raises `me`'s delivered and read watermarks in `chat`, a chat `me` is a member of;
    /// returns the new ones.
    pub async fn mark(&self, me: Uuid, chat: Uuid, delivered: u64, read: u64) -> Result<(u64, u64), ApiError> {
        match self.write(self.group(&chat)?, ChatCommand::Receipt { chat, user: me, delivered, read }).await? {
            CommandOutcome::Receipt { delivered, read, .. } => Ok((delivered, read)),
            other => Err(super::unexpected(other)),
        }
    }
}
