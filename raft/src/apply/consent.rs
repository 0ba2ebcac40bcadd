//! Apply of blocking and group invites: who may talk to whom, and joining by consent.
//!
//! A block lives in the direct chat of the two users as the blocked member's role
//! ([`Role::Blocked`]): apply of an append reads the sender's member record anyway, so refusing a
//! blocked sender costs nothing more. An invite is a record `ci/<chat><user>` in the chat's
//! group; [`join`] turns it into membership, [`decline`] drops it.

use raftchat_storage::chat_store::ChatHeader;
use raftchat_storage::chat_store::Member;
use raftchat_storage::chat_store::Role;
use raftchat_storage::chat_store::StateWriter;
use raftchat_storage::codec;
use raftchat_storage::StorageError;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use super::reject;
use super::Applied;
use crate::command::ChatKind;
use crate::command::CommandOutcome;
use crate::command::Rejection;
use crate::command::MEMBERS_MAX;

type Applies = Result<(CommandOutcome, Option<Applied>), StorageError>;

/// A pending invite, as stored under [`invite_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub by: Uuid,
    pub ts_ms: u64,
}

/// Where `user`'s pending invite to `chat` is kept (in the chat's group).
pub fn invite_key(chat: &Uuid, user: &Uuid) -> Vec<u8> {
    [b"ci/".as_slice(), chat.as_bytes(), user.as_bytes()].concat()
}

/// The invite stored under [`invite_key`], if the bytes are one.
pub fn decode_invite(bytes: &[u8]) -> Option<InviteRecord> {
    codec::decode_versioned(bytes).ok()
}

pub(super) fn set_blocked(w: &mut StateWriter, chat: &Uuid, by: &Uuid, user: &Uuid, blocked: bool) -> Applies {
    let Some(h) = w.chat(chat)? else { return reject(Rejection::NoSuchChat) };
    if h.kind != ChatKind::Direct || by == user {
        return reject(Rejection::Invalid("blocking acts on the direct chat of two users".into()));
    }
    if w.member(chat, by)?.is_none() {
        return reject(Rejection::NotMember);
    }
    let Some(mut m) = w.member(chat, user)? else { return reject(Rejection::NotMember) };
    let role = if blocked { Role::Blocked } else { Role::Member };
    if m.role != role {
        m.role = role;
        w.put_member(*chat, *user, Some(m));
    }
    Ok((CommandOutcome::Put, None))
}

/// Adds `user` to group `chat` (no-op for a member); the caller checked who may.
pub(super) fn add_member(w: &mut StateWriter, chat: &Uuid, mut h: ChatHeader, user: &Uuid, ts_ms: u64) -> Applies {
    if w.member(chat, user)?.is_none() {
        if h.member_count as usize >= MEMBERS_MAX {
            return reject(Rejection::Invalid("group is full".into()));
        }
        // A new member starts with everything before joining counted as read.
        let seen = h.next_seq - 1;
        w.put_member(
            *chat,
            *user,
            Some(Member { role: Role::Member, delivered: seen, read: seen, joined_at_ms: ts_ms }),
        );
        h.member_count += 1;
        w.put_chat(*chat, h.clone());
    }
    Ok((
        CommandOutcome::MembersChanged { chat: *chat, member_count: h.member_count },
        Some(Applied::Members { chat: *chat }),
    ))
}

/// The group of `chat`, refused for a direct chat or none.
fn group(w: &mut StateWriter, chat: &Uuid) -> Result<Result<ChatHeader, Rejection>, StorageError> {
    Ok(match w.chat(chat)? {
        None => Err(Rejection::NoSuchChat),
        Some(h) if h.kind == ChatKind::Direct => Err(Rejection::DirectChatFixed),
        Some(h) => Ok(h),
    })
}

pub(super) fn invite(w: &mut StateWriter, chat: &Uuid, by: &Uuid, user: &Uuid, ts_ms: u64) -> Applies {
    let h = match group(w, chat)? {
        Ok(h) => h,
        Err(r) => return reject(r),
    };
    match w.member(chat, by)? {
        Some(m) if m.role == Role::Admin => {}
        Some(_) => return reject(Rejection::NotAdmin),
        None => return reject(Rejection::NotMember),
    }
    if w.member(chat, user)?.is_some() {
        return Ok((CommandOutcome::MembersChanged { chat: *chat, member_count: h.member_count }, None));
    }
    let record =
        codec::encode_versioned(&InviteRecord { by: *by, ts_ms }).map_err(|e| StorageError::codec("invite", e))?;
    w.kv_put(&invite_key(chat, user), Some(record));
    Ok((CommandOutcome::Put, None))
}

pub(super) fn join(w: &mut StateWriter, chat: &Uuid, user: &Uuid, ts_ms: u64) -> Applies {
    let h = match group(w, chat)? {
        Ok(h) => h,
        Err(r) => return reject(r),
    };
    let key = invite_key(chat, user);
    if w.member(chat, user)?.is_none() && w.kv_get(&key)?.is_none() {
        return reject(Rejection::NotInvited);
    }
    w.kv_put(&key, None);
    add_member(w, chat, h, user, ts_ms)
}

pub(super) fn decline(w: &mut StateWriter, chat: &Uuid, by: &Uuid, user: &Uuid) -> Applies {
    if let Err(r) = group(w, chat)? {
        return reject(r);
    }
    if by != user && !w.member(chat, by)?.is_some_and(|m| m.role == Role::Admin) {
        return reject(Rejection::NotAdmin);
    }
    let key = invite_key(chat, user);
    if w.kv_get(&key)?.is_none() {
        return reject(Rejection::NotInvited);
    }
    w.kv_put(&key, None);
    Ok((CommandOutcome::Put, None))
}
