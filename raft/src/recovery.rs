//! `raftchat node --force-new-cluster`: disaster recovery when a majority is lost for good.
//!
//! The surviving node makes itself the only voter of every group it holds, the way etcd's
//! `--force-new-cluster` does, in three steps that survive a crash at any point:
//!
//! 1. A marker file `FORCE_NEW_CLUSTER` in the data directory says `pending`.
//! 2. Before openraft starts, each local group's log gets a vote for this node at a new term and
//!    one more entry: a membership with this node as the only voter. On start the node elects
//!    itself in every group and commits whatever its log holds (entries that the lost majority
//!    may never have committed included: this is what "forced" means).
//! 3. Once it leads the meta group, it commits [`MetaCommand::ForceSingleNode`]: the layout
//!    keeps only this node and places every data group on it; groups that had no replica here
//!    are started empty (their data is lost and the log says which). The marker then says
//!    `done`, and a second start with the flag is refused: forcing again after other nodes
//!    joined would cut them off.
//!
//! Grow the cluster again with `raftchat admin members add` and `rebalance`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use openraft::BasicNode;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use openraft::LogId;
use openraft::Membership;
use openraft::Vote;
use raftchat_storage::codec;
use raftchat_storage::identity::sync_dir;
use raftchat_storage::log_store::GroupLog;
use raftchat_storage::wal::LogEngine;
use raftchat_storage::StorageError;

use crate::error::RaftError;
use crate::meta::MetaCommand;
use crate::meta::NodeInfo;
use crate::node::Node;
use crate::types::Entry;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::TypeConfig;
use crate::types::META_GROUP;

const MARKER: &str = "FORCE_NEW_CLUSTER";

/// Where a forced recovery stands in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceState {
    None,
    Pending,
    Done(String),
}

pub fn force_state(data_dir: &Path) -> Result<ForceState, RaftError> {
    let path = data_dir.join(MARKER);
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim() == "pending" => Ok(ForceState::Pending),
        Ok(t) => Ok(ForceState::Done(t.trim().trim_start_matches("done").trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ForceState::None),
        Err(e) => Err(StorageError::io(&path, e).into()),
    }
}

fn write_marker(data_dir: &Path, text: &str) -> Result<(), RaftError> {
    let path = data_dir.join(MARKER);
    let tmp = data_dir.join(format!("{MARKER}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| StorageError::io(&path, e))?;
    sync_dir(data_dir)?;
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, RaftError> {
    codec::decode_versioned(b).map_err(|e| RaftError::Storage(StorageError::codec(what, e)))
}

/// Step 1 and 2, before any group starts: refuses a second forcing, marks the recovery pending
/// and makes this node the only voter of every group in its log.
pub async fn prepare(data_dir: &Path, engine: &LogEngine, me: NodeId, raft_addr: &str) -> Result<(), RaftError> {
    if let ForceState::Done(when) = force_state(data_dir)? {
        return Err(RaftError::Config(format!(
            "--force-new-cluster: this data directory was already forced into a new cluster ({when}); \
             start the node without the flag"
        )));
    }
    write_marker(data_dir, "pending\n")?;
    let groups = engine.groups();
    if !groups.contains(&META_GROUP) {
        return Err(RaftError::Config(
            "--force-new-cluster: this data directory holds no cluster state to recover".into(),
        ));
    }
    for g in &groups {
        force_group(engine, *g, me, raft_addr).await?;
    }
    tracing::warn!(node = me, groups = groups.len(), "forced: this node is now the only voter of every group it holds");
    Ok(())
}

async fn force_group(engine: &LogEngine, g: GroupId, me: NodeId, raft_addr: &str) -> Result<(), RaftError> {
    let st = engine.group_state(g);
    let vote: Option<Vote<NodeId>> = st.vote.as_deref().map(|b| decode("vote", b)).transpose()?;
    let purged: Option<LogId<NodeId>> = match &st.purged {
        Some((_, b)) => decode("purged id", b)?,
        None => None,
    };
    let last: Option<LogId<NodeId>> = match st.bounds {
        Some((_, last)) => {
            let raw = engine.read(g, last, last + 1)?;
            match raw.first() {
                Some(b) => Some(decode::<Entry>("log entry", b)?.log_id),
                None => purged,
            }
        }
        None => purged,
    };
    let term = vote.map_or(0, |v| v.leader_id.term).max(last.map_or(0, |l| l.leader_id.term)) + 1;
    let index = last.map_or(1, |l| l.index + 1);
    let members: BTreeMap<NodeId, BasicNode> = [(me, BasicNode { addr: raft_addr.to_string() })].into();
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, me), index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([me])], members)),
    };
    let enc = |what: &'static str, e: codec::CodecError| RaftError::Storage(StorageError::codec(what, e));
    let vote_bytes = codec::encode_versioned(&Vote::new(term, me)).map_err(|e| enc("vote", e))?;
    let entry_bytes = codec::encode_versioned(&entry).map_err(|e| enc("log entry", e))?;
    engine
        .save_vote(g, vote_bytes)?
        .wait()
        .await
        .map_err(|e| RaftError::Group { group: g, reason: format!("saving the forced vote: {e}") })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    engine.append(
        g,
        index,
        vec![entry_bytes],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    let res = rx.await.map_err(|_| RaftError::Group { group: g, reason: "the log flusher stopped".into() })?;
    res.map_err(|e| RaftError::Group { group: g, reason: format!("appending the forced membership: {e}") })?;
    tracing::warn!(group = g, term, index, "forced membership: this node alone");
    Ok(())
}

/// A node restarts as a follower, never as the leader it was before.
///
/// openraft 0.9 restores a node whose stored vote is committed for itself as leader at once,
/// without a new noop entry, and answers linearizable reads at its stored committed index. That
/// index is not fsynced (`save_committed`), so after a whole-cluster power loss it can be older
/// than writes this leader acknowledged, and a read could miss them: the Jepsen `lost-writes`
/// run found exactly that (stale-read). Storing the vote back as not committed makes the node
/// win an election first; a new leader commits a noop of its term before it serves reads.
pub async fn step_down_on_restart(engine: &LogEngine) -> Result<(), RaftError> {
    for g in engine.groups() {
        let Some(bytes) = engine.group_state(g).vote else { continue };
        let mut vote: Vote<NodeId> = decode("vote", &bytes)?;
        if !vote.committed {
            continue;
        }
        vote.committed = false;
        let bytes = codec::encode_versioned(&vote).map_err(|e| RaftError::Storage(StorageError::codec("vote", e)))?;
        engine
            .save_vote(g, bytes)?
            .wait()
            .await
            .map_err(|e| RaftError::Group { group: g, reason: format!("saving the vote: {e}") })?;
    }
    Ok(())
}

impl Node {
    /// Step 3, after start: once this node leads the meta group, the layout keeps only it.
    /// Groups placed here that have no local state start empty. Runs until done or shutdown.
    pub(crate) async fn finish_forced_recovery(&self) {
        let mut shutdown = self.inner.shutdown.clone();
        let me = self.id();
        let info =
            NodeInfo { raft_addr: self.raft_addr().to_string(), api_addr: self.inner.config.api_advertise.clone() };
        loop {
            if *shutdown.borrow() {
                return;
            }
            let forced = self.layout().is_some_and(|l| l.nodes.len() == 1 && l.nodes.contains_key(&me));
            if forced {
                break;
            }
            if let Err(e) = self.meta_write(MetaCommand::ForceSingleNode { id: me, info: info.clone() }).await {
                tracing::info!(cause = %e, "forced recovery: waiting to lead the meta group");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        let Some(layout) = self.layout() else { return };
        // Every group is placed here now; one whose log is empty had no replica here.
        let lost: Vec<GroupId> = (1..=layout.data_groups)
            .filter(|g| GroupLog::<TypeConfig>::new(self.engine().clone(), *g).is_pristine())
            .collect();
        if !lost.is_empty() {
            tracing::error!(groups = ?lost, "forced recovery: these groups had no replica on this node; their data is lost and they start empty");
        }
        for g in lost {
            let h = loop {
                if let Some(h) = self.group(g) {
                    break h;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            };
            let members: BTreeMap<NodeId, BasicNode> = [(me, BasicNode { addr: info.raft_addr.clone() })].into();
            if let Err(e) = h.raft.initialize(members).await {
                tracing::warn!(group = g, cause = %e, "forced recovery: initialize refused");
            }
        }
        let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        match write_marker(&self.inner.config.data_dir, &format!("done at unix ms {when}\n")) {
            Ok(()) => tracing::warn!("forced recovery done: a cluster of one node; add nodes with `raftchat admin members add`, then `rebalance`"),
            Err(e) => tracing::error!(cause = %e, "forced recovery: cannot record that it is done"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restarted_leader_keeps_its_vote_but_not_its_leadership() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), 1 << 20).unwrap();
        let committed = codec::encode_versioned(&Vote::<NodeId>::new_committed(7, 1)).unwrap();
        let granted = codec::encode_versioned(&Vote::<NodeId>::new(3, 2)).unwrap();
        engine.save_vote(1, committed).unwrap().wait().await.unwrap();
        engine.save_vote(2, granted.clone()).unwrap().wait().await.unwrap();
        step_down_on_restart(&engine).await.unwrap();
        let v: Vote<NodeId> = decode("vote", &engine.group_state(1).vote.unwrap()).unwrap();
        assert_eq!(v, Vote::new(7, 1), "same term and node, not committed");
        assert_eq!(engine.group_state(2).vote.unwrap(), granted, "an uncommitted vote is left alone");
    }
}
