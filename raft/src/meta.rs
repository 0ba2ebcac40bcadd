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
/// Chats (and user and media ids) hash to this many slots; the layout maps slots to groups.
pub const SLOTS: u32 = 1024;
pub const RETENTION_KEY: &[u8] = b"meta/retention";
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
    /// Data groups 1..=data_groups.
    pub data_groups: u32,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// `placement[g - 1]` = replica nodes of data group `g`.
    pub placement: Vec<Vec<NodeId>>,
    /// Raised by every change.
    pub epoch: u64,
    /// Signs session tokens; drawn once by the bootstrapping node and replicated.
    pub token_secret: Vec<u8>,
    /// `slots[s]` = the data group of slot `s` ([`slot_of`]); [`SLOTS`] entries.
    pub slots: Vec<GroupId>,
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
            slots: initial_slots(data_groups),
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

    /// The data group of a chat, or of a user's or a media blob's id.
    pub fn group_of(&self, chat: &ChatId) -> GroupId {
        self.slots.get(slot_of(chat) as usize).copied().unwrap_or(1)
    }

    /// Replicas per node (every node of the layout, zero included).
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self.nodes.keys().map(|n| (*n, 0)).collect();
        for r in &self.placement {
            for n in r {
                *load.entry(*n).or_default() += 1;
            }
        }
        load
    }

    /// The moves that give every group [`REPLICATION_FACTOR`] replicas and spread replicas
    /// evenly over the layout's nodes, each one replica at a time from the most to the least
    /// loaded node, leaving `exclude` with none: `(group, new replicas)`, at most one entry per
    /// group. Deterministic.
    pub fn plan(&self, exclude: Option<NodeId>) -> Vec<(GroupId, Vec<NodeId>)> {
        let mut placement = self.placement.clone();
        let mut load = self.load();
        let targets: Vec<NodeId> = load.keys().copied().filter(|n| Some(*n) != exclude).collect();
        if targets.is_empty() {
            return Vec::new();
        }
        let mut changed = std::collections::BTreeSet::new();
        // First give under-replicated groups (after a forced recovery) their missing replicas.
        if targets.len() >= REPLICATION_FACTOR {
            for (i, r) in placement.iter_mut().enumerate() {
                while r.len() < REPLICATION_FACTOR {
                    let Some(to) = targets.iter().filter(|t| !r.contains(t)).min_by_key(|t| (load[t], **t)).copied()
                    else {
                        break;
                    };
                    r.push(to);
                    r.sort_unstable();
                    *load.entry(to).or_default() += 1;
                    changed.insert(i);
                }
            }
        }
        loop {
            // Take from the excluded node first, then from the most loaded one.
            let from = match exclude.filter(|x| load.get(x).copied().unwrap_or(0) > 0) {
                Some(x) => x,
                None => match targets.iter().max_by_key(|n| (load[n], std::cmp::Reverse(**n))) {
                    Some(n) => *n,
                    None => break,
                },
            };
            // The least loaded target that does not hold the group yet.
            let pick = placement.iter().enumerate().filter(|(_, r)| r.contains(&from)).find_map(|(i, r)| {
                let to = targets.iter().filter(|t| !r.contains(t)).min_by_key(|t| (load[t], **t)).copied()?;
                let gain = Some(from) == exclude || load[&from] > load[&to] + 1;
                gain.then_some((i, to))
            });
            let Some((i, to)) = pick else { break };
            for n in placement[i].iter_mut().filter(|n| **n == from) {
                *n = to;
            }
            placement[i].sort_unstable();
            *load.entry(from).or_default() -= 1;
            *load.entry(to).or_default() += 1;
            changed.insert(i);
        }
        changed.into_iter().map(|i| (i as GroupId + 1, placement[i].clone())).collect()
    }
}

/// The slot of a chat (or of a user's or media id): `fnv1a64(id bytes) mod SLOTS`.
///
/// It depends only on the id, never on the nodes or the groups: the layout's slot table decides
/// which group holds a slot, so groups can be added without rehashing every chat.
pub fn slot_of(chat: &ChatId) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in chat.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(SLOTS)) as u32
}

/// The first slot table of `data_groups` groups: slot `s` in group `1 + s mod data_groups`.
/// When the group count divides [`SLOTS`] (a power of two up to 1024), a chat lands in the
/// group `1 + fnv1a64 mod data_groups` that format 1 gave it, so a format-1 backup restores
/// into a cluster with the same `--data-groups`.
pub fn initial_slots(data_groups: u32) -> Vec<GroupId> {
    (0..SLOTS).map(|s| 1 + s % data_groups.max(1)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Sets the first layout; ignored once a layout exists.
    Bootstrap(ClusterLayout),
    /// Adds a node or changes its addresses.
    UpsertNode { id: NodeId, info: NodeInfo },
    /// Moves a data group to new replicas.
    SetPlacement { group: GroupId, replicas: Vec<NodeId> },
    /// Removes a node that holds no replica any more (refused while one is placed on it).
    RemoveNode { id: NodeId },
    /// `--force-new-cluster`: the layout keeps only node `id`, which holds every data group.
    ForceSingleNode { id: NodeId, info: NodeInfo },
    /// Sets the cluster-wide history retention policy.
    SetRetention(RetentionPolicy),
}

/// How much history every chat keeps; `None` everywhere keeps everything (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Messages older than this (by their timestamp) are deleted.
    pub max_age_ms: Option<u64>,
    /// Only the newest this many messages of each chat are kept.
    pub max_messages: Option<u64>,
}

impl RetentionPolicy {
    pub fn keeps_everything(&self) -> bool {
        self.max_age_ms.is_none() && self.max_messages.is_none()
    }
}

pub fn read_retention(bytes: &[u8]) -> Result<RetentionPolicy, StorageError> {
    codec::decode_versioned(bytes).map_err(|e| StorageError::Codec { what: "retention policy", source: e })
}

pub fn read_layout(bytes: &[u8]) -> Result<ClusterLayout, StorageError> {
    codec::decode_versioned(bytes).map_err(|e| StorageError::Codec { what: "cluster layout", source: e })
}

/// Applies a meta command; returns the new layout when it changed.
pub fn apply(w: &mut StateWriter, cmd: &MetaCommand) -> Result<Option<ClusterLayout>, StorageError> {
    if let MetaCommand::SetRetention(p) = cmd {
        let bytes =
            codec::encode_versioned(p).map_err(|e| StorageError::Codec { what: "retention policy", source: e })?;
        w.kv_put(RETENTION_KEY, Some(bytes));
        return Ok(None);
    }
    let current = w.kv_get(LAYOUT_KEY)?.map(|b| read_layout(&b)).transpose()?;
    let next = match (cmd, current) {
        (MetaCommand::Bootstrap(l), None) => l.clone(),
        (MetaCommand::Bootstrap(_), Some(_)) | (MetaCommand::SetRetention(_), _) => return Ok(None),
        (_, None) => return Ok(None),
        (MetaCommand::UpsertNode { id, info }, Some(mut l)) => {
            l.nodes.insert(*id, info.clone());
            l.epoch += 1;
            l
        }
        (MetaCommand::RemoveNode { id }, Some(mut l)) => {
            if l.placement.iter().any(|r| r.contains(id)) || l.nodes.remove(id).is_none() {
                return Ok(None);
            }
            l.epoch += 1;
            l
        }
        (MetaCommand::ForceSingleNode { id, info }, Some(mut l)) => {
            l.nodes = BTreeMap::from([(*id, info.clone())]);
            l.placement = vec![vec![*id]; l.data_groups as usize];
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

    fn apply_plan(l: &mut ClusterLayout, plan: &[(GroupId, Vec<NodeId>)]) {
        for (g, r) in plan {
            l.placement[*g as usize - 1] = r.clone();
        }
    }

    #[test]
    fn a_plan_spreads_replicas_over_new_nodes_and_off_a_leaving_one() {
        let mut l = ClusterLayout::initial("c", nodes(3), 64);
        l.nodes.insert(4, NodeInfo { raft_addr: "r4".into(), api_addr: "a4".into() });
        l.nodes.insert(5, NodeInfo { raft_addr: "r5".into(), api_addr: "a5".into() });
        let plan = l.plan(None);
        apply_plan(&mut l, &plan);
        let load = l.load();
        let (min, max) = (load.values().min().copied().unwrap(), load.values().max().copied().unwrap());
        assert!(max - min <= 1, "{load:?}");
        assert_eq!(load.values().sum::<usize>(), 3 * 64);
        for g in 1..=64 {
            let mut r = l.replicas(g).to_vec();
            r.dedup();
            assert_eq!(r.len(), 3, "group {g}: {:?}", l.replicas(g));
        }
        assert!(l.plan(None).is_empty(), "a balanced layout needs no moves");
        // Draining node 2 leaves it nothing and the others still even.
        let plan = l.plan(Some(2));
        apply_plan(&mut l, &plan);
        let load = l.load();
        assert_eq!(load[&2], 0);
        let rest: Vec<usize> = load.iter().filter(|(n, _)| **n != 2).map(|(_, c)| *c).collect();
        assert!(rest.iter().max().unwrap() - rest.iter().min().unwrap() <= 1, "{load:?}");
    }

    #[test]
    fn a_plan_restores_three_replicas_after_a_forced_recovery() {
        let mut l = ClusterLayout::initial("c", nodes(1), 8);
        assert!((1..=8).all(|g| l.replicas(g) == [1]));
        assert!(l.plan(None).is_empty(), "one node cannot hold more than one replica of a group");
        l.nodes.insert(4, NodeInfo { raft_addr: "r4".into(), api_addr: "a4".into() });
        l.nodes.insert(5, NodeInfo { raft_addr: "r5".into(), api_addr: "a5".into() });
        let plan = l.plan(None);
        assert_eq!(plan.len(), 8);
        apply_plan(&mut l, &plan);
        assert!((1..=8).all(|g| l.replicas(g) == [1, 4, 5]), "{:?}", l.placement);
    }

    #[test]
    fn group_of_is_stable_and_in_range() {
        let chat = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let layout = |g| ClusterLayout::initial("c", nodes(3), g);
        // Golden values (computed independently for format 1's `1 + fnv1a64 mod groups`): a
        // change here would move every chat of an existing cluster to another group.
        assert_eq!(layout(64).group_of(&chat), 6);
        assert_eq!(layout(64).group_of(&uuid::Uuid::from_u128(0)), 38);
        assert_eq!(slot_of(&uuid::Uuid::from_u128(1)), 690);
        let l = layout(6);
        for i in 0..1000u128 {
            let g = l.group_of(&uuid::Uuid::from_u128(i * 7919));
            assert!((1..=6).contains(&g));
        }
        assert_eq!(layout(1).group_of(&chat), 1);
        assert_eq!(layout(6).slots.len(), SLOTS as usize);
    }
}
