//! The gateway's deliberate bugs (feature `unsafe-knobs`, see `raftchat_storage::unsafe_knobs`):
//! `ack_before_commit` and `seq_at_gateway`. Both guess the next seq of a chat from this node's
//! replica (or the nearest one) plus the guesses it made before, as a gateway that "knows" the
//! log would.

use std::collections::HashMap;
use std::sync::Mutex;

use raftchat_raft::command::ChatCommand;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_storage::unsafe_knobs::on;
use raftchat_storage::unsafe_knobs::Knob;
use uuid::Uuid;

use super::messages::Sent;
use super::ChatService;
use crate::http::error::ApiError;

/// The last seq this gateway guessed per chat.
static GUESSED: Mutex<Option<HashMap<Uuid, u64>>> = Mutex::new(None);

/// What the send path does under the gateway knobs.
pub enum Plan {
    /// Commit this command and answer with its outcome.
    Commit(ChatCommand),
    /// Answer now; the command commits (or not) in the background.
    Answered(Sent),
}

impl ChatService {
    pub(super) async fn unsafe_plan(&self, chat: Uuid, cmd: ChatCommand) -> Result<Plan, ApiError> {
        let (ack_early, seq_here) = (on(Knob::AckBeforeCommit), on(Knob::SeqAtGateway));
        if !ack_early && !seq_here {
            return Ok(Plan::Commit(cmd));
        }
        let group = self.group(&chat)?;
        let head = match self.read(group, ReadQuery::Chat { chat, member_limit: 0 }, Consistency::Local).await? {
            ReadResult::Chat { header, .. } => header.next_seq.saturating_sub(1),
            other => return Err(super::unexpected(other)),
        };
        let seq = {
            let mut guard = GUESSED.lock().unwrap_or_else(|e| e.into_inner());
            let last = guard.get_or_insert_with(HashMap::new).entry(chat).or_insert(0);
            *last = (*last + 1).max(head + 1);
            *last
        };
        let cmd = if seq_here { ChatCommand::AppendAt { seq, append: Box::new(cmd) } } else { cmd };
        if !ack_early {
            return Ok(Plan::Commit(cmd));
        }
        let message = match &cmd {
            ChatCommand::Append { message, .. } => message,
            ChatCommand::AppendAt { append, .. } => match append.as_ref() {
                ChatCommand::Append { message, .. } => message,
                other => return Err(super::unexpected(other)),
            },
            other => return Err(super::unexpected(other)),
        };
        let v = message.view().map_err(super::unexpected)?;
        let (message_id, ts_ms, client_msg_id) = (v.message_id, v.ts_ms, v.client_msg_id.to_string());
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = svc.write(group, cmd).await {
                tracing::warn!(cause = %e.message, "ack_before_commit: the early-acknowledged append failed");
            }
        });
        Ok(Plan::Answered(Sent { chat, seq, message_id, ts_ms, client_msg_id }))
    }
}
