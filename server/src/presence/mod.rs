//! Presence: who is online, away or offline, and typing indicators. Soft state, never in Raft.
//!
//! - [`table`]: the versioned table and its merge rules.
//! - This module: the node's presence service. It owns the entries of users connected here
//!   (from their connections' states), spreads changes to the other nodes by gossip (a push of
//!   the deltas every 200 ms, plus anti-entropy with a random peer every 2 s: digest in, missing
//!   entries out, so bandwidth follows the rate of changes, not the number of users), declares
//!   nodes dead when their connection has been down past the failure bound, and tells the hub
//!   whenever a user's view changes.

pub mod table;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use raftchat_raft::node::AppHandler;
use raftchat_raft::node::Node;
use rand::seq::SliceRandom;
use table::Entry;
use table::Status;
use table::Table;
use table::View;
use tokio::sync::watch;
use uuid::Uuid;

use crate::delivery::Hub;

pub const TOPIC_PUSH: u16 = 1;
pub const TOPIC_PULL: u16 = 2;
pub const TOPIC_TYPING: u16 = 3;

const PUSH_EVERY: Duration = Duration::from_millis(200);
const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(2);
const DETECT_EVERY: Duration = Duration::from_millis(250);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// A node whose connection stays down this long is declared dead.
    pub failure_after: Duration,
    /// A status set over REST lasts this long unless set again (the brief's heartbeat).
    pub rest_ttl: Duration,
}

/// The pseudo-connection id under which REST-set presence is kept on a node.
pub const REST_CONNECTION: u64 = 0;

pub struct Presence {
    node: Node,
    hub: Arc<Hub>,
    config: PresenceConfig,
    table: Mutex<Table>,
    /// Local connections per user and each one's status.
    local: Mutex<HashMap<Uuid, HashMap<u64, Status>>>,
    /// Changes of local entries not yet pushed.
    pending: Mutex<Vec<Entry>>,
    /// When each peer was last seen connected.
    last_up: Mutex<HashMap<u64, Instant>>,
    /// When each status set over REST on this node runs out.
    rest_until: Mutex<HashMap<Uuid, Instant>>,
    pub gossip_bytes_sent: AtomicU64,
    pub gossip_bytes_received: AtomicU64,
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    raftchat_storage::codec::encode_versioned(v).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    raftchat_storage::codec::decode_versioned(b).ok()
}

impl Presence {
    pub fn start(node: Node, hub: Arc<Hub>, config: PresenceConfig, shutdown: watch::Receiver<bool>) -> Arc<Presence> {
        let incarnation = crate::service::now_ms();
        let p = Arc::new(Presence {
            table: Mutex::new(Table::new(node.id(), incarnation)),
            node: node.clone(),
            hub,
            config,
            local: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            last_up: Mutex::new(HashMap::new()),
            rest_until: Mutex::new(HashMap::new()),
            gossip_bytes_sent: AtomicU64::new(0),
            gossip_bytes_received: AtomicU64::new(0),
        });
        node.set_app_handler(Arc::new(Handler(Arc::downgrade(&p))));
        tokio::spawn(p.clone().run(shutdown));
        p
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self, user: &Uuid) -> View {
        self.table().view(user)
    }

    /// The nodes `user` is connected through, this one included (see [`Table::nodes_present`]).
    pub fn nodes_present(&self, user: &Uuid) -> usize {
        self.table().nodes_present(user)
    }

    /// A status set over REST: kept for the REST TTL, refreshed by the next one.
    pub fn set_rest(&self, user: Uuid, status: Option<Status>) {
        {
            let mut until = self.rest_until.lock().unwrap_or_else(|e| e.into_inner());
            match status {
                Some(_) => until.insert(user, Instant::now() + self.config.rest_ttl),
                None => until.remove(&user),
            };
        }
        self.set_connection(user, REST_CONNECTION, status);
    }

    /// Clears the REST statuses whose TTL ran out.
    fn expire_rest(&self) {
        let now = Instant::now();
        let expired: Vec<Uuid> = {
            let mut until = self.rest_until.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<Uuid> = until.iter().filter(|(_, t)| **t <= now).map(|(u, _)| *u).collect();
            for u in &gone {
                until.remove(u);
            }
            gone
        };
        for user in expired {
            self.set_connection(user, REST_CONNECTION, None);
        }
    }

    /// Sets (or with `None`, removes) the status of one local connection of `user`.
    pub fn set_connection(&self, user: Uuid, conn: u64, status: Option<Status>) {
        let node_status = {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            let conns = local.entry(user).or_default();
            match status {
                Some(s) => {
                    conns.insert(conn, s);
                }
                None => {
                    conns.remove(&conn);
                }
            }
            let s = if conns.values().any(|s| *s == Status::Online) {
                Status::Online
            } else if conns.values().any(|s| *s == Status::Away) {
                Status::Away
            } else {
                Status::Offline
            };
            if conns.is_empty() {
                local.remove(&user);
            }
            s
        };
        let (entry, before, after) = {
            let mut t = self.table();
            let before = t.view(&user);
            let e = t.set_local(user, node_status, crate::service::now_ms());
            (e, before, t.view(&user))
        };
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        if before.status != after.status {
            self.hub.presence_changed(user, after);
        }
    }

    /// A typing indicator: to this node's connections in the chat, and to every other node.
    pub fn typing(self: &Arc<Self>, chat: Uuid, user: Uuid) {
        self.hub.typing(chat, user);
        let body = encode(&(chat, user));
        for peer in self.node.pool().connected() {
            let (node, body) = (self.node.clone(), body.clone());
            self.gossip_bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = node.call_app(peer, TOPIC_TYPING, body, CALL_TIMEOUT).await;
            });
        }
    }

    fn notify(&self, users: Vec<Uuid>) {
        for u in users {
            let v = self.view(&u);
            self.hub.presence_changed(u, v);
        }
    }

    async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut push = tokio::time::interval(PUSH_EVERY);
        let mut pull = tokio::time::interval(ANTI_ENTROPY_EVERY);
        let mut detect = tokio::time::interval(DETECT_EVERY);
        // REST statuses live seconds: a pass a second is precise enough.
        let mut expire = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = push.tick() => self.push(),
                _ = pull.tick() => self.pull(),
                _ = detect.tick() => self.detect(),
                _ = expire.tick() => self.expire_rest(),
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
        }
    }

    fn push(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        let body = encode(&batch);
        for peer in self.node.pool().connected() {
            let (node, body) = (self.node.clone(), body.clone());
            self.gossip_bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = node.call_app(peer, TOPIC_PUSH, body, CALL_TIMEOUT).await;
            });
        }
    }

    fn pull(self: &Arc<Self>) {
        let peers = self.node.pool().connected();
        let Some(&peer) = peers.choose(&mut rand::thread_rng()) else { return };
        let body = encode(&self.table().digest());
        self.gossip_bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        let me = self.clone();
        tokio::spawn(async move {
            if let Ok(reply) = me.node.call_app(peer, TOPIC_PULL, body, CALL_TIMEOUT).await {
                me.gossip_bytes_received.fetch_add(reply.len() as u64, Ordering::Relaxed);
                if let Some(entries) = decode::<Vec<Entry>>(&reply) {
                    let changed = me.table().merge(entries);
                    me.notify(changed);
                }
            }
        });
    }

    /// Declares owners dead whose connection has been down past the failure bound.
    fn detect(&self) {
        let now = Instant::now();
        let connected = self.node.pool().connected();
        let mut known: Vec<u64> = self.table().owners();
        if let Some(l) = self.node.layout() {
            known.extend(l.nodes.keys());
        }
        known.sort_unstable();
        known.dedup();
        let mut changed = Vec::new();
        let mut last_up = self.last_up.lock().unwrap_or_else(|e| e.into_inner());
        for n in known.into_iter().filter(|n| *n != self.node.id()) {
            let up = connected.contains(&n);
            if up {
                last_up.insert(n, now);
            }
            let seen = *last_up.entry(n).or_insert(now);
            let dead = !up && now.duration_since(seen) > self.config.failure_after;
            changed.extend(self.table().set_dead(n, dead, crate::service::now_ms()));
        }
        drop(last_up);
        self.notify(changed);
    }

    fn on_message(&self, topic: u16, body: Vec<u8>) -> Vec<u8> {
        self.gossip_bytes_received.fetch_add(body.len() as u64, Ordering::Relaxed);
        match topic {
            TOPIC_PUSH => {
                if let Some(entries) = decode::<Vec<Entry>>(&body) {
                    let changed = self.table().merge(entries);
                    self.notify(changed);
                }
                Vec::new()
            }
            TOPIC_PULL => {
                let digest: Vec<(u64, u64, u64)> = decode(&body).unwrap_or_default();
                let reply = encode(&self.table().newer_than(&digest));
                self.gossip_bytes_sent.fetch_add(reply.len() as u64, Ordering::Relaxed);
                reply
            }
            TOPIC_TYPING => {
                if let Some((chat, user)) = decode::<(Uuid, Uuid)>(&body) {
                    self.hub.typing(chat, user);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// (users, entries) in the table.
    pub fn counts(&self) -> (usize, usize) {
        let (users, entries, _) = self.table().stats();
        (users, entries)
    }

    pub fn stats(&self) -> serde_json::Value {
        let t = self.table();
        let (users, entries, per_owner) = t.stats();
        let (incarnation, counter) = t.version();
        serde_json::json!({
            "users": users,
            "entries": entries,
            "entriesPerOwner": per_owner,
            "incarnation": incarnation,
            "fingerprint": t.fingerprint().to_string(),
            "version": counter,
            "gossipBytesSent": self.gossip_bytes_sent.load(Ordering::Relaxed),
            "gossipBytesReceived": self.gossip_bytes_received.load(Ordering::Relaxed),
        })
    }
}

struct Handler(std::sync::Weak<Presence>);

impl AppHandler for Handler {
    fn handle(
        &self,
        _from: u64,
        topic: u16,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>> {
        let reply = match self.0.upgrade() {
            Some(p) => p.on_message(topic, body),
            None => Vec::new(),
        };
        Box::pin(async move { reply })
    }
}
