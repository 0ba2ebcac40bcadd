//! The push notification dead-letter queue (admin API, behind `raftchat admin dlq`).
//!
//! - `GET  /internal/v1/admin/dlq`: every dead-lettered notification, over all data groups.
//! - `POST /internal/v1/admin/dlq/replay {id?}`: sends them (or the one named) to the webhook
//!   again from this node; each one the webhook takes leaves the queue.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::routing::post;
use axum::Json;
use axum::Router;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use serde::Deserialize;

use super::error::ApiError;
use super::error::JsonBody;
use super::AppState;
use crate::push::record::dead_key;
use crate::push::record::PushRecord;
use crate::push::record::DEAD_PREFIX;
use crate::service::rfc3339;

/// Dead letters listed per group at most.
const LISTED_PER_GROUP: u32 = 1_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/internal/v1/admin/dlq", get(list)).route("/internal/v1/admin/dlq/replay", post(replay))
}

async fn dead_letters(s: &AppState) -> Result<Vec<(u32, PushRecord)>, ApiError> {
    let mut out = Vec::new();
    for g in 1..=s.service.data_groups()? {
        let query = ReadQuery::KeyPrefix { prefix: DEAD_PREFIX.to_vec(), limit: LISTED_PER_GROUP };
        match s.service.read(g, query, Consistency::Linearizable).await? {
            ReadResult::Keys(keys) => {
                out.extend(keys.iter().filter_map(|(_, v)| PushRecord::decode(v)).map(|r| (g, r)))
            }
            other => return Err(crate::service::unexpected(other)),
        }
    }
    Ok(out)
}

fn describe(r: &PushRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "userId": r.user, "chatId": r.chat, "count": r.count, "firstSeq": r.first_seq,
        "lastSeq": r.last_seq, "attempts": r.attempts, "lastError": r.last_error,
        "createdAt": rfc3339(r.created_ms),
    })
}

async fn list(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let dead = dead_letters(&s).await?;
    let items: Vec<_> = dead.iter().map(|(_, r)| describe(r)).collect();
    Ok(Json(serde_json::json!({ "count": items.len(), "notifications": items })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Replay {
    id: Option<String>,
}

async fn replay(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<Replay>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !s.push.enabled() {
        return Err(ApiError::new(StatusCode::CONFLICT, "push_off", "this node has no --push-webhook"));
    }
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for (g, r) in dead_letters(&s).await? {
        if req.id.as_ref().is_some_and(|id| *id != r.id) {
            continue;
        }
        match s.push.post(&r).await {
            Ok(()) => {
                s.service.put(g, dead_key(&r), None).await?;
                sent.push(r.id);
            }
            Err(e) => failed.push(serde_json::json!({ "id": r.id, "error": e })),
        }
    }
    if let Some(id) = &req.id {
        if sent.is_empty() && failed.is_empty() {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_notification", format!("no dead letter {id:?}")));
        }
    }
    Ok(Json(serde_json::json!({ "sent": sent, "failed": failed })))
}
