//! The replicated core's settings. The server crate fills them from flags, env and file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::NodeId;

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub data_dir: PathBuf,
    /// Address the node-to-node listener binds.
    pub raft_listen: String,
    /// Address peers use to reach this node (defaults to the bound listen address).
    pub raft_advertise: Option<String>,
    /// Client-facing address, told to peers for redirects and status.
    pub api_advertise: String,
    /// The nodes of a fresh cluster (id -> raft address), this node included.
    pub initial_peers: BTreeMap<NodeId, String>,
    /// Cut the WAL at a damaged record instead of refusing to start (`--repair-wal`).
    pub repair_wal: bool,
    /// Mutual TLS on node-to-node connections; `None` is plain TCP (`--insecure`).
    pub peer_tls: Option<std::sync::Arc<crate::transport::tls::PeerTls>>,
    /// Data groups of a fresh cluster; ignored once the cluster exists.
    pub data_groups: u32,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Entries between snapshots of a group, at least (see [`crate::snapshot_policy`]).
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower needs no snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Commands in one Raft entry at most.
    pub batch_max: usize,
    /// Raft entries of one group in flight at once.
    pub batches_in_flight_max: usize,
    /// Proposals waiting per group before new ones are refused as overloaded.
    pub proposal_queue_len: usize,
    /// How long a routed write may take, retries included.
    pub write_timeout: Duration,
    pub wal_segment_bytes: u64,
    /// Size at which a group's active message segment is sealed.
    pub message_segment_bytes: u64,
    pub state_cache_bytes: u64,
    /// Make this node the only voter of every group it holds (see [`crate::recovery`]).
    pub force_new_cluster: bool,
    /// Rewrite the state database at start-up to give deleted space back (see
    /// `raftchat_storage::compact`).
    pub compact_state: bool,
    /// Outgoing snapshot bytes per second over all groups and peers; 0: unlimited.
    pub snapshot_send_bytes_per_sec: u64,
    /// How often each group's leader applies the retention policy.
    pub retention_sweep: Duration,
}

impl CoreConfig {
    pub fn new(node_id: NodeId, cluster_id: &str, data_dir: PathBuf) -> Self {
        CoreConfig {
            node_id,
            cluster_id: cluster_id.to_string(),
            data_dir,
            raft_listen: "127.0.0.1:0".into(),
            raft_advertise: None,
            api_advertise: String::new(),
            initial_peers: BTreeMap::new(),
            peer_tls: None,
            repair_wal: false,
            data_groups: 3,
            heartbeat_ms: 300,
            election_min_ms: 1500,
            election_max_ms: 3000,
            snapshot_every_logs: 10_000,
            logs_kept_after_snapshot: 2_000,
            batch_max: 1024,
            batches_in_flight_max: 4,
            proposal_queue_len: 16_384,
            write_timeout: Duration::from_secs(10),
            wal_segment_bytes: raftchat_storage::wal::SEGMENT_BYTES_DEFAULT,
            message_segment_bytes: raftchat_storage::messages::SEGMENT_BYTES_DEFAULT,
            state_cache_bytes: 256 * 1024 * 1024,
            force_new_cluster: false,
            compact_state: false,
            snapshot_send_bytes_per_sec: 64 * 1024 * 1024,
            retention_sweep: Duration::from_secs(60),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.cluster_id.is_empty() || self.cluster_id.len() > 128 {
            return Err("cluster id must be 1 to 128 characters".into());
        }
        if self.data_groups == 0 || self.data_groups > crate::meta::SLOTS {
            return Err(format!(
                "data groups must be 1..={} (one slot each at least), got {}",
                crate::meta::SLOTS,
                self.data_groups
            ));
        }
        if !self.initial_peers.is_empty() && !self.initial_peers.contains_key(&self.node_id) {
            return Err(format!(
                "initial peers {:?} do not include this node ({})",
                self.initial_peers.keys(),
                self.node_id
            ));
        }
        if self.election_min_ms <= self.heartbeat_ms || self.election_max_ms <= self.election_min_ms {
            return Err("need heartbeat < election min < election max".into());
        }
        Ok(())
    }

    pub fn raft_config(&self) -> Result<openraft::Config, String> {
        let c = openraft::Config {
            cluster_name: self.cluster_id.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: 5_000,
            snapshot_max_chunk_size: 512 * 1024,
            max_payload_entries: 64,
            // Snapshots are triggered by `crate::snapshot_policy`, which also weighs the state's size.
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            purge_batch_size: 256,
            ..Default::default()
        };
        c.validate().map_err(|e| e.to_string())
    }
}
