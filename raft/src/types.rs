//! The openraft type configuration and the entry payloads every group replicates.

use openraft::BasicNode;
use serde::Deserialize;
use serde::Serialize;

use crate::batch::CommandBatch;
use crate::command::CommandOutcome;
use crate::meta::MetaCommand;

pub type NodeId = u64;
/// Group 0 is the metadata group; data groups are 1..=data_groups.
pub type GroupId = u32;
pub const META_GROUP: GroupId = 0;

openraft::declare_raft_types!(
    /// raftchat's openraft types: snapshots are a state file and segment files, streamed in chunks.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = raftchat_storage::snapshot::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;

/// The payload of one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Many chat commands proposed together (proposal batching), as encoded at their gateways.
    Chat(CommandBatch),
    Meta(MetaCommand),
}

/// What applying one entry produced, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Chat(Vec<CommandOutcome>),
    Meta,
    /// Blank and membership entries.
    None,
}
