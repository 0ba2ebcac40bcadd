//! Backup and restore behind `raftchat admin backup|restore` (admin routes; see [`super::admin_routes`]).
//!
//! - `GET /internal/v1/admin/backup/{group}` (to the group's leader): a snapshot stream of the
//!   group (`raftchat_storage::snapshot`) that holds every write acknowledged before the request
//!   (see `raftchat_raft::backup`), with its length; headers `x-raftchat-last-index` and
//!   `x-raftchat-last-term`.
//!   Another node answers 421 `not_leader` with the leader it knows of.
//! - `POST /internal/v1/admin/restore/{group}[?requireEmpty=true]`: a body of snapshot records
//!   (`key len u32 LE | value len u32 LE | key | value`, repeated) committed in the group as one
//!   `Restore` command; records whose keys exist are left alone -> `{written, present}`. With
//!   `requireEmpty`, refused (400) unless the group holds nothing yet.

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use axum::Json;
use axum::Router;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::rpc::AppError;
use raftchat_raft::types::GroupId;
use raftchat_storage::chat_store::RestoreRecord;
use raftchat_storage::snapshot::RawRecord;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/admin/backup/{group}", get(backup))
        .route("/internal/v1/admin/restore/{group}", post(restore))
}

fn data_group(s: &AppState, group: GroupId) -> Result<GroupId, ApiError> {
    let groups = s.service.data_groups()?;
    if group == 0 || group > groups {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_group",
            format!("no data group {group}: this cluster has groups 1..={groups}"),
        ));
    }
    Ok(group)
}

async fn backup(State(s): State<AppState>, Path(group): Path<GroupId>) -> Result<Response, ApiError> {
    let group = data_group(&s, group)?;
    let (data, meta, len) = match raftchat_raft::backup::snapshot_for_backup(&s.node, group).await {
        Ok(x) => x,
        Err(AppError::NotLeader { leader }) => {
            let body = json!({ "error": { "code": "not_leader",
                "message": format!("node {} does not lead group {group}", s.node.id()), "leader": leader } });
            return Ok((StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response());
        }
        Err(AppError::GroupNotHosted) => {
            let body = json!({ "error": { "code": "not_leader",
                "message": format!("node {} holds no replica of group {group}", s.node.id()), "leader": null } });
            return Ok((StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let last = meta.last_log_id.unwrap_or_default();
    let stream = tokio_util::io::ReaderStream::with_capacity(data, 256 * 1024);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::HeaderName::from_static("x-raftchat-last-index"), last.index.to_string()),
            (header::HeaderName::from_static("x-raftchat-last-term"), last.leader_id.term.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestoreParams {
    #[serde(default)]
    require_empty: bool,
}

/// Splits a body of snapshot records; checks each the way apply will.
fn parse_records(mut b: &[u8]) -> Result<Vec<RawRecord>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let field = |b: &[u8], at: usize| -> Result<usize, String> {
            let x = b.get(at..at + 4).ok_or("a record header is cut short")?;
            Ok(u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
        };
        let (klen, vlen) = (field(b, 0)?, field(b, 4)?);
        let k = b.get(8..8 + klen).ok_or("a record key is cut short")?;
        let v = b.get(8 + klen..8 + klen + vlen).ok_or("a record value is cut short")?;
        RestoreRecord::parse(k, v)?;
        out.push((k.to_vec(), v.to_vec()));
        b = &b[8 + klen + vlen..];
    }
    Ok(out)
}

async fn restore(
    State(s): State<AppState>,
    Path(group): Path<GroupId>,
    Query(p): Query<RestoreParams>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let group = data_group(&s, group)?;
    let records = parse_records(&body).map_err(|e| ApiError::bad_request(format!("restore body: {e}")))?;
    let n = records.len();
    match s.service.write(group, ChatCommand::Restore { records, require_empty: p.require_empty }).await? {
        CommandOutcome::Restored { written, present } => {
            Ok(Json(json!({ "group": group, "records": n, "written": written, "present": present })))
        }
        other => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected outcome {other:?}")))
        }
    }
}
