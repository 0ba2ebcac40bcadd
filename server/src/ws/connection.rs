//! One WebSocket connection: one task that reads the client's frames, runs its requests and
//! delivers committed events.
//!
//! The client's requests (sends, receipts, typing, sync) run one at a time, in order, so a
//! client's messages keep their order; the request in progress is a future the task polls next
//! to the socket and the hub's queue, so deliveries go on while a send commits, and an answer
//! is written by the same task that computed it (no hand-over per message). While requests
//! queue up, the socket is not read (backpressure). Delivery itself is in [`super::writer`].

use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use axum::extract::ws::Message as WsMessage;
use axum::extract::ws::WebSocket;
use futures::StreamExt;
use raftchat_raft::router::Consistency;
use tokio::sync::watch;
use uuid::Uuid;

use super::frames::ClientFrame;
use super::frames::ServerFrame;
use super::writer::Writer;
use super::writer::WRITE_TIMEOUT;
use crate::delivery::Hub;
use crate::presence::table::Status;
use crate::presence::Presence;
use crate::service::messages::Sent;
use crate::service::messages::Target;
use crate::service::quotas::Quota;
use crate::service::rfc3339;
use crate::service::ChatService;

/// Client requests waiting behind the one in progress; past it the socket is not read.
const REQUESTS_MAX: usize = 64;
/// Deliveries written before a flush at most.
const DELIVERIES_PER_FLUSH: usize = 64;

/// Liveness and presence timing of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The server pings this often.
    pub ping_every: Duration,
    /// A connection silent this long (not even a pong) is closed: the user goes offline.
    pub heartbeat_timeout: Duration,
    /// A connection without a client frame this long is away.
    pub away_after: Duration,
    /// A connection re-checks its session this often (a logout or revocation elsewhere ends it).
    pub session_check_every: Duration,
}

pub struct Context {
    pub service: ChatService,
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub timing: Timing,
}

/// Takes the connection out of the user's presence however the connection ends.
struct PresenceGuard(Arc<Presence>, Uuid, u64);

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.0.set_connection(self.1, self.2, None);
    }
}

/// `delivered` acks are coalesced per chat and written at most this often: a device acks every
/// message it shows, and one watermark write per burst is enough.
const DELIVERED_FLUSH: Duration = Duration::from_millis(50);
/// Typing indicators a connection may send per chat at most, one per this interval.
const TYPING_EVERY: Duration = Duration::from_secs(1);

/// What a finished request asks the connection to do.
enum Outcome {
    Frame(ServerFrame),
    /// A send was acknowledged.
    Sent(Sent),
    /// Deliver the named chats from the given seqs.
    Sync(HashMap<Uuid, u64>),
    /// The session was logged out or revoked: the connection closes (code 4001).
    Revoked,
    Nothing,
}

type Request = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A queued client request, before it starts.
enum Queued {
    Frame(ClientFrame),
    /// Coalesced `delivered` acks.
    Delivered(HashMap<Uuid, u64>),
    /// Is the session still good?
    Session(crate::auth::Claims),
}

const REVOKED: &str = "session revoked";

pub async fn serve(socket: WebSocket, claims: crate::auth::Claims, cx: Context, mut shutdown: watch::Receiver<bool>) {
    let user = claims.user;
    let mut session_checked = Instant::now();
    let Context { service, hub, presence, timing } = cx;
    let (conn, mut deliveries) = hub.register(user);
    let (sink, mut stream) = socket.split();
    presence.set_connection(user, conn, Some(Status::Online));
    let guard = PresenceGuard(presence.clone(), user, conn);
    let mut w = Writer::new(sink, user, service.clone(), hub.clone(), presence, conn);
    let mut ping = tokio::time::interval(timing.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Liveness is checked a few times per heartbeat timeout: an idle connection wakes rarely.
    let check_every = (timing.heartbeat_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delivered_tick = tokio::time::interval(DELIVERED_FLUSH);
    delivered_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_any, mut last_frame) = (Instant::now(), Instant::now());
    // (status, set by the client rather than by inactivity)
    let mut status = (Status::Online, false);
    let mut typing: HashMap<Uuid, Instant> = HashMap::new();
    let mut delivered: HashMap<Uuid, u64> = HashMap::new();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut current: Option<Request> = None;
    tracing::debug!(%user, conn, "websocket connected");
    let result: Result<(), String> = async {
        w.start().await?;
        w.flush().await?;
        loop {
            if current.is_none() {
                current = queue.pop_front().and_then(|q| start(q, user, &service, &guard.0, &mut w));
            }
            tokio::select! {
                d = deliveries.recv() => match d {
                    Some(d) => {
                        w.deliver(d).await?;
                        for _ in 1..DELIVERIES_PER_FLUSH {
                            match deliveries.try_recv() {
                                Ok(d) => w.deliver(d).await?,
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        let f = ServerFrame::error("slow_consumer", "this connection fell too far behind; reconnect to resume", None);
                        let _ = w.send(f).await;
                        let _ = w.flush().await;
                        return Err("slow consumer".into());
                    }
                },
                out = async {
                    match current.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                }, if current.is_some() => {
                    current = None;
                    w.sending = None;
                    match out {
                        Outcome::Frame(f) => w.send(f).await?,
                        Outcome::Sent(s) => {
                            w.acknowledged(s.chat, s.seq);
                            w.send(ServerFrame::Ack {
                                client_msg_id: s.client_msg_id,
                                chat_id: s.chat,
                                seq: s.seq,
                                message_id: s.message_id,
                                timestamp: rfc3339(s.ts_ms),
                                status: "sent",
                            })
                            .await?;
                        }
                        Outcome::Sync(chats) => w.sync(chats).await?,
                        Outcome::Revoked => return Err(REVOKED.into()),
                        Outcome::Nothing => {}
                    }
                }
                msg = stream.next(), if queue.len() < REQUESTS_MAX => {
                    let Some(Ok(msg)) = msg else { return Ok(()) };
                    last_any = Instant::now();
                    let text = match msg {
                        WsMessage::Text(t) => t,
                        WsMessage::Binary(_) => {
                            w.send(ServerFrame::error("bad_frame", "frames are JSON text", None)).await?;
                            w.flush().await?;
                            continue;
                        }
                        WsMessage::Close(_) => return Ok(()),
                        _ => continue,
                    };
                    last_frame = Instant::now();
                    if status == (Status::Away, false) {
                        status = (Status::Online, false);
                        guard.0.set_connection(user, conn, Some(Status::Online));
                    }
                    match ClientFrame::parse(&text) {
                        Err(e) => w.send(ServerFrame::error(e.code, e.message, Some(e.reference))).await?,
                        Ok(ClientFrame::Ping) => w.send(ServerFrame::Pong).await?,
                        // Batched, for the chats this connection follows (its user's chats); a
                        // receipt for any other chat is checked on its own and never batched.
                        Ok(ClientFrame::Delivered { chat_id, seq }) if w.next.contains_key(&chat_id) => {
                            let e = delivered.entry(chat_id).or_insert(0);
                            *e = (*e).max(seq);
                        }
                        Ok(ClientFrame::Presence { status: s }) => {
                            status = if s == "away" { (Status::Away, true) } else { (Status::Online, false) };
                            guard.0.set_connection(user, conn, Some(status.0));
                        }
                        Ok(ClientFrame::Typing { chat_id }) => {
                            if !w.next.contains_key(&chat_id) {
                                // Not one of this user's chats: refused without a lookup or an entry.
                                w.send(ServerFrame::error("not_member", "not a member of this chat", Some("typing".into()))).await?;
                            } else if typing.get(&chat_id).is_none_or(|t| t.elapsed() >= TYPING_EVERY) {
                                if typing.len() >= TYPING_TRACKED_MAX {
                                    typing.retain(|_, t| t.elapsed() < TYPING_EVERY);
                                }
                                typing.insert(chat_id, Instant::now());
                                queue.push_back(Queued::Frame(ClientFrame::Typing { chat_id }));
                            }
                        }
                        Ok(frame) => queue.push_back(Queued::Frame(frame)),
                    }
                }
                _ = check.tick() => {
                    if last_any.elapsed() > timing.heartbeat_timeout {
                        return Ok(());
                    }
                    if session_checked.elapsed() >= timing.session_check_every && queue.len() < REQUESTS_MAX {
                        session_checked = Instant::now();
                        queue.push_back(Queued::Session(claims));
                    }
                    if status == (Status::Online, false) && last_frame.elapsed() > timing.away_after {
                        status = (Status::Away, false);
                        guard.0.set_connection(user, conn, Some(Status::Away));
                    }
                }
                _ = delivered_tick.tick(), if !delivered.is_empty() && queue.len() < REQUESTS_MAX => {
                    queue.push_back(Queued::Delivered(std::mem::take(&mut delivered)));
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(WRITE_TIMEOUT, futures::SinkExt::send(&mut w.sink, WsMessage::Ping(Vec::new().into()))).await {
                        Ok(Ok(())) => {}
                        _ => return Err("ping failed".into()),
                    }
                }
                _ = until_shutdown(&mut shutdown) => {
                    let _ = futures::SinkExt::send(&mut w.sink, WsMessage::Close(None)).await;
                    return Ok(());
                }
            }
            w.flush().await?;
        }
    }
    .await;
    if let Err(why) = result {
        if why == REVOKED {
            // 4001: the client must sign in again (the web client shows its login).
            let frame = axum::extract::ws::CloseFrame { code: 4001, reason: REVOKED.into() };
            let _ =
                tokio::time::timeout(WRITE_TIMEOUT, futures::SinkExt::send(&mut w.sink, WsMessage::Close(Some(frame))))
                    .await;
            // Wait (briefly) for the client's close, so that it reads the code, not a reset.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, WsMessage::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        tracing::debug!(%user, conn, %why, "websocket closed");
    }
    hub.unregister(conn);
    drop(guard);
}

/// Chats whose last typing signal a connection remembers before it forgets the stale ones.
const TYPING_TRACKED_MAX: usize = 64;

async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Starts a queued request; `None` when it needs no work.
fn start(q: Queued, user: Uuid, service: &ChatService, presence: &Arc<Presence>, w: &mut Writer) -> Option<Request> {
    let service = service.clone();
    let frame = match q {
        Queued::Delivered(chats) => {
            return Some(Box::pin(async move {
                for (chat, seq) in chats {
                    // Over the receipts quota the rest of the batch is dropped: a later ack
                    // (watermarks only rise) covers it.
                    let quota = service.quotas.check(Quota::Receipts, user);
                    if let Err(e) = match quota {
                        Ok(()) => service.mark(user, chat, seq, 0).await.map(|_| ()),
                        Err(e) => Err(e),
                    } {
                        return Outcome::Frame(ServerFrame::error(e.code, e.message, Some("delivered".into())));
                    }
                }
                Outcome::Nothing
            }));
        }
        Queued::Session(claims) => {
            return Some(Box::pin(async move {
                match service.check_session(&claims).await {
                    Err(e) if e.code == "revoked" => Outcome::Revoked,
                    _ => Outcome::Nothing,
                }
            }));
        }
        Queued::Frame(f) => f,
    };
    Some(match frame {
        ClientFrame::Sync { chats } => Box::pin(async move { Outcome::Sync(chats) }),
        // Over the typing quota a signal is dropped without an answer (it is soft state).
        ClientFrame::Typing { .. } if !service.quotas.allow(Quota::Typing, user) => return None,
        ClientFrame::Typing { chat_id } => {
            let presence = presence.clone();
            Box::pin(async move {
                match service.membership(user, chat_id, Consistency::Local).await {
                    Ok(m) if m.role == raftchat_storage::chat_store::Role::Blocked => {
                        let e = crate::service::consent::blocked_error();
                        Outcome::Frame(ServerFrame::error(e.code, e.message, Some("typing".into())))
                    }
                    Ok(_) => {
                        presence.typing(chat_id, user);
                        Outcome::Nothing
                    }
                    Err(e) => Outcome::Frame(ServerFrame::error(e.code, e.message, Some("typing".into()))),
                }
            })
        }
        ClientFrame::Message { to, chat_id, text, client_msg_id, kind, media } => {
            let reference = client_msg_id.clone().unwrap_or_else(|| "message".into());
            let target = match (to, chat_id) {
                (Some(u), _) => Target::User(u),
                (None, Some(c)) => Target::Chat(c),
                (None, None) => {
                    return Some(Box::pin(async move {
                        Outcome::Frame(ServerFrame::error("bad_frame", "no target", Some(reference)))
                    }))
                }
            };
            // Chosen here, so the connection knows its own message when its event comes back.
            let client_msg_id = client_msg_id.unwrap_or_else(|| Uuid::new_v4().to_string());
            w.sending = Some(client_msg_id.clone());
            Box::pin(async move {
                match service.send(user, target, text, &kind, Some(client_msg_id), media).await {
                    Ok(s) => Outcome::Sent(s),
                    Err(e) => Outcome::Frame(ServerFrame::error(e.code, e.message, Some(reference))),
                }
            })
        }
        ClientFrame::Delivered { chat_id, seq } | ClientFrame::Read { chat_id, seq } => {
            let read = matches!(frame, ClientFrame::Read { .. });
            let known = w.next.contains_key(&chat_id);
            Box::pin(async move {
                let (d, r) = (seq, if read { seq } else { 0 });
                let marked = if let Err(e) = service.quotas.check(Quota::Receipts, user) {
                    Err(e)
                } else if known {
                    service.mark(user, chat_id, d, r).await
                } else {
                    service.mark_member(user, chat_id, d, r).await
                };
                match marked {
                    Ok((delivered, read)) => {
                        Outcome::Frame(ServerFrame::Receipt { chat_id, user_id: user, delivered, read })
                    }
                    Err(e) => Outcome::Frame(ServerFrame::error(
                        e.code,
                        e.message,
                        Some(if read { "read" } else { "delivered" }.into()),
                    )),
                }
            })
        }
        // Answered by the connection loop itself.
        ClientFrame::Ping | ClientFrame::Presence { .. } => return None,
    })
}
