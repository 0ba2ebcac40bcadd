//! Blocking users and group invites: `POST/GET /blocks`, `DELETE /blocks/{userId}`,
//! `GET /invites`, `DELETE /invites/{chatId}` (decline), `POST /chats/{chatId}/join` (accept).
//! Each change counts against the caller's membership-change quota.

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Block {
    user_id: Uuid,
}

/// `POST /api/v1/blocks {userId}`: that user can no longer open a direct chat with the caller,
/// message them there, invite them to a group or see their presence.
pub async fn block(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(req): JsonBody<Block>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.service.quotas.check(Quota::Membership, me)?;
    s.service.block(me, req.user_id).await?;
    Ok(Json(serde_json::json!({ "userId": req.user_id, "blocked": true })))
}

/// `DELETE /api/v1/blocks/{userId}`.
pub async fn unblock(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = parse_id(&user, "unknown_user")?;
    s.service.quotas.check(Quota::Membership, me)?;
    s.service.unblock(me, user).await?;
    Ok(Json(serde_json::json!({ "userId": user, "blocked": false })))
}

/// `GET /api/v1/blocks`: the users the caller blocked.
pub async fn list_blocks(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let users = s.service.blocks(me).await?;
    Ok(Json(serde_json::json!({ "blocked": users })))
}

/// `GET /api/v1/invites`: the caller's pending group invites.
pub async fn list_invites(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let invites = s.service.invites(me).await?;
    Ok(Json(serde_json::json!({ "invites": invites })))
}

/// `POST /api/v1/chats/{chatId}/join`: accepts an invite; answers the chat as `GET` does.
pub async fn join(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(chat): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    s.service.quotas.check(Quota::Membership, me)?;
    s.service.join(me, chat).await?;
    let v = s.service.chat_view(me, chat, MEMBERS_LISTED_MAX).await?;
    Ok(Json(serde_json::to_value(v).unwrap_or_default()))
}

/// `DELETE /api/v1/invites/{chatId}`: declines an invite.
pub async fn decline(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(chat): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let chat = parse_id(&chat, "unknown_chat")?;
    s.service.quotas.check(Quota::Membership, me)?;
    s.service.decline(me, chat).await?;
    Ok(Json(serde_json::json!({ "chatId": chat, "invited": false })))
}
