//! The presence table: soft state, never in Raft.
//!
//! Entries are per (user, owner node): the owner is the node holding the user's connections,
//! and only the owner ever changes its entries. Each entry carries the owner's version
//! (incarnation, counter): the incarnation is the owner's start time, the counter rises with
//! every change it makes, so a newer entry always wins and merging is idempotent and
//! commutative. An owner declared dead by the failure detector counts as offline for all its
//! users until it is heard from again; a restarted owner (higher incarnation) replaces all its
//! old entries.

use std::collections::BTreeMap;
use std::collections::HashMap;

use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

pub type NodeId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "online" => Some(Status::Online),
            "away" => Some(Status::Away),
            "offline" => Some(Status::Offline),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub user: Uuid,
    pub owner: NodeId,
    pub status: Status,
    pub last_seen_ms: u64,
    pub incarnation: u64,
    pub counter: u64,
}

impl Entry {
    fn version(&self) -> (u64, u64) {
        (self.incarnation, self.counter)
    }
}

/// What others see of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub status: Status,
    pub last_seen_ms: u64,
}

pub struct Table {
    me: NodeId,
    incarnation: u64,
    counter: u64,
    entries: HashMap<Uuid, BTreeMap<NodeId, Entry>>,
    /// Per owner: incarnation and highest counter known (the digest).
    owners: HashMap<NodeId, (u64, u64)>,
    /// Owners the failure detector declared dead, with when.
    dead: HashMap<NodeId, u64>,
}

impl Table {
    pub fn new(me: NodeId, incarnation: u64) -> Self {
        Table { me, incarnation, counter: 0, entries: HashMap::new(), owners: HashMap::new(), dead: HashMap::new() }
    }

    pub fn view(&self, user: &Uuid) -> View {
        let mut status = Status::Offline;
        let mut last_seen_ms = 0;
        for e in self.entries.get(user).map(|m| m.values()).into_iter().flatten() {
            let (s, seen) = match self.dead.get(&e.owner) {
                Some(since) if e.status != Status::Offline => (Status::Offline, (*since).max(e.last_seen_ms)),
                _ => (e.status, e.last_seen_ms),
            };
            last_seen_ms = last_seen_ms.max(seen);
            status = match (status, s) {
                (Status::Online, _) | (_, Status::Online) => Status::Online,
                (Status::Away, _) | (_, Status::Away) => Status::Away,
                _ => Status::Offline,
            };
        }
        View { status, last_seen_ms }
    }

    /// The nodes `user` is connected through, as far as this node knows (gossip lags by a push
    /// interval; an owner declared dead does not count), this node always among them.
    pub fn nodes_present(&self, user: &Uuid) -> usize {
        let others = self.entries.get(user).map_or(0, |m| {
            m.values()
                .filter(|e| e.owner != self.me && e.status != Status::Offline && !self.dead.contains_key(&e.owner))
                .count()
        });
        others + 1
    }

    /// Sets this node's entry for `user`; returns the entry to spread.
    pub fn set_local(&mut self, user: Uuid, status: Status, now_ms: u64) -> Entry {
        self.counter += 1;
        let e = Entry {
            user,
            owner: self.me,
            status,
            last_seen_ms: now_ms,
            incarnation: self.incarnation,
            counter: self.counter,
        };
        self.entries.entry(user).or_default().insert(self.me, e.clone());
        self.owners.insert(self.me, (self.incarnation, self.counter));
        e
    }

    /// Merges entries from another node; returns the users whose view changed.
    pub fn merge(&mut self, entries: Vec<Entry>) -> Vec<Uuid> {
        let mut changed = Vec::new();
        for e in entries {
            if e.owner == self.me {
                continue;
            }
            let (inc, _) = self.owners.get(&e.owner).copied().unwrap_or((0, 0));
            if e.incarnation < inc {
                continue;
            }
            if e.incarnation > inc {
                // The owner restarted: its old entries describe connections that are gone.
                changed.extend(self.forget_owner(e.owner));
                self.owners.insert(e.owner, (e.incarnation, 0));
            }
            if self.entries.get(&e.user).and_then(|m| m.get(&e.owner)).is_some_and(|old| old.version() >= e.version()) {
                continue;
            }
            let user = e.user;
            let before = self.view(&user);
            if let Some(d) = self.owners.get_mut(&e.owner) {
                d.1 = d.1.max(e.counter);
            }
            self.entries.entry(user).or_default().insert(e.owner, e);
            if self.view(&user) != before {
                changed.push(user);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    fn forget_owner(&mut self, owner: NodeId) -> Vec<Uuid> {
        let users: Vec<Uuid> = self.entries.iter().filter(|(_, m)| m.contains_key(&owner)).map(|(u, _)| *u).collect();
        let mut changed = Vec::new();
        for u in users {
            let before = self.view(&u);
            if let Some(m) = self.entries.get_mut(&u) {
                m.remove(&owner);
                if m.is_empty() {
                    self.entries.remove(&u);
                }
            }
            if self.view(&u) != before {
                changed.push(u);
            }
        }
        changed
    }

    /// Per owner: (incarnation, highest counter).
    pub fn digest(&self) -> Vec<(NodeId, u64, u64)> {
        let mut d: Vec<_> = self.owners.iter().map(|(o, (i, c))| (*o, *i, *c)).collect();
        d.sort_unstable();
        d
    }

    /// Entries the holder of `digest` does not have.
    pub fn newer_than(&self, digest: &[(NodeId, u64, u64)]) -> Vec<Entry> {
        let known: HashMap<NodeId, (u64, u64)> = digest.iter().map(|(o, i, c)| (*o, (*i, *c))).collect();
        self.entries
            .values()
            .flat_map(|m| m.values())
            .filter(|e| known.get(&e.owner).is_none_or(|v| e.version() > *v))
            .cloned()
            .collect()
    }

    /// Marks an owner dead (or alive again); returns the users whose view changed.
    pub fn set_dead(&mut self, owner: NodeId, dead: bool, now_ms: u64) -> Vec<Uuid> {
        if owner == self.me || dead == self.dead.contains_key(&owner) {
            return Vec::new();
        }
        let users: Vec<Uuid> = self.entries.iter().filter(|(_, m)| m.contains_key(&owner)).map(|(u, _)| *u).collect();
        let before: Vec<View> = users.iter().map(|u| self.view(u)).collect();
        if dead {
            self.dead.insert(owner, now_ms);
        } else {
            self.dead.remove(&owner);
        }
        users.into_iter().zip(before).filter(|(u, b)| self.view(u) != *b).map(|(u, _)| u).collect()
    }

    pub fn owners(&self) -> Vec<NodeId> {
        self.owners.keys().copied().collect()
    }

    /// (users, entries, entries per owner).
    pub fn stats(&self) -> (usize, usize, BTreeMap<NodeId, usize>) {
        let mut per_owner = BTreeMap::new();
        let mut n = 0;
        for m in self.entries.values() {
            for o in m.keys() {
                *per_owner.entry(*o).or_default() += 1;
                n += 1;
            }
        }
        (self.entries.len(), n, per_owner)
    }

    /// A hash of every entry (user, owner, status, version): equal on two nodes when their tables
    /// hold the same entries.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::Hash;
        use std::hash::Hasher;
        let mut all: Vec<(&Uuid, &NodeId, &Entry)> =
            self.entries.iter().flat_map(|(u, m)| m.iter().map(move |(o, e)| (u, o, e))).collect();
        all.sort_by_key(|(u, o, _)| (**u, **o));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (u, o, e) in all {
            (u, o, e.status as u8, e.incarnation, e.counter, e.last_seen_ms).hash(&mut h);
        }
        h.finish()
    }

    pub fn version(&self) -> (u64, u64) {
        (self.incarnation, self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(user: Uuid, owner: NodeId, status: Status, inc: u64, ctr: u64) -> Entry {
        Entry { user, owner, status, last_seen_ms: ctr * 10, incarnation: inc, counter: ctr }
    }

    #[test]
    fn newest_wins_in_any_order_and_merge_is_idempotent() {
        let u = Uuid::new_v4();
        let ups = vec![e(u, 2, Status::Online, 5, 1), e(u, 2, Status::Away, 5, 2), e(u, 2, Status::Offline, 5, 3)];
        let mut a = Table::new(1, 1);
        let mut b = Table::new(1, 1);
        a.merge(ups.clone());
        b.merge(ups.iter().rev().cloned().collect());
        b.merge(ups.clone());
        assert_eq!(a.view(&u), b.view(&u));
        assert_eq!(a.view(&u).status, Status::Offline);
        assert_eq!(a.digest(), vec![(2, 5, 3)]);
    }

    #[test]
    fn online_anywhere_is_online_and_restart_forgets_old_entries() {
        let u = Uuid::new_v4();
        let mut t = Table::new(1, 1);
        t.merge(vec![e(u, 2, Status::Online, 5, 1), e(u, 3, Status::Away, 7, 1)]);
        assert_eq!(t.view(&u).status, Status::Online);
        // Node 2 restarts (incarnation 6) and does not hold the user any more.
        let changed = t.merge(vec![e(Uuid::new_v4(), 2, Status::Online, 6, 1)]);
        assert!(changed.contains(&u));
        assert_eq!(t.view(&u).status, Status::Away);
        // Stale entries of the old incarnation are ignored.
        t.merge(vec![e(u, 2, Status::Online, 5, 9)]);
        assert_eq!(t.view(&u).status, Status::Away);
    }

    #[test]
    fn dead_owners_count_as_offline_and_digests_exchange_the_rest() {
        let u = Uuid::new_v4();
        let mut t = Table::new(1, 1);
        t.merge(vec![e(u, 2, Status::Online, 5, 1)]);
        assert_eq!(t.set_dead(2, true, 999), vec![u]);
        assert_eq!(t.view(&u), View { status: Status::Offline, last_seen_ms: 999 });
        assert_eq!(t.set_dead(2, false, 1000), vec![u]);
        let mine = t.set_local(u, Status::Away, 50);
        let mut other = Table::new(3, 1);
        let missing = t.newer_than(&other.digest());
        assert_eq!(missing.len(), 2);
        other.merge(missing);
        assert!(t.newer_than(&other.digest()).is_empty());
        assert!(other.newer_than(&t.digest()).is_empty());
        assert_eq!(other.view(&u).status, Status::Online);
        assert_eq!(mine.owner, 1);
    }

    #[test]
    fn nodes_present_counts_live_owners_and_this_node() {
        let u = Uuid::new_v4();
        let mut t = Table::new(1, 1);
        assert_eq!(t.nodes_present(&u), 1, "a user unknown here counts this node");
        t.set_local(u, Status::Online, 1);
        assert_eq!(t.nodes_present(&u), 1);
        t.merge(vec![e(u, 2, Status::Away, 5, 1), e(u, 3, Status::Online, 7, 1), e(u, 4, Status::Offline, 9, 1)]);
        assert_eq!(t.nodes_present(&u), 3, "an offline entry is not a connection");
        t.set_dead(3, true, 100);
        assert_eq!(t.nodes_present(&u), 2, "a dead owner holds no connection");
    }
}
