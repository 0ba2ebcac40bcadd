//! `POST /api/v1/messages` and `GET /api/v1/messages/{chatId}`.

use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::Json;
use raftchat_raft::router::Consistency;
use raftchat_storage::chat_store::MessageRecord;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use super::parse_id;
use super::AuthUser;
use crate::http::error::ApiError;
use crate::http::error::JsonBody;
use crate::http::AppState;
use crate::service::media::decode_body;
use crate::service::media::MediaRef;
use crate::service::messages::Target;
use crate::service::rfc3339;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Send {
    to_user_id: Option<Uuid>,
    group_id: Option<Uuid>,
    chat_id: Option<Uuid>,
    message: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    client_msg_id: Option<String>,
    /// For type image, video or file: `{mediaId, mime, size, name, width?, height?}`.
    media: Option<MediaRef>,
}

/// `POST /api/v1/messages {toUserId | groupId | chatId, message, type, clientMsgId?, media?}`; answers
/// only after the message is committed on a quorum.
pub async fn send(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(req): JsonBody<Send>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let target = match (req.to_user_id, req.group_id.or(req.chat_id)) {
        (Some(u), None) => Target::User(u),
        (None, Some(c)) => Target::Chat(c),
        _ => return Err(ApiError::bad_request("name exactly one of toUserId, groupId or chatId")),
    };
    let kind = req.kind.as_deref().unwrap_or("text");
    let sent = s.service.send(me, target, req.message, kind, req.client_msg_id, req.media).await?;
    Ok(Json(serde_json::json!({
        "messageId": sent.message_id,
        "chatId": sent.chat,
        "seq": sent.seq,
        "clientMsgId": sent.client_msg_id,
        "timestamp": rfc3339(sent.ts_ms),
        "status": "sent",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    limit: Option<u32>,
    before: Option<u64>,
    after: Option<u64>,
    consistency: Option<String>,
    token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson {
    message_id: Uuid,
    chat_id: Uuid,
    seq: u64,
    from: Uuid,
    #[serde(rename = "type")]
    kind: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<MediaRef>,
    client_msg_id: String,
    timestamp: String,
    /// For the caller's own messages: `sent`, `delivered` (to every other member) or `read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

pub fn message_json(chat: Uuid, m: MessageRecord) -> MessageJson {
    let (message, media) = decode_body(&m.kind, m.body);
    MessageJson {
        status: None,
        message_id: m.message_id,
        chat_id: chat,
        seq: m.seq,
        from: m.sender,
        kind: m.kind,
        message,
        media,
        client_msg_id: m.client_msg_id,
        timestamp: rfc3339(m.ts_ms),
    }
}

/// `GET /api/v1/messages/{chatId}?limit=50&before=SEQ` (newest first) or `&after=SEQ` (oldest
/// first).
pub async fn history(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(chat): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    let _ = p.token;
    let c = match p.consistency.as_deref() {
        None | Some("linearizable") => Consistency::Linearizable,
        Some("local") => Consistency::Local,
        Some(other) => return Err(ApiError::bad_request(format!("unknown consistency {other:?}"))),
    };
    let (messages, has_more, head) = s.service.history(me, chat, p.after, p.before, p.limit.unwrap_or(50), c).await?;
    let floor =
        if messages.iter().any(|m| m.sender == me) { Some(s.service.receipt_floor(me, chat).await?) } else { None };
    let messages: Vec<MessageJson> = messages
        .into_iter()
        .map(|m| {
            let status = match floor {
                Some((_, read)) if m.sender == me && m.seq <= read => Some("read"),
                Some((delivered, _)) if m.sender == me && m.seq <= delivered => Some("delivered"),
                Some(_) if m.sender == me => Some("sent"),
                _ => None,
            };
            MessageJson { status, ..message_json(chat, m) }
        })
        .collect();
    Ok(Json(serde_json::json!({ "messages": messages, "hasMore": has_more, "lastSeq": head })))
}
