//! Moving leadership: `drain` (this node leads nothing and will not be elected, before a
//! rolling restart) and `transfer_leader` (group G to node N).
//!
//! openraft 0.9 has no leadership-transfer call, so a leader yields: it stops heartbeats,
//! stops standing for election and refuses new proposals (a definite refusal: the gateway tries
//! again), so its followers' leader lease runs out and one of them is elected; for a transfer
//! the target stands for election until it wins. A yield is undone after the move, or after [`YIELD_MAX`] when it did not
//! work, so a failed transfer never leaves a group without a willing leader.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::node::Node;
use crate::rpc::AppError;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::GroupId;
use crate::types::NodeId;

/// Longest time a leader yields for one transfer.
pub const YIELD_MAX: Duration = Duration::from_secs(15);

/// A leadership request to one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeadershipOp {
    /// Stop leading `group` (stop heartbeats, refuse proposals) for up to `ms`.
    Yield { group: GroupId, ms: u64 },
    /// Lead `group` again if elected (undoes `Yield`).
    Resume { group: GroupId },
}

/// Per-node leadership state.
#[derive(Default)]
pub struct LeadershipState {
    draining: std::sync::atomic::AtomicBool,
    yielding: Mutex<HashSet<GroupId>>,
}

impl Node {
    fn lead_state(&self) -> &LeadershipState {
        &self.inner.leadership
    }

    pub fn draining(&self) -> bool {
        self.lead_state().draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether proposals to `g` are refused here because leadership is moving away.
    pub(crate) fn refusing(&self, g: GroupId) -> bool {
        self.draining() || self.lead_state().yielding.lock().unwrap_or_else(|e| e.into_inner()).contains(&g)
    }

    /// Drains (or undrains) this node: it stops standing for election in every group and yields
    /// the groups it leads. Returns the groups it still leads after waiting up to `wait`.
    pub async fn set_draining(&self, on: bool, wait: Duration) -> Vec<GroupId> {
        self.lead_state().draining.store(on, std::sync::atomic::Ordering::SeqCst);
        for h in self.groups() {
            h.raft.runtime_config().elect(!on);
            h.raft.runtime_config().heartbeat(!on);
        }
        tracing::info!(node = self.id(), draining = on, "drain changed");
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let led = self.led_groups();
            if !on || led.is_empty() || tokio::time::Instant::now() >= deadline {
                return led;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Groups this node leads now.
    pub fn led_groups(&self) -> Vec<GroupId> {
        self.groups().iter().filter(|h| h.leader() == Some(self.id())).map(|h| h.id).collect()
    }

    /// Undoes a yield of `group`.
    fn resume(&self, group: GroupId) {
        let removed = self.lead_state().yielding.lock().unwrap_or_else(|e| e.into_inner()).remove(&group);
        if removed && !self.draining() {
            if let Some(h) = self.group(group) {
                h.raft.runtime_config().heartbeat(true);
                h.raft.runtime_config().elect(true);
            }
        }
    }

    pub(crate) async fn leadership_local(&self, op: LeadershipOp) -> Result<(), AppError> {
        match op {
            LeadershipOp::Yield { group, ms } => {
                let h = self.group(group).ok_or(AppError::GroupNotHosted)?;
                self.lead_state().yielding.lock().unwrap_or_else(|e| e.into_inner()).insert(group);
                h.raft.runtime_config().heartbeat(false);
                h.raft.runtime_config().elect(false);
                // Never yield forever, whatever happens to the transfer.
                let node = self.clone();
                let ms = ms.min(YIELD_MAX.as_millis() as u64);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    node.resume(group);
                });
                Ok(())
            }
            LeadershipOp::Resume { group } => {
                self.resume(group);
                Ok(())
            }
        }
    }

    async fn leadership_at(&self, node: NodeId, op: LeadershipOp) -> Result<(), AppError> {
        if node == self.id() {
            return self.leadership_local(op).await;
        }
        let group = match &op {
            LeadershipOp::Yield { group, .. } | LeadershipOp::Resume { group } => *group,
        };
        match self.pool().call(node, group, RpcRequest::Leadership(op), Duration::from_secs(5)).await {
            Ok(RpcResponse::Changed(r)) => r,
            Ok(RpcResponse::GroupNotHosted) => Err(AppError::GroupNotHosted),
            Ok(_) => Err(AppError::Unknown("unexpected response".into())),
            Err(e) => Err(AppError::Unavailable(format!("node {node}: {e}"))),
        }
    }

    /// Makes this node (a voter of `g`) the leader of group `g`: the current leader yields, and
    /// this node stands for election until it wins or [`YIELD_MAX`] passes.
    pub async fn take_leadership(&self, g: GroupId) -> Result<(), AppError> {
        let h = self.group(g).ok_or(AppError::GroupNotHosted)?;
        if self.draining() {
            return Err(AppError::Unavailable(format!("node {} is draining", self.id())));
        }
        let deadline = tokio::time::Instant::now() + YIELD_MAX;
        let from = loop {
            match h.leader() {
                Some(l) if l == self.id() => return Ok(()),
                Some(l) => break l,
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(AppError::Unavailable(format!("group {g} has no leader to take over from")))
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        self.leadership_at(from, LeadershipOp::Yield { group: g, ms: YIELD_MAX.as_millis() as u64 }).await?;
        let mut won = false;
        while tokio::time::Instant::now() < deadline {
            // The followers' lease must run out before a vote can succeed: asking early is
            // refused, asking again wins as soon as it can.
            if let Err(e) = h.raft.trigger().elect().await {
                tracing::warn!(group = g, cause = %e, "could not stand for election");
            }
            let mut m = h.raft.metrics();
            let me = self.id();
            let elected =
                tokio::time::timeout(Duration::from_millis(500), m.wait_for(|m| m.current_leader == Some(me)));
            if elected.await.is_ok() {
                won = true;
                break;
            }
        }
        let _ = self.leadership_at(from, LeadershipOp::Resume { group: g }).await;
        if won {
            tracing::info!(group = g, from, "took over leadership");
            Ok(())
        } else {
            Err(AppError::Unavailable(format!("node {} did not win group {g} within {YIELD_MAX:?}", self.id())))
        }
    }
}
