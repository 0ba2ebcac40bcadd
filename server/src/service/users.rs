//! Accounts and sessions.
//!
//! Registering claims `un/<username>` with a put-if-absent in the username's group (the one
//! place that decides who owns a name), then writes `ui/<user id>` in the user's home group.
//! Both writes are idempotent, so a retried registration with the same id is harmless.

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::command::Rejection;
use raftchat_raft::router::Consistency;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use super::ChatService;
use crate::http::error::ApiError;

/// Namespace of the v5 ids that place usernames in groups.
const USERNAME_NS: Uuid = Uuid::from_u128(0x6b1f_3c2e_8a4d_4e7f_9c0b_1d2e_3f40_5a61);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub created_ms: u64,
}

/// A session's tokens, as login, a password change and a refresh answer them.
pub struct Session {
    /// The access token (the bearer token of every call).
    pub token: String,
    pub user_id: Uuid,
    pub expires_ms: u64,
    /// The refresh token (only for `POST /api/v1/sessions/refresh`).
    pub refresh_token: String,
    pub refresh_expires_ms: u64,
}

fn valid_username(u: &str) -> bool {
    (3..=32).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn name_key(username: &str) -> Vec<u8> {
    [b"un/".as_slice(), username.as_bytes()].concat()
}

pub fn id_key(user: &Uuid) -> Vec<u8> {
    [b"ui/".as_slice(), user.as_bytes()].concat()
}

fn encode(r: &UserRecord) -> Result<Vec<u8>, ApiError> {
    raftchat_storage::codec::encode_versioned(r)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

fn decode(b: &[u8]) -> Result<UserRecord, ApiError> {
    raftchat_storage::codec::decode_versioned(b)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

impl ChatService {
    fn username_group(&self, username: &str) -> Result<u32, ApiError> {
        self.group(&Uuid::new_v5(&USERNAME_NS, username.as_bytes()))
    }

    pub async fn register(
        &self,
        username: &str,
        password: &str,
        addr: Option<std::net::IpAddr>,
    ) -> Result<UserRecord, ApiError> {
        self.guard.attempt(addr, None)?;
        if !valid_username(username) {
            return Err(ApiError::bad_request("username must be 3 to 32 letters, digits, '_', '-' or '.'"));
        }
        if !(8..=256).contains(&password.len()) {
            return Err(ApiError::bad_request("password must be 8 to 256 bytes"));
        }
        let pw = password.to_string();
        let hash = self
            .guard
            .hash_work(move || crate::auth::hash_password(&pw))
            .await?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
        let record = UserRecord {
            user_id: Uuid::new_v4(),
            username: username.to_string(),
            password_hash: hash,
            created_ms: super::now_ms(),
        };
        let bytes = encode(&record)?;
        let group = self.username_group(username)?;
        let claim = ChatCommand::Put { key: name_key(username), value: Some(bytes.clone()), only_if_absent: true };
        match self.router.write(group, claim).await? {
            CommandOutcome::Put => {}
            CommandOutcome::Rejected(Rejection::KeyExists) => {
                // Our own earlier attempt may have won (a retry after an unknown outcome).
                let existing = self.get(group, name_key(username), Consistency::Linearizable).await?;
                if existing.as_deref() != Some(bytes.as_slice()) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "username_taken",
                        format!("username {username:?} is taken"),
                    ));
                }
            }
            other => return Err(super::unexpected(other)),
        }
        self.put(self.group(&record.user_id)?, id_key(&record.user_id), Some(bytes)).await?;
        Ok(record)
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        addr: Option<std::net::IpAddr>,
    ) -> Result<Session, ApiError> {
        let wrong = || ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", "wrong username or password");
        if !valid_username(username) {
            return Err(wrong());
        }
        self.guard.attempt(addr, Some(username))?;
        let group = self.username_group(username)?;
        let record = match self.get(group, name_key(username), Consistency::Linearizable).await? {
            Some(bytes) => Some(decode(&bytes)?),
            None => None,
        };
        // An unknown name costs the same hash check as a known one.
        let hash = record.as_ref().map_or_else(|| self.guard.dummy_hash(), |r: &UserRecord| r.password_hash.clone());
        let pw = password.to_string();
        let ok = self.guard.hash_work(move || crate::auth::verify_password(&pw, &hash)).await?;
        let Some(record) = record.filter(|_| ok) else { return Err(wrong()) };
        self.issue_session(record.user_id)
    }

    /// Changes `me`'s password (the old one must match), revokes every session, and returns a
    /// new one for the caller.
    pub async fn change_password(
        &self,
        me: Uuid,
        old: &str,
        new: &str,
        addr: Option<std::net::IpAddr>,
    ) -> Result<Session, ApiError> {
        if !(8..=256).contains(&new.len()) {
            return Err(ApiError::bad_request("password must be 8 to 256 bytes"));
        }
        let record = self
            .user(&me)
            .await?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_user", "no such user"))?;
        self.guard.attempt(addr, Some(&record.username))?;
        let (pw, hash) = (old.to_string(), record.password_hash.clone());
        if !self.guard.hash_work(move || crate::auth::verify_password(&pw, &hash)).await? {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", "the old password does not match"));
        }
        let pw = new.to_string();
        let password_hash = self
            .guard
            .hash_work(move || crate::auth::hash_password(&pw))
            .await?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
        let updated = UserRecord { password_hash, ..record };
        let bytes = encode(&updated)?;
        // The name record decides logins; the id record follows.
        self.put(self.username_group(&updated.username)?, name_key(&updated.username), Some(bytes.clone())).await?;
        self.put(self.group(&me)?, id_key(&me), Some(bytes)).await?;
        self.revoke_all(me).await?;
        self.issue_session(me)
    }

    /// A session for any user id, without a password: the internal API's shortcut for load
    /// generators and tests (`POST /internal/v1/sessions`, `--internal-api` only).
    pub fn session_for(&self, user_id: Uuid) -> Result<Session, ApiError> {
        self.issue_session(user_id)
    }

    /// Looks a user up by name.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, ApiError> {
        if !valid_username(username) {
            return Ok(None);
        }
        match self.get(self.username_group(username)?, name_key(username), Consistency::Linearizable).await? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// A user's public record, if the user exists. Linearizable: a user registered a moment ago
    /// through another node exists here too.
    pub async fn user(&self, user: &Uuid) -> Result<Option<UserRecord>, ApiError> {
        match self.get(self.group(user)?, id_key(user), Consistency::Linearizable).await? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }
}
