//! Online backups of one group: a snapshot at least as new as a linearizable read point.
//!
//! The group's leader confirms its leadership with a quorum round (`ensure_linearizable`), so
//! every write acknowledged before the backup started is at or below the read point; it then
//! asks openraft for a snapshot and waits until the group's current snapshot file covers that
//! point. The stream it returns stays readable when a newer snapshot replaces the files.
//! Snapshots are consistent cuts of the group's state (see `raftchat_storage::snapshot`), so a
//! backup is consistent per group.

use std::time::Duration;
use std::time::Instant;

use raftchat_storage::snapshot::open_stream;
use raftchat_storage::snapshot::Meta;
use raftchat_storage::snapshot::SnapshotData;

use crate::node::Node;
use crate::rpc::AppError;
use crate::types::GroupId;

/// How long a backup waits for the snapshot that covers its read point.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);

/// A snapshot stream of group `g` that holds every write acknowledged before this call, with its
/// metadata and length.
pub async fn snapshot_for_backup(node: &Node, g: GroupId) -> Result<(SnapshotData, Meta, u64), AppError> {
    let h = node.group(g).ok_or(AppError::GroupNotHosted)?;
    let me = node.id();
    let read_point = h.raft.ensure_linearizable().await.map_err(|e| match e.forward_to_leader() {
        Some(f) => AppError::NotLeader { leader: f.leader_id.filter(|l| *l != me) },
        None => AppError::Unavailable(e.to_string()),
    })?;
    let root = node.snapshot_root();
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    let mut triggered: Option<Instant> = None;
    loop {
        let current = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || open_stream(&root, g))
                .await
                .map_err(|e| AppError::Unavailable(format!("snapshot reader: {e}")))?
                .map_err(|e| AppError::Unavailable(format!("snapshot of group {g}: {e}")))?
        };
        if let Some((data, meta, len)) = current {
            if meta.last_log_id >= read_point {
                return Ok((data, meta, len));
            }
        }
        if Instant::now() > deadline {
            return Err(AppError::Unavailable(format!(
                "group {g}: no snapshot covering {read_point:?} within {SNAPSHOT_WAIT:?}"
            )));
        }
        // Ask again now and then: a request made while another snapshot was building is dropped.
        if triggered.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
            h.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| AppError::Unavailable(format!("group {g}: snapshot trigger: {e}")))?;
            triggered = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
