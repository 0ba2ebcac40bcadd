//! Liveness, readiness and the node's status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Serialize;

use super::AppState;

/// Health and the client URLs of the nodes: public, no secrets, no Raft addresses.
pub fn routes() -> Router<AppState> {
    Router::new().route("/livez", get(livez)).route("/readyz", get(readyz)).route("/api/v1/nodes", get(nodes))
}

/// The node's status, the cluster layout with Raft addresses, presence and push counters:
/// for operators (behind the admin guard, see `super::routes`).
pub fn operator_routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/status", get(status))
        .route("/internal/v1/presence", get(presence))
        .route("/internal/v1/push", get(push))
        .route("/internal/v1/cluster", get(cluster))
}

pub fn metrics_route() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// `GET /api/v1/nodes` -> `{"nodes": ["https://host:port", ...]}`: where clients can fail over to.
async fn nodes(State(s): State<AppState>) -> Json<serde_json::Value> {
    let scheme = if s.https { "https" } else { "http" };
    let urls: Vec<String> = s
        .node
        .layout()
        .map(|l| l.nodes.values().map(|n| format!("{scheme}://{}", n.api_addr)).collect())
        .unwrap_or_default();
    Json(serde_json::json!({ "nodes": urls }))
}

/// Setting and reading any user's presence without a token: only with `--internal-api`.
pub fn unauthenticated_routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/presence", axum::routing::post(set_presence))
        .route("/internal/v1/presence/{user_id}", get(user_presence))
}

/// The presence table: size, version, entries per owner node, gossip bytes.
async fn presence(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.presence.stats())
}

/// This node's push notifier counters.
async fn push(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "enabled": s.push.enabled(), "stats": s.push.stats.json() }))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetPresence {
    user_id: uuid::Uuid,
    status: String,
}

/// Sets any user's presence through this node, as a REST client of that user would (for tests
/// and benchmarks; like all of `/internal/v1`, not for the public network).
async fn set_presence(
    State(s): State<AppState>,
    crate::http::error::JsonBody(req): crate::http::error::JsonBody<SetPresence>,
) -> Result<Json<serde_json::Value>, crate::http::error::ApiError> {
    use crate::presence::table::Status;
    let status = Status::parse(&req.status)
        .ok_or_else(|| crate::http::error::ApiError::bad_request("status must be online, away or offline"))?;
    s.presence.set_connection(req.user_id, 0, (status != Status::Offline).then_some(status));
    Ok(Json(serde_json::json!({ "userId": req.user_id, "status": s.presence.view(&req.user_id).status.as_str() })))
}

/// One user's presence as this node sees it.
async fn user_presence(
    State(s): State<AppState>,
    axum::extract::Path(user): axum::extract::Path<uuid::Uuid>,
) -> Json<serde_json::Value> {
    let v = s.presence.view(&user);
    Json(serde_json::json!({ "userId": user, "status": v.status.as_str(), "lastSeenMs": v.last_seen_ms }))
}

/// Prometheus text format; names documented in docs/OPERATIONS.md.
async fn metrics(State(s): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let body = s.metrics.render(&s.node, s.hub.connections(), s.presence.counts());
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

/// The cluster layout as this node knows it: nodes and where each data group lives.
async fn cluster(State(s): State<AppState>) -> Json<serde_json::Value> {
    let Some(l) = s.node.layout() else { return Json(serde_json::json!({ "initialized": false })) };
    let nodes: Vec<serde_json::Value> = l
        .nodes
        .iter()
        .map(|(id, n)| serde_json::json!({ "nodeId": id, "raftAddr": n.raft_addr, "apiAddr": n.api_addr }))
        .collect();
    let groups: Vec<serde_json::Value> =
        (1..=l.data_groups).map(|g| serde_json::json!({ "group": g, "replicas": l.replicas(g) })).collect();
    Json(serde_json::json!({
        "initialized": true,
        "clusterId": l.cluster_id,
        "epoch": l.epoch,
        "dataGroups": l.data_groups,
        "nodes": nodes,
        "groups": groups,
    }))
}

async fn livez() -> &'static str {
    "ok\n"
}

/// 200 only when this node has joined and every group it hosts has a leader.
async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match not_ready_reason(&s) {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

fn not_ready_reason(s: &AppState) -> Option<String> {
    if s.node.draining() {
        return Some("draining (raftchat admin drain)".into());
    }
    let Some(layout) = s.node.layout() else { return Some("no cluster layout yet".into()) };
    if !layout.nodes.contains_key(&s.node.id()) {
        return Some("this node is not a cluster member".into());
    }
    let meta = s.node.group(raftchat_raft::types::META_GROUP)?;
    if meta.leader().is_none() {
        return Some("meta group has no leader".into());
    }
    for g in layout.groups_of(s.node.id()) {
        match s.node.group(g) {
            None => return Some(format!("group {g} not started")),
            Some(h) if h.leader().is_none() => return Some(format!("group {g} has no leader")),
            Some(_) => {}
        }
    }
    None
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupStatus {
    group: u32,
    leader: Option<u64>,
    is_leader: bool,
    term: u64,
    last_log_index: Option<u64>,
    applied_index: Option<u64>,
    /// Log entries up to here are gone (covered by the snapshot).
    purged_index: Option<u64>,
    snapshot_index: Option<u64>,
    voters: Vec<u64>,
    /// Bytes of this replica's unpurged log entries.
    log_bytes: u64,
    /// Bytes of its current snapshot (its state as of the snapshot).
    snapshot_bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeStatus {
    node_id: u64,
    cluster_id: String,
    ready: bool,
    layout_epoch: Option<u64>,
    data_groups: Option<u32>,
    connected_peers: Vec<u64>,
    groups: Vec<GroupStatus>,
    wal_fsyncs: u64,
    wal_entries: u64,
    wal_requests: u64,
    ws_connections: usize,
}

async fn status(State(s): State<AppState>) -> Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let layout = s.node.layout();
    let groups = s
        .node
        .groups()
        .iter()
        .map(|g| {
            let m = g.raft.metrics().borrow().clone();
            let (log_bytes, snapshot_bytes) = s.node.group_bytes(g.id);
            GroupStatus {
                log_bytes,
                snapshot_bytes,
                group: g.id,
                leader: m.current_leader,
                is_leader: m.current_leader == Some(s.node.id()),
                term: m.current_term,
                last_log_index: m.last_log_index,
                applied_index: m.last_applied.map(|l| l.index),
                purged_index: m.purged.map(|l| l.index),
                snapshot_index: m.snapshot.map(|l| l.index),
                voters: m.membership_config.membership().voter_ids().collect(),
            }
        })
        .collect();
    let wal = s.node.wal_stats();
    let st = NodeStatus {
        node_id: s.node.id(),
        cluster_id: s.node.pool().me.cluster_id.clone(),
        ready: not_ready_reason(&s).is_none(),
        layout_epoch: layout.as_ref().map(|l| l.epoch),
        data_groups: layout.as_ref().map(|l| l.data_groups),
        connected_peers: s.node.pool().connected(),
        groups,
        wal_fsyncs: wal.fsyncs.load(Relaxed),
        wal_entries: wal.entries.load(Relaxed),
        wal_requests: wal.requests.load(Relaxed),
        ws_connections: s.hub.connections(),
    };
    Json(serde_json::to_value(st).unwrap_or_default())
}
