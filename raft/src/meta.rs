//! The metadata group (group 0): which nodes form the cluster and where each data group lives.
//!
//! Every node is a member of the meta group, so every node has a local copy of the layout and can
//! route any chat without asking. The layout is one replicated record, changed only by
//! [`MetaCommand`]s.

use std::collections::BTreeMap;

use raftchat_storage::chat_store::StateWriter;
use raftchat_storage::codec;
use raftchat_storage::StorageError;
use serde::Deserialize;
use serde::Serialize;

use crate::command::ChatId;
use crate::types::GroupId;
use crate::types::NodeId;

pub const LAYOUT_KEY: &[u8] = b"meta/layout";
/// Replicas per data group.
pub const REPLICATION_FACTOR: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node-to-node (Raft) address.
    pub raft_addr: String,
    /// Client HTTP/WebSocket address.
    pub api_addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLayout {
    pub cluster_id: String,
    /// Data groups 1..=data_groups; fixed at cluster init.
    pub data_groups: u32,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// `placement[g - 1]` = replica nodes of data group `g`.
    pub placement: Vec<Vec<NodeId>>,
    /// Raised by every change.
    pub epoch: u64,
    /// Signs session tokens; drawn once by the bootstrapping node and replicated.
    pub token_secret: Vec<u8>,
}

impl ClusterLayout {
    /// The initial layout: group g's replicas are 3 consecutive nodes of the sorted node list,
    /// starting at node (g - 1) mod N, so replicas spread evenly.
    pub fn initial(cluster_id: &str, nodes: BTreeMap<NodeId, NodeInfo>, data_groups: u32) -> Self {
        let ids: Vec<NodeId> = nodes.keys().copied().collect();
        let rf = REPLICATION_FACTOR.min(ids.len());
        let placement = (0..data_groups as usize)
            .map(|g| {
                let mut r: Vec<NodeId> = (0..rf).map(|i| ids[(g + i) % ids.len()]).collect();
                r.sort_unstable();
                r
            })
            .collect();
        ClusterLayout {
            cluster_id: cluster_id.to_string(),
            data_groups,
            nodes,
            placement,
            epoch: 1,
            token_secret: Vec::new(),
        }
    }

    pub fn replicas(&self, group: GroupId) -> &[NodeId] {
        if group == crate::types::META_GROUP {
            return &[];
        }
        self.placement.get(group as usize - 1).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Data groups that have a replica on `node`.
    pub fn groups_of(&self, node: NodeId) -> Vec<GroupId> {
        (1..=self.data_groups).filter(|g| self.replicas(*g).contains(&node)).collect()
    }

    pub fn group_of(&self, chat: &ChatId) -> GroupId {
        group_of(chat, self.data_groups)
    }
}

/// The data group of a chat: `1 + fnv1a64(chat id bytes) mod data_groups`.
///
/// It depends only on the chat id and the group count fixed at cluster init, never on the
/// nodes, so adding or removing nodes moves groups, not chats.
pub fn group_of(chat: &ChatId, data_groups: u32) -> GroupId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in chat.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    1 + (h % u64::from(data_groups.max(1))) as GroupId
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Sets the first layout; ignored once a layout exists.
    Bootstrap(ClusterLayout),
    /// Adds a node or changes its addresses.
    UpsertNode { id: NodeId, info: NodeInfo },
    /// Moves a data group to new replicas.
    SetPlacement { group: GroupId, replicas: Vec<NodeId> },
}

pub fn read_layout(bytes: &[u8]) -> Result<ClusterLayout, StorageError> {
    codec::decode_versioned(bytes).map_err(|e| StorageError::Codec { what: "cluster layout", source: e })
}

/// Applies a meta command; returns the new layout when it changed.
pub fn apply(w: &mut StateWriter, cmd: &MetaCommand) -> Result<Option<ClusterLayout>, StorageError> {
    let current = w.kv_get(LAYOUT_KEY)?.map(|b| read_layout(&b)).transpose()?;
    let next = match (cmd, current) {
        (MetaCommand::Bootstrap(l), None) => l.clone(),
        (MetaCommand::Bootstrap(_), Some(_)) => return Ok(None),
        (_, None) => return Ok(None),
        (MetaCommand::UpsertNode { id, info }, Some(mut l)) => {
            l.nodes.insert(*id, info.clone());
            l.epoch += 1;
            l
        }
        (MetaCommand::SetPlacement { group, replicas }, Some(mut l)) => {
            match l.placement.get_mut((*group as usize).wrapping_sub(1)) {
                Some(slot) => *slot = replicas.clone(),
                None => return Ok(None),
            }
            l.epoch += 1;
            l
        }
    };
    let bytes =
        codec::encode_versioned(&next).map_err(|e| StorageError::Codec { what: "cluster layout", source: e })?;
    w.kv_put(LAYOUT_KEY, Some(bytes));
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u64) -> BTreeMap<NodeId, NodeInfo> {
        (1..=n).map(|i| (i, NodeInfo { raft_addr: format!("r{i}"), api_addr: format!("a{i}") })).collect()
    }

    #[test]
    fn placement_is_even_and_has_three_distinct_replicas() {
        let l = ClusterLayout::initial("c", nodes(5), 64);
        let mut per_node = BTreeMap::new();
        for g in 1..=64 {
            let r = l.replicas(g);
            assert_eq!(r.len(), 3);
            let mut d = r.to_vec();
            d.dedup();
            assert_eq!(d.len(), 3);
            for n in r {
                *per_node.entry(*n).or_insert(0) += 1;
            }
        }
        let (min, max) = (per_node.values().min().unwrap(), per_node.values().max().unwrap());
        assert!(max - min <= 3, "{per_node:?}");
        let small = ClusterLayout::initial("c", nodes(3), 8);
        assert!((1..=8).all(|g| small.replicas(g) == [1, 2, 3]));
    }

    #[test]
    fn group_of_is_stable_and_in_range() {
        let chat = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        // Golden values (computed independently): a change here would move every chat of an
        // existing cluster to another group, so it must never happen.
        assert_eq!(group_of(&chat, 64), 6);
        assert_eq!(group_of(&uuid::Uuid::from_u128(0), 64), 38);
        assert_eq!(group_of(&uuid::Uuid::from_u128(1), 1024), 691);
        for i in 0..1000u128 {
            let g = group_of(&uuid::Uuid::from_u128(i * 7919), 64);
            assert!((1..=64).contains(&g));
        }
        assert_eq!(group_of(&chat, 1), 1);
    }
}
