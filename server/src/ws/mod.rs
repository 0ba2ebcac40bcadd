//! The WebSocket endpoint `/ws?token=...` (the brief's `?userId=...&token=...` too).
//!
//! - [`frames`]: client and server frames; the only place socket text is parsed.
//! - [`connection`]: one task per socket: the client's requests and the deliveries.
//! - [`writer`]: what a connection delivered, catch-up from history, and its buffered writes.

pub mod connection;
pub mod frames;
pub mod writer;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::AppState;

/// Largest WebSocket message accepted; larger ones close the socket. Texts over the configured
/// message limit but under this get an error frame and the socket stays open.
pub const WS_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Bytes of queued frames past which a WebSocket writes before its flush.
pub const WS_WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// Read buffer of one WebSocket; longer frames grow it while they are read.
pub const WS_READ_BUFFER_BYTES: usize = 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsParams {
    token: Option<String>,
    user_id: Option<Uuid>,
}

async fn upgrade(State(s): State<AppState>, Query(p): Query<WsParams>, ws: WebSocketUpgrade) -> Response {
    let Some(token) = p.token else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "no_token", "connect with ?token=").into_response();
    };
    let user = match s.service.authenticate(&token) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if p.user_id.is_some_and(|u| u != user) {
        return ApiError::new(StatusCode::FORBIDDEN, "wrong_user", "userId does not match the token").into_response();
    }
    let Ok(permit) = Arc::clone(&s.ws_slots).try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this node is at its connection limit",
        )
        .into_response();
    };
    let cx = connection::Context {
        service: s.service.clone(),
        hub: s.hub.clone(),
        presence: s.presence.clone(),
        timing: s.timing,
    };
    let shutdown = s.shutdown.clone();
    // Small buffers: tungstenite's default allocates 128 KiB per connection up front, which
    // 100,000 connections cannot afford; chat frames are small. Writes gather in the write
    // buffer (it grows only as frames are queued) until the connection flushes, so a burst of
    // deliveries is one write.
    ws.max_message_size(WS_MESSAGE_BYTES_MAX)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            // Every log line of this connection carries its user.
            let span = tracing::info_span!("ws", %user);
            tracing::Instrument::instrument(
                async move {
                    connection::serve(socket, user, cx, shutdown).await;
                    drop(permit);
                },
                span,
            )
        })
}
