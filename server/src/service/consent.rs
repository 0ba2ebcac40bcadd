//! Consent: blocking users and joining groups by invite.
//!
//! Where things live (all small records):
//! - `ub/<blocker><blocked>` in the blocker's home group: the blocker's list.
//! - `ux/<blocked><blocker>` in the blocked user's home group: whom the user is blocked by,
//!   announced to the user's connections (they stop following the blocker's presence).
//! - In the direct chat of the two, the blocked member's role is `Blocked`: apply refuses the
//!   blocked member's sends there, so the message path checks nothing more.
//! - `ci/<chat><user>` in the chat's group: a pending invite (who invited, when);
//!   `uv/<user><chat>` in the invitee's home group: the invitee's list, announced as an
//!   `invite` frame.
//!
//! Blocking and direct chats race safely: a block writes `ub/` first and then marks the direct
//! chat (if it exists); a new direct chat is created and then `ub/` is read again, both
//! linearizably. Whichever comes second sees the other, so a chat created while the block is
//! being written still ends up with the blocked member marked.
//!
//! The group model is invite-only: a group admin's add (at creation or later) is an invite the
//! user accepts with `POST /api/v1/chats/{id}/join`. A shared chat is no consent here, since a
//! direct chat is opened by one side alone and a large group is shared with strangers.

use std::collections::HashSet;

use axum::http::StatusCode;
use futures::StreamExt;
use raftchat_raft::apply::consent::decode_invite;
use raftchat_raft::apply::consent::invite_key;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::ChatKind;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_raft::types::GroupId;
use serde::Serialize;
use uuid::Uuid;

use super::chats::direct_chat_id;
use super::ChatService;
use crate::http::error::ApiError;

pub const BLOCKS: &[u8] = b"ub/";
pub const BLOCKED_BY: &[u8] = b"ux/";
pub const INVITES: &[u8] = b"uv/";
/// Users one user may block at most.
pub const BLOCKS_MAX: usize = 10_000;
/// Pending invites listed at most.
pub const INVITES_LISTED_MAX: usize = 1_000;
/// Invites written at once when a group is created.
const INVITES_IN_FLIGHT: usize = 64;

/// `<prefix><a><b>`.
pub fn pair_key(prefix: &[u8], a: &Uuid, b: &Uuid) -> Vec<u8> {
    [prefix, a.as_bytes(), b.as_bytes()].concat()
}

/// The (a, b) of a key written by [`pair_key`] with `prefix`.
pub fn parse_pair_key(prefix: &[u8], key: &[u8]) -> Option<(Uuid, Uuid)> {
    let rest = key.strip_prefix(prefix)?;
    if rest.len() != 32 {
        return None;
    }
    Some((Uuid::from_slice(&rest[..16]).ok()?, Uuid::from_slice(&rest[16..]).ok()?))
}

pub fn blocked_error() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "blocked", "this user blocked you")
}

/// A pending invite as its invitee sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteView {
    pub chat_id: Uuid,
    pub name: String,
    pub from: Uuid,
    pub member_count: u32,
    pub timestamp: String,
}

impl ChatService {
    /// The second of each pair under `<prefix><user>` in `user`'s home group.
    async fn pairs(&self, prefix: &[u8], user: Uuid, limit: usize) -> Result<Vec<Uuid>, ApiError> {
        self.ids_under(self.group(&user)?, [prefix, user.as_bytes().as_slice()].concat(), limit).await
    }

    /// The ids that follow `prefix` in the keys under it in `group` (linearizable), at most `limit`.
    async fn ids_under(&self, group: GroupId, prefix: Vec<u8>, limit: usize) -> Result<Vec<Uuid>, ApiError> {
        let at = prefix.len();
        match self.read(group, ReadQuery::KeyPrefix { prefix, limit: limit as u32 }, Consistency::Linearizable).await? {
            ReadResult::Keys(keys) => {
                Ok(keys.iter().filter_map(|(k, _)| k.get(at..)?.try_into().ok()).map(Uuid::from_bytes).collect())
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// Whether `by` blocked `user` (a linearizable read of `by`'s list).
    pub async fn has_blocked(&self, by: Uuid, user: Uuid) -> Result<bool, ApiError> {
        let key = pair_key(BLOCKS, &by, &user);
        Ok(self.get(self.group(&by)?, key, Consistency::Linearizable).await?.is_some())
    }

    /// Users `me` blocked.
    pub async fn blocks(&self, me: Uuid) -> Result<Vec<Uuid>, ApiError> {
        self.pairs(BLOCKS, me, BLOCKS_MAX).await
    }

    /// Users who blocked `me`.
    pub async fn blocked_by(&self, me: Uuid) -> Result<HashSet<Uuid>, ApiError> {
        Ok(self.pairs(BLOCKED_BY, me, BLOCKS_MAX).await?.into_iter().collect())
    }

    pub async fn block(&self, me: Uuid, user: Uuid) -> Result<(), ApiError> {
        if me == user {
            return Err(ApiError::bad_request("you cannot block yourself"));
        }
        self.require_users(&[user]).await?;
        if !self.has_blocked(me, user).await? && self.blocks(me).await?.len() >= BLOCKS_MAX {
            return Err(ApiError::bad_request(format!("at most {BLOCKS_MAX} users may be blocked")));
        }
        self.put(self.group(&me)?, pair_key(BLOCKS, &me, &user), Some(b"1".to_vec())).await?;
        self.put(self.group(&user)?, pair_key(BLOCKED_BY, &user, &me), Some(b"1".to_vec())).await?;
        self.mark_blocked(me, user, true).await.map(|_| ())
    }

    pub async fn unblock(&self, me: Uuid, user: Uuid) -> Result<(), ApiError> {
        self.put(self.group(&me)?, pair_key(BLOCKS, &me, &user), None).await?;
        self.put(self.group(&user)?, pair_key(BLOCKED_BY, &user, &me), None).await?;
        if self.mark_blocked(me, user, false).await? {
            // A direct chat created while the block stood was never indexed: it is now.
            self.index(&[me, user], direct_chat_id(me, user), true).await?;
        }
        Ok(())
    }

    /// Marks `user` (un)blocked in the direct chat with `by`; false when there is none.
    pub(crate) async fn mark_blocked(&self, by: Uuid, user: Uuid, blocked: bool) -> Result<bool, ApiError> {
        let chat = direct_chat_id(by, user);
        match self.write(self.group(&chat)?, ChatCommand::SetBlocked { chat, by, user, blocked }).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == "unknown_chat" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `me`, an admin of group `chat`, invites `user`; false when `user` is a member already.
    pub async fn invite(&self, me: Uuid, chat: Uuid, user: Uuid) -> Result<bool, ApiError> {
        self.require_users(&[user]).await?;
        if self.has_blocked(user, me).await? {
            return Err(blocked_error());
        }
        self.invite_checked(me, chat, user).await
    }

    /// [`ChatService::invite`] without the checks of the invitee (done by the caller).
    pub(crate) async fn invite_checked(&self, me: Uuid, chat: Uuid, user: Uuid) -> Result<bool, ApiError> {
        let cmd = ChatCommand::Invite { chat, by: me, user, ts_ms: super::now_ms() };
        match self.write(self.group(&chat)?, cmd).await? {
            CommandOutcome::MembersChanged { .. } => Ok(false),
            CommandOutcome::Put => {
                self.put(self.group(&user)?, pair_key(INVITES, &user, &chat), Some(b"1".to_vec())).await?;
                Ok(true)
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// Invites each of `users` to `chat` (checked by the caller).
    pub(crate) async fn invite_all(&self, me: Uuid, chat: Uuid, users: &[Uuid]) -> Result<Vec<Uuid>, ApiError> {
        let results: Vec<Result<(Uuid, bool), ApiError>> = futures::stream::iter(users.iter().copied())
            .map(|u| async move { self.invite_checked(me, chat, u).await.map(|new| (u, new)) })
            .buffer_unordered(INVITES_IN_FLIGHT)
            .collect()
            .await;
        let mut invited = Vec::with_capacity(results.len());
        for r in results {
            if let (u, true) = r? {
                invited.push(u);
            }
        }
        Ok(invited)
    }

    /// Refuses when any of `users` blocked `me`.
    pub(crate) async fn require_not_blocked_by(&self, me: Uuid, users: &[Uuid]) -> Result<(), ApiError> {
        let blocked: Vec<bool> = futures::stream::iter(users.iter().copied())
            .map(|u| async move { self.has_blocked(u, me).await })
            .buffer_unordered(INVITES_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        if blocked.contains(&true) {
            return Err(blocked_error());
        }
        Ok(())
    }

    /// `me` accepts the invite to `chat`.
    pub async fn join(&self, me: Uuid, chat: Uuid) -> Result<(), ApiError> {
        let cmd = ChatCommand::Join { chat, user: me, ts_ms: super::now_ms() };
        match self.write(self.group(&chat)?, cmd).await? {
            CommandOutcome::MembersChanged { .. } => {}
            other => return Err(super::unexpected(other)),
        }
        self.index(&[me], chat, true).await?;
        self.put(self.group(&me)?, pair_key(INVITES, &me, &chat), None).await
    }

    /// `me` declines the invite to `chat` (the listing entry goes even when the invite is gone).
    pub async fn decline(&self, me: Uuid, chat: Uuid) -> Result<(), ApiError> {
        let declined = self.write(self.group(&chat)?, ChatCommand::Decline { chat, by: me, user: me }).await;
        self.put(self.group(&me)?, pair_key(INVITES, &me, &chat), None).await?;
        declined.map(|_| ())
    }

    /// `me`'s pending invite to `chat`, if there is one.
    pub async fn invite_view(&self, me: Uuid, chat: Uuid) -> Result<Option<InviteView>, ApiError> {
        let Some(bytes) = self.get(self.group(&chat)?, invite_key(&chat, &me), Consistency::Linearizable).await? else {
            return Ok(None);
        };
        let Some(record) = decode_invite(&bytes) else {
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "undecodable invite record"));
        };
        let Some(header) = self.chat_header(chat, Consistency::Linearizable).await? else { return Ok(None) };
        if header.kind != ChatKind::Group {
            return Ok(None);
        }
        Ok(Some(InviteView {
            chat_id: chat,
            name: header.name,
            from: record.by,
            member_count: header.member_count,
            timestamp: super::rfc3339(record.ts_ms),
        }))
    }

    /// Users with a pending invite to `chat`, at most `limit`.
    pub async fn invited(&self, chat: Uuid, limit: usize) -> Result<Vec<Uuid>, ApiError> {
        self.ids_under(self.group(&chat)?, [b"ci/".as_slice(), chat.as_bytes()].concat(), limit).await
    }

    /// `me`'s pending invites.
    pub async fn invites(&self, me: Uuid) -> Result<Vec<InviteView>, ApiError> {
        let chats = self.pairs(INVITES, me, INVITES_LISTED_MAX).await?;
        let views: Vec<Result<Option<InviteView>, ApiError>> = futures::stream::iter(chats)
            .map(|c| async move { self.invite_view(me, c).await })
            .buffered(32)
            .collect()
            .await;
        let mut out = Vec::new();
        for v in views {
            if let Some(v) = v? {
                out.push(v);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_keys_parse_back_and_refuse_other_prefixes() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(parse_pair_key(BLOCKS, &pair_key(BLOCKS, &a, &b)), Some((a, b)));
        assert_eq!(parse_pair_key(INVITES, &pair_key(BLOCKS, &a, &b)), None);
        assert_eq!(parse_pair_key(BLOCKS, b"ub/short"), None);
    }
}
