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
    /// Clients reach the nodes over HTTPS.
    pub https: bool,
    /// How this node calls other nodes (over HTTPS with the node certificate).
    pub peers_http: crate::tls::client::NodeHttp,
    /// The cluster's admin token, which this node also presents when it calls another node's
    /// admin API on a caller's behalf without one.
    pub admin_token: Option<String>,
}

impl AppState {
    /// A client for another node's admin API, carrying the caller's `Authorization` (or the
    /// node's admin token) and, over HTTPS, the node certificate.
    pub fn admin_client(
        &self,
        timeout: std::time::Duration,
        caller: Option<&axum::http::HeaderValue>,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let mut headers = reqwest::header::HeaderMap::new();
        let auth = caller.cloned().or_else(|| {
            self.admin_token.as_ref().and_then(|t| axum::http::HeaderValue::from_str(&format!("Bearer {t}")).ok())
        });
        if let Some(mut v) = auth {
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        self.peers_http.builder().timeout(timeout).default_headers(headers).build()
    }
}

/// Who may call the operator and admin API.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `--internal-api`: everyone (tests, benchmarks, `raftchat dev`; loopback unless --insecure).
    pub internal_api: bool,
    /// Requests with `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// `/metrics` without credentials.
    pub public_metrics: bool,
}

pub fn routes(state: AppState, access: Access) -> Router {
    let mut router = Router::new().merge(health::routes());
    if access.internal_api {
        // Writes and reads as any user, without a token: for tests, benchmarks and local dev.
        router = router.merge(core_api::routes()).merge(health::unauthenticated_routes());
    }
    let mut operator = admin_routes().merge(health::operator_routes());
    if access.public_metrics {
        router = router.merge(health::metrics_route());
    } else {
        operator = operator.merge(health::metrics_route());
    }
    router
        .merge(operator.route_layer(axum::middleware::from_fn_with_state(Arc::new(access), admin_guard)))
        .merge(blob_api::routes(state.clone()))
        .merge(crate::api::routes())
        .merge(web::routes())
        .merge(crate::ws::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// The admin API: membership, moves, backup, retention, media, push.
fn admin_routes() -> Router<AppState> {
    admin_api::routes()
        .merge(backup_api::routes())
        .merge(retention_api::routes())
        .route("/internal/v1/admin/media", axum::routing::get(blob_api::admin_list))
        .merge(push_api::routes())
}

/// Whether a request may use the operator API: one arriving over TLS with an admin (or node)
/// certificate of the cluster CA; else, with an admin token configured, one carrying it; else
/// any with `--internal-api` (tests and `raftchat dev`, on loopback unless --insecure).
pub fn is_admin(access: &Access, req: &Request) -> bool {
    if req.extensions().get::<crate::tls::serve::ClientCert>().is_some_and(|c| c.admin) {
        return true;
    }
    match &access.admin_token {
        Some(t) => {
            let given = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
            constant_time_eq(given, format!("Bearer {t}").as_bytes())
        }
        None => access.internal_api,
    }
}

async fn admin_guard(
    axum::extract::State(access): axum::extract::State<Arc<Access>>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    if is_admin(&access, &req) {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the operator API needs the admin token (Authorization: Bearer) or an admin client certificate",
    )
    .into_response()
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
