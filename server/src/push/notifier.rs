//! Finding messages for offline members: the leader of a group follows its committed messages
//! and, when it becomes leader or its event ring overflowed, scans the group's chats for
//! messages past their `pc/` cursor. Every chat it looks at ends with its cursor moved to the
//! chat's newest seq, in the same command as the notification records it wrote.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftchat_raft::apply::Applied;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::command::PUT_MANY_MAX;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_raft::types::GroupId;
use uuid::Uuid;

use super::record::*;
use super::Follow;
use super::Push;
use crate::http::error::ApiError;
use crate::presence::table::Status;
use crate::service::media::decode_body;
use crate::service::unexpected;

/// Chats with more members than this send no push notifications (large groups are muted).
pub const NOTIFY_MEMBERS_MAX: u32 = 1_000;
/// Newest messages of a chat read per look.
const WINDOW: u64 = 50;
/// Chats looked at per scan step.
const SCAN_STEP: u32 = 500;

pub type Puts = Vec<(Vec<u8>, Option<Vec<u8>>)>;

impl Push {
    pub(super) async fn flush(&self, g: GroupId, puts: &mut Puts) -> Result<(), ApiError> {
        if puts.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(puts);
        self.service.write(g, ChatCommand::PutMany { puts: batch }).await.map(|_| ())
    }

    /// One look at a group this node leads: new messages from the event ring, plus one step of
    /// a scan when one is in progress.
    pub(super) async fn notice(&self, g: GroupId, follow: &mut Follow) -> Result<(), ApiError> {
        let batch = self.service.node.events().poll(g, follow.epoch, follow.after, Duration::ZERO).await;
        if follow.after.is_none() || batch.reset {
            follow.scan = Some(None);
        }
        follow.epoch = batch.epoch;
        follow.after = Some(batch.last);
        let mut dirty = BTreeSet::new();
        for (_, e) in batch.events {
            if let Applied::Message { chat, .. } = e {
                self.stats.messages_seen.fetch_add(1, Ordering::Relaxed);
                dirty.insert(chat);
            }
        }
        if let Some(position) = follow.scan {
            let query =
                ReadQuery::ChatsPastCursor { after: position, cursor_prefix: CURSOR_PREFIX.to_vec(), limit: SCAN_STEP };
            match self.service.read(g, query, Consistency::Local).await? {
                ReadResult::ChatsPastCursor { chats, next } => {
                    dirty.extend(chats.into_iter().map(|(c, _, _)| c));
                    follow.scan = next.map(Some);
                }
                other => return Err(unexpected(other)),
            }
        }
        let mut puts = Puts::new();
        for chat in dirty {
            self.look_at(g, chat, &mut puts).await?;
            if puts.len() + NOTIFY_MEMBERS_MAX as usize + 1 > PUT_MANY_MAX {
                self.flush(g, &mut puts).await?;
            }
        }
        self.flush(g, &mut puts).await
    }

    /// Records or folds notifications for a chat's offline members and moves its cursor.
    async fn look_at(&self, g: GroupId, chat: Uuid, puts: &mut Puts) -> Result<(), ApiError> {
        let local = Consistency::Local;
        let (header, members) =
            match self.service.read(g, ReadQuery::Chat { chat, member_limit: NOTIFY_MEMBERS_MAX + 1 }, local).await {
                Ok(ReadResult::Chat { header, members }) => (header, members),
                Ok(other) => return Err(unexpected(other)),
                Err(e) if e.code == "unknown_chat" => return Ok(()),
                Err(e) => return Err(e),
            };
        let head = header.next_seq.saturating_sub(1);
        let cursor = self
            .service
            .get(g, cursor_key(&chat), local)
            .await?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        if head <= cursor {
            return Ok(());
        }
        puts.push((cursor_key(&chat), Some(head.to_be_bytes().to_vec())));
        if members.len() > NOTIFY_MEMBERS_MAX as usize {
            return Ok(());
        }
        let from = cursor.max(head.saturating_sub(WINDOW));
        let skipped = from - cursor;
        let query =
            ReadQuery::History { chat, after: from, before: u64::MAX, limit: WINDOW as u32, newest_first: false };
        let messages = match self.service.read(g, query, local).await? {
            ReadResult::History { messages, .. } => messages,
            other => return Err(unexpected(other)),
        };
        let query = ReadQuery::KeyPrefix { prefix: chat_pending_prefix(&chat), limit: NOTIFY_MEMBERS_MAX + 1 };
        let existing: HashMap<Uuid, PushRecord> = match self.service.read(g, query, local).await? {
            ReadResult::Keys(keys) => {
                keys.iter().filter_map(|(_, v)| PushRecord::decode(v)).map(|r| (r.user, r)).collect()
            }
            other => return Err(unexpected(other)),
        };
        let now = crate::service::now_ms();
        for (user, _) in &members {
            let theirs: Vec<_> = messages.iter().filter(|m| m.sender != *user && m.kind != "system").collect();
            let Some(last) = theirs.last() else { continue };
            let offline = self.presence.view(user).status == Status::Offline;
            let (text, media) = decode_body(&last.kind, last.body.clone());
            let preview = match media {
                Some(m) if text.is_empty() => format!("[{}] {}", last.kind, preview(&m.name)),
                _ => preview(&text),
            };
            let fold = |r: &mut PushRecord| {
                r.last_seq = last.seq;
                r.last_from = last.sender;
                r.last_kind = last.kind.clone();
                r.last_ts_ms = last.ts_ms;
                r.preview = preview.clone();
            };
            match existing.get(user) {
                Some(_) if !offline => puts.push((pending_key(&chat, user), None)),
                Some(r) if r.state == PushState::Pending => {
                    let mut r = r.clone();
                    r.count += theirs.len() as u64 + skipped;
                    fold(&mut r);
                    puts.push((pending_key(&chat, user), Some(r.encode().map_err(ApiError::internal)?)));
                }
                Some(_) => {}
                None if offline => {
                    let first = theirs[0].seq;
                    let mut r = PushRecord {
                        id: format!("{chat}:{user}:{first}"),
                        chat,
                        user: *user,
                        first_seq: first,
                        last_seq: 0,
                        count: theirs.len() as u64 + skipped,
                        last_from: last.sender,
                        last_kind: String::new(),
                        preview: String::new(),
                        last_ts_ms: 0,
                        created_ms: now,
                        state: PushState::Pending,
                        attempts: 0,
                        next_attempt_ms: 0,
                        last_error: String::new(),
                    };
                    fold(&mut r);
                    puts.push((pending_key(&chat, user), Some(r.encode().map_err(ApiError::internal)?)));
                    self.stats.recorded.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        }
        Ok(())
    }
}
