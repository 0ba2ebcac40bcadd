//! Push notifications for offline users, sent to the operator's webhook.
//!
//! Each group's leader runs the notifier for its chats ([`notifier`]): it follows the group's
//! committed messages (and, on becoming leader, scans for chats whose messages it has not
//! looked at, from the replicated `pc/` cursors), and records a notification for every member
//! who is offline ([`record`]). The records are replicated, so a new leader picks up what the
//! old one had not sent: delivery to the webhook is at least once, and the idempotency key
//! lets the receiver drop repeats. [`sender`] posts due records (signed with HMAC-SHA256),
//! retries with exponential backoff and jitter, and moves a record that failed every attempt to
//! the dead-letter queue (`raftchat admin dlq list|replay`).

pub mod notifier;
pub mod record;
pub mod sender;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raftchat_raft::types::GroupId;
use tokio::sync::watch;
use uuid::Uuid;

use crate::presence::Presence;
use crate::service::ChatService;

/// How often the notifier looks for new messages and due notifications.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Where notifications are POSTed; `None` turns push off.
    pub webhook: Option<String>,
    /// Signs every body (`X-Raftchat-Signature`).
    pub secret: String,
    /// Attempts before a notification goes to the dead-letter queue.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// Counters of this node's notifier (`GET /internal/v1/status`, and the tests).
#[derive(Default)]
pub struct PushStats {
    /// Completed passes over the groups this node leads.
    pub passes: AtomicU64,
    pub messages_seen: AtomicU64,
    pub recorded: AtomicU64,
    pub sent: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead: AtomicU64,
}

impl PushStats {
    pub fn json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "passes": g(&self.passes), "messagesSeen": g(&self.messages_seen), "recorded": g(&self.recorded), "sent": g(&self.sent),
            "failedAttempts": g(&self.failed_attempts), "dead": g(&self.dead),
        })
    }
}

pub struct Push {
    pub service: ChatService,
    pub presence: Arc<Presence>,
    pub config: PushConfig,
    pub stats: PushStats,
    pub http: reqwest::Client,
}

/// What the notifier knows of a group it leads.
#[derive(Default)]
struct Follow {
    epoch: u64,
    after: Option<u64>,
    /// A scan of the group's chats in progress: `Some(position)`.
    scan: Option<Option<Uuid>>,
    /// Where the next look at pending records starts (they are read a page at a time).
    sweep_after: Option<Vec<u8>>,
}

impl Push {
    pub fn new(service: ChatService, presence: Arc<Presence>, config: PushConfig) -> Arc<Push> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Arc::new(Push { service, presence, config, stats: PushStats::default(), http })
    }

    pub fn enabled(&self) -> bool {
        self.config.webhook.is_some()
    }

    /// The notifier loop of this node; returns at shutdown (at once when push is off).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.enabled() {
            return;
        }
        let mut follows: HashMap<GroupId, Follow> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let me = self.service.node.id();
            let led: Vec<GroupId> = self
                .service
                .node
                .groups()
                .into_iter()
                .filter(|h| h.id != raftchat_raft::types::META_GROUP && h.leader() == Some(me))
                .map(|h| h.id)
                .collect();
            follows.retain(|g, _| led.contains(g));
            for g in led {
                if *shutdown.borrow() {
                    return;
                }
                let follow = follows.entry(g).or_default();
                if let Err(e) = self.notice(g, follow).await {
                    tracing::debug!(group = g, cause = %e.message, "push notifier pass failed; retrying");
                    *follow = Follow::default();
                }
                if let Err(e) = self.send_due(g, follow).await {
                    tracing::debug!(group = g, cause = %e.message, "push send pass failed; retrying");
                }
            }
            self.stats.passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
