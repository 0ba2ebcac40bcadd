//! History retention behind `raftchat admin retention` (admin routes; see [`super::admin_routes`]).
//!
//! - `GET /internal/v1/admin/retention` -> `{maxAgeSecs, maxMessages}` (null: no limit).
//! - `PUT /internal/v1/admin/retention {maxAgeSecs?, maxMessages?}`: sets the cluster-wide
//!   policy (committed in the meta group); absent or null fields mean no limit.
//! - `POST /internal/v1/admin/retention/sweep`: applies the policy now to the groups this node
//!   leads -> `{groups, chats, removed}` (every node also sweeps on its own, every
//!   `--retention-sweep-secs`).

use std::time::Duration;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::routing::post;
use axum::Json;
use axum::Router;
use raftchat_raft::meta::MetaCommand;
use raftchat_raft::meta::RetentionPolicy;
use serde::Deserialize;
use serde::Serialize;

use super::error::ApiError;
use super::error::JsonBody;
use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/admin/retention", get(show).put(set))
        .route("/internal/v1/admin/retention/sweep", post(sweep))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyBody {
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    #[serde(default)]
    pub max_messages: Option<u64>,
}

impl From<&RetentionPolicy> for PolicyBody {
    fn from(p: &RetentionPolicy) -> Self {
        PolicyBody { max_age_secs: p.max_age_ms.map(|ms| ms / 1000), max_messages: p.max_messages }
    }
}

async fn show(State(s): State<AppState>) -> Json<PolicyBody> {
    Json(PolicyBody::from(&s.node.retention_policy()))
}

async fn set(State(s): State<AppState>, JsonBody(req): JsonBody<PolicyBody>) -> Result<Json<PolicyBody>, ApiError> {
    if req.max_age_secs == Some(0) || req.max_messages == Some(0) {
        return Err(ApiError::bad_request("a limit of 0 would delete every message; leave the field out for no limit"));
    }
    let policy = RetentionPolicy {
        max_age_ms: req.max_age_secs.map(|s| s.saturating_mul(1000)),
        max_messages: req.max_messages,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match s.node.meta_write(MetaCommand::SetRetention(policy.clone())).await {
            Ok(()) => {
                // Wait until this node applied it, so that a following GET here shows it.
                while Instant::now() < deadline {
                    if s.node.retention_policy() == policy {
                        return Ok(Json(PolicyBody::from(&policy)));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("the meta group did not take it: {last}"),
    ))
}

async fn sweep(State(s): State<AppState>) -> Result<Json<raftchat_raft::retention::SweepReport>, ApiError> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Ok(Json(s.node.sweep_retention(now_ms).await?))
}
