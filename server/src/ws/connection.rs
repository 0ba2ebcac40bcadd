//! One WebSocket connection: a reader task and a delivery/writer loop.
//!
//! The reader parses client frames and does what they ask (sends are processed in order, one at
//! a time, so a client's messages keep their order); its answers go to the loop through a
//! bounded channel. The loop owns the socket's sink: it catches the user's chats up from their
//! delivered watermark, then delivers live events from the hub. For every chat it keeps the next
//! seq to deliver: an older event is dropped, a newer one first fills the gap from history. So a
//! device receives every message of every chat once, in seq order, with no gap, whatever path
//! the events took; duplicates are possible only across reconnects, with the same (chatId, seq).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use axum::extract::ws::Message as WsMessage;
use axum::extract::ws::WebSocket;
use futures::SinkExt;
use futures::StreamExt;
use raftchat_raft::apply::Applied;
use raftchat_raft::router::Consistency;
use raftchat_storage::chat_store::MessageRecord;
use tokio::sync::mpsc;
use tokio::sync::watch;
use uuid::Uuid;

use super::frames::ClientFrame;
use super::frames::ServerFrame;
use crate::delivery::Delivery;
use crate::delivery::Hub;
use crate::presence::table::Status;
use crate::presence::table::View;
use crate::presence::Presence;

use crate::service::messages::Target;
use crate::service::rfc3339;
use crate::service::ChatService;

/// Answers waiting for the writer, per connection.
const REPLIES_MAX: usize = 256;
/// A frame the client does not take within this is a dead or stuck client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages read per history page while catching up.
const CATCH_UP_PAGE: u32 = 500;
/// Presence of members is pushed in chats of up to this many members.
pub const PRESENCE_GROUP_MAX: u32 = 256;

/// What the reader hands the loop.
enum ToWriter {
    Frame(ServerFrame),
    Sync(HashMap<Uuid, u64>),
}

/// Liveness and presence timing of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The server pings this often.
    pub ping_every: Duration,
    /// A connection silent this long (not even a pong) is closed: the user goes offline.
    pub heartbeat_timeout: Duration,
    /// A connection without a client frame this long is away.
    pub away_after: Duration,
}

pub struct Context {
    pub service: ChatService,
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub timing: Timing,
}

/// Takes the connection out of the user's presence however the reader ends.
struct PresenceGuard(Arc<Presence>, Uuid, u64);

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.0.set_connection(self.1, self.2, None);
    }
}

pub async fn serve(socket: WebSocket, user: Uuid, cx: Context, mut shutdown: watch::Receiver<bool>) {
    let Context { service, hub, presence, timing } = cx;
    let (conn, mut deliveries) = hub.register(user);
    let (sink, stream) = socket.split();
    let (to_writer, mut from_reader) = mpsc::channel(REPLIES_MAX);
    presence.set_connection(user, conn, Some(Status::Online));
    let guard = PresenceGuard(presence.clone(), user, conn);
    let reader = tokio::spawn(read_loop(stream, user, service.clone(), to_writer, guard, timing));
    let mut ping = tokio::time::interval(timing.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut w = Writer { sink, user, service, hub: hub.clone(), presence, conn, next: HashMap::new() };
    tracing::debug!(%user, conn, "websocket connected");
    let result: Result<(), String> = async {
        w.start().await?;
        loop {
            tokio::select! {
                d = deliveries.recv() => match d {
                    Some(d) => w.deliver(d).await?,
                    None => {
                        let f = ServerFrame::error("slow_consumer", "this connection fell too far behind; reconnect to resume", None);
                        let _ = w.send(f).await;
                        return Err("slow consumer".into());
                    }
                },
                m = from_reader.recv() => match m {
                    Some(ToWriter::Frame(f)) => w.send(f).await?,
                    Some(ToWriter::Sync(chats)) => w.sync(chats).await?,
                    None => return Ok(()),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(WRITE_TIMEOUT, w.sink.send(WsMessage::Ping(Vec::new().into()))).await {
                        Ok(Ok(())) => {}
                        _ => return Err("ping failed".into()),
                    }
                }
                _ = until_shutdown(&mut shutdown) => {
                    let _ = w.sink.send(WsMessage::Close(None)).await;
                    return Ok(());
                }
            }
        }
    }
    .await;
    if let Err(why) = result {
        tracing::debug!(%user, conn, %why, "websocket closed");
    }
    reader.abort();
    hub.unregister(conn);
}

async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// `delivered` acks are coalesced per chat and written at most this often: a device acks every
/// message it shows, and one watermark write per burst is enough.
const DELIVERED_FLUSH: Duration = Duration::from_millis(50);

/// Typing indicators a connection may send per chat at most, one per this interval.
const TYPING_EVERY: Duration = Duration::from_secs(1);

async fn read_loop(
    mut stream: futures::stream::SplitStream<WebSocket>,
    user: Uuid,
    service: ChatService,
    out: mpsc::Sender<ToWriter>,
    presence: PresenceGuard,
    timing: Timing,
) {
    let mut pending: HashMap<Uuid, u64> = HashMap::new();
    let mut tick = tokio::time::interval(DELIVERED_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let (mut last_any, mut last_frame) = (Instant::now(), Instant::now());
    // (status, set by the client rather than by inactivity)
    let mut status = (Status::Online, false);
    let mut typing: HashMap<Uuid, Instant> = HashMap::new();
    let set = |s: Status| presence.0.set_connection(user, presence.2, Some(s));
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = check.tick() => {
                if last_any.elapsed() > timing.heartbeat_timeout {
                    return;
                }
                if status == (Status::Online, false) && last_frame.elapsed() > timing.away_after {
                    status = (Status::Away, false);
                    set(Status::Away);
                }
                continue;
            }
            _ = tick.tick(), if !pending.is_empty() => {
                for (chat, seq) in pending.drain() {
                    if let Err(e) = service.mark(user, chat, seq, 0).await {
                        let f = ServerFrame::error(e.code, e.message, Some("delivered".into()));
                        if out.send(ToWriter::Frame(f)).await.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
        };
        let Some(Ok(msg)) = msg else { return };
        last_any = Instant::now();
        let text = match msg {
            WsMessage::Text(t) => t.to_string(),
            WsMessage::Binary(_) => {
                let f = ServerFrame::error("bad_frame", "frames are JSON text", None);
                if out.send(ToWriter::Frame(f)).await.is_err() {
                    return;
                }
                continue;
            }
            WsMessage::Close(_) => return,
            _ => continue,
        };
        last_frame = Instant::now();
        if status == (Status::Away, false) {
            status = (Status::Online, false);
            set(Status::Online);
        }
        let reply = match ClientFrame::parse(&text) {
            Err(e) => ToWriter::Frame(ServerFrame::error(e.code, e.message, Some(e.reference))),
            Ok(ClientFrame::Delivered { chat_id, seq }) => {
                let e = pending.entry(chat_id).or_insert(0);
                *e = (*e).max(seq);
                continue;
            }
            Ok(ClientFrame::Presence { status: s }) => {
                status = if s == "away" { (Status::Away, true) } else { (Status::Online, false) };
                set(status.0);
                continue;
            }
            Ok(ClientFrame::Typing { chat_id }) => {
                if typing.get(&chat_id).is_some_and(|t| t.elapsed() < TYPING_EVERY) {
                    continue;
                }
                typing.insert(chat_id, Instant::now());
                match service.membership(user, chat_id, Consistency::Local).await {
                    Ok(_) => {
                        presence.0.typing(chat_id, user);
                        continue;
                    }
                    Err(e) => ToWriter::Frame(ServerFrame::error(e.code, e.message, Some("typing".into()))),
                }
            }
            Ok(frame) => handle(frame, user, &service).await,
        };
        if out.send(reply).await.is_err() {
            return;
        }
    }
}

async fn handle(frame: ClientFrame, user: Uuid, service: &ChatService) -> ToWriter {
    match frame {
        ClientFrame::Ping => ToWriter::Frame(ServerFrame::Pong),
        // The reader loop handles these itself (they need its per-connection state).
        ClientFrame::Presence { .. } | ClientFrame::Typing { .. } => {
            ToWriter::Frame(ServerFrame::error("internal", "frame handled by the reader loop", None))
        }
        ClientFrame::Sync { chats } => ToWriter::Sync(chats),
        ClientFrame::Message { to, chat_id, text, client_msg_id, kind, media } => {
            let reference = client_msg_id.clone().unwrap_or_else(|| "message".into());
            let target = match (to, chat_id) {
                (Some(u), _) => Target::User(u),
                (None, Some(c)) => Target::Chat(c),
                (None, None) => return ToWriter::Frame(ServerFrame::error("bad_frame", "no target", Some(reference))),
            };
            match service.send(user, target, text, &kind, client_msg_id, media).await {
                Ok(s) => ToWriter::Frame(ServerFrame::Ack {
                    client_msg_id: s.client_msg_id,
                    chat_id: s.chat,
                    seq: s.seq,
                    message_id: s.message_id,
                    timestamp: rfc3339(s.ts_ms),
                    status: "sent",
                }),
                Err(e) => ToWriter::Frame(ServerFrame::error(e.code, e.message, Some(reference))),
            }
        }
        ClientFrame::Delivered { chat_id, seq } | ClientFrame::Read { chat_id, seq } => {
            let read = matches!(frame, ClientFrame::Read { .. });
            match service.mark(user, chat_id, seq, if read { seq } else { 0 }).await {
                Ok((delivered, read)) => {
                    ToWriter::Frame(ServerFrame::Receipt { chat_id, user_id: user, delivered, read })
                }
                Err(e) => ToWriter::Frame(ServerFrame::error(
                    e.code,
                    e.message,
                    Some(if read { "read" } else { "delivered" }.into()),
                )),
            }
        }
    }
}

fn presence_frame(user: Uuid, v: View) -> ServerFrame {
    let last_seen = (v.last_seen_ms > 0).then(|| rfc3339(v.last_seen_ms));
    ServerFrame::Presence { user_id: user, status: v.status.as_str(), last_seen }
}

struct Writer {
    sink: futures::stream::SplitSink<WebSocket, WsMessage>,
    user: Uuid,
    service: ChatService,
    hub: Arc<Hub>,
    presence: Arc<Presence>,
    conn: u64,
    /// Per chat, the next seq this device should receive.
    next: HashMap<Uuid, u64>,
}

impl Writer {
    async fn send(&mut self, f: ServerFrame) -> Result<(), String> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.sink.send(WsMessage::Text(f.to_text().into()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("client stopped reading".into()),
        }
    }

    /// Subscribes to every chat of the user, then catches each up from its delivered watermark.
    async fn start(&mut self) -> Result<(), String> {
        let chats = self.service.chat_ids(self.user).await.map_err(|e| e.to_string())?;
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
        let others = view.members.into_iter().filter(|u| *u != self.user);
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
                self.push(chat, m).await?;
            }
            if !has_more {
                return Ok(());
            }
        }
    }

    async fn push(&mut self, chat: Uuid, m: MessageRecord) -> Result<(), String> {
        let Some(next) = self.next.get_mut(&chat) else { return Ok(()) };
        if m.seq != *next {
            return Ok(());
        }
        *next += 1;
        let metrics = &self.service.metrics;
        metrics.messages_delivered.inc();
        metrics.delivery_latency.observe(crate::service::now_ms().saturating_sub(m.ts_ms) as f64 / 1000.0);
        let (text, media) = crate::service::media::decode_body(&m.kind, m.body);
        self.send(ServerFrame::Message {
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
        .await
    }

    async fn deliver(&mut self, d: Delivery) -> Result<(), String> {
        match d {
            Delivery::Event(e) => match e.as_ref() {
                Applied::Message { chat, seq, message } => {
                    let Some(&next) = self.next.get(chat) else { return Ok(()) };
                    if *seq > next {
                        self.catch_up(*chat, Some(seq - 1)).await?;
                    }
                    let record = message.record(*seq).map_err(|e| format!("undecodable message: {e}"))?;
                    self.push(*chat, record).await
                }
                Applied::Receipt { chat, user, delivered, read } => {
                    if !self.next.contains_key(chat) {
                        return Ok(());
                    }
                    self.send(ServerFrame::Receipt {
                        chat_id: *chat,
                        user_id: *user,
                        delivered: *delivered,
                        read: *read,
                    })
                    .await
                }
                _ => Ok(()),
            },
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
    async fn sync(&mut self, chats: HashMap<Uuid, u64>) -> Result<(), String> {
        for (chat, last) in chats {
            if let Some(next) = self.next.get_mut(&chat) {
                *next = last + 1;
                self.catch_up(chat, None).await?;
            } else {
                self.send(ServerFrame::error("not_member", "not a member of this chat", Some(chat.to_string())))
                    .await?;
            }
        }
        Ok(())
    }
}
