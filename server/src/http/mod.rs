//! The client-facing HTTP server of a node.
//!
//! - [`health`]: `/livez`, `/readyz`, `/internal/v1/status`.
//! - [`core_api`]: the replicated core's chat log over HTTP (`/internal/v1/chats/...`), used by
//!   the cluster tests and benchmarks; served only with `--internal-api` (no authentication).
//! - The public chat API is in [`crate::api`] (REST) and [`crate::ws`] (WebSocket).
//! - [`admin_api`]: membership and replica moves behind `raftchat admin`; [`backup_api`]: backup
//!   and restore; [`retention_api`]: history retention. Both are served with `--internal-api` or `--admin-token`, and with a token only
//!   to requests that carry it (`Authorization: Bearer <token>`).
//! - [`blob_api`]: media blob copies between nodes (peer token).
//! - [`push_api`]: the push notification dead-letter queue (admin API).
//! - [`web`]: the web client at `/` (files compiled in from server/web/).
//! - [`error`]: API errors and the JSON body extractor.

pub mod admin_api;
pub mod backup_api;
pub mod blob_api;
pub mod core_api;
pub mod error;
pub mod health;
pub mod push_api;
pub mod retention_api;
pub mod web;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Router;
use raftchat_raft::node::Node;
use tokio::sync::watch;
use tokio::sync::Semaphore;

use self::error::ApiError;

/// Largest request body the API accepts.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub node: Node,
    /// Chat logic; it also holds the router and the limits.
    pub service: crate::service::ChatService,
    pub hub: Arc<crate::delivery::Hub>,
    /// One permit per open WebSocket: the connection cap.
    pub ws_slots: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub presence: Arc<crate::presence::Presence>,
    pub timing: crate::ws::connection::Timing,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub media: Arc<crate::media::Media>,
    pub push: Arc<crate::push::Push>,
}

pub fn routes(state: AppState, internal_api: bool, admin_token: Option<String>) -> Router {
    let mut router = Router::new().merge(health::routes());
    if internal_api {
        // Writes and reads as any user, without a token: for tests, benchmarks and local dev.
        router = router.merge(core_api::routes()).merge(health::unauthenticated_routes());
    }
    if internal_api || admin_token.is_some() {
        router = router.merge(admin_routes(admin_token));
    }
    router
        .merge(blob_api::routes(state.clone()))
        .merge(crate::api::routes())
        .merge(web::routes())
        .merge(crate::ws::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// The admin API; with a token, only for requests that carry it.
fn admin_routes(token: Option<String>) -> Router<AppState> {
    let routes = admin_api::routes()
        .merge(backup_api::routes())
        .merge(retention_api::routes())
        .route("/internal/v1/admin/media", axum::routing::get(blob_api::admin_list))
        .merge(push_api::routes());
    match token {
        None => routes,
        Some(t) => {
            let expected: Arc<[u8]> = format!("Bearer {t}").into_bytes().into();
            routes.route_layer(axum::middleware::from_fn(move |req: Request, next: Next| {
                let expected = expected.clone();
                async move {
                    let given = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
                    if constant_time_eq(given, &expected) {
                        next.run(req).await
                    } else {
                        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the admin API needs the admin token")
                            .into_response()
                    }
                }
            }))
        }
    }
}

/// Compares without an early exit, so response time does not reveal a matching prefix.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!super::constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!super::constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!super::constant_time_eq(b"", b"Bearer abc"));
    }
}
