//! `POST /api/v1/presence {status}` and `GET /api/v1/presence/{userId}` (the brief's shapes).

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::parse_id;
use super::AuthUser;
use crate::http::error::ApiError;
use crate::http::error::JsonBody;
use crate::http::AppState;
use crate::presence::table::Status;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPresence {
    status: String,
}

/// Sets the caller's status as seen through this node (`online`, `away`, or `offline` to clear);
/// it lasts `--rest-presence-ttl-secs` (60) unless posted again, as the brief's heartbeat.
pub async fn set(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(req): JsonBody<SetPresence>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status =
        Status::parse(&req.status).ok_or_else(|| ApiError::bad_request("status must be online, away or offline"))?;
    let conn_status = (status != Status::Offline).then_some(status);
    s.presence.set_rest(me, conn_status);
    let v = s.presence.view(&me);
    Ok(Json(serde_json::json!({ "userId": me, "status": v.status.as_str() })))
}

/// A user's presence, for users who share a chat with the caller and did not block them (and
/// the caller).
pub async fn get(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = parse_id(&user, "unknown_user")?;
    if user != me {
        let mine = s.service.chat_ids(me).await?;
        let theirs = s.service.chat_ids(user).await?;
        // Someone who blocked the caller is, to the caller, no contact at all.
        if !mine.iter().any(|c| theirs.contains(c)) || s.service.has_blocked(user, me).await? {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "not_a_contact", "you share no chat with this user"));
        }
    }
    let v = s.presence.view(&user);
    let last_seen = (v.last_seen_ms > 0).then(|| crate::service::rfc3339(v.last_seen_ms));
    Ok(Json(serde_json::json!({ "userId": user, "status": v.status.as_str(), "lastSeen": last_seen })))
}
