//! `/metrics` in the Prometheus text format. The names are an API, listed in docs/OPERATIONS.md.
//!
//! Per-group gauges are refreshed at scrape time from openraft's metrics; leader changes are
//! counted by a sampler every 250 ms; latencies are histograms with buckets (not summaries), so
//! they aggregate across nodes. No label carries a user or chat id.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use raftchat_raft::node::Node;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabel {
    pub group: u32,
    pub peer: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    has_leader: Family<GroupLabel, Gauge>,
    is_leader: Family<GroupLabel, Gauge>,
    term: Family<GroupLabel, Gauge>,
    last_log_index: Family<GroupLabel, Gauge>,
    applied_index: Family<GroupLabel, Gauge>,
    replication_lag: Family<LagLabel, Gauge>,
    pub leader_changes: Family<GroupLabel, Counter>,
    pub proposals: Family<GroupLabel, Counter>,
    /// Raft entries and chat commands this node's batchers proposed (commands per entry).
    pub proposed_entries: Counter,
    pub proposed_commands: Counter,
    pub fsync_duration: Histogram,
    pub snapshot_build: Histogram,
    pub snapshot_install: Histogram,
    pub entries_per_fsync: Histogram,
    wal_bytes: Gauge,
    state_bytes: Gauge,
    message_bytes: Gauge,
    pub ws_connections: Gauge,
    pub messages_committed: Counter,
    pub messages_delivered: Counter,
    pub commit_latency: Histogram,
    pub delivery_latency: Histogram,
    pub presence_users: Gauge,
    pub presence_entries: Gauge,
    pub rate_limited: Counter,
    pub media_uploaded_bytes: Counter,
    pub media_copies_restored: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut r = Registry::default();
        let m = Metrics {
            has_leader: Family::default(),
            is_leader: Family::default(),
            term: Family::default(),
            last_log_index: Family::default(),
            applied_index: Family::default(),
            replication_lag: Family::default(),
            leader_changes: Family::default(),
            proposals: Family::default(),
            proposed_entries: Counter::default(),
            proposed_commands: Counter::default(),
            fsync_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            snapshot_build: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            snapshot_install: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            entries_per_fsync: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            wal_bytes: Gauge::default(),
            state_bytes: Gauge::default(),
            message_bytes: Gauge::default(),
            ws_connections: Gauge::default(),
            messages_committed: Counter::default(),
            messages_delivered: Counter::default(),
            commit_latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            delivery_latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            presence_users: Gauge::default(),
            presence_entries: Gauge::default(),
            rate_limited: Counter::default(),
            media_uploaded_bytes: Counter::default(),
            media_copies_restored: Counter::default(),
            registry: Registry::default(),
        };
        let build: Family<VersionLabel, Gauge> = Family::default();
        build.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        r.register("raftchat_build_info", "Build version of this node (always 1)", build);
        r.register("raftchat_raft_has_leader", "1 when the group has a known leader", m.has_leader.clone());
        r.register("raftchat_raft_is_leader", "1 when this node leads the group", m.is_leader.clone());
        r.register("raftchat_raft_term", "Current Raft term of the group on this node", m.term.clone());
        r.register(
            "raftchat_raft_last_log_index",
            "Last log index of the group on this node",
            m.last_log_index.clone(),
        );
        r.register(
            "raftchat_raft_applied_index",
            "Last applied index of the group on this node",
            m.applied_index.clone(),
        );
        r.register(
            "raftchat_raft_replication_lag_entries",
            "On the leader: entries each follower is behind",
            m.replication_lag.clone(),
        );
        r.register("raftchat_raft_leader_changes", "Leader changes seen for the group", m.leader_changes.clone());
        r.register(
            "raftchat_raft_proposals",
            "Chat commands this node proposed as the group's leader",
            m.proposals.clone(),
        );
        r.register(
            "raftchat_proposed_entries",
            "Raft entries of chat commands this node proposed as a leader",
            m.proposed_entries.clone(),
        );
        r.register(
            "raftchat_proposed_commands",
            "Chat commands in those entries (commands per entry = this / entries)",
            m.proposed_commands.clone(),
        );
        r.register("raftchat_wal_fsync_duration_seconds", "Duration of each WAL fsync round", m.fsync_duration.clone());
        r.register(
            "raftchat_snapshot_build_duration_seconds",
            "Duration of each snapshot build",
            m.snapshot_build.clone(),
        );
        r.register(
            "raftchat_snapshot_install_duration_seconds",
            "Duration of each snapshot install (a replica catching up by snapshot)",
            m.snapshot_install.clone(),
        );
        r.register(
            "raftchat_wal_entries_per_fsync",
            "Log entries made durable by each fsync round",
            m.entries_per_fsync.clone(),
        );
        r.register("raftchat_storage_wal_bytes", "Bytes of Raft log segments on disk", m.wal_bytes.clone());
        r.register("raftchat_storage_state_bytes", "Bytes of the chat state database on disk", m.state_bytes.clone());
        r.register("raftchat_storage_message_bytes", "Bytes of the message stores on disk", m.message_bytes.clone());
        r.register("raftchat_ws_connections", "Open WebSocket connections on this node", m.ws_connections.clone());
        r.register("raftchat_messages_committed", "Messages committed through this node", m.messages_committed.clone());
        r.register(
            "raftchat_messages_delivered",
            "Message frames delivered to devices on this node",
            m.messages_delivered.clone(),
        );
        r.register(
            "raftchat_commit_latency_seconds",
            "Send to committed ack, through this node",
            m.commit_latency.clone(),
        );
        r.register(
            "raftchat_delivery_latency_seconds",
            "Message timestamp to delivery on this node's sockets",
            m.delivery_latency.clone(),
        );
        r.register("raftchat_presence_users", "Users in the presence table", m.presence_users.clone());
        r.register("raftchat_presence_entries", "Entries in the presence table", m.presence_entries.clone());
        r.register("raftchat_rate_limited", "Sends refused by per-user rate limits", m.rate_limited.clone());
        r.register(
            "raftchat_media_uploaded_bytes",
            "Bytes of media uploads acknowledged",
            m.media_uploaded_bytes.clone(),
        );
        r.register(
            "raftchat_media_copies_restored",
            "Media copies made by the repair pass",
            m.media_copies_restored.clone(),
        );
        Arc::new(Metrics { registry: r, ..m })
    }

    /// Feeds WAL fsync rounds into the histograms.
    pub fn observe_wal(self: &Arc<Self>, node: &Node) {
        let m = self.clone();
        let _ = node.wal_stats().observer.set(Box::new(move |took, entries| {
            m.fsync_duration.observe(took.as_secs_f64());
            m.entries_per_fsync.observe(entries as f64);
        }));
        let m = self.clone();
        let _ = node.snapshot_observer().set(Box::new(move |event, took| match event {
            raftchat_raft::state_machine::SnapshotEvent::Built => m.snapshot_build.observe(took.as_secs_f64()),
            raftchat_raft::state_machine::SnapshotEvent::Installed => m.snapshot_install.observe(took.as_secs_f64()),
        }));
    }

    /// Counts leader changes of every group this node hosts.
    pub fn spawn_sampler(self: &Arc<Self>, node: Node, mut shutdown: watch::Receiver<bool>) {
        let m = self.clone();
        tokio::spawn(async move {
            let mut last: std::collections::HashMap<u32, Option<u64>> = std::collections::HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => if *shutdown.borrow() { return },
                }
                for g in node.groups() {
                    let c = m.proposals.get_or_create(&GroupLabel { group: g.id });
                    let now = g.batcher.proposed();
                    c.inc_by(now.saturating_sub(c.get()));
                    let leader = g.leader();
                    let prev = last.insert(g.id, leader);
                    if prev.is_some_and(|p| p != leader) && leader.is_some() {
                        m.leader_changes.get_or_create(&GroupLabel { group: g.id }).inc();
                    }
                }
            }
        });
    }

    /// Refreshes the gauges and renders the text format.
    pub fn render(&self, node: &Node, ws_connections: usize, presence: (usize, usize)) -> String {
        for g in node.groups() {
            let met = g.raft.metrics().borrow().clone();
            let l = GroupLabel { group: g.id };
            self.has_leader.get_or_create(&l).set(i64::from(met.current_leader.is_some()));
            self.is_leader.get_or_create(&l).set(i64::from(met.current_leader == Some(node.id())));
            self.term.get_or_create(&l).set(met.current_term as i64);
            self.last_log_index.get_or_create(&l).set(met.last_log_index.unwrap_or(0) as i64);
            self.applied_index.get_or_create(&l).set(met.last_applied.map_or(0, |x| x.index) as i64);
            if let Some(rep) = &met.replication {
                let last = met.last_log_index.unwrap_or(0);
                for (peer, matched) in rep.iter() {
                    let lag = last.saturating_sub(matched.map_or(0, |m| m.index));
                    self.replication_lag.get_or_create(&LagLabel { group: g.id, peer: *peer }).set(lag as i64);
                }
            }
        }
        let p = node.proposal_stats();
        let (entries, commands) = (p.entries.load(Ordering::Relaxed), p.commands.load(Ordering::Relaxed));
        self.proposed_entries.inc_by(entries.saturating_sub(self.proposed_entries.get()));
        self.proposed_commands.inc_by(commands.saturating_sub(self.proposed_commands.get()));
        let (wal, state, messages) = node.disk_bytes();
        self.wal_bytes.set(wal as i64);
        self.state_bytes.set(state as i64);
        self.message_bytes.set(messages as i64);
        self.ws_connections.set(ws_connections as i64);
        self.presence_users.set(presence.0 as i64);
        self.presence_entries.set(presence.1 as i64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(cause = %e, "metrics encoding failed");
        }
        out
    }
}
