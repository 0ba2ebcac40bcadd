//! `POST /api/v1/users`, `POST /api/v1/sessions` (login), `POST /api/v1/sessions/refresh`,
//! logout, revoke-all, password change and user lookups.

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::http::error::ApiError;
use crate::http::error::JsonBody;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

pub async fn register(
    State(s): State<AppState>,
    addr: Option<axum::Extension<crate::tls::serve::ClientAddr>>,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let r = s.service.register(&c.username, &c.password, addr.map(|a| a.0 .0.ip())).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "userId": r.user_id, "username": r.username }))))
}

pub async fn login(
    State(s): State<AppState>,
    addr: Option<axum::Extension<crate::tls::serve::ClientAddr>>,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = s.service.login(&c.username, &c.password, addr.map(|a| a.0 .0.ip())).await?;
    Ok(Json(session_json(&session)))
}

/// What login, a password change and a refresh answer: `{token, refreshToken, userId,
/// expiresAt, refreshExpiresAt}`.
pub fn session_json(s: &crate::service::users::Session) -> serde_json::Value {
    serde_json::json!({
        "token": s.token,
        "refreshToken": s.refresh_token,
        "userId": s.user_id,
        "expiresAt": crate::service::rfc3339(s.expires_ms),
        "refreshExpiresAt": crate::service::rfc3339(s.refresh_expires_ms),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    refresh_token: String,
}

/// `POST /api/v1/sessions/refresh {refreshToken}` -> new tokens for the same session, as a
/// login answers them (no Authorization: the refresh token is the credential).
pub async fn refresh(
    State(s): State<AppState>,
    addr: Option<axum::Extension<crate::tls::serve::ClientAddr>>,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if req.refresh_token.is_empty() {
        return Err(ApiError::bad_request("refreshToken is required"));
    }
    let session = s.service.refresh(&req.refresh_token, addr.map(|a| a.0 .0.ip())).await?;
    Ok(Json(session_json(&session)))
}

/// `DELETE /api/v1/sessions/current`: logs this session out on every node.
pub async fn logout(
    State(s): State<AppState>,
    super::AuthSession(c): super::AuthSession,
) -> Result<StatusCode, ApiError> {
    s.service.logout(&c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/sessions`: revokes every session of the caller (this one included).
pub async fn logout_everywhere(
    State(s): State<AppState>,
    super::AuthUser(me): super::AuthUser,
) -> Result<StatusCode, ApiError> {
    s.service.revoke_all(me).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `PUT /api/v1/users/me/password {oldPassword, newPassword}` -> a new session; every other
/// session of the user is revoked.
pub async fn change_password(
    State(s): State<AppState>,
    super::AuthUser(me): super::AuthUser,
    addr: Option<axum::Extension<crate::tls::serve::ClientAddr>>,
    JsonBody(req): JsonBody<PasswordChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session =
        s.service.change_password(me, &req.old_password, &req.new_password, addr.map(|a| a.0 .0.ip())).await?;
    Ok(Json(session_json(&session)))
}

/// `GET /api/v1/users/id/{userId}` -> `{userId, username}`: names for the ids messages carry.
pub async fn by_id(
    State(s): State<AppState>,
    _me: super::AuthUser,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = super::parse_id(&id, "unknown_user")?;
    match s.service.user(&id).await? {
        Some(r) => Ok(Json(serde_json::json!({ "userId": r.user_id, "username": r.username }))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_user", format!("no user {id}"))),
    }
}

/// `GET /api/v1/users/{username}` -> `{userId, username}` (any signed-in user may look up names).
pub async fn lookup(
    State(s): State<AppState>,
    _me: super::AuthUser,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match s.service.user_by_name(&name).await? {
        Some(r) => Ok(Json(serde_json::json!({ "userId": r.user_id, "username": r.username }))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_user", format!("no user {name:?}"))),
    }
}
