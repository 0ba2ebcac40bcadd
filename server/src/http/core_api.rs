//! The replicated chat log over HTTP, without accounts: the core's own API, for cluster tests,
//! benchmarks and the Jepsen harness. Every write is acknowledged only after it is committed on
//! a quorum and applied.
//!
//! - `POST /internal/v1/chats` `{chatId?, kind, name?, creator, members, index?}` ->
//!   `{chatId, existed}`; with `index`, the chat is listed in its members' chat indexes too
//!   (their WebSocket connections then follow it).
//! - `POST /internal/v1/chats/{chatId}/messages` `{sender, clientMsgId?, text, type?}` ->
//!   `{chatId, seq, messageId, timestamp, duplicate}`
//! - `GET /internal/v1/chats/{chatId}/messages?after=&before=&limit=&consistency=` ->
//!   `{messages, hasMore, head}`; consistency is `linearizable` (default), `local` (any
//!   replica, this node's when it has one) or `replica` (this node's replica only).
//! - `POST /internal/v1/sessions` `{userId}` -> `{token, userId}`: a session for any user id,
//!   no account needed (load generators open many connections this way).

use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Json;
use axum::Router;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::ChatKind;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_storage::chat_store::MessageRecord;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use super::error::JsonBody;
use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/chats", post(create_chat))
        .route("/internal/v1/sessions", post(session))
        .route("/internal/v1/chats/{chat_id}/messages", post(append).get(history))
}

fn parse_chat(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "unknown_chat", format!("{s:?} is not a chat id")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionFor {
    user_id: Uuid,
}

/// `POST /internal/v1/sessions {userId}` -> `{token, refreshToken, userId}`: a session for any
/// user id without an account or password, so that a load generator can open 100,000
/// connections without 100,000 password hashes.
async fn session(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<SessionFor>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = s.service.session_for(req.user_id)?;
    Ok(Json(serde_json::json!({
        "token": session.token,
        "refreshToken": session.refresh_token,
        "userId": session.user_id,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateChat {
    chat_id: Option<Uuid>,
    kind: String,
    #[serde(default)]
    name: String,
    creator: Uuid,
    #[serde(default)]
    members: Vec<Uuid>,
    /// Also list the chat in every member's chat index, as the public API does, so that the
    /// members' WebSocket connections follow it (load generators).
    #[serde(default)]
    index: bool,
}

async fn create_chat(
    State(s): State<AppState>,
    Json(req): Json<CreateChat>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind = match req.kind.as_str() {
        "direct" => ChatKind::Direct,
        "group" => ChatKind::Group,
        other => return Err(ApiError::bad_request(format!("kind must be direct or group, not {other:?}"))),
    };
    let chat = req.chat_id.unwrap_or_else(Uuid::new_v4);
    let mut everyone = req.members.clone();
    everyone.push(req.creator);
    let cmd = ChatCommand::CreateChat {
        chat,
        kind,
        name: req.name,
        creator: req.creator,
        members: req.members,
        ts_ms: crate::service::now_ms(),
    };
    match submit(&s, chat, cmd).await? {
        CommandOutcome::Created { chat, existed } => {
            if req.index {
                everyone.sort_unstable();
                everyone.dedup();
                s.service.index(&everyone, chat, true).await?;
            }
            Ok(Json(serde_json::json!({ "chatId": chat, "existed": existed })))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Append {
    sender: Uuid,
    client_msg_id: Option<String>,
    text: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Appended {
    pub chat_id: Uuid,
    pub seq: u64,
    pub message_id: Uuid,
    pub timestamp: u64,
    pub duplicate: bool,
}

async fn append(
    State(s): State<AppState>,
    Path(chat_id): Path<String>,
    Json(req): Json<Append>,
) -> Result<Json<Appended>, ApiError> {
    let chat = parse_chat(&chat_id)?;
    let client_msg_id = req.client_msg_id.unwrap_or_else(|| Uuid::new_v4().to_string());
    let kind = req.kind.unwrap_or_else(|| "text".into());
    let cmd = s.service.append_command(chat, req.sender, &client_msg_id, &kind, &req.text)?;
    match submit(&s, chat, cmd).await? {
        CommandOutcome::Appended { chat, seq, message_id, ts_ms, duplicate } => {
            Ok(Json(Appended { chat_id: chat, seq, message_id, timestamp: ts_ms, duplicate }))
        }
        other => Err(unexpected(other)),
    }
}

/// Routes a command to its chat's group and turns refusals into API errors.
async fn submit(s: &AppState, chat: Uuid, cmd: ChatCommand) -> Result<CommandOutcome, ApiError> {
    s.service.write(s.service.group(&chat)?, cmd).await
}

fn unexpected(o: CommandOutcome) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected outcome {o:?}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<u32>,
    consistency: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub seq: u64,
    pub message_id: Uuid,
    pub from: Uuid,
    pub client_msg_id: String,
    pub timestamp: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

impl From<MessageRecord> for MessageView {
    fn from(m: MessageRecord) -> Self {
        MessageView {
            seq: m.seq,
            message_id: m.message_id,
            from: m.sender,
            client_msg_id: m.client_msg_id,
            timestamp: m.ts_ms,
            kind: m.kind,
            text: m.body,
        }
    }
}

async fn history(
    State(s): State<AppState>,
    Path(chat_id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_chat(&chat_id)?;
    let group = s.service.group(&chat)?;
    let newest_first = p.before.is_some() && p.after.is_none();
    let query = ReadQuery::History {
        chat,
        after: p.after.unwrap_or(0),
        before: p.before.unwrap_or(u64::MAX),
        limit: p.limit.unwrap_or(50),
        newest_first,
    };
    let result = match p.consistency.as_deref().unwrap_or("linearizable") {
        "linearizable" => s.service.router.read(group, query, Consistency::Linearizable).await?,
        "local" => s.service.router.read(group, query, Consistency::Local).await?,
        "replica" => {
            let g = s.node.group(group).ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "not_hosted",
                    format!("node {} holds no replica of group {group}", s.node.id()),
                )
            })?;
            raftchat_raft::router::read_local(&g, &query, false, s.node.id()).await?
        }
        other => return Err(ApiError::bad_request(format!("unknown consistency {other:?}"))),
    };
    match result {
        ReadResult::History { messages, has_more, head } => {
            let messages: Vec<MessageView> = messages.into_iter().map(MessageView::from).collect();
            Ok(Json(serde_json::json!({ "messages": messages, "hasMore": has_more, "head": head, "group": group })))
        }
        other => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected result {other:?}")))
        }
    }
}
