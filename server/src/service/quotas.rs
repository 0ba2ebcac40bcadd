//! Per-user quotas, checked at the gateway before anything is written through Raft (flags and
//! defaults: docs/OPERATIONS.md, "Limits against abuse"):
//!
//! - token buckets per user on each node for receipts, typing signals, membership changes and
//!   chat creation ([`Quota`]): 429 `rate_limited` with `Retry-After`, or an error frame;
//! - the send limit, shared over the cluster: a user connected through n nodes (as the
//!   presence table says) is charged n tokens per message on each of them, so the
//!   `--sends-per-sec` budget holds for the user, not per node, without any Raft traffic. It is
//!   an approximation: presence gossip lags by about 200 ms, so a user who just connected
//!   through another node may send at that node's larger share that long; a node always counts
//!   itself, so a REST-only sender is charged by the node it calls plus the nodes it has
//!   connections on;
//! - WebSockets per user on a node ([`Quotas::ws_slot`]);
//! - upload bytes per user per UTC day, counted cluster-wide in the user's home group: each node
//!   keeps its own counter `uq/<user><day><node>` (one writer per key, so no update is lost),
//!   written once per finished upload; an upload starts only if the day's sum plus its
//!   announced length fits. Uploads running at once are not counted until they finish, so a
//!   user may overshoot by the uploads it has in flight (`--uploads-per-user-max` per node)
//!   times `--media-max-mib`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::Weak;

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use uuid::Uuid;

use super::rate::RateLimiter;
use super::ChatService;
use crate::http::error::ApiError;

const MIB: u64 = 1024 * 1024;
const DAY_MS: u64 = 86_400_000;
/// Per-day upload counters of one user read at most (nodes times the days not yet swept).
const COUNTERS_LISTED_MAX: u32 = 1024;
/// Counters of past days deleted along with one write at most.
const COUNTERS_SWEPT_MAX: usize = 64;
/// Locks serializing this node's counter updates, striped by user.
const UPLOAD_LOCKS: usize = 64;

/// A token bucket's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_sec: f64,
    pub burst: f64,
}

/// The quotas (flags; the defaults are [`QuotaConfig::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// Receipts (`delivered`, `read`; REST and WebSocket) per user on a node.
    pub receipts: Bucket,
    /// Typing signals per user on a node (past it they are dropped without an answer).
    pub typing: Bucket,
    /// Members added or removed by one user on a node.
    pub membership: Bucket,
    /// Chats (direct and group) created by one user on a node.
    pub chats: Bucket,
    /// WebSockets of one user on a node at most.
    pub ws_per_user_max: usize,
    /// Upload bytes per user per UTC day over the cluster; 0: no limit.
    pub upload_bytes_per_day: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            receipts: Bucket { per_sec: 50.0, burst: 200.0 },
            typing: Bucket { per_sec: 5.0, burst: 20.0 },
            membership: Bucket { per_sec: 10.0, burst: 50.0 },
            chats: Bucket { per_sec: 2.0, burst: 50.0 },
            ws_per_user_max: 32,
            upload_bytes_per_day: 1024 * MIB,
        }
    }
}

/// A per-user rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Receipts,
    Typing,
    Membership,
    ChatCreation,
}

impl Quota {
    fn what(self) -> &'static str {
        match self {
            Quota::Receipts => "receipts",
            Quota::Typing => "typing signals",
            Quota::Membership => "membership changes",
            Quota::ChatCreation => "new chats",
        }
    }
}

/// On how many nodes a user has connections (the presence table; a trait so that tests need
/// no running node).
pub trait NodesPresent: Send + Sync {
    /// At least 1: this node always counts.
    fn nodes_present(&self, user: &Uuid) -> usize;
}

impl NodesPresent for crate::presence::Presence {
    fn nodes_present(&self, user: &Uuid) -> usize {
        crate::presence::Presence::nodes_present(self, user)
    }
}

pub struct Quotas {
    receipts: RateLimiter,
    typing: RateLimiter,
    membership: RateLimiter,
    chats: RateLimiter,
    ws_per_user_max: usize,
    /// This node's WebSockets per user.
    ws: Mutex<HashMap<Uuid, usize>>,
    upload_bytes_per_day: u64,
    upload_locks: Vec<tokio::sync::Mutex<()>>,
    /// Set once presence runs (it starts after the service); until then a user counts one node.
    presence: OnceLock<Weak<dyn NodesPresent>>,
}

/// One WebSocket of a user on this node; dropping it gives the slot back.
pub struct WsSlot {
    quotas: Arc<Quotas>,
    user: Uuid,
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        let mut ws = self.quotas.ws.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = ws.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                ws.remove(&self.user);
            }
        }
    }
}

impl Quotas {
    pub fn new(c: &QuotaConfig) -> Quotas {
        let bucket = |b: Bucket| RateLimiter::new(b.per_sec, b.burst);
        Quotas {
            receipts: bucket(c.receipts),
            typing: bucket(c.typing),
            membership: bucket(c.membership),
            chats: bucket(c.chats),
            ws_per_user_max: c.ws_per_user_max.max(1),
            ws: Mutex::new(HashMap::new()),
            upload_bytes_per_day: c.upload_bytes_per_day,
            upload_locks: (0..UPLOAD_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            presence: OnceLock::new(),
        }
    }

    /// Where users are connected, for the send limit's share (once; later calls are ignored).
    pub fn set_presence(&self, presence: Weak<dyn NodesPresent>) {
        let _ = self.presence.set(presence);
    }

    /// On how many nodes `user` has connections, this one included (at least 1).
    pub fn nodes_present(&self, user: &Uuid) -> usize {
        self.presence.get().and_then(Weak::upgrade).map_or(1, |p| p.nodes_present(user).max(1))
    }

    fn limiter(&self, q: Quota) -> &RateLimiter {
        match q {
            Quota::Receipts => &self.receipts,
            Quota::Typing => &self.typing,
            Quota::Membership => &self.membership,
            Quota::ChatCreation => &self.chats,
        }
    }

    /// Takes one token of `q` for `user`; false when over the limit.
    pub fn allow(&self, q: Quota, user: Uuid) -> bool {
        self.limiter(q).allow(user)
    }

    /// [`Self::allow`], refusals as 429 `rate_limited` with `Retry-After`.
    pub fn check(&self, q: Quota, user: Uuid) -> Result<(), ApiError> {
        let l = self.limiter(q);
        if l.allow(user) {
            return Ok(());
        }
        Err(ApiError::rate_limited(format!("too many {}; slow down", q.what()), l.retry_after_secs()))
    }

    /// A WebSocket slot for `user` on this node, or 429 `too_many_connections`.
    pub fn ws_slot(self: &Arc<Self>, user: Uuid) -> Result<WsSlot, ApiError> {
        let mut ws = self.ws.lock().unwrap_or_else(|e| e.into_inner());
        let n = ws.entry(user).or_insert(0);
        if *n >= self.ws_per_user_max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                format!("at most {} WebSockets per user on a node; close one first", self.ws_per_user_max),
            ));
        }
        *n += 1;
        Ok(WsSlot { quotas: self.clone(), user })
    }

    pub fn upload_bytes_per_day(&self) -> u64 {
        self.upload_bytes_per_day
    }

    /// 429 `quota_exceeded`, to come back when the UTC day ends.
    pub fn upload_quota_exceeded(&self) -> ApiError {
        let now = super::now_ms();
        ApiError {
            retry_after_secs: Some((DAY_MS - now % DAY_MS).div_ceil(1000)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                format!("uploads are limited to {} bytes per user per day (UTC)", self.upload_bytes_per_day),
            )
        }
    }

    fn upload_lock(&self, user: &Uuid) -> &tokio::sync::Mutex<()> {
        &self.upload_locks[(user.as_u128() % UPLOAD_LOCKS as u128) as usize]
    }
}

/// The UTC day of a time, as days since 1970-01-01.
fn day_of(ms: u64) -> u32 {
    u32::try_from(ms / DAY_MS).unwrap_or(u32::MAX)
}

fn counters_prefix(user: &Uuid) -> Vec<u8> {
    [b"uq/".as_slice(), user.as_bytes()].concat()
}

/// The key of `node`'s upload counter of `user` for `day`.
pub fn counter_key(user: &Uuid, day: u32, node: u64) -> Vec<u8> {
    [counters_prefix(user).as_slice(), &day.to_be_bytes(), &node.to_be_bytes()].concat()
}

/// One node's count of a user's upload bytes on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counter {
    key: Vec<u8>,
    day: u32,
    node: u64,
    bytes: u64,
}

/// A counter from its stored key and value (`None` for anything else).
fn parse_counter(prefix_len: usize, key: Vec<u8>, value: &[u8]) -> Option<Counter> {
    let rest = key.get(prefix_len..)?;
    let day = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let node = u64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    let bytes = u64::from_be_bytes(value.try_into().ok()?);
    (rest.len() == 12).then_some(Counter { key, day, node, bytes })
}

impl ChatService {
    /// Takes `me`'s share of the send limit on this node (see the module doc), or 429.
    pub fn check_send(&self, me: Uuid) -> Result<(), ApiError> {
        let share = self.quotas.nodes_present(&me) as f64;
        if self.limiter.allow_cost(me, share) {
            return Ok(());
        }
        self.metrics.rate_limited.inc();
        Err(ApiError::rate_limited("too many messages; slow down", self.limiter.retry_after_secs_for(share)))
    }

    /// Every node's upload counters of `me`, all days not yet swept.
    async fn upload_counters(&self, me: Uuid) -> Result<Vec<Counter>, ApiError> {
        let prefix = counters_prefix(&me);
        let query = ReadQuery::KeyPrefix { prefix: prefix.clone(), limit: COUNTERS_LISTED_MAX };
        match self.read(self.group(&me)?, query, Consistency::Linearizable).await? {
            ReadResult::Keys(keys) => {
                Ok(keys.into_iter().filter_map(|(k, v)| parse_counter(prefix.len(), k, &v)).collect())
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// The bytes `me` may still upload today, read before an upload starts; 429
    /// `quota_exceeded` when nothing is left or the `announced` length does not fit.
    pub async fn upload_allowance(&self, me: Uuid, announced: Option<u64>) -> Result<u64, ApiError> {
        let limit = self.quotas.upload_bytes_per_day();
        if limit == 0 {
            return Ok(u64::MAX);
        }
        let today = day_of(super::now_ms());
        let used = self
            .upload_counters(me)
            .await?
            .iter()
            .filter(|c| c.day == today)
            .fold(0u64, |sum, c| sum.saturating_add(c.bytes));
        let left = limit.saturating_sub(used);
        if left == 0 || announced.is_some_and(|n| n > left) {
            return Err(self.quotas.upload_quota_exceeded());
        }
        Ok(left)
    }

    /// Adds a finished upload to this node's counter of `me` for today (one write, which also
    /// deletes counters older than yesterday).
    pub async fn count_upload(&self, me: Uuid, bytes: u64) -> Result<(), ApiError> {
        if self.quotas.upload_bytes_per_day() == 0 {
            return Ok(());
        }
        // This node is the only writer of its counter; one update of a user at a time.
        let _turn = self.quotas.upload_lock(&me).lock().await;
        let (today, node) = (day_of(super::now_ms()), self.node.id());
        let counters = self.upload_counters(me).await?;
        let mine = counters.iter().find(|c| c.day == today && c.node == node).map_or(0, |c| c.bytes);
        let mut puts = vec![(counter_key(&me, today, node), Some(mine.saturating_add(bytes).to_be_bytes().to_vec()))];
        let stale = counters.into_iter().filter(|c| c.day.saturating_add(1) < today);
        puts.extend(stale.take(COUNTERS_SWEPT_MAX).map(|c| (c.key, None)));
        self.write(self.group(&me)?, ChatCommand::PutMany { puts }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(usize);

    impl NodesPresent for Fixed {
        fn nodes_present(&self, _: &Uuid) -> usize {
            self.0
        }
    }

    fn small() -> QuotaConfig {
        let b = Bucket { per_sec: 0.001, burst: 2.0 };
        QuotaConfig { receipts: b, typing: b, membership: b, chats: b, ws_per_user_max: 2, upload_bytes_per_day: MIB }
    }

    #[test]
    fn each_quota_has_its_own_bucket_and_refusals_say_when_to_retry() {
        let q = Quotas::new(&small());
        let u = Uuid::new_v4();
        for kind in [Quota::Receipts, Quota::Typing, Quota::Membership, Quota::ChatCreation] {
            assert!(q.check(kind, u).is_ok() && q.allow(kind, u), "{kind:?}");
            let e = q.check(kind, u).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.retry_after_secs),
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", Some(1000))
            );
            assert!(e.message.contains(kind.what()), "{e}");
        }
        assert!(q.allow(Quota::Receipts, Uuid::new_v4()), "another user has a full bucket");
    }

    #[test]
    fn websockets_per_user_are_counted_and_given_back() {
        let q = Arc::new(Quotas::new(&small()));
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let a = q.ws_slot(u).unwrap();
        let _b = q.ws_slot(u).unwrap();
        let e = q.ws_slot(u).err().unwrap();
        assert_eq!((e.status, e.code), (StatusCode::TOO_MANY_REQUESTS, "too_many_connections"));
        assert!(q.ws_slot(v).is_ok(), "another user is not affected");
        drop(a);
        assert!(q.ws_slot(u).is_ok());
        assert!(q.ws.lock().unwrap().get(&v).is_none(), "a user without sockets leaves no entry");
    }

    #[test]
    fn the_send_share_follows_presence() {
        let q = Quotas::new(&small());
        let u = Uuid::new_v4();
        assert_eq!(q.nodes_present(&u), 1, "before presence runs");
        let p: Arc<dyn NodesPresent> = Arc::new(Fixed(3));
        q.set_presence(Arc::downgrade(&p));
        assert_eq!(q.nodes_present(&u), 3);
        drop(p);
        assert_eq!(q.nodes_present(&u), 1, "presence gone: this node alone");
        let zero = Quotas::new(&small());
        let p: Arc<dyn NodesPresent> = Arc::new(Fixed(0));
        zero.set_presence(Arc::downgrade(&p));
        assert_eq!(zero.nodes_present(&u), 1, "never less than this node");
    }

    #[test]
    fn counters_round_trip_and_other_keys_are_skipped() {
        let u = Uuid::new_v4();
        let p = counters_prefix(&u).len();
        let k = counter_key(&u, 20_000, 7);
        let c = parse_counter(p, k.clone(), &42u64.to_be_bytes()).unwrap();
        assert_eq!((c.day, c.node, c.bytes), (20_000, 7, 42));
        assert!(parse_counter(p, k.clone(), b"short").is_none());
        assert!(parse_counter(p, [k.as_slice(), b"x"].concat(), &1u64.to_be_bytes()).is_none());
        assert!(parse_counter(p, k[..k.len() - 1].to_vec(), &1u64.to_be_bytes()).is_none());
        assert_eq!(day_of(DAY_MS * 3 + 5), 3);
        let e = Quotas::new(&small()).upload_quota_exceeded();
        assert_eq!((e.status, e.code), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
        assert!(e.retry_after_secs.is_some_and(|s| (1..=86_400).contains(&s)));
    }
}
