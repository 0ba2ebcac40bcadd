//! The client-facing HTTP server of a node.
//!
//! - [`health`]: `/livez`, `/readyz`, `/internal/v1/status`.
//! - [`core_api`]: the replicated core's chat log over HTTP (`/internal/v1/chats/...`), used by
//!   the cluster tests and benchmarks; served only with `--internal-api` (no authentication).
//! - The public chat API is in [`crate::api`] (REST) and [`crate::ws`] (WebSocket).
//! - [`admin_api`]: membership and replica moves behind `raftchat admin` (`--internal-api` only).
//! - [`error`]: API errors and the JSON body extractor.

pub mod admin_api;
pub mod core_api;
pub mod error;
pub mod health;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use raftchat_raft::node::Node;
use tokio::sync::watch;
use tokio::sync::Semaphore;

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
}

pub fn routes(state: AppState, internal_api: bool) -> Router {
    let mut router = Router::new().merge(health::routes());
    if internal_api {
        // Writes and reads as any user, without a token: for tests, benchmarks and local dev.
        router = router.merge(core_api::routes()).merge(health::unauthenticated_routes()).merge(admin_api::routes());
    }
    router
        .merge(crate::api::routes())
        .merge(crate::ws::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}
