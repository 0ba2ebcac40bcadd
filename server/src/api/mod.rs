//! The public REST API under `/api/v1` (the design brief's shapes, extended).
//!
//! - [`users`]: `POST /users`, `POST /sessions`, `POST /sessions/refresh`, logout, password.
//! - [`chats`]: `POST /chats`, `GET /chats`, `GET /chats/{id}`, members, `POST /chats/{id}/read`.
//! - [`consent`]: blocks, invites, `POST /chats/{id}/join`.
//! - [`messages`]: `POST /messages`, `GET /messages/{chatId}`.
//! - [`media`]: `POST /media`, `GET /media/{mediaId}`.
//! - [`openapi`]: `GET /openapi.json`.
//!
//! Every call but registration, login, refresh (its refresh token is in the body) and the
//! OpenAPI document needs a bearer token (`Authorization: Bearer <token>`, or `?token=`).

pub mod chats;
pub mod consent;
pub mod media;
pub mod messages;
pub mod openapi;
pub mod presence;
pub mod users;

#[cfg(test)]
mod fuzz_tests;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::routing::get;
use axum::routing::post;
use axum::Router;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::AppState;

/// Largest body of the routes that take a small JSON object (accounts, receipts, presence,
/// blocks, members): a few hundred bytes in use; 16 KiB leaves room and keeps a flood cheap.
pub const SMALL_BODY_BYTES: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    // Bodies up to `BODY_BYTES_MAX` (the server-wide limit): a group's member list and messages.
    let large = Router::new()
        .route("/api/v1/chats", post(chats::create).get(chats::list))
        .route("/api/v1/messages", post(messages::send))
        // Uploads stream to disk under their own size limit (--media-max-mib).
        .route("/api/v1/media", post(media::upload).layer(axum::extract::DefaultBodyLimit::disable()));
    let small = Router::new()
        .route("/api/v1/users", post(users::register))
        .route("/api/v1/users/{username}", get(users::lookup))
        .route("/api/v1/users/id/{user_id}", get(users::by_id))
        .route("/api/v1/sessions", post(users::login).delete(users::logout_everywhere))
        .route("/api/v1/sessions/current", delete(users::logout))
        .route("/api/v1/sessions/refresh", post(users::refresh))
        .route("/api/v1/users/me/password", axum::routing::put(users::change_password))
        .route("/api/v1/chats/{chat_id}", get(chats::show))
        .route("/api/v1/chats/{chat_id}/members", post(chats::add_member))
        .route("/api/v1/chats/{chat_id}/members/{user_id}", delete(chats::remove_member))
        .route("/api/v1/chats/{chat_id}/read", post(chats::read))
        .route("/api/v1/chats/{chat_id}/join", post(consent::join))
        .route("/api/v1/invites", get(consent::list_invites))
        .route("/api/v1/invites/{chat_id}", delete(consent::decline))
        .route("/api/v1/blocks", post(consent::block).get(consent::list_blocks))
        .route("/api/v1/blocks/{user_id}", delete(consent::unblock))
        .route("/api/v1/messages/{chat_id}", get(messages::history))
        .route("/api/v1/media/{media_id}", get(media::download))
        .route("/api/v1/media/{media_id}/link", post(media::link))
        .route("/api/v1/presence", post(presence::set))
        .route("/api/v1/presence/{user_id}", get(presence::get))
        .route("/api/v1/openapi.json", get(openapi::document))
        .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY_BYTES));
    large.merge(small).layer(cors())
}

/// Any origin may call the API: it is authorized by bearer tokens, never by cookies, and the web
/// client moves to another node's origin when its own node is down.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::header;
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods(tower_http::cors::Any)
        .allow_headers(tower_http::cors::Any)
        .expose_headers([header::CONTENT_RANGE, header::CONTENT_LENGTH, header::ACCEPT_RANGES])
        .max_age(std::time::Duration::from_secs(3600))
}

/// The authenticated caller.
pub struct AuthUser(pub Uuid);

/// The bearer token of a request: the Authorization header, else the `token` query parameter.
pub fn bearer(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return h.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    parts.uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=").map(|t| t.to_string())))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no_token", "a bearer token is required"))?;
        Ok(AuthUser(state.service.authenticate(&token).await?.user))
    }
}

/// The authenticated caller's session (for logout).
pub struct AuthSession(pub crate::auth::Claims);

impl FromRequestParts<AppState> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no_token", "a bearer token is required"))?;
        Ok(AuthSession(state.service.authenticate(&token).await?))
    }
}

pub fn parse_id(s: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, what, format!("{s:?} is not a valid id")))
}
