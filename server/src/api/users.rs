//! `POST /api/v1/users` and `POST /api/v1/sessions`.

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
    Ok(Json(serde_json::json!({
        "token": session.token,
        "userId": session.user_id,
        "expiresAt": crate::service::rfc3339(session.expires_ms),
    })))
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
