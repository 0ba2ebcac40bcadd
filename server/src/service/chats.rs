//! Direct and group chats, their members, and each user's chat index.
//!
//! A chat's membership is decided in the chat's group (apply checks who may add and remove).
//! After that commits, the index entry `uc/<user><chat>` is written to each member's home
//! group; its change is also an event, which tells that user's open connections about the chat.

use axum::http::StatusCode;
use futures::StreamExt;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::ChatKind;
use raftchat_raft::command::CommandOutcome;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_storage::chat_store::ChatHeader;
use raftchat_storage::chat_store::Member;
use raftchat_storage::chat_store::Role;
use serde::Serialize;
use uuid::Uuid;

use super::ChatService;
use crate::http::error::ApiError;

const DIRECT_NS: Uuid = Uuid::from_u128(0x2d7c_4f1a_9b3e_4c5d_8e6f_7a8b_9c0d_1e2f);
/// Members listed with a chat at most (the count is always given).
pub const MEMBERS_LISTED_MAX: u32 = 10_000;
/// Index writes in flight when a large group is created.
const INDEX_WRITES_IN_FLIGHT: usize = 128;

/// The one id of the direct chat between two users.
pub fn direct_chat_id(a: Uuid, b: Uuid) -> Uuid {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    Uuid::new_v5(&DIRECT_NS, &[x.as_bytes().as_slice(), y.as_bytes().as_slice()].concat())
}

pub fn index_key(user: &Uuid, chat: &Uuid) -> Vec<u8> {
    [b"uc/".as_slice(), user.as_bytes(), chat.as_bytes()].concat()
}

/// The (user, chat) of an index key.
pub fn parse_index_key(key: &[u8]) -> Option<(Uuid, Uuid)> {
    let rest = key.strip_prefix(b"uc/")?;
    if rest.len() != 32 {
        return None;
    }
    Some((Uuid::from_slice(&rest[..16]).ok()?, Uuid::from_slice(&rest[16..]).ok()?))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatView {
    pub chat_id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub members: Vec<Uuid>,
    pub admins: Vec<Uuid>,
    pub member_count: u32,
    pub last_seq: u64,
    pub read_seq: u64,
    pub delivered_seq: u64,
    pub unread: u64,
}

pub fn kind_name(k: ChatKind) -> &'static str {
    match k {
        ChatKind::Direct => "direct",
        ChatKind::Group => "group",
    }
}

impl ChatService {
    pub(crate) async fn require_users(&self, users: &[Uuid]) -> Result<(), ApiError> {
        let missing: Vec<Uuid> = futures::stream::iter(users.iter().copied())
            .map(|u| async move { (u, self.user(&u).await) })
            .buffer_unordered(64)
            .filter_map(|(u, r)| async move { matches!(r, Ok(None)).then_some(u) })
            .collect()
            .await;
        match missing.first() {
            Some(u) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_user", format!("no user {u}"))),
            None => Ok(()),
        }
    }

    pub(crate) async fn index(&self, users: &[Uuid], chat: Uuid, present: bool) -> Result<(), ApiError> {
        let results: Vec<Result<(), ApiError>> = futures::stream::iter(users.iter().copied())
            .map(|u| async move {
                let value = present.then(|| b"1".to_vec());
                self.put(self.group(&u)?, index_key(&u, &chat), value).await
            })
            .buffer_unordered(INDEX_WRITES_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Creates (or finds) the direct chat of `me` and `other`.
    pub async fn direct_chat(&self, me: Uuid, other: Uuid) -> Result<Uuid, ApiError> {
        if me == other {
            return Err(ApiError::bad_request("a direct chat needs another user"));
        }
        let chat = direct_chat_id(me, other);
        // A local read is enough here: if it misses a chat just created elsewhere, creating it
        // again is a no-op (CreateChat and the index writes are idempotent).
        if self.chat_header(chat, Consistency::Local).await?.is_some() {
            return Ok(chat);
        }
        self.require_users(&[other]).await?;
        if self.has_blocked(other, me).await? {
            return Err(super::consent::blocked_error());
        }
        let cmd = ChatCommand::CreateChat {
            chat,
            kind: ChatKind::Direct,
            name: String::new(),
            creator: me,
            members: vec![other],
            ts_ms: super::now_ms(),
        };
        let created =
            matches!(self.write(self.group(&chat)?, cmd).await?, CommandOutcome::Created { existed: false, .. });
        // Blocks written before the chat existed (or while it was being created) marked
        // nothing: mark them now (the consent module has the race).
        if created {
            if self.has_blocked(me, other).await? {
                self.mark_blocked(me, other, true).await?;
            }
            if self.has_blocked(other, me).await? {
                self.mark_blocked(other, me, true).await?;
                return Err(super::consent::blocked_error());
            }
        }
        self.index(&[me, other], chat, true).await?;
        Ok(chat)
    }

    /// Creates a group of `me` and invites `members`; the chat and whom it invited.
    pub async fn create_group(&self, me: Uuid, name: &str, members: &[Uuid]) -> Result<(Uuid, Vec<Uuid>), ApiError> {
        if name.len() > raftchat_raft::command::CHAT_NAME_MAX {
            return Err(ApiError::bad_request("group name is longer than 256 bytes"));
        }
        if members.len() >= raftchat_raft::command::MEMBERS_MAX {
            return Err(ApiError::bad_request("a group has at most 10000 members"));
        }
        let mut invitees: Vec<Uuid> = members.iter().copied().filter(|u| *u != me).collect();
        invitees.sort_unstable();
        invitees.dedup();
        self.require_users(&invitees).await?;
        self.require_not_blocked_by(me, &invitees).await?;
        let chat = Uuid::new_v4();
        let cmd = ChatCommand::CreateChat {
            chat,
            kind: ChatKind::Group,
            name: name.to_string(),
            creator: me,
            members: Vec::new(),
            ts_ms: super::now_ms(),
        };
        self.write(self.group(&chat)?, cmd).await?;
        self.index(&[me], chat, true).await?;
        // Members join by accepting (the consent module says why).
        let invited = self.invite_all(me, chat, &invitees).await?;
        Ok((chat, invited))
    }

    pub async fn remove_member(&self, me: Uuid, chat: Uuid, user: Uuid) -> Result<(), ApiError> {
        let cmd = ChatCommand::RemoveMember { chat, by: me, user, ts_ms: super::now_ms() };
        match self.write(self.group(&chat)?, cmd).await? {
            CommandOutcome::MembersChanged { .. } => self.index(&[user], chat, false).await,
            other => Err(super::unexpected(other)),
        }
    }

    pub async fn chat_header(&self, chat: Uuid, c: Consistency) -> Result<Option<ChatHeader>, ApiError> {
        match self.router.read(self.group(&chat)?, ReadQuery::Chat { chat, member_limit: 0 }, c).await {
            Ok(ReadResult::Chat { header, .. }) => Ok(Some(header)),
            Ok(other) => Err(super::unexpected(other)),
            Err(raftchat_raft::rpc::AppError::NoSuchChat) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `user`'s membership in `chat`: 404 for no chat, 403 for not a member.
    pub async fn membership(&self, user: Uuid, chat: Uuid, c: Consistency) -> Result<Member, ApiError> {
        match self.read(self.group(&chat)?, ReadQuery::Member { chat, user }, c).await? {
            ReadResult::Member(Some(m)) => Ok(m),
            ReadResult::Member(None) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "not_member", "not a member of this chat"))
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// A chat as `user` sees it (who must be a member).
    pub async fn chat_view(&self, user: Uuid, chat: Uuid, member_limit: u32) -> Result<ChatView, ApiError> {
        let me = self.membership(user, chat, Consistency::Linearizable).await?;
        let (header, members) = match self
            .read(self.group(&chat)?, ReadQuery::Chat { chat, member_limit }, Consistency::Linearizable)
            .await?
        {
            ReadResult::Chat { header, members } => (header, members),
            other => return Err(super::unexpected(other)),
        };
        let last = header.next_seq - 1;
        Ok(ChatView {
            chat_id: chat,
            kind: kind_name(header.kind),
            name: header.name,
            admins: members.iter().filter(|(_, m)| m.role == Role::Admin).map(|(u, _)| *u).collect(),
            members: members.into_iter().map(|(u, _)| u).collect(),
            member_count: header.member_count,
            last_seq: last,
            read_seq: me.read,
            delivered_seq: me.delivered,
            unread: last.saturating_sub(me.read),
        })
    }

    /// The chats `user` belongs to (from the user's index).
    pub async fn chat_ids(&self, user: Uuid) -> Result<Vec<Uuid>, ApiError> {
        let prefix = [b"uc/".as_slice(), user.as_bytes()].concat();
        match self
            .read(
                self.group(&user)?,
                ReadQuery::KeyPrefix { prefix: prefix.clone(), limit: 100_000 },
                Consistency::Linearizable,
            )
            .await?
        {
            ReadResult::Keys(keys) => Ok(keys.iter().filter_map(|(k, _)| parse_index_key(k).map(|(_, c)| c)).collect()),
            other => Err(super::unexpected(other)),
        }
    }

    pub async fn list_chats(&self, user: Uuid) -> Result<Vec<ChatView>, ApiError> {
        let ids = self.chat_ids(user).await?;
        let views: Vec<Result<ChatView, ApiError>> = futures::stream::iter(ids)
            .map(|c| async move { self.chat_view(user, c, 256).await })
            .buffered(32)
            .collect()
            .await;
        // A chat the user just left may still be indexed for a moment: skip refusals.
        Ok(views.into_iter().filter_map(Result::ok).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_ids_are_symmetric_and_index_keys_parse() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(direct_chat_id(a, b), direct_chat_id(b, a));
        assert_ne!(direct_chat_id(a, b), direct_chat_id(a, Uuid::new_v4()));
        let c = Uuid::new_v4();
        assert_eq!(parse_index_key(&index_key(&a, &c)), Some((a, c)));
        assert_eq!(parse_index_key(b"uc/short"), None);
    }
}
