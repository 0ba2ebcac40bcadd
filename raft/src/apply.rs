//! Pure, deterministic apply of chat commands onto one group's state.
//!
//! `apply` reads and writes only through the [`StateWriter`] of the current apply call, and
//! uses no clock, randomness or I/O of its own: the same commands on the same state give the
//! same state and outcomes on every replica. Per-chat seqs are assigned here, 1, 2, 3, ...

use raftchat_storage::chat_store::ChatHeader;
use raftchat_storage::chat_store::Member;
use raftchat_storage::chat_store::RestoreRecord;
use raftchat_storage::chat_store::Role;
use raftchat_storage::chat_store::StateWriter;
use raftchat_storage::message::MessageBytes;
use raftchat_storage::unsafe_knobs;
use raftchat_storage::unsafe_knobs::Knob;
use raftchat_storage::StorageError;

use crate::command::ChatCommand;
use crate::command::ChatKind;
use crate::command::CommandOutcome;
use crate::command::Rejection;
use crate::command::CHAT_NAME_MAX;
use crate::command::CLIENT_MSG_ID_MAX;
use crate::command::MEMBERS_MAX;
use crate::command::PUT_MANY_MAX;
use crate::command::TRIM_MAX;

/// Replicated keys under these prefixes announce their changes: a user's chat index, the
/// user's pending invites, and who blocked the user (all in the user's home group).
pub const NOTIFY_KEY_PREFIXES: [&[u8]; 3] = [b"uc/", b"uv/", b"ux/"];

/// A committed change that connected clients may want to hear about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Applied {
    /// A new message: its seq and its bytes as the gateway encoded them.
    Message {
        chat: uuid::Uuid,
        seq: u64,
        message: MessageBytes,
    },
    Receipt {
        chat: uuid::Uuid,
        user: uuid::Uuid,
        delivered: u64,
        read: u64,
    },
    Members {
        chat: uuid::Uuid,
    },
    Key {
        key: Vec<u8>,
        present: bool,
    },
}

fn reject(r: Rejection) -> Result<(CommandOutcome, Option<Applied>), StorageError> {
    Ok((CommandOutcome::Rejected(r), None))
}

pub fn apply(w: &mut StateWriter, cmd: &ChatCommand) -> Result<(CommandOutcome, Option<Applied>), StorageError> {
    match cmd {
        ChatCommand::CreateChat { chat, kind, name, creator, members, ts_ms } => {
            if w.chat(chat)?.is_some() {
                return Ok((CommandOutcome::Created { chat: *chat, existed: true }, None));
            }
            let mut all: Vec<_> = members.clone();
            all.push(*creator);
            all.sort_unstable();
            all.dedup();
            if name.len() > CHAT_NAME_MAX || all.len() > MEMBERS_MAX {
                return reject(Rejection::Invalid("chat name or member list too large".into()));
            }
            if *kind == ChatKind::Direct && all.len() != 2 {
                return reject(Rejection::DirectChatFixed);
            }
            for u in &all {
                let role = if u == creator && *kind == ChatKind::Group { Role::Admin } else { Role::Member };
                w.put_member(*chat, *u, Some(Member { role, delivered: 0, read: 0, joined_at_ms: *ts_ms }));
            }
            let header = ChatHeader {
                kind: *kind,
                name: name.clone(),
                next_seq: 1,
                created_at_ms: *ts_ms,
                created_by: *creator,
                member_count: all.len() as u32,
                first_seq: 1,
            };
            w.put_chat(*chat, header);
            Ok((CommandOutcome::Created { chat: *chat, existed: false }, Some(Applied::Members { chat: *chat })))
        }
        ChatCommand::AddMember { chat, by, user, ts_ms } => {
            let Some(h) = w.chat(chat)? else { return reject(Rejection::NoSuchChat) };
            if h.kind == ChatKind::Direct {
                return reject(Rejection::DirectChatFixed);
            }
            match w.member(chat, by)? {
                Some(m) if m.role == Role::Admin => {}
                Some(_) => return reject(Rejection::NotAdmin),
                None => return reject(Rejection::NotMember),
            }
            consent::add_member(w, chat, h, user, *ts_ms)
        }
        ChatCommand::RemoveMember { chat, by, user, .. } => {
            let Some(mut h) = w.chat(chat)? else { return reject(Rejection::NoSuchChat) };
            if h.kind == ChatKind::Direct {
                return reject(Rejection::DirectChatFixed);
            }
            let by_role = match w.member(chat, by)? {
                Some(m) => m.role,
                None => return reject(Rejection::NotMember),
            };
            if by != user && by_role != Role::Admin {
                return reject(Rejection::NotAdmin);
            }
            if w.member(chat, user)?.is_some() {
                w.put_member(*chat, *user, None);
                h.member_count = h.member_count.saturating_sub(1);
                w.put_chat(*chat, h.clone());
            }
            Ok((
                CommandOutcome::MembersChanged { chat: *chat, member_count: h.member_count },
                Some(Applied::Members { chat: *chat }),
            ))
        }
        ChatCommand::Append { .. } => append(w, cmd, None),
        #[cfg(feature = "unsafe-knobs")]
        ChatCommand::AppendAt { seq, append: inner } => append(w, inner, Some(*seq)),
        ChatCommand::Receipt { chat, user, delivered, read } => {
            let Some(h) = w.chat(chat)? else { return reject(Rejection::NoSuchChat) };
            let Some(mut m) = w.member(chat, user)? else { return reject(Rejection::NotMember) };
            let last = h.next_seq - 1;
            // Watermarks only rise, never past the last message, and a read receipt implies
            // delivery up to what it names. Only what the receipt names: the read watermark also
            // rises when the member sends (their own message is never unread), and a device
            // resumes from `delivered`, which must not pass messages it never received.
            let read_named = (*read).min(last);
            let read = read_named.max(m.read);
            let delivered = (*delivered).min(last).max(m.delivered).max(read_named);
            let changed = read != m.read || delivered != m.delivered;
            m.read = read;
            m.delivered = delivered;
            w.put_member(*chat, *user, Some(m));
            let outcome = CommandOutcome::Receipt { chat: *chat, user: *user, delivered, read };
            let event = changed.then_some(Applied::Receipt { chat: *chat, user: *user, delivered, read });
            Ok((outcome, event))
        }
        ChatCommand::Put { key, value, only_if_absent } => {
            if *only_if_absent && w.kv_get(key)?.is_some() {
                return reject(Rejection::KeyExists);
            }
            w.kv_put(key, value.clone());
            let event = NOTIFY_KEY_PREFIXES
                .iter()
                .any(|p| key.starts_with(p))
                .then(|| Applied::Key { key: key.clone(), present: value.is_some() });
            Ok((CommandOutcome::Put, event))
        }
        ChatCommand::PutMany { puts } => {
            if puts.len() > PUT_MANY_MAX {
                return reject(Rejection::Invalid(format!("at most {PUT_MANY_MAX} keys per command")));
            }
            for (key, value) in puts {
                w.kv_put(key, value.clone());
            }
            Ok((CommandOutcome::Put, None))
        }
        ChatCommand::Restore { records, require_empty } => restore(w, records, *require_empty),
        ChatCommand::SetBlocked { chat, by, user, blocked } => consent::set_blocked(w, chat, by, user, *blocked),
        ChatCommand::Invite { chat, by, user, ts_ms } => consent::invite(w, chat, by, user, *ts_ms),
        ChatCommand::Join { chat, user, ts_ms } => consent::join(w, chat, user, *ts_ms),
        ChatCommand::Decline { chat, by, user } => consent::decline(w, chat, by, user),
        ChatCommand::Trim { chat, through_seq } => {
            let Some(h) = w.chat(chat)? else { return reject(Rejection::NoSuchChat) };
            // Stored messages only; the chat's next seq stays, so a seq is never handed out twice.
            let through = (*through_seq).min(h.next_seq.saturating_sub(1));
            let removed = w.trim_messages(chat, through, TRIM_MAX)?;
            Ok((CommandOutcome::Trimmed { chat: *chat, removed }, None))
        }
    }
}

/// Writes a backed-up group's records; all or nothing when one is invalid.
fn restore(
    w: &mut StateWriter,
    records: &[(Vec<u8>, Vec<u8>)],
    require_empty: bool,
) -> Result<(CommandOutcome, Option<Applied>), StorageError> {
    if require_empty && !w.is_empty()? {
        return reject(Rejection::Invalid("the group already holds data; restore only into a fresh cluster".into()));
    }
    let mut parsed = Vec::with_capacity(records.len());
    for (k, v) in records {
        match RestoreRecord::parse(k, v) {
            Ok(r) => parsed.push(r),
            Err(why) => return reject(Rejection::Invalid(format!("restore: {why}"))),
        }
    }
    let (mut written, mut present) = (0u32, 0u32);
    for r in parsed {
        if w.restore_record(r)? {
            written += 1;
        } else {
            present += 1;
        }
    }
    Ok((CommandOutcome::Restored { written, present }, None))
}

/// Appends a message at the chat's next seq (at `forced_seq` only under the `seq_at_gateway` knob).
fn append(
    w: &mut StateWriter,
    cmd: &ChatCommand,
    forced_seq: Option<u64>,
) -> Result<(CommandOutcome, Option<Applied>), StorageError> {
    let ChatCommand::Append { chat, message, dedup_window_ms } = cmd else {
        return reject(Rejection::Invalid("not an append".into()));
    };
    let Ok(v) = message.view() else {
        return reject(Rejection::Invalid("undecodable message".into()));
    };
    if v.client_msg_id.len() > CLIENT_MSG_ID_MAX {
        return reject(Rejection::Invalid("clientMsgId too long".into()));
    }
    let Some(mut h) = w.chat(chat)? else { return reject(Rejection::NoSuchChat) };
    let Some(mut sender_member) = w.member(chat, &v.sender)? else {
        return reject(Rejection::NotMember);
    };
    if sender_member.role == Role::Blocked {
        return reject(Rejection::Blocked);
    }
    if !v.client_msg_id.is_empty() && !unsafe_knobs::on(Knob::NoDedup) {
        if let Some(o) = w.find_original(chat, &v.sender, v.client_msg_id, v.ts_ms, *dedup_window_ms)? {
            // The original message decides seq, id and timestamp of the answer.
            let outcome = CommandOutcome::Appended {
                chat: *chat,
                seq: o.seq,
                message_id: o.message_id,
                ts_ms: o.ts_ms,
                duplicate: true,
            };
            return Ok((outcome, None));
        }
    }
    // The seq is assigned here, in log order. (The `seq_at_gateway` knob lets a gateway's guess
    // decide instead, on purpose.)
    let seq = forced_seq.unwrap_or(h.next_seq);
    h.next_seq = h.next_seq.max(seq + 1);
    w.put_message(chat, seq, message, &v, *dedup_window_ms);
    w.put_chat(*chat, h);
    // Sending in a chat means having read it: the sender's own messages never count as
    // unread for them. Only `read` moves: `delivered` is where the sender's other devices
    // resume, and they have not received anything yet.
    sender_member.read = sender_member.read.max(seq);
    w.put_member(*chat, v.sender, Some(sender_member));
    let outcome =
        CommandOutcome::Appended { chat: *chat, seq, message_id: v.message_id, ts_ms: v.ts_ms, duplicate: false };
    Ok((outcome, Some(Applied::Message { chat: *chat, seq, message: message.clone() })))
}

pub mod consent;
#[cfg(test)]
mod tests;
