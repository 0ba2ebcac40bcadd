//! Changing which nodes hold a group: learners, voters, and retiring a replica.
//!
//! A replica moves in four steps, driven by the admin (server/src/http/admin.rs): the layout
//! places the group on the old and the new nodes (the new ones start an empty replica); the
//! group's leader adds each new node as a learner and waits until it caught up (log or streamed
//! snapshot), then makes the new set the voters (openraft's joint consensus); then the layout
//! drops the old nodes, which shut their replica down and delete it. A group is never
//! initialized again after the first layout (see `Node::reconcile`), so a new, empty replica
//! can only ever join through its leader.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use openraft::BasicNode;
use openraft::ChangeMembers;
use serde::Deserialize;
use serde::Serialize;

use crate::node::GroupHandle;
use crate::node::Node;
use crate::rpc::AppError;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::META_GROUP;

/// One change to a group's membership, made by its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Adds `id` as a non-voting learner and waits until it has caught up.
    AddLearner { id: NodeId, addr: String },
    /// Makes exactly these nodes the voters; missing ones join as learners and catch up first.
    SetVoters { voters: Vec<NodeId> },
    /// Removes nodes (voters or learners) from the group.
    RemoveNodes { ids: Vec<NodeId> },
}

/// How long a membership change may take: a learner may need a whole snapshot.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> AppError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AppError::NotLeader { leader: f.leader_id },
        other => AppError::Unknown(other.to_string()),
    }
}

impl Node {
    /// Tells node `id`, just taken out of the layout, that it was removed, so that it stops
    /// instead of idling. Best effort: a node that is down learns it at its next handshake.
    pub async fn tell_removed(&self, id: NodeId) {
        let epoch = self.layout().map_or(0, |l| l.epoch);
        let req = RpcRequest::Removed { epoch };
        if let Err(e) = self.pool().call(id, META_GROUP, req, Duration::from_secs(3)).await {
            tracing::info!(node = id, cause = %e, "could not tell a removed node; it learns at its next handshake");
        }
    }

    /// Voters and learners of a hosted group, as this replica sees them.
    pub fn members(&self, g: GroupId) -> Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)> {
        let h = self.group(g)?;
        let m = h.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        let learners: BTreeSet<NodeId> = m.membership().learner_ids().collect();
        Some((voters, learners))
    }

    /// Makes `change` on this node's replica of the group, which must lead it.
    pub(crate) async fn change_membership_local(
        &self,
        g: &GroupHandle,
        change: MembershipChange,
    ) -> Result<(), AppError> {
        if g.leader() != Some(self.id()) {
            return Err(AppError::NotLeader { leader: g.leader() });
        }
        match change {
            MembershipChange::AddLearner { id, addr } => {
                self.pool().learn(id, &addr);
                g.raft.add_learner(id, BasicNode { addr }, true).await.map_err(write_err)?;
                Ok(())
            }
            MembershipChange::SetVoters { voters } => {
                let layout = self.layout().ok_or_else(|| AppError::Unavailable("no cluster layout yet".into()))?;
                let (current, learners) = self.members(g.id).unwrap_or_default();
                for v in voters.iter().filter(|v| !current.contains(v) && !learners.contains(v)) {
                    let addr = layout
                        .nodes
                        .get(v)
                        .map(|i| i.raft_addr.clone())
                        .ok_or_else(|| AppError::Unavailable(format!("node {v} is not in the cluster layout")))?;
                    self.pool().learn(*v, &addr);
                    g.raft.add_learner(*v, BasicNode { addr }, true).await.map_err(write_err)?;
                }
                let set: BTreeSet<NodeId> = voters.into_iter().collect();
                if set != current {
                    g.raft.change_membership(set, false).await.map_err(write_err)?;
                }
                Ok(())
            }
            MembershipChange::RemoveNodes { ids } => {
                let (voters, learners) = self.members(g.id).unwrap_or_default();
                let present: BTreeSet<NodeId> =
                    ids.into_iter().filter(|i| voters.contains(i) || learners.contains(i)).collect();
                if !present.is_empty() {
                    g.raft.change_membership(ChangeMembers::RemoveNodes(present), false).await.map_err(write_err)?;
                }
                Ok(())
            }
        }
    }

    /// Has group `g`'s leader make `change`, following leader hints, for up to
    /// [`CHANGE_TIMEOUT`].
    pub async fn change_membership(&self, g: GroupId, change: MembershipChange) -> Result<(), AppError> {
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        let candidates: Vec<NodeId> = match self.layout() {
            Some(l) if g == META_GROUP => l.nodes.keys().copied().collect(),
            Some(l) => l.replicas(g).to_vec(),
            None => Vec::new(),
        };
        let mut target = self.group(g).and_then(|h| h.leader());
        let mut turn = 0usize;
        let mut last = AppError::Unavailable(format!("no leader of group {g} found"));
        while tokio::time::Instant::now() < deadline {
            let Some(t) = target.or_else(|| candidates.get(turn % candidates.len().max(1)).copied()) else {
                return Err(last);
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let res = if t == self.id() {
                match self.group(g) {
                    Some(h) => self.change_membership_local(&h, change.clone()).await,
                    None => Err(AppError::GroupNotHosted),
                }
            } else {
                match self.pool().call(t, g, RpcRequest::Membership(change.clone()), left).await {
                    Ok(RpcResponse::Changed(r)) => r,
                    Ok(RpcResponse::GroupNotHosted) => Err(AppError::GroupNotHosted),
                    Ok(_) => Err(AppError::Unknown("unexpected response".into())),
                    Err(e) => Err(AppError::Unavailable(format!("node {t}: {e}"))),
                }
            };
            match res {
                Ok(()) => return Ok(()),
                Err(AppError::NotLeader { leader: Some(l) }) if l != t => target = Some(l),
                Err(e) => {
                    last = e;
                    target = None;
                    turn += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(last)
    }

    /// Shuts this node's replica of `g` down and deletes it: the layout moved it away, after
    /// the group's voters changed.
    pub(crate) async fn retire_group(&self, g: GroupId) {
        let Some(h) = self.remove_group(g) else { return };
        if let Err(e) = h.raft.shutdown().await {
            tracing::warn!(group = g, cause = %e, "retired group did not shut down cleanly");
        }
        match self.engine().drop_group(g) {
            Ok(wait) => {
                if let Err(e) = wait.wait().await {
                    tracing::warn!(group = g, cause = %e, "dropping the retired group's log failed");
                }
            }
            Err(e) => tracing::warn!(group = g, cause = %e, "dropping the retired group's log failed"),
        }
        if let Err(e) = self.state_db().drop_group(g) {
            tracing::warn!(group = g, cause = %e, "dropping the retired group's state failed");
        }
        tracing::info!(group = g, "replica moved away: group retired");
    }
}
