//! The admin API behind `raftchat admin`: growing and shrinking the cluster and moving replicas.
//! Served only with `--internal-api` (no authentication: keep it on the private network).
//!
//! - `GET /internal/v1/admin/plan?exclude=N` -> `{moves: [{group, from, to}]}`: the moves that
//!   spread replicas evenly (off node N).
//! - `POST /internal/v1/admin/members {id, raftAddr, apiAddr}`: a started, empty node joins: a
//!   learner of the meta group first (it receives the layout), then a member of the layout.
//! - `POST /internal/v1/admin/moves {group, replicas}`: moves one group, in the steps of
//!   `raftchat_raft::membership`; an error names the step that did not finish and why.
//! - `DELETE /internal/v1/admin/members/{id}`: removes a node that holds no replica any more.
//! - `POST /internal/v1/admin/drain {on}` (to the node itself): stop leading and standing for
//!   election (`/readyz` answers 503 while draining), or undo it; -> `{draining, stillLeading}`.
//! - `POST /internal/v1/admin/transfer-leader {group, to}`: node `to` takes over leadership of
//!   the group (forwarded to `to`).

use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::routing::get;
use axum::routing::post;
use axum::Json;
use axum::Router;
use raftchat_raft::membership::MembershipChange;
use raftchat_raft::meta::MetaCommand;
use raftchat_raft::meta::NodeInfo;
use raftchat_raft::types::META_GROUP;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::error::JsonBody;
use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/admin/plan", get(plan))
        .route("/internal/v1/admin/members", post(add_member))
        .route("/internal/v1/admin/members/{id}", delete(remove_member))
        .route("/internal/v1/admin/moves", post(move_group))
        .route("/internal/v1/admin/drain", post(drain))
        .route("/internal/v1/admin/transfer-leader", post(transfer_leader))
}

/// Replicas per group: each group keeps three on distinct nodes.
const REPLICATION_FACTOR: usize = 3;

fn unavailable(step: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{step}: {e}"))
}

fn conflict(msg: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "refused", msg)
}

fn layout(s: &AppState) -> Result<raftchat_raft::meta::ClusterLayout, ApiError> {
    s.node.layout().ok_or_else(|| unavailable("layout", "this node has no cluster layout yet"))
}

/// Commits a meta command (each one here is idempotent, so retrying is safe) and waits until
/// this node's layout satisfies `done`.
async fn meta(
    s: &AppState,
    step: &str,
    cmd: MetaCommand,
    done: impl Fn(&raftchat_raft::meta::ClusterLayout) -> bool,
) -> Result<(), ApiError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if s.node.layout().is_some_and(|l| done(&l)) {
            return Ok(());
        }
        match s.node.meta_write(cmd.clone()).await {
            Ok(()) => {
                let mut rx = s.node.layout_watch();
                let wait = rx.wait_for(|l| l.as_ref().is_some_and(&done));
                if tokio::time::timeout(Duration::from_secs(5), wait).await.is_ok() {
                    return Ok(());
                }
                last = "committed, but this node has not applied it yet".into();
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(unavailable(step, format!("the meta group did not take it in 30 s; last: {last}")))
}

#[derive(Deserialize)]
struct PlanParams {
    exclude: Option<u64>,
}

async fn plan(State(s): State<AppState>, Query(p): Query<PlanParams>) -> Result<Json<serde_json::Value>, ApiError> {
    let l = layout(&s)?;
    if let Some(x) = p.exclude {
        let left = l.nodes.len() - usize::from(l.nodes.contains_key(&x));
        if !l.nodes.contains_key(&x) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_node", format!("node {x} is not a member")));
        }
        if left < REPLICATION_FACTOR {
            return Err(conflict(format!(
                "removing node {x} would leave {left} nodes; every group needs {REPLICATION_FACTOR} replicas on distinct nodes"
            )));
        }
    }
    let moves: Vec<serde_json::Value> =
        l.plan(p.exclude).into_iter().map(|(g, to)| json!({ "group": g, "from": l.replicas(g), "to": to })).collect();
    Ok(Json(json!({ "epoch": l.epoch, "load": l.load(), "moves": moves })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddMember {
    id: u64,
    raft_addr: String,
    api_addr: String,
}

async fn add_member(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    JsonBody(req): JsonBody<AddMember>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = layout(&s)?;
    if req.id == 0 || req.raft_addr.is_empty() || !req.raft_addr.contains(':') {
        return Err(ApiError::bad_request("id must be positive and raftAddr host:port"));
    }
    if let Some(existing) = l.nodes.get(&req.id) {
        if existing.raft_addr != req.raft_addr || existing.api_addr != req.api_addr {
            // Identity is the id: a member that came back on a new address keeps its place.
            let info = NodeInfo { raft_addr: req.raft_addr.clone(), api_addr: req.api_addr.clone() };
            let want = info.clone();
            meta(&s, "updating the address", MetaCommand::UpsertNode { id: req.id, info }, move |l| {
                l.nodes.get(&req.id) == Some(&want)
            })
            .await?;
        }
        return Ok(Json(json!({ "id": req.id, "joined": false, "member": true })));
    }
    let started = Instant::now();
    s.node
        .change_membership(META_GROUP, MembershipChange::AddLearner { id: req.id, addr: req.raft_addr.clone() })
        .await
        .map_err(|e| unavailable(&format!("step 1/3 (node {} learns the meta log)", req.id), e))?;
    wait_layout_applied(&s, headers.get(axum::http::header::AUTHORIZATION), &req.api_addr, l.epoch)
        .await
        .map_err(|e| unavailable(&format!("step 2/3 (node {} applies the cluster layout)", req.id), e))?;
    let info = NodeInfo { raft_addr: req.raft_addr, api_addr: req.api_addr };
    let id = req.id;
    meta(&s, "step 3/3 (node joins the layout)", MetaCommand::UpsertNode { id, info }, move |l| {
        l.nodes.contains_key(&id)
    })
    .await?;
    // The meta group keeps three voters where it can (it has fewer after a forced recovery).
    let (voters, _) = s.node.members(META_GROUP).unwrap_or_default();
    if voters.len() < REPLICATION_FACTOR && !voters.contains(&id) {
        let next: Vec<u64> = voters.into_iter().chain([id]).collect();
        s.node
            .change_membership(META_GROUP, MembershipChange::SetVoters { voters: next.clone() })
            .await
            .map_err(|e| unavailable(&format!("node {id} joined; making the meta voters {next:?}"), e))?;
    }
    Ok(Json(json!({ "id": id, "joined": true, "tookMs": started.elapsed().as_millis() as u64 })))
}

/// Waits until the node at `api_addr` holds a layout of at least `epoch`. A node that holds
/// cluster state is no longer pristine: only then may peers tell it that it is a member (a
/// pristine node told so concludes its data was lost and stops).
async fn wait_layout_applied(
    s: &AppState,
    caller: Option<&axum::http::HeaderValue>,
    api_addr: &str,
    epoch: u64,
) -> Result<(), String> {
    let http = s.admin_client(Duration::from_secs(3), caller).map_err(|e| e.to_string())?;
    let url = s.peers_http.url(api_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match http.get(format!("{url}/internal/v1/status")).send().await {
            Ok(r) => match r.json::<serde_json::Value>().await {
                Ok(v) if v["layoutEpoch"].as_u64().is_some_and(|e| e >= epoch) => return Ok(()),
                Ok(v) => last = format!("its layout epoch is {}", v["layoutEpoch"]),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("not within 30 s ({last})"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    group: u32,
    replicas: Vec<u64>,
}

async fn move_group(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<Move>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = layout(&s)?;
    let g = req.group;
    if g == META_GROUP || g > l.data_groups {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_group", format!("no data group {g}")));
    }
    let new: BTreeSet<u64> = req.replicas.iter().copied().collect();
    if new.len() != REPLICATION_FACTOR || new.len() != req.replicas.len() {
        return Err(ApiError::bad_request(format!("name {REPLICATION_FACTOR} distinct nodes")));
    }
    if let Some(n) = new.iter().find(|n| !l.nodes.contains_key(n)) {
        return Err(ApiError::bad_request(format!("node {n} is not a member")));
    }
    let old: BTreeSet<u64> = l.replicas(g).iter().copied().collect();
    let started = Instant::now();
    if old != new {
        let both: Vec<u64> = old.union(&new).copied().collect();
        let want = both.clone();
        meta(&s, "step 1/3 (new replicas start)", MetaCommand::SetPlacement { group: g, replicas: both }, move |l| {
            l.replicas(g) == want.as_slice()
        })
        .await?;
        let voters: Vec<u64> = new.iter().copied().collect();
        s.node.change_membership(g, MembershipChange::SetVoters { voters: voters.clone() }).await.map_err(|e| {
            unavailable(&format!("step 2/3 (group {g}: new replicas catch up and become voters {voters:?})"), e)
        })?;
        let target = voters.clone();
        meta(
            &s,
            "step 3/3 (old replicas retire)",
            MetaCommand::SetPlacement { group: g, replicas: voters },
            move |l| l.replicas(g) == target.as_slice(),
        )
        .await?;
    }
    Ok(Json(json!({ "group": g, "replicas": new, "tookMs": started.elapsed().as_millis() as u64 })))
}

async fn remove_member(State(s): State<AppState>, Path(id): Path<u64>) -> Result<Json<serde_json::Value>, ApiError> {
    let l = layout(&s)?;
    if !l.nodes.contains_key(&id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_node", format!("node {id} is not a member")));
    }
    let held = l.groups_of(id);
    if !held.is_empty() {
        return Err(conflict(format!(
            "node {id} still holds replicas of {} groups (e.g. {:?}); move them first (`raftchat admin members remove {id}` does)",
            held.len(),
            &held[..held.len().min(5)]
        )));
    }
    let (voters, learners) = s.node.members(META_GROUP).ok_or_else(|| unavailable("meta", "no meta group here"))?;
    if voters.contains(&id) {
        let mut next: BTreeSet<u64> = voters.iter().copied().filter(|v| *v != id).collect();
        if next.len() < REPLICATION_FACTOR {
            let spare = learners.iter().chain(l.nodes.keys()).find(|n| **n != id && !next.contains(n)).copied();
            match spare {
                Some(n) => {
                    next.insert(n);
                }
                None => {
                    return Err(conflict(format!(
                        "node {id} is a meta voter and no other node can take its place; add a node first"
                    )))
                }
            }
        }
        let next: Vec<u64> = next.into_iter().collect();
        s.node
            .change_membership(META_GROUP, MembershipChange::SetVoters { voters: next.clone() })
            .await
            .map_err(|e| unavailable(&format!("step 1/2 (meta voters become {next:?})"), e))?;
    } else if learners.contains(&id) {
        s.node
            .change_membership(META_GROUP, MembershipChange::RemoveNodes { ids: vec![id] })
            .await
            .map_err(|e| unavailable("step 1/2 (node leaves the meta group)", e))?;
    }
    meta(&s, "step 2/2 (node leaves the layout)", MetaCommand::RemoveNode { id }, move |l| !l.nodes.contains_key(&id))
        .await?;
    s.node.tell_removed(id).await;
    Ok(Json(json!({ "id": id, "removed": true })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Drain {
    on: bool,
}

async fn drain(State(s): State<AppState>, JsonBody(req): JsonBody<Drain>) -> Result<Json<serde_json::Value>, ApiError> {
    let still = s.node.set_draining(req.on, Duration::from_secs(30)).await;
    if req.on && !still.is_empty() {
        return Err(unavailable(
            "drain",
            format!("node {} still leads groups {still:?} after 30 s (are the other replicas up?)", s.node.id()),
        ));
    }
    Ok(Json(json!({ "node": s.node.id(), "draining": req.on, "stillLeading": still })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    group: u32,
    to: u64,
}

async fn transfer_leader(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    JsonBody(req): JsonBody<Transfer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = layout(&s)?;
    let hosts =
        if req.group == META_GROUP { l.nodes.contains_key(&req.to) } else { l.replicas(req.group).contains(&req.to) };
    if !hosts {
        return Err(conflict(format!("node {} holds no replica of group {}", req.to, req.group)));
    }
    let started = Instant::now();
    if req.to != s.node.id() {
        // The new leader runs the transfer: it knows the group's leader and stands for election.
        let api = l.nodes.get(&req.to).map(|n| n.api_addr.clone()).unwrap_or_default();
        let url = s.peers_http.url(&api);
        // The caller's credentials go along: the target's admin guard checks them again.
        let http = s
            .admin_client(Duration::from_secs(30), headers.get(axum::http::header::AUTHORIZATION))
            .map_err(|e| unavailable("transfer", e))?;
        let r = http
            .post(format!("{url}/internal/v1/admin/transfer-leader"))
            .json(&json!({ "group": req.group, "to": req.to }))
            .send()
            .await
            .map_err(|e| unavailable(&format!("asking node {}", req.to), e))?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(unavailable("transfer", v["error"]["message"].as_str().unwrap_or("failed").to_string()));
        }
        return Ok(Json(v));
    }
    s.node
        .take_leadership(req.group)
        .await
        .map_err(|e| unavailable(&format!("group {} to node {}", req.group, req.to), e))?;
    Ok(Json(json!({ "group": req.group, "leader": req.to, "tookMs": started.elapsed().as_millis() as u64 })))
}
