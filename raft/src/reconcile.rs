//! How a node follows the cluster layout: bootstrapping a new cluster once, then starting the
//! data groups the layout places here, retiring the ones it moved away, and stopping when the
//! layout no longer lists this node (it was removed).

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::BasicNode;
use raftchat_storage::log_store::GroupLog;

use crate::meta::ClusterLayout;
use crate::meta::MetaCommand;
use crate::meta::NodeInfo;
use crate::node::Node;
use crate::node::MEMBER_MARKER;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::META_GROUP;

impl Node {
    /// Waits for every initial peer, then initializes the cluster if all are pristine.
    pub(crate) async fn bootstrap(&self) {
        let mut shutdown = self.inner.shutdown.clone();
        let peers = self.inner.config.initial_peers.clone();
        let infos = loop {
            if *shutdown.borrow() {
                return;
            }
            let mut infos = BTreeMap::new();
            for id in peers.keys().filter(|id| **id != self.id()) {
                if let Some(info) = self.inner.pool.info(*id) {
                    infos.insert(*id, info);
                }
            }
            if infos.values().any(|i| !i.pristine) {
                tracing::info!("a peer already holds Raft state; not bootstrapping");
                return;
            }
            if infos.len() + 1 >= peers.len() {
                break infos;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        };
        let mut nodes = BTreeMap::new();
        let mut members = BTreeMap::new();
        nodes.insert(
            self.id(),
            NodeInfo { raft_addr: self.inner.raft_addr.clone(), api_addr: self.inner.config.api_advertise.clone() },
        );
        for (id, info) in infos {
            let raft_addr = peers.get(&id).cloned().unwrap_or_default();
            nodes.insert(id, NodeInfo { raft_addr, api_addr: info.api_addr });
        }
        for (id, info) in &nodes {
            members.insert(*id, BasicNode { addr: info.raft_addr.clone() });
        }
        let Some(meta) = self.group(META_GROUP) else { return };
        if let Err(e) = meta.raft.initialize(members).await {
            tracing::warn!(cause = %e, "meta group initialize refused");
            return;
        }
        self.inner.pool.set_pristine(false);
        let mut layout = ClusterLayout::initial(&self.inner.config.cluster_id, nodes, self.inner.config.data_groups);
        layout.token_secret = (0..32).map(|_| rand::random::<u8>()).collect();
        tracing::info!(nodes = layout.nodes.len(), groups = layout.data_groups, "bootstrapping a new cluster");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline && !*shutdown.borrow() {
            match self.meta_write(MetaCommand::Bootstrap(layout.clone())).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(cause = %e, "bootstrap write not yet accepted"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::error!("could not write the initial cluster layout");
    }

    /// Starts every data group the layout places here; initializes new ones once.
    pub(crate) async fn follow_layout(&self) {
        let mut rx = self.inner.layout_tx.subscribe();
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            let layout = rx.borrow_and_update().clone();
            if let Some(l) = layout {
                // Holding a layout means holding cluster state.
                self.inner.pool.set_pristine(false);
                if !self.note_membership(&l) {
                    return;
                }
                self.reconcile(&l).await;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Records in the data directory that this node is a member, the first time a layout lists
    /// it; a member that a later layout leaves out was removed and stops. False when stopping.
    fn note_membership(&self, l: &ClusterLayout) -> bool {
        let pool = &self.inner.pool;
        let marker = self.inner.config.data_dir.join(MEMBER_MARKER);
        if l.nodes.contains_key(&self.id()) {
            if !pool.was_member() {
                let write = std::fs::write(&marker, format!("member of {}\n", l.cluster_id))
                    .and_then(|_| std::fs::File::open(&marker)?.sync_all());
                if let Err(e) = write {
                    tracing::warn!(path = %marker.display(), cause = %e, "cannot record membership");
                }
                pool.set_was_member(true);
            }
            return true;
        }
        if pool.was_member() {
            pool.removed(&format!("its cluster layout (epoch {}) no longer lists it", l.epoch));
            return false;
        }
        true
    }

    async fn reconcile(&self, l: &ClusterLayout) {
        for (id, info) in &l.nodes {
            self.inner.pool.learn(*id, &info.raft_addr);
        }
        // Replicas the layout moved away: the move changed the group's voters before the layout
        // dropped this node, so nothing needs them any more.
        let placed: std::collections::BTreeSet<GroupId> = l.groups_of(self.id()).into_iter().collect();
        for h in self.groups() {
            if h.id != META_GROUP && !placed.contains(&h.id) {
                self.retire_group(h.id).await;
            }
        }
        for g in l.groups_of(self.id()) {
            if self.group(g).is_some() {
                continue;
            }
            let pristine = GroupLog::<crate::types::TypeConfig>::new(self.inner.engine.clone(), g).is_pristine();
            let handle = match self.start_group(g).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(group = g, cause = %e, "cannot start group");
                    continue;
                }
            };
            let replicas = l.replicas(g);
            // The initializer (and so the likely first leader) rotates over the replicas, so
            // that leadership starts out spread evenly.
            let initializer = replicas.get((g as usize).wrapping_sub(1) % replicas.len().max(1));
            // Only the first layout initializes groups. Later a group placed on a new node gets
            // an empty replica there, which joins through the group's leader (membership.rs);
            // initializing it would start a second group under the same id.
            if pristine && initializer == Some(&self.id()) && l.epoch == 1 {
                let members: BTreeMap<NodeId, BasicNode> = replicas
                    .iter()
                    .filter_map(|n| l.nodes.get(n).map(|i| (*n, BasicNode { addr: i.raft_addr.clone() })))
                    .collect();
                if let Err(e) = handle.raft.initialize(members).await {
                    tracing::warn!(group = g, cause = %e, "group initialize refused");
                }
            }
        }
    }
}
