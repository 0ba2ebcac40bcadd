//! Chats and members.

use axum::extract::Path;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::parse_id;
use super::AuthUser;
use crate::http::error::ApiError;
use crate::http::error::JsonBody;
use crate::http::AppState;
use crate::service::chats::MEMBERS_LISTED_MAX;
use crate::service::quotas::Quota;

/// Pending invites listed with a chat at most.
const INVITED_LISTED_MAX: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    members: Vec<Uuid>,
}

/// `POST /api/v1/chats {type: "direct", members: [userId]}` or `{type: "group", name, members}`.
pub async fn create(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(req): JsonBody<CreateChat>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.service.quotas.check(Quota::ChatCreation, me)?;
    let (chat, invited) = match req.kind.as_str() {
        "direct" => {
            let others: Vec<Uuid> = req.members.iter().copied().filter(|m| *m != me).collect();
            let [other] = others[..] else {
                return Err(ApiError::bad_request("a direct chat names exactly one other member"));
            };
            (s.service.direct_chat(me, other).await?, Vec::new())
        }
        "group" => s.service.create_group(me, req.name.as_deref().unwrap_or(""), &req.members).await?,
        other => return Err(ApiError::bad_request(format!("type must be direct or group, not {other:?}"))),
    };
    let v = s.service.chat_view(me, chat, MEMBERS_LISTED_MAX).await?;
    let mut v = serde_json::to_value(v).unwrap_or_default();
    v["invited"] = serde_json::json!(invited);
    Ok(Json(v))
}

/// `GET /api/v1/chats`.
pub async fn list(State(s): State<AppState>, AuthUser(me): AuthUser) -> Result<Json<serde_json::Value>, ApiError> {
    let chats = s.service.list_chats(me).await?;
    Ok(Json(serde_json::json!({ "chats": chats })))
}

/// `GET /api/v1/chats/{chatId}`, with the users invited and not joined yet (`invited`).
pub async fn show(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(chat): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    let v = s.service.chat_view(me, chat, MEMBERS_LISTED_MAX).await?;
    let mut v = serde_json::to_value(v).unwrap_or_default();
    v["invited"] = serde_json::json!(s.service.invited(chat, INVITED_LISTED_MAX).await?);
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    user_id: Uuid,
}

/// `POST /api/v1/chats/{chatId}/members {userId}` (admins only): invites the user, who joins by
/// accepting (`member` is true only when they were a member already).
pub async fn add_member(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(chat): Path<String>,
    JsonBody(req): JsonBody<AddMember>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    s.service.quotas.check(Quota::Membership, me)?;
    let invited = s.service.invite(me, chat, req.user_id).await?;
    Ok(Json(serde_json::json!({ "chatId": chat, "userId": req.user_id, "member": !invited, "invited": invited })))
}

/// `DELETE /api/v1/chats/{chatId}/members/{userId}` (admins, or a member leaving).
pub async fn remove_member(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path((chat, user)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    let user = parse_id(&user, "unknown_user")?;
    s.service.quotas.check(Quota::Membership, me)?;
    s.service.remove_member(me, chat, user).await?;
    Ok(Json(serde_json::json!({ "chatId": chat, "userId": user, "member": false })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Read {
    seq: u64,
}

/// `POST /api/v1/chats/{chatId}/read {seq}`.
pub async fn read(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(chat): Path<String>,
    JsonBody(req): JsonBody<Read>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    s.service.quotas.check(Quota::Receipts, me)?;
    let (delivered, read) = s.service.mark_member(me, chat, req.seq, req.seq).await?;
    Ok(Json(serde_json::json!({ "chatId": chat, "delivered": delivered, "read": read })))
}
