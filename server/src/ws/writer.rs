//! What one connection has delivered, and the frames it writes.
//!
//! For every chat the connection keeps the next seq to deliver: an older event is dropped, a
//! newer one first fills the gap from history. So a device receives every message of every chat
//! once, in seq order, with no gap, whatever path the events took; duplicates are possible only
//! across reconnects, with the same (chatId, seq). Messages this connection sent itself are
//! acknowledged, not echoed: its in-flight send and the seqs it was acknowledged are skipped
//! (the user's other connections receive them as any member does).
//!
//! Writes are buffered: frames are fed to the socket and flushed once no more work is ready.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use axum::extract::ws::Utf8Bytes;
use axum::extract::ws::WebSocket;
use futures::SinkExt;
use raftchat_raft::router::Consistency;
use raftchat_storage::message::MessageBytes;
use uuid::Uuid;

use super::frames::ServerFrame;
use crate::delivery::hub::MessageOut;
use crate::delivery::Delivery;
use crate::delivery::Hub;
use crate::presence::table::View;
use crate::presence::Presence;
use crate::service::rfc3339;
use crate::service::ChatService;

/// A frame the client does not take within this is a dead or stuck client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages read per history page while catching up.
const CATCH_UP_PAGE: u32 = 500;
/// Presence of members is pushed in chats of up to this many members.
pub const PRESENCE_GROUP_MAX: u32 = 256;
/// Own sends remembered per connection until their events pass.
const OWN_SEQS_MAX: usize = 4096;

pub fn presence_frame(user: Uuid, v: View) -> ServerFrame {
    let last_seen = (v.last_seen_ms > 0).then(|| rfc3339(v.last_seen_ms));
    ServerFrame::Presence { user_id: user, status: v.status.as_str(), last_seen }
}

/// The `message` frame of a committed message.
pub fn message_frame(chat: Uuid, seq: u64, m: &MessageBytes) -> Result<ServerFrame, String> {
    let v = m.view().map_err(|e| format!("undecodable message: {e}"))?;
    let (text, media) = crate::service::media::decode_body(v.kind, v.body.to_string());
    Ok(ServerFrame::Message {
        chat_id: chat,
        seq,
        message_id: v.message_id,
        from: v.sender,
        text,
        media,
        message_type: v.kind.to_string(),
        client_msg_id: v.client_msg_id.to_string(),
        timestamp: rfc3339(v.ts_ms),
    })
}

pub struct Writer {
    pub sink: futures::stream::SplitSink<WebSocket, WsMessage>,
    pub user: Uuid,
    pub service: ChatService,
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub conn: u64,
    /// Per chat, the next seq this device should receive.
    pub next: HashMap<Uuid, u64>,
    /// The clientMsgId of this connection's send in flight: its event is not echoed.
    pub sending: Option<String>,
    /// (chat, seq) of own messages acknowledged ahead of their chat's delivery position.
    own: HashSet<(Uuid, u64)>,
    /// Frames fed since the last flush.
    unflushed: bool,
    /// Users who blocked this user: their presence is not followed.
    blocked_by: HashSet<Uuid>,
}

impl Writer {
    pub fn new(
        sink: futures::stream::SplitSink<WebSocket, WsMessage>,
        user: Uuid,
        service: ChatService,
        hub: Arc<Hub>,
        presence: Arc<Presence>,
        conn: u64,
    ) -> Self {
        Writer {
            sink,
            user,
            service,
            hub,
            presence,
            conn,
            next: HashMap::new(),
            sending: None,
            own: HashSet::new(),
            unflushed: false,
            blocked_by: HashSet::new(),
        }
    }

    /// Queues a frame on the socket (see [`Writer::flush`]).
    pub async fn feed(&mut self, text: Utf8Bytes) -> Result<(), String> {
        self.unflushed = true;
        match tokio::time::timeout(WRITE_TIMEOUT, self.sink.feed(WsMessage::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("client stopped reading".into()),
        }
    }

    pub async fn send(&mut self, f: ServerFrame) -> Result<(), String> {
        self.feed(f.to_text().into()).await
    }

    /// Writes what was fed.
    pub async fn flush(&mut self) -> Result<(), String> {
        if !self.unflushed {
            return Ok(());
        }
        self.unflushed = false;
        match tokio::time::timeout(WRITE_TIMEOUT, self.sink.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("client stopped reading".into()),
        }
    }

    /// This connection's send of `chat` was acknowledged at `seq`: never echo it.
    pub fn acknowledged(&mut self, chat: Uuid, seq: u64) {
        match self.next.get_mut(&chat) {
            Some(next) if *next == seq => *next += 1,
            Some(next) if *next < seq => {
                if self.own.len() >= OWN_SEQS_MAX {
                    self.own.clear();
                }
                self.own.insert((chat, seq));
            }
            _ => {}
        }
    }

    /// Subscribes to every chat of the user, then catches each up from its delivered watermark.
    pub async fn start(&mut self) -> Result<(), String> {
        let chats = self.service.chat_ids(self.user).await.map_err(|e| e.to_string())?;
        self.blocked_by = self.service.blocked_by(self.user).await.map_err(|e| e.to_string())?;
        for chat in &chats {
            self.hub.subscribe(self.conn, *chat);
        }
        for chat in &chats {
            self.join(*chat).await?;
        }
        for chat in chats {
            self.follow_members(chat).await?;
        }
        Ok(())
    }

    /// Follows the presence of `chat`'s members and sends their current status; in chats of
    /// up to [`PRESENCE_GROUP_MAX`] members only (in a larger group, every member coming online
    /// would be a frame to every other member: quadratic; clients ask for presence there).
    async fn follow_members(&mut self, chat: Uuid) -> Result<(), String> {
        let Ok(view) = self.service.chat_view(self.user, chat, PRESENCE_GROUP_MAX + 1).await else { return Ok(()) };
        if view.member_count > PRESENCE_GROUP_MAX {
            return Ok(());
        }
        let others = view.members.into_iter().filter(|u| *u != self.user && !self.blocked_by.contains(u));
        for u in self.hub.add_contacts(self.conn, others) {
            let v = self.presence.view(&u);
            self.send(presence_frame(u, v)).await?;
        }
        Ok(())
    }

    /// Starts following `chat` from the user's delivered watermark.
    async fn join(&mut self, chat: Uuid) -> Result<(), String> {
        match self.service.membership(self.user, chat, Consistency::Linearizable).await {
            Ok(m) => {
                self.next.insert(chat, m.delivered + 1);
                self.catch_up(chat, None).await
            }
            // Not (or no longer) a member: nothing to deliver.
            Err(_) => Ok(()),
        }
    }

    /// Delivers `chat` from its next seq up to `upto` (or the head), from history.
    ///
    /// It reads the nearest replica first: that never blocks on a quorum, so a node cut off from
    /// the leader keeps serving what it has (and presence). Only a gap below a seq an event
    /// announced, which the nearest replica has not applied yet, is read from the leader.
    async fn catch_up(&mut self, chat: Uuid, upto: Option<u64>) -> Result<(), String> {
        self.catch_up_at(chat, upto, Consistency::Local).await?;
        if upto.is_some_and(|u| self.next.get(&chat).is_some_and(|n| *n <= u)) {
            self.catch_up_at(chat, upto, Consistency::Linearizable).await?;
        }
        Ok(())
    }

    async fn catch_up_at(&mut self, chat: Uuid, upto: Option<u64>, c: Consistency) -> Result<(), String> {
        loop {
            let Some(&next) = self.next.get(&chat) else { return Ok(()) };
            if upto.is_some_and(|u| next > u) {
                return Ok(());
            }
            let (msgs, has_more, _head) =
                match self.service.messages(chat, next - 1, upto.map(|u| u + 1), CATCH_UP_PAGE, false, c).await {
                    Ok(r) => r,
                    Err(e) => return Err(format!("catch-up of {chat} failed: {e}")),
                };
            for m in msgs {
                let own = m.sender == self.user && self.sending.as_deref() == Some(m.client_msg_id.as_str());
                let frame = if own {
                    None
                } else {
                    let (text, media) = crate::service::media::decode_body(&m.kind, m.body);
                    Some(ServerFrame::Message {
                        chat_id: chat,
                        seq: m.seq,
                        message_id: m.message_id,
                        from: m.sender,
                        text,
                        media,
                        message_type: m.kind,
                        client_msg_id: m.client_msg_id,
                        timestamp: rfc3339(m.ts_ms),
                    })
                };
                self.push(chat, m.seq, m.ts_ms, frame.map(|f| Utf8Bytes::from(f.to_text()))).await?;
            }
            if !has_more {
                return Ok(());
            }
        }
    }

    /// Delivers message `seq` of `chat` if it is the next one (`frame: None`: an own message,
    /// passed over).
    async fn push(&mut self, chat: Uuid, seq: u64, ts_ms: u64, frame: Option<Utf8Bytes>) -> Result<(), String> {
        let Some(next) = self.next.get_mut(&chat) else { return Ok(()) };
        if seq != *next {
            return Ok(());
        }
        *next += 1;
        if self.own.remove(&(chat, seq)) {
            return Ok(());
        }
        let Some(frame) = frame else { return Ok(()) };
        let metrics = &self.service.metrics;
        metrics.messages_delivered.inc();
        metrics.delivery_latency.observe(crate::service::now_ms().saturating_sub(ts_ms) as f64 / 1000.0);
        self.feed(frame).await
    }

    async fn deliver_message(&mut self, m: &MessageOut) -> Result<(), String> {
        let Some(&next) = self.next.get(&m.chat) else { return Ok(()) };
        if m.seq < next {
            return Ok(());
        }
        if m.seq > next {
            self.catch_up(m.chat, Some(m.seq - 1)).await?;
        }
        let v = m.message.view().map_err(|e| format!("undecodable message: {e}"))?;
        if v.sender == self.user && self.sending.as_deref() == Some(v.client_msg_id) {
            return self.push(m.chat, m.seq, v.ts_ms, None).await;
        }
        let frame = match m.frame.get() {
            Some(f) => f.clone(),
            None => {
                let text: Utf8Bytes = message_frame(m.chat, m.seq, &m.message)?.to_text().into();
                m.frame.get_or_init(|| text).clone()
            }
        };
        self.push(m.chat, m.seq, v.ts_ms, Some(frame)).await
    }

    pub async fn deliver(&mut self, d: Delivery) -> Result<(), String> {
        match d {
            Delivery::Message(m) => self.deliver_message(&m).await,
            Delivery::Receipt { chat, user, delivered, read } => {
                if !self.next.contains_key(&chat) {
                    return Ok(());
                }
                self.send(ServerFrame::Receipt { chat_id: chat, user_id: user, delivered, read }).await
            }
            Delivery::Resync(chat) => self.catch_up(chat, None).await,
            Delivery::Membership(chat, true) => {
                if self.next.contains_key(&chat) {
                    return Ok(());
                }
                self.hub.subscribe(self.conn, chat);
                self.send(ServerFrame::Chat { chat_id: chat, member: true }).await?;
                self.join(chat).await?;
                self.follow_members(chat).await
            }
            Delivery::Presence(user, view) => self.send(presence_frame(user, view)).await,
            Delivery::Invite(chat, true) => match self.service.invite_view(self.user, chat).await {
                Ok(Some(v)) => {
                    let frame = ServerFrame::Invite {
                        chat_id: v.chat_id,
                        name: v.name,
                        from: v.from,
                        member_count: v.member_count,
                        timestamp: v.timestamp,
                    };
                    self.send(frame).await
                }
                // Accepted, declined or withdrawn meanwhile; `GET /invites` has the truth.
                Ok(None) | Err(_) => Ok(()),
            },
            Delivery::Invite(_, false) => Ok(()),
            Delivery::BlockedBy(by, true) => {
                self.blocked_by.insert(by);
                self.hub.remove_contact(self.conn, by);
                Ok(())
            }
            Delivery::BlockedBy(by, false) => {
                self.blocked_by.remove(&by);
                let direct = crate::service::chats::direct_chat_id(self.user, by);
                if self.next.contains_key(&direct) {
                    self.follow_members(direct).await?;
                }
                Ok(())
            }
            Delivery::Typing { chat, user } => {
                if !self.next.contains_key(&chat) {
                    return Ok(());
                }
                self.send(ServerFrame::Typing { chat_id: chat, user_id: user }).await
            }
            Delivery::Membership(chat, false) => {
                self.hub.unsubscribe(self.conn, chat);
                if self.next.remove(&chat).is_some() {
                    self.send(ServerFrame::Chat { chat_id: chat, member: false }).await?;
                }
                Ok(())
            }
        }
    }

    /// The client names what it has; deliver each named chat from there.
    pub async fn sync(&mut self, chats: HashMap<Uuid, u64>) -> Result<(), String> {
        for (chat, last) in chats {
            if let Some(next) = self.next.get_mut(&chat) {
                *next = last.saturating_add(1);
                self.catch_up(chat, None).await?;
            } else {
                self.send(ServerFrame::error("not_member", "not a member of this chat", Some(chat.to_string())))
                    .await?;
            }
        }
        Ok(())
    }
}
