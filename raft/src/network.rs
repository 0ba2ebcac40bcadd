//! openraft's network for one (group, peer): a cheap handle onto the shared peer connection.
//!
//! openraft calls `new_client` per replication stream, election and linearizable read, so it
//! must not open anything: it only names the peer (openraft.md §2).

use std::sync::Arc;

use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RaftNetwork;
use openraft::network::RaftNetworkFactory;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::BasicNode;

use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::throttle::Throttle;
use crate::transport::CallError;
use crate::transport::PeerPool;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::TypeConfig;

pub struct NetworkFactory {
    pub pool: Arc<PeerPool>,
    pub group: GroupId,
    /// The node's limit on outgoing snapshot bytes.
    pub snapshot_throttle: Arc<Throttle>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GroupNetwork {
        self.pool.learn(target, &node.addr);
        GroupNetwork { pool: self.pool.clone(), group: self.group, target, throttle: self.snapshot_throttle.clone() }
    }
}

pub struct GroupNetwork {
    pool: Arc<PeerPool>,
    group: GroupId,
    target: NodeId,
    throttle: Arc<Throttle>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl GroupNetwork {
    async fn send(&self, req: RpcRequest, option: &RPCOption) -> Result<RpcResponse, CallError> {
        self.pool.call(self.target, self.group, req, option.hard_ttl()).await
    }

    fn transport_err<E: std::error::Error>(&self, e: CallError) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Unreachable => {
                RPCError::Unreachable(Unreachable::new(&Msg(format!("node {} unreachable", self.target))))
            }
            other => RPCError::Network(NetworkError::new(&Msg(other.to_string()))),
        }
    }

    fn not_hosted<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&Msg(format!(
            "node {} does not host group {}",
            self.target, self.group
        ))))
    }

    fn mismatch<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&Msg("mismatched response kind".into())))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.send(RpcRequest::Append(rpc), &option).await {
            Ok(RpcResponse::Append(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(RpcResponse::GroupNotHosted) => Err(self.not_hosted()),
            Ok(_) => Err(self.mismatch()),
            Err(e) => Err(self.transport_err(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.throttle.acquire(rpc.data.len()).await;
        match self.send(RpcRequest::Snapshot(rpc), &option).await {
            Ok(RpcResponse::Snapshot(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(RpcResponse::GroupNotHosted) => Err(self.not_hosted()),
            Ok(_) => Err(self.mismatch()),
            Err(e) => Err(self.transport_err(e)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.send(RpcRequest::Vote(rpc), &option).await {
            Ok(RpcResponse::Vote(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(RpcResponse::GroupNotHosted) => Err(self.not_hosted()),
            Ok(_) => Err(self.mismatch()),
            Err(e) => Err(self.transport_err(e)),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(std::time::Duration::from_millis(200)))
    }
}
