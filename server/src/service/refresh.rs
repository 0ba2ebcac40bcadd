//! Refreshing a session (`POST /api/v1/sessions/refresh`): a new access token and a rotated
//! refresh token for the same session, with reuse detection.
//!
//! Each session has a refresh generation, replicated in the user's home group:
//! `ur/<user>/<session>` holds the current one (absent: 0) and until when the record matters.
//! A refresh token may spend exactly the current generation. Spending it claims
//! `ur/<user>/<session><generation>` with a put-if-absent, so two refreshes racing with the same
//! token cannot both win, then moves the session to the next generation and answers a refresh
//! token of that one. A token of an older generation (or the loser of a race) is a stolen or
//! replayed refresh token: the whole session is revoked, as by a logout, and the answer is
//! `401 refresh_reused`. Before any of that, the session's revocations are read linearizably
//! (not from the node's cache), so a session logged out or revoked on any node is never
//! refreshed.
//!
//! A client that loses the answer to a refresh and retries with the same token is treated as a
//! reuse too; it logs in again.

use std::net::IpAddr;

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_raft::types::GroupId;
use uuid::Uuid;

use super::sessions::u64_of;
use super::users::Session;
use super::ChatService;
use crate::auth::RefreshClaims;
use crate::http::error::ApiError;

/// Every this many generations, a refresh also deletes the user's refresh records that have
/// expired (sessions that ended without a logout).
const SWEEP_EVERY: u64 = 8;
/// Refresh records of one user read by one sweep at most.
const SWEEP_MAX: u32 = 1000;

fn prefix(user: &Uuid) -> Vec<u8> {
    [b"ur/".as_slice(), user.as_bytes(), b"/"].concat()
}

/// The session's current generation: value `generation (8 BE) | until ms (8 BE)`.
fn generation_key(user: &Uuid, session: u64) -> Vec<u8> {
    [prefix(user), session.to_be_bytes().to_vec()].concat()
}

/// The claim of one generation: value `nonce (8) | until ms (8 BE)`.
fn claim_key(user: &Uuid, session: u64, generation: u64) -> Vec<u8> {
    [generation_key(user, session), generation.to_be_bytes().to_vec()].concat()
}

/// When a record stops mattering: the `until` half of its value.
fn until_of(v: &[u8]) -> u64 {
    v.get(8..).map_or(0, u64_of)
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

impl ChatService {
    /// New tokens for the session of refresh token `token`, presented from `addr`.
    pub async fn refresh(&self, token: &str, addr: Option<IpAddr>) -> Result<Session, ApiError> {
        self.guard.refresh_attempt(addr)?;
        let now = super::now_ms();
        let r = crate::auth::check_refresh_token(&self.token_secret()?, token, now)
            .map_err(|e| unauthorized("bad_token", e.to_string()))?;
        // Never longer than the lifetime in force: a logout record is kept that long.
        if r.issued_ms.saturating_add(self.config.refresh_ttl_ms) <= now {
            return Err(unauthorized("bad_token", "refresh token expired"));
        }
        let revocations = self.read_revocations(&r.user, Consistency::Linearizable).await?;
        let revoked = revocations.revokes(&r.session_claims());
        self.sessions.put(r.user, revocations);
        if revoked {
            return Err(unauthorized("revoked", "this session was logged out or revoked"));
        }
        let group = self.group(&r.user)?;
        let current = self
            .get(group, generation_key(&r.user, r.session), Consistency::Linearizable)
            .await?
            .map_or(0, |v| u64_of(&v));
        if r.generation < current {
            return Err(self.reused(&r).await);
        }
        if r.generation > current {
            return Err(unauthorized("bad_token", "this refresh token's session has no such generation"));
        }
        self.claim(group, &r).await?;
        let next = r.generation + 1;
        let session = self.issue_tokens(r.user, r.session, r.session_ms, next)?;
        let record = [next.to_be_bytes(), session.refresh_expires_ms.to_be_bytes()].concat();
        let mut puts = vec![(generation_key(&r.user, r.session), Some(record))];
        if let Some(spent) = r.generation.checked_sub(1) {
            // Its token is older than the current one: the generation record refuses it.
            puts.push((claim_key(&r.user, r.session, spent), None));
        }
        if next % SWEEP_EVERY == 0 {
            puts.extend(self.expired_refresh_records(group, &r.user, now).await.into_iter().map(|k| (k, None)));
        }
        self.write(group, ChatCommand::PutMany { puts }).await?;
        Ok(session)
    }

    /// Spends `r`'s generation: refused (and the session revoked) when it was spent already.
    async fn claim(&self, group: GroupId, r: &RefreshClaims) -> Result<(), ApiError> {
        let key = claim_key(&r.user, r.session, r.generation);
        let mine = [rand::random::<u64>().to_be_bytes(), r.expires_ms.to_be_bytes()].concat();
        let cmd = ChatCommand::Put { key: key.clone(), value: Some(mine.clone()), only_if_absent: true };
        match self.write(group, cmd).await {
            Ok(_) => Ok(()),
            Err(ApiError { code: "exists", .. }) => {
                // Our own earlier attempt may have won (a retry after an unknown outcome).
                if self.get(group, key, Consistency::Linearizable).await?.as_deref() == Some(mine.as_slice()) {
                    Ok(())
                } else {
                    Err(self.reused(r).await)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A refresh token used again: revokes its whole session; the answer to give.
    async fn reused(&self, r: &RefreshClaims) -> ApiError {
        tracing::warn!(user = %r.user, generation = r.generation, "refresh token reused; session revoked");
        match self.end_session(r.user, r.session, super::now_ms() + self.config.access_ttl_ms).await {
            Ok(()) => unauthorized("refresh_reused", "this refresh token was used before; the session is revoked"),
            Err(e) => e,
        }
    }

    /// Keys of `user`'s refresh records that no longer matter (best effort: none on an error).
    async fn expired_refresh_records(&self, group: GroupId, user: &Uuid, now: u64) -> Vec<Vec<u8>> {
        let query = ReadQuery::KeyPrefix { prefix: prefix(user), limit: SWEEP_MAX };
        match self.read(group, query, Consistency::Local).await {
            Ok(ReadResult::Keys(keys)) => {
                keys.into_iter().filter(|(_, v)| until_of(v) <= now).map(|(k, _)| k).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_a_session_share_its_prefix_and_not_another_users() {
        let (u, v) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(claim_key(&u, 7, 3).starts_with(&generation_key(&u, 7)));
        assert!(generation_key(&u, 7).starts_with(&prefix(&u)));
        assert!(!generation_key(&v, 7).starts_with(&prefix(&u)));
        let record = [4u64.to_be_bytes(), 99u64.to_be_bytes()].concat();
        assert_eq!((u64_of(&record), until_of(&record)), (4, 99));
        assert_eq!(until_of(b"short"), 0, "a damaged record counts as expired");
    }
}
