//! The WebSocket endpoint `/ws`. The session token comes, in order of preference:
//! - in the `Sec-WebSocket-Protocol` header: the client offers `raftchat` and `bearer.<token>`,
//!   and the server selects `raftchat` (what a browser can do; the token stays out of URLs);
//! - in a first frame `{"type":"auth","token":"..."}` within 10 s of connecting;
//! - as `?token=` (the brief's `?userId=...&token=...` shape; weaker: URLs end up in logs).
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

/// The subprotocol the server selects when the client offers it.
pub const PROTOCOL: &str = "raftchat";
/// A connection without a token must authenticate with its first frame this soon.
const AUTH_FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsParams {
    token: Option<String>,
    user_id: Option<Uuid>,
}

/// The token a client offered as the subprotocol `bearer.<token>`.
fn protocol_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer.").map(str::to_string))
}

async fn upgrade(
    State(s): State<AppState>,
    Query(p): Query<WsParams>,
    headers: axum::http::HeaderMap,
    hold: Option<axum::Extension<crate::tls::serve::ConnectionHold>>,
    ws: WebSocketUpgrade,
) -> Response {
    // Authenticated now (header or query), or by the first frame once upgraded.
    let claims = match protocol_token(&headers).or(p.token) {
        Some(token) => match s.service.authenticate(&token).await {
            Ok(c) => Some(c),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    if let (Some(claimed), Some(c)) = (p.user_id, claims) {
        if claimed != c.user {
            return ApiError::new(StatusCode::FORBIDDEN, "wrong_user", "userId does not match the token")
                .into_response();
        }
    }
    // The user's slot on this node: refused with 429 before the upgrade when the token came
    // with it, else (first-frame authentication) with close code 4008 once authenticated.
    let user_slot = match &claims {
        Some(c) => match s.service.quotas.ws_slot(c.user) {
            Ok(slot) => Some(slot),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
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
    let claimed = p.user_id;
    ws.protocols([PROTOCOL])
        .max_message_size(WS_MESSAGE_BYTES_MAX)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .on_upgrade(move |mut socket| async move {
            let claims = match claims {
                Some(c) => c,
                None => match auth_frame(&mut socket, &cx.service, claimed).await {
                    Some(c) => c,
                    None => return,
                },
            };
            let user_slot = match user_slot.map_or_else(|| cx.service.quotas.ws_slot(claims.user), Ok) {
                Ok(slot) => slot,
                Err(e) => return refuse(socket, e, CLOSE_TOO_MANY_FOR_USER).await,
            };
            // Every log line of this connection carries its user.
            let span = tracing::info_span!("ws", user = %claims.user);
            tracing::Instrument::instrument(connection::serve(socket, claims, cx, shutdown), span).await;
            drop(permit);
            drop(user_slot);
            // The client address's connection slot, held for the socket's life.
            drop(hold);
        })
}

/// Close code of a socket whose user has `--ws-connections-per-user-max` WebSockets on this
/// node already (when it authenticated by its first frame; otherwise the upgrade is a 429).
pub const CLOSE_TOO_MANY_FOR_USER: u16 = 4008;

/// Says why in an error frame, then closes with `code`.
async fn refuse(mut socket: axum::extract::ws::WebSocket, e: ApiError, code: u16) {
    use axum::extract::ws::Message;
    let frame = frames::ServerFrame::error(e.code, e.message, Some("auth".into())).to_text();
    let _ = socket.send(Message::Text(frame.into())).await;
    let close = axum::extract::ws::CloseFrame { code, reason: e.code.into() };
    let _ = socket.send(Message::Close(Some(close))).await;
}

/// Authenticates a connection by its first frame; on failure says why and closes.
async fn auth_frame(
    socket: &mut axum::extract::ws::WebSocket,
    service: &crate::service::ChatService,
    claimed: Option<Uuid>,
) -> Option<crate::auth::Claims> {
    use axum::extract::ws::Message;
    let first = tokio::time::timeout(AUTH_FRAME_TIMEOUT, socket.recv()).await;
    let result = match first {
        Ok(Some(Ok(Message::Text(t)))) => match frames::parse_auth(t.as_str()) {
            Some(token) => service.authenticate(&token).await.map_err(|e| ("unauthorized", e.to_string())),
            None => Err(("no_token", "the first frame must be {\"type\":\"auth\",\"token\":...}".to_string())),
        },
        Ok(_) => Err(("no_token", "no auth frame".to_string())),
        Err(_) => Err(("no_token", "no auth frame within 10 s".to_string())),
    };
    let result = result.and_then(|c| match claimed {
        Some(u) if u != c.user => Err(("wrong_user", "userId does not match the token".to_string())),
        _ => Ok(c),
    });
    match result {
        Ok(u) => Some(u),
        Err((code, message)) => {
            let frame = frames::ServerFrame::error(code, message, Some("auth".into())).to_text();
            let _ = socket.send(Message::Text(frame.into())).await;
            let _ = socket.send(Message::Close(None)).await;
            None
        }
    }
}
