//! The chat service: what REST handlers and WebSocket connections do, on top of the router.
//!
//! - [`users`]: accounts and sessions.
//! - [`chats`]: direct and group chats, members, each user's chat index.
//! - [`consent`]: blocking users, group invites and joining.
//! - [`messages`]: sending, history, receipts.
//! - [`media`]: media records, references and download rights (the blobs are in [`crate::media`]).
//! - [`rate`]: token buckets per user, address or account.
//! - [`quotas`]: per-user quotas (receipts, typing, membership changes, chat creation, the
//!   cluster-wide share of the send limit, WebSockets per user, upload bytes per day).
//! - [`guard`]: limits on login and registration, password hashing slots.
//! - [`sessions`]: tokens, logout, revocation, the check that a session is still good.
//! - [`refresh`]: refreshing a session's tokens, with rotation and reuse detection.
//!
//! Where things live: a chat, its members, messages and receipts in the chat's group; a user's
//! account under `un/<username>` in the group of the username and under `ui/<user id>` in the
//! user's home group (the group of the user id); a user's chat index under `uc/<user><chat>` in
//! the user's home group, so that listing a user's chats reads one group. A user's session
//! revocations (`us/<user>/...`) and refresh generations (`ur/<user>/...`) are in the home
//! group too.

pub mod chats;
pub mod consent;
pub mod guard;
pub mod media;
pub mod messages;
pub mod quotas;
pub mod rate;
pub mod refresh;
pub mod sessions;
#[cfg(feature = "unsafe-knobs")]
mod unsafe_send;
pub mod users;

use std::sync::Arc;

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::node::Node;
use raftchat_raft::router::Consistency;
use raftchat_raft::router::Router as GroupRouter;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_raft::types::GroupId;
use uuid::Uuid;

use crate::http::error::ApiError;

/// Limits and settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub max_text_bytes: usize,
    /// Lifetime of an access token.
    pub access_ttl_ms: u64,
    /// Lifetime of a refresh token (from its issue; each rotation issues a new one).
    pub refresh_ttl_ms: u64,
    /// How long a clientMsgId answers with its original message (rides in each append).
    pub dedup_window_ms: u64,
}

#[derive(Clone)]
pub struct ChatService {
    pub node: Node,
    pub router: Arc<GroupRouter>,
    pub config: ServiceConfig,
    /// The send limit per user (its share on this node: [`quotas`]).
    pub limiter: Arc<rate::RateLimiter>,
    /// Every other per-user quota.
    pub quotas: Arc<quotas::Quotas>,
    /// Login and registration limits, password hashing slots.
    pub guard: Arc<guard::AccountGuard>,
    /// Each user's revoked sessions, as this node last read them.
    pub sessions: Arc<sessions::RevocationCache>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, e.g. `2025-12-15T10:00:00.000Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

impl ChatService {
    pub fn data_groups(&self) -> Result<u32, ApiError> {
        self.node
            .layout()
            .map(|l| l.data_groups)
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "cluster not initialized"))
    }

    pub fn token_secret(&self) -> Result<Vec<u8>, ApiError> {
        self.node
            .layout()
            .map(|l| l.token_secret)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "cluster not initialized"))
    }

    /// The group of a chat, or of a user's home (both are ids hashed the same way), from the
    /// layout's slot table (read in place, not cloned).
    pub fn group(&self, id: &Uuid) -> Result<GroupId, ApiError> {
        self.node
            .group_of(id)
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "cluster not initialized"))
    }

    /// Commits a command in `group`; refusals become API errors.
    pub async fn write(&self, group: GroupId, cmd: ChatCommand) -> Result<CommandOutcome, ApiError> {
        match self.router.write(group, cmd).await? {
            CommandOutcome::Rejected(r) => Err(r.into()),
            out => Ok(out),
        }
    }

    pub async fn read(&self, group: GroupId, query: ReadQuery, c: Consistency) -> Result<ReadResult, ApiError> {
        let c = if raftchat_storage::unsafe_knobs::on(raftchat_storage::unsafe_knobs::Knob::LocalReads) {
            Consistency::Local
        } else {
            c
        };
        Ok(self.router.read(group, query, c).await?)
    }

    pub async fn put(&self, group: GroupId, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ApiError> {
        self.write(group, ChatCommand::Put { key, value, only_if_absent: false }).await.map(|_| ())
    }

    pub async fn get(&self, group: GroupId, key: Vec<u8>, c: Consistency) -> Result<Option<Vec<u8>>, ApiError> {
        match self.read(group, ReadQuery::Key { key }, c).await? {
            ReadResult::Key(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }
}

pub fn unexpected(o: impl std::fmt::Debug) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected answer {o:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_765_792_800_123), "2025-12-15T10:00:00.123Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
