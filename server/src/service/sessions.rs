//! Sessions: issuing tokens, logout, revoking every session of a user, and the check that a
//! token's session is still good.
//!
//! Revocations are replicated keys in the user's home group: `us/<user>/a` holds "every token
//! issued before this ms is revoked" (revoke-all, password change), `us/<user>/s/<session>` one
//! logged-out session (its value is the token's expiry, after which the key is dropped). Each
//! logout is a key of its own, so concurrent logouts never lose one; revoke-all is last-writer-
//! wins (two at once leave one of their cut-offs, both within a clock skew of now). Every node
//! checks a token against them through a cache of at most [`CACHE_TTL`], so a revocation holds
//! everywhere within that (and at once on the node that made it). A refresh reads them
//! linearizably instead ([`super::refresh`]): a revoked session is never refreshed anywhere.
//!
//! A session outlives its access tokens through refresh tokens, so a logout record is kept as
//! long as any refresh token of the session could still be used: the refresh lifetime from the
//! logout on (the refresh check caps every refresh token at that lifetime from its issue).

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use uuid::Uuid;

use super::users::Session;
use super::ChatService;
use crate::auth::Claims;
use crate::auth::RefreshClaims;
use crate::http::error::ApiError;

/// How stale a node's view of a user's revocations may be.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Users whose revocations a node remembers at most.
const CACHE_USERS_MAX: usize = 100_000;
/// Logged-out sessions of one user that are read at most (older ones expire with their tokens).
const SESSIONS_LISTED_MAX: u32 = 1000;

#[derive(Default)]
pub struct RevocationCache {
    users: Mutex<HashMap<Uuid, Revoked>>,
}

pub(super) struct Revoked {
    fetched: Instant,
    before_ms: u64,
    sessions: HashSet<u64>,
}

impl Revoked {
    pub(super) fn revokes(&self, c: &Claims) -> bool {
        c.issued_ms < self.before_ms || self.sessions.contains(&c.session)
    }
}

fn prefix(user: &Uuid) -> Vec<u8> {
    [b"us/".as_slice(), user.as_bytes(), b"/"].concat()
}

fn all_key(user: &Uuid) -> Vec<u8> {
    [prefix(user), b"a".to_vec()].concat()
}

fn session_key(user: &Uuid, session: u64) -> Vec<u8> {
    [prefix(user), b"s".to_vec(), session.to_be_bytes().to_vec()].concat()
}

pub(super) fn u64_of(v: &[u8]) -> u64 {
    v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

impl RevocationCache {
    /// Whether this node's view revokes `c`: `None` when it has no view, or (with `fresh`) only
    /// one older than [`CACHE_TTL`]. Decided under the lock: nothing is copied per request.
    fn verdict(&self, c: &Claims, fresh: bool) -> Option<bool> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.get(&c.user).filter(|r| !fresh || r.fetched.elapsed() < CACHE_TTL).map(|r| r.revokes(c))
    }

    pub(super) fn put(&self, user: Uuid, r: Revoked) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= CACHE_USERS_MAX {
            users.retain(|_, r| r.fetched.elapsed() < CACHE_TTL);
            if users.len() >= CACHE_USERS_MAX {
                users.clear();
            }
        }
        users.insert(user, r);
    }

    /// Records a revocation this node just wrote: enforced here at once (a read of a replica
    /// that has not applied it yet cannot undo it), and re-read from the group after the TTL,
    /// like any view.
    fn note(&self, user: Uuid, f: impl FnOnce(&mut Revoked)) {
        let now = Instant::now();
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let r = users.entry(user).or_insert_with(|| Revoked { fetched: now, before_ms: 0, sessions: HashSet::new() });
        f(r);
        r.fetched = now;
    }
}

impl ChatService {
    /// A new session for `user`: an access and a refresh token (generation 0) carrying a fresh
    /// session id.
    pub fn issue_session(&self, user: Uuid) -> Result<Session, ApiError> {
        self.issue_tokens(user, rand::random(), super::now_ms(), 0)
    }

    /// Tokens of `session` (begun at `session_ms`): an access token and a refresh token that may
    /// spend `generation`, both from now.
    pub(super) fn issue_tokens(
        &self,
        user: Uuid,
        session: u64,
        session_ms: u64,
        generation: u64,
    ) -> Result<Session, ApiError> {
        let now = super::now_ms();
        let secret = self.token_secret()?;
        let claims = Claims { user, session, issued_ms: session_ms, expires_ms: now + self.config.access_ttl_ms };
        let token = crate::auth::issue_token(&secret, &claims).map_err(ApiError::internal)?;
        let expires_ms = now + self.config.refresh_ttl_ms;
        let refresh = RefreshClaims { user, session, session_ms, issued_ms: now, expires_ms, generation };
        Ok(Session {
            token,
            user_id: user,
            expires_ms: claims.expires_ms,
            refresh_token: crate::auth::issue_refresh_token(&secret, &refresh),
            refresh_expires_ms: refresh.expires_ms,
        })
    }

    /// The claims of a bearer token whose session is still good.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = crate::auth::check_token(&self.token_secret()?, token, super::now_ms())
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", e.to_string()))?;
        self.check_session(&claims).await?;
        Ok(claims)
    }

    /// Refuses a session that was logged out or revoked.
    ///
    /// When the user's home group cannot be read (no leader reachable for it), the last view
    /// this node had is used, or the token is accepted: a revocation is enforced as soon as the
    /// group answers again, and an outage of one group does not lock its users out of the rest.
    pub async fn check_session(&self, c: &Claims) -> Result<(), ApiError> {
        let revoked = match self.sessions.verdict(c, true) {
            Some(v) => v,
            None => match self.read_revocations(&c.user, Consistency::Local).await {
                Ok(r) => {
                    let v = r.revokes(c);
                    self.sessions.put(c.user, r);
                    v
                }
                Err(e) => self.sessions.verdict(c, false).unwrap_or_else(|| {
                    tracing::debug!(user = %c.user, cause = %e, "revocations unreadable; token accepted");
                    false
                }),
            },
        };
        if revoked {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "revoked", "this session was logged out or revoked"));
        }
        Ok(())
    }

    /// `user`'s revocations as the home group has them (`Local`: as this node's replica has
    /// applied them; `Linearizable`: everything committed).
    pub(super) async fn read_revocations(&self, user: &Uuid, c: Consistency) -> Result<Revoked, ApiError> {
        let query = ReadQuery::KeyPrefix { prefix: prefix(user), limit: SESSIONS_LISTED_MAX + 1 };
        let keys = match self.read(self.group(user)?, query, c).await? {
            ReadResult::Keys(k) => k,
            other => return Err(super::unexpected(other)),
        };
        let mut r = Revoked { fetched: Instant::now(), before_ms: 0, sessions: HashSet::new() };
        let (all, one) = (all_key(user), prefix(user).len() + 1);
        for (k, v) in keys {
            if k == all {
                r.before_ms = u64_of(&v);
            } else if k.len() == one + 8 {
                r.sessions.insert(u64_of(&k[one..]));
            }
        }
        Ok(r)
    }

    /// Logs one session out (`DELETE /api/v1/sessions/current`).
    pub async fn logout(&self, c: &Claims) -> Result<(), ApiError> {
        self.end_session(c.user, c.session, c.expires_ms).await
    }

    /// Ends `session` of `user` on every node: its access tokens (the last expiring at
    /// `expires_ms`) and its refresh tokens.
    pub(super) async fn end_session(&self, user: Uuid, session: u64, expires_ms: u64) -> Result<(), ApiError> {
        let keep_until = expires_ms.max(super::now_ms() + self.config.refresh_ttl_ms);
        let cmd = ChatCommand::Put {
            key: session_key(&user, session),
            value: Some(keep_until.to_be_bytes().to_vec()),
            only_if_absent: true,
        };
        match self.write(self.group(&user)?, cmd).await {
            Ok(_) | Err(ApiError { code: "exists", .. }) => {}
            Err(e) => return Err(e),
        }
        self.sessions.note(user, |r| {
            r.sessions.insert(session);
        });
        self.drop_expired_logouts(user).await;
        Ok(())
    }

    /// Revokes every session of `user` issued before now (`DELETE /api/v1/sessions`, and a
    /// password change); returns the cut-off.
    pub async fn revoke_all(&self, user: Uuid) -> Result<u64, ApiError> {
        let now = super::now_ms();
        self.put(self.group(&user)?, all_key(&user), Some(now.to_be_bytes().to_vec())).await?;
        self.sessions.note(user, |r| r.before_ms = r.before_ms.max(now));
        Ok(now)
    }

    /// Deletes logout records whose tokens have expired anyway (best effort).
    async fn drop_expired_logouts(&self, user: Uuid) {
        let Ok(group) = self.group(&user) else { return };
        let query = ReadQuery::KeyPrefix { prefix: prefix(&user), limit: SESSIONS_LISTED_MAX };
        let Ok(ReadResult::Keys(keys)) = self.read(group, query, Consistency::Local).await else { return };
        let (now, all) = (super::now_ms(), all_key(&user));
        for (k, _) in keys.into_iter().filter(|(k, v)| *k != all && u64_of(v) <= now) {
            let _ = self.put(group, k, None).await;
        }
    }
}
