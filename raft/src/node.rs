//! A raftchat node: the meta group, the data groups placed on it, and the inbound RPC handler.
//!
//! Start-up: check the data directory's identity, open the log and the state, listen for peers,
//! start the meta group, then follow the cluster layout: every data group placed on this node is
//! started, and one replica of a never-initialized group (rotating by group id) initializes it.
//!
//! Bootstrap of a fresh cluster happens exactly once: the node with the lowest id among the
//! initial peers initializes the meta group, and only when it and every initial peer report
//! (in their handshake) that they hold no Raft state at all. Restarts with the same flags find
//! state and do nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::Weak;
use std::time::Duration;

use raftchat_storage::chat_store::GroupState;
use raftchat_storage::chat_store::StateDb;
use raftchat_storage::identity::Identity;
use raftchat_storage::log_store::GroupLog;
use raftchat_storage::wal::LogEngine;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::batcher::Batcher;
use crate::config::CoreConfig;
use crate::error::RaftError;
use crate::events::EventLog;
use crate::meta::ClusterLayout;
use crate::meta::MetaCommand;
use crate::network::NetworkFactory;
use crate::rpc::AppError;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::state_machine::GroupStateMachine;
use crate::state_machine::Listeners;
use crate::transport::listener;
use crate::transport::Inbound;
use crate::transport::LocalIdentity;
use crate::transport::PeerPool;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::Raft;
use crate::types::Request;
use crate::types::META_GROUP;

/// Handles application messages between nodes (`RpcRequest::App`).
pub trait AppHandler: Send + Sync + 'static {
    fn handle(
        &self,
        from: NodeId,
        topic: u16,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>>;
}

/// One group hosted on this node.
pub struct GroupHandle {
    pub id: GroupId,
    pub raft: Raft,
    pub state: GroupState,
    pub batcher: Batcher,
}

impl GroupHandle {
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }
}

pub struct NodeInner {
    pub config: CoreConfig,
    pub raft_addr: String,
    raft_config: Arc<openraft::Config>,
    pub(crate) engine: LogEngine,
    db: StateDb,
    pub(crate) pool: Arc<PeerPool>,
    groups: RwLock<HashMap<GroupId, Arc<GroupHandle>>>,
    pub(crate) layout_tx: watch::Sender<Option<ClusterLayout>>,
    events: Arc<EventLog>,
    pub(crate) shutdown: watch::Receiver<bool>,
    app: std::sync::OnceLock<Arc<dyn AppHandler>>,
    pub(crate) leadership: crate::leadership::LeadershipState,
    snapshots: Arc<crate::state_machine::SnapshotObserver>,
    snapshot_throttle: Arc<crate::throttle::Throttle>,
    /// Entries and commands this node's batchers proposed.
    proposals: Arc<crate::batcher::ProposalStats>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

/// A file in the data directory: this node has been a member of the cluster's layout.
pub(crate) const MEMBER_MARKER: &str = "MEMBER";

struct InboundHandler(Weak<NodeInner>);

impl Inbound for InboundHandler {
    fn handle(
        &self,
        from: NodeId,
        group: GroupId,
        req: RpcRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = RpcResponse> + Send>> {
        let node = self.0.upgrade();
        Box::pin(async move {
            match node {
                Some(inner) => Node { inner }.handle_rpc(from, group, req).await,
                None => RpcResponse::GroupNotHosted,
            }
        })
    }
}

impl Node {
    pub async fn start(config: CoreConfig, shutdown: watch::Receiver<bool>) -> Result<Node, RaftError> {
        config.validate().map_err(RaftError::Config)?;
        let raft_config = Arc::new(config.raft_config().map_err(RaftError::Config)?);
        let identity = Identity { cluster_id: config.cluster_id.clone(), node_id: config.node_id };
        Identity::check_or_create(&config.data_dir, &identity)?;
        let engine = LogEngine::open_with(&config.data_dir.join("wal"), config.wal_segment_bytes, config.repair_wal)?;
        if config.compact_state {
            let started = std::time::Instant::now();
            let (before, after) = raftchat_storage::compact::compact(&config.data_dir.join("state"))?;
            tracing::info!(before, after, took_ms = started.elapsed().as_millis() as u64, "state database compacted");
        }
        let db = StateDb::open(
            &config.data_dir.join("state"),
            &config.data_dir.join("messages"),
            config.state_cache_bytes,
            config.message_segment_bytes,
        )?;
        let listener = TcpListener::bind(&config.raft_listen)
            .await
            .map_err(|e| RaftError::Listen { addr: config.raft_listen.clone(), source: e })?;
        let bound =
            listener.local_addr().map_err(|e| RaftError::Listen { addr: config.raft_listen.clone(), source: e })?;
        let raft_addr = config.raft_advertise.clone().unwrap_or_else(|| bound.to_string());
        crate::recovery::step_down_on_restart(&engine).await?;
        if config.force_new_cluster {
            crate::recovery::prepare(&config.data_dir, &engine, config.node_id, &raft_addr).await?;
        }
        let forcing = crate::recovery::force_state(&config.data_dir)? == crate::recovery::ForceState::Pending;
        let pristine = GroupLog::<crate::types::TypeConfig>::new(engine.clone(), META_GROUP).is_pristine();
        let me = LocalIdentity {
            cluster_id: config.cluster_id.clone(),
            node_id: config.node_id,
            api_addr: config.api_advertise.clone(),
            raft_addr: raft_addr.clone(),
            source_ip: Some(bound.ip()).filter(|ip| !ip.is_unspecified()),
            tls: config.peer_tls.clone(),
        };
        let (layout_tx, _) = watch::channel(None);
        let snapshot_throttle = Arc::new(crate::throttle::Throttle::new(config.snapshot_send_bytes_per_sec));
        let events = Arc::new(EventLog::default());
        let inner = Arc::new_cyclic(|weak: &Weak<NodeInner>| NodeInner {
            pool: PeerPool::new(me, Arc::new(InboundHandler(weak.clone())), pristine, shutdown.clone()),
            config,
            raft_addr,
            raft_config,
            engine,
            db,
            groups: RwLock::new(HashMap::new()),
            layout_tx,
            events,
            shutdown: shutdown.clone(),
            app: std::sync::OnceLock::new(),
            leadership: Default::default(),
            snapshots: Arc::new(std::sync::OnceLock::new()),
            snapshot_throttle,
            proposals: Default::default(),
        });
        let node = Node { inner };
        tracing::info!(node = node.id(), raft_addr = %node.inner.raft_addr, pristine, "node starting");
        tokio::spawn(listener::serve(listener, node.inner.pool.clone(), shutdown));
        node.start_group(META_GROUP).await?;
        for (id, addr) in &node.inner.config.initial_peers {
            node.inner.pool.learn(*id, addr);
        }
        if pristine && node.is_bootstrapper() {
            let n = node.clone();
            tokio::spawn(async move { n.bootstrap().await });
        }
        let weak = Arc::downgrade(&node.inner);
        node.inner.pool.set_member_probe(Box::new(move |id| {
            weak.upgrade().is_some_and(|n| n.layout_tx.borrow().as_ref().is_some_and(|l| l.nodes.contains_key(&id)))
        }));
        node.inner.pool.set_was_member(node.inner.config.data_dir.join(MEMBER_MARKER).exists());
        let weak = Arc::downgrade(&node.inner);
        node.inner.pool.set_epoch_probe(Box::new(move || {
            weak.upgrade().and_then(|n| n.layout_tx.borrow().as_ref().map(|l| l.epoch)).unwrap_or(0)
        }));
        let n = node.clone();
        tokio::spawn(async move { n.follow_layout().await });
        let (n, every) = (node.clone(), node.inner.config.retention_sweep);
        tokio::spawn(async move { n.run_retention(every).await });
        let n = node.clone();
        tokio::spawn(async move { n.run_snapshot_policy().await });
        if forcing {
            let n = node.clone();
            tokio::spawn(async move { n.finish_forced_recovery().await });
        }
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    pub fn raft_addr(&self) -> &str {
        &self.inner.raft_addr
    }

    pub fn layout(&self) -> Option<ClusterLayout> {
        self.inner.layout_tx.borrow().clone()
    }

    /// The data group of a chat (or a user's or media id), read from the layout in place;
    /// `None` before the cluster has a layout.
    pub fn group_of(&self, id: &uuid::Uuid) -> Option<GroupId> {
        self.inner.layout_tx.borrow().as_ref().map(|l| l.group_of(id))
    }

    /// The number of data groups, read from the layout in place.
    pub fn data_groups(&self) -> Option<u32> {
        self.inner.layout_tx.borrow().as_ref().map(|l| l.data_groups)
    }

    pub fn layout_watch(&self) -> watch::Receiver<Option<ClusterLayout>> {
        self.inner.layout_tx.subscribe()
    }

    /// Recent committed chat events of the groups hosted here.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.inner.events
    }

    pub fn group(&self, g: GroupId) -> Option<Arc<GroupHandle>> {
        self.inner.groups.read().unwrap_or_else(|e| e.into_inner()).get(&g).cloned()
    }

    pub fn groups(&self) -> Vec<Arc<GroupHandle>> {
        let mut v: Vec<_> = self.inner.groups.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by_key(|g| g.id);
        v
    }

    /// Forgets a hosted group (its replica is being retired).
    pub(crate) fn remove_group(&self, g: GroupId) -> Option<Arc<GroupHandle>> {
        self.inner.groups.write().unwrap_or_else(|e| e.into_inner()).remove(&g)
    }

    pub(crate) fn engine(&self) -> &LogEngine {
        &self.inner.engine
    }

    pub(crate) fn state_db(&self) -> &StateDb {
        &self.inner.db
    }

    /// Resolves with a reason when this node must stop (see `PeerPool::lost_data`).
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.inner.pool.fatal()
    }

    pub fn pool(&self) -> &Arc<PeerPool> {
        &self.inner.pool
    }

    /// Where snapshot durations go (set once, by the metrics).
    pub fn snapshot_observer(&self) -> &crate::state_machine::SnapshotObserver {
        &self.inner.snapshots
    }

    /// Entries and commands this node's batchers proposed since start.
    pub fn proposal_stats(&self) -> &crate::batcher::ProposalStats {
        &self.inner.proposals
    }

    pub fn wal_stats(&self) -> &raftchat_storage::wal::FlushStats {
        self.inner.engine.stats()
    }

    /// The directory holding every group's snapshot directory (`g<group>/current.snap`).
    pub fn snapshot_root(&self) -> std::path::PathBuf {
        self.inner.config.data_dir.join("snapshots")
    }

    /// Storage of one hosted group: bytes of its unpurged log entries, and of its current
    /// snapshot's state file (the part a snapshot rewrites; the message segments it links).
    pub fn group_bytes(&self, g: GroupId) -> (u64, u64) {
        let state = raftchat_storage::snapshot::SnapshotDir::open_existing(&self.snapshot_root(), g)
            .map_or(0, |d| d.current_state_bytes());
        (self.inner.engine.group_bytes(g), state)
    }

    /// Bytes on disk of the Raft log, of the chat state database and of the message stores.
    pub fn disk_bytes(&self) -> (u64, u64, u64) {
        (self.inner.engine.disk_bytes(), self.inner.db.size_on_disk(), self.inner.db.messages_bytes())
    }

    pub(crate) fn is_bootstrapper(&self) -> bool {
        let peers = &self.inner.config.initial_peers;
        peers.is_empty() || peers.keys().next() == Some(&self.id())
    }

    pub(crate) async fn start_group(&self, g: GroupId) -> Result<Arc<GroupHandle>, RaftError> {
        if let Some(h) = self.group(g) {
            return Ok(h);
        }
        let inner = &self.inner;
        let snapshots = Some(inner.snapshots.clone());
        let listeners = if g == META_GROUP {
            Listeners { events: None, layout: Some(inner.layout_tx.clone()), snapshots }
        } else {
            Listeners { events: Some(inner.events.clone()), layout: None, snapshots }
        };
        let log = GroupLog::new(inner.engine.clone(), g);
        let sm = GroupStateMachine::open(g, &inner.db, &inner.config.data_dir.join("snapshots"), listeners)?;
        let state = sm.state();
        let net =
            NetworkFactory { pool: inner.pool.clone(), group: g, snapshot_throttle: inner.snapshot_throttle.clone() };
        let raft = Raft::new(self.id(), inner.raft_config.clone(), net, log, sm)
            .await
            .map_err(|e| RaftError::Group { group: g, reason: e.to_string() })?;
        let c = &inner.config;
        let limits = (c.proposal_queue_len, c.batch_max, c.batches_in_flight_max);
        let batcher = Batcher::spawn(raft.clone(), g, limits, inner.proposals.clone(), inner.shutdown.clone());
        let handle = Arc::new(GroupHandle { id: g, raft, state, batcher });
        inner.groups.write().unwrap_or_else(|e| e.into_inner()).insert(g, handle.clone());
        tracing::debug!(group = g, "group started");
        Ok(handle)
    }

    /// Proposes a meta command on the meta group's leader.
    pub async fn meta_write(&self, cmd: MetaCommand) -> Result<(), AppError> {
        let meta = self.group(META_GROUP).ok_or(AppError::GroupNotHosted)?;
        let leader = meta.leader().ok_or(AppError::NotLeader { leader: None })?;
        if leader == self.id() {
            return meta
                .raft
                .client_write(Request::Meta(cmd))
                .await
                .map(|_| ())
                .map_err(|e| AppError::Unknown(e.to_string()));
        }
        match self.inner.pool.call(leader, META_GROUP, RpcRequest::MetaWrite(cmd), Duration::from_secs(5)).await {
            Ok(RpcResponse::MetaWrite(r)) => r,
            Ok(_) => Err(AppError::Unknown("unexpected response".into())),
            Err(e) => Err(AppError::Unknown(e.to_string())),
        }
    }

    /// Installs the handler of application messages (once).
    pub fn set_app_handler(&self, h: Arc<dyn AppHandler>) {
        let _ = self.inner.app.set(h);
    }

    /// Sends an application message to node `to` and returns its answer.
    pub async fn call_app(
        &self,
        to: NodeId,
        topic: u16,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, AppError> {
        match self.inner.pool.call(to, 0, RpcRequest::App { topic, body }, timeout).await {
            Ok(RpcResponse::App(b)) => Ok(b),
            Ok(_) => Err(AppError::Unknown("unexpected response".into())),
            Err(e) => Err(AppError::Unavailable(e.to_string())),
        }
    }

    async fn handle_rpc(&self, from: NodeId, group: GroupId, req: RpcRequest) -> RpcResponse {
        if let RpcRequest::App { topic, body } = req {
            return match self.inner.app.get() {
                Some(h) => RpcResponse::App(h.handle(from, topic, body).await),
                None => RpcResponse::App(Vec::new()),
            };
        }
        if let RpcRequest::Removed { epoch } = req {
            self.inner.pool.check_removed(from, false, epoch);
            return RpcResponse::Changed(Ok(()));
        }
        if let RpcRequest::WriteBatch(items) = req {
            let proposals = items.into_iter().map(|(g, cmd)| async move {
                match self.group(g) {
                    Some(h) => self.propose_local(&h, cmd).await,
                    None => Err(AppError::GroupNotHosted),
                }
            });
            return RpcResponse::WriteBatch(futures::future::join_all(proposals).await);
        }
        let Some(g) = self.group(group) else { return RpcResponse::GroupNotHosted };
        match req {
            RpcRequest::Append(r) => RpcResponse::Append(g.raft.append_entries(r).await),
            RpcRequest::Vote(r) => RpcResponse::Vote(g.raft.vote(r).await),
            RpcRequest::Snapshot(r) => RpcResponse::Snapshot(g.raft.install_snapshot(r).await),
            RpcRequest::WriteBatch(_) => RpcResponse::WriteBatch(Vec::new()),
            RpcRequest::MetaWrite(cmd) => RpcResponse::MetaWrite(self.meta_write_local(&g, cmd).await),
            RpcRequest::Read { query, linearizable } => {
                RpcResponse::Read(crate::router::read_local(&g, &query, linearizable, self.id()).await)
            }
            RpcRequest::App { .. } => RpcResponse::App(Vec::new()),
            RpcRequest::Removed { .. } => RpcResponse::Changed(Ok(())),
            RpcRequest::Membership(change) => RpcResponse::Changed(self.change_membership_local(&g, change).await),
            RpcRequest::Leadership(op) => RpcResponse::Changed(self.leadership_local(op).await),
            RpcRequest::PollEvents { epoch, after, wait_ms } => {
                let wait = std::time::Duration::from_millis(u64::from(wait_ms.min(10_000)));
                RpcResponse::Events(self.inner.events.poll(group, epoch, after, wait).await)
            }
        }
    }

    async fn meta_write_local(&self, g: &GroupHandle, cmd: MetaCommand) -> Result<(), AppError> {
        if g.id != META_GROUP {
            return Err(AppError::GroupNotHosted);
        }
        match g.raft.client_write(Request::Meta(cmd)).await {
            Ok(_) => Ok(()),
            Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
                Err(AppError::NotLeader { leader: f.leader_id })
            }
            Err(e) => Err(AppError::Unknown(e.to_string())),
        }
    }

    /// Proposes on this node's replica, which must be the leader.
    pub(crate) async fn propose_local(
        &self,
        g: &GroupHandle,
        cmd: crate::batch::EncodedCommand,
    ) -> Result<crate::command::CommandOutcome, AppError> {
        match g.leader() {
            Some(l) if l == self.id() && self.refusing(g.id) => {
                Err(AppError::Unavailable(format!("leadership of group {} is moving away from node {l}", g.id)))
            }
            Some(l) if l == self.id() => g.batcher.propose(cmd).await,
            other => Err(AppError::NotLeader { leader: other }),
        }
    }

    /// Stops every group and flushes state. Call once, after the shutdown signal.
    pub async fn shutdown(&self) {
        let groups = self.groups();
        for g in groups {
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(group = g.id, cause = %e, "group did not shut down cleanly");
                continue;
            }
            // Its state machine has stopped, so nothing else writes the state now.
            if let Err(e) = g.state.flush_pending() {
                tracing::warn!(group = g.id, cause = %e, "pending state writes not flushed on shutdown");
            }
        }
        if let Err(e) = self.inner.db.sync() {
            tracing::warn!(cause = %e, "state flush on shutdown failed");
        }
        self.inner.engine.close();
        tracing::info!(node = self.id(), "node stopped");
    }
}
