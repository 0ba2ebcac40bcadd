//! The node's delivery hub.
//!
//! Connections register with their user and subscribe to chats. For every group that has a
//! subscribed chat (or a connected user's home group, whose index events announce new chats)
//! one [`super::feed`] runs; it hands batches of events to [`Hub::dispatch`], which fans them
//! out to the subscribed connections' bounded queues. A connection whose queue is full is a
//! slow consumer: its queue is closed and it is told why; it resumes on reconnect.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;

use axum::extract::ws::Utf8Bytes;

use raftchat_raft::apply::Applied;
use raftchat_raft::types::GroupId;
use raftchat_storage::message::MessageBytes;
use tokio::sync::mpsc;
use tokio::sync::watch;
use uuid::Uuid;

use crate::service::chats::parse_index_key;
use crate::service::consent::parse_pair_key;
use crate::service::consent::BLOCKED_BY;
use crate::service::consent::INVITES;
use crate::service::ChatService;

pub type ConnId = u64;

/// A committed message, shared by every connection of this node that receives it: its frame
/// is serialized once, by the first connection that sends it.
#[derive(Debug)]
pub struct MessageOut {
    pub chat: Uuid,
    pub seq: u64,
    pub message: MessageBytes,
    pub frame: OnceLock<Utf8Bytes>,
}

/// What a connection is told.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(Arc<MessageOut>),
    /// A member's watermarks moved.
    Receipt {
        chat: Uuid,
        user: Uuid,
        delivered: u64,
        read: u64,
    },
    /// Events of this chat may have been missed: re-read its history from where you are.
    Resync(Uuid),
    /// The user joined (`true`) or left a chat.
    Membership(Uuid, bool),
    /// A contact's presence changed.
    Presence(Uuid, crate::presence::table::View),
    /// The user was invited to a group (`true`), or the invite is gone.
    Invite(Uuid, bool),
    /// This user blocked the connection's user (`true`), or unblocked them.
    BlockedBy(Uuid, bool),
    /// Someone is typing in a chat.
    Typing {
        chat: Uuid,
        user: Uuid,
    },
}

struct Conn {
    user: Uuid,
    tx: mpsc::Sender<Delivery>,
    chats: HashSet<Uuid>,
}

struct Feed {
    refs: usize,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    by_chat: HashMap<Uuid, HashSet<ConnId>>,
    by_user: HashMap<Uuid, HashSet<ConnId>>,
    /// Users whose presence each connection follows (the members of its chats).
    by_contact: HashMap<Uuid, HashSet<ConnId>>,
    contacts: HashMap<ConnId, HashSet<Uuid>>,
    feeds: HashMap<GroupId, Feed>,
}

pub struct Hub {
    service: ChatService,
    state: Mutex<State>,
    next_conn: AtomicU64,
    queue_len: usize,
    shutdown: watch::Receiver<bool>,
}

impl Hub {
    pub fn new(service: ChatService, queue_len: usize, shutdown: watch::Receiver<bool>) -> Arc<Hub> {
        Arc::new(Hub {
            service,
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
            queue_len,
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections registered on this node.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Registers a connection of `user`; the receiver yields its deliveries and ends when the
    /// connection is dropped as a slow consumer.
    pub fn register(self: &Arc<Self>, user: Uuid) -> (ConnId, mpsc::Receiver<Delivery>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_len);
        let home = self.service.group(&user).ok();
        let mut st = self.lock();
        st.conns.insert(id, Conn { user, tx, chats: HashSet::new() });
        st.by_user.entry(user).or_default().insert(id);
        if let Some(g) = home {
            self.feed_ref(&mut st, g);
        }
        (id, rx)
    }

    pub fn unregister(&self, conn: ConnId) {
        let mut st = self.lock();
        let Some(c) = st.conns.remove(&conn) else { return };
        if let Some(set) = st.by_user.get_mut(&c.user) {
            set.remove(&conn);
            if set.is_empty() {
                st.by_user.remove(&c.user);
            }
        }
        if let Ok(g) = self.service.group(&c.user) {
            self.feed_unref(&mut st, g);
        }
        for chat in c.chats {
            self.unlink(&mut st, conn, chat);
        }
        for u in st.contacts.remove(&conn).unwrap_or_default() {
            if let Some(set) = st.by_contact.get_mut(&u) {
                set.remove(&conn);
                if set.is_empty() {
                    st.by_contact.remove(&u);
                }
            }
        }
    }

    /// `conn` follows the presence of `users`; returns those it did not follow yet.
    pub fn add_contacts(&self, conn: ConnId, users: impl IntoIterator<Item = Uuid>) -> Vec<Uuid> {
        let mut st = self.lock();
        let mut added = Vec::new();
        for u in users {
            if st.contacts.entry(conn).or_default().insert(u) {
                st.by_contact.entry(u).or_default().insert(conn);
                added.push(u);
            }
        }
        added
    }

    /// `conn` stops following the presence of `user`.
    pub fn remove_contact(&self, conn: ConnId, user: Uuid) {
        let mut st = self.lock();
        if st.contacts.get_mut(&conn).is_some_and(|s| s.remove(&user)) {
            if let Some(set) = st.by_contact.get_mut(&user) {
                set.remove(&conn);
                if set.is_empty() {
                    st.by_contact.remove(&user);
                }
            }
        }
    }

    /// Tells the connections following `user` about a presence change.
    pub fn presence_changed(&self, user: Uuid, view: crate::presence::table::View) {
        let mut st = self.lock();
        let targets: Vec<ConnId> = st.by_contact.get(&user).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let mut dropped = Vec::new();
        for c in targets {
            Self::send(&mut st, c, Delivery::Presence(user, view), &mut dropped);
        }
        Self::drop_slow(&mut st, dropped);
    }

    /// Tells this node's connections in `chat` that `user` is typing.
    pub fn typing(&self, chat: Uuid, user: Uuid) {
        let mut st = self.lock();
        let targets: Vec<ConnId> = st.by_chat.get(&chat).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let mut dropped = Vec::new();
        for c in targets {
            if st.conns.get(&c).is_some_and(|x| x.user != user) {
                Self::send(&mut st, c, Delivery::Typing { chat, user }, &mut dropped);
            }
        }
        Self::drop_slow(&mut st, dropped);
    }

    pub fn subscribe(self: &Arc<Self>, conn: ConnId, chat: Uuid) {
        let Ok(g) = self.service.group(&chat) else { return };
        let mut st = self.lock();
        let Some(c) = st.conns.get_mut(&conn) else { return };
        if !c.chats.insert(chat) {
            return;
        }
        st.by_chat.entry(chat).or_default().insert(conn);
        self.feed_ref(&mut st, g);
    }

    pub fn unsubscribe(&self, conn: ConnId, chat: Uuid) {
        let mut st = self.lock();
        let removed = st.conns.get_mut(&conn).is_some_and(|c| c.chats.remove(&chat));
        if removed {
            self.unlink(&mut st, conn, chat);
        }
    }

    fn unlink(&self, st: &mut State, conn: ConnId, chat: Uuid) {
        if let Some(set) = st.by_chat.get_mut(&chat) {
            set.remove(&conn);
            if set.is_empty() {
                st.by_chat.remove(&chat);
            }
        }
        if let Ok(g) = self.service.group(&chat) {
            self.feed_unref(st, g);
        }
    }

    fn feed_ref(self: &Arc<Self>, st: &mut State, g: GroupId) {
        if let Some(f) = st.feeds.get_mut(&g) {
            f.refs += 1;
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        st.feeds.insert(g, Feed { refs: 1, stop });
        let hub = self.clone();
        let shutdown = self.shutdown.clone();
        let span = tracing::info_span!("feed", group = g);
        tokio::spawn(tracing::Instrument::instrument(
            super::feed::run(hub, self.service.clone(), g, stop_rx, shutdown),
            span,
        ));
    }

    fn feed_unref(&self, st: &mut State, g: GroupId) {
        let done = match st.feeds.get_mut(&g) {
            Some(f) => {
                f.refs -= 1;
                f.refs == 0
            }
            None => false,
        };
        if done {
            if let Some(f) = st.feeds.remove(&g) {
                f.stop.send_replace(true);
            }
        }
    }

    /// Sends to one connection; a full queue drops the connection's queue (slow consumer).
    fn send(st: &mut State, conn: ConnId, d: Delivery, dropped: &mut Vec<ConnId>) {
        if let Some(c) = st.conns.get(&conn) {
            if c.tx.try_send(d).is_err() {
                dropped.push(conn);
            }
        }
    }

    /// Fans a batch of a group's events out to the subscribed connections.
    pub fn dispatch(&self, events: Vec<Applied>) {
        let mut st = self.lock();
        let mut dropped = Vec::new();
        for e in events {
            match e {
                Applied::Message { chat, seq, message } => {
                    let Some(targets) = st.by_chat.get(&chat).map(|s| s.iter().copied().collect::<Vec<ConnId>>())
                    else {
                        continue;
                    };
                    let out = Arc::new(MessageOut { chat, seq, message, frame: OnceLock::new() });
                    for c in targets {
                        Self::send(&mut st, c, Delivery::Message(out.clone()), &mut dropped);
                    }
                }
                Applied::Receipt { chat, user, delivered, read } => {
                    let targets: Vec<ConnId> =
                        st.by_chat.get(&chat).map(|s| s.iter().copied().collect()).unwrap_or_default();
                    for c in targets {
                        Self::send(&mut st, c, Delivery::Receipt { chat, user, delivered, read }, &mut dropped);
                    }
                }
                Applied::Key { key, present } => {
                    let (user, delivery) = if let Some((user, chat)) = parse_index_key(&key) {
                        (user, Delivery::Membership(chat, present))
                    } else if let Some((user, chat)) = parse_pair_key(INVITES, &key) {
                        (user, Delivery::Invite(chat, present))
                    } else if let Some((user, by)) = parse_pair_key(BLOCKED_BY, &key) {
                        (user, Delivery::BlockedBy(by, present))
                    } else {
                        continue;
                    };
                    let targets: Vec<ConnId> =
                        st.by_user.get(&user).map(|s| s.iter().copied().collect()).unwrap_or_default();
                    for c in targets {
                        Self::send(&mut st, c, delivery.clone(), &mut dropped);
                    }
                }
                Applied::Members { .. } => {}
            }
        }
        Self::drop_slow(&mut st, dropped);
    }

    /// Tells every connection subscribed to a chat of group `g` to re-read its history.
    pub fn resync_group(&self, g: GroupId) {
        let mut st = self.lock();
        let chats: Vec<Uuid> = st.by_chat.keys().copied().filter(|c| self.service.group(c).ok() == Some(g)).collect();
        let mut dropped = Vec::new();
        for chat in chats {
            let targets: Vec<ConnId> = st.by_chat.get(&chat).map(|s| s.iter().copied().collect()).unwrap_or_default();
            for c in targets {
                Self::send(&mut st, c, Delivery::Resync(chat), &mut dropped);
            }
        }
        Self::drop_slow(&mut st, dropped);
    }

    fn drop_slow(st: &mut State, dropped: Vec<ConnId>) {
        for conn in dropped {
            // Replacing the sender closes the connection's queue once it drains what it has.
            if let Some(c) = st.conns.get_mut(&conn) {
                let (tx, _) = mpsc::channel(1);
                c.tx = tx;
            }
        }
    }
}
