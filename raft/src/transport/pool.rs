//! The node's peers: one connection per node pair, dialed by the node with the lower id.
//!
//! The lower-id node dials, retrying with jittered backoff; the higher-id node waits for the
//! inbound connection (see [`super::listener`]). Either side then sends requests over it. A call
//! to a peer without a live connection waits briefly for one, then reports it unreachable.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::conn::CallError;
use super::conn::Conn;
use super::conn::Inbound;
use super::conn::Stream;
use super::frame;
use super::frame::Frame;
use super::frame::Hello;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::GroupId;
use crate::types::NodeId;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_WAIT_MAX: Duration = Duration::from_millis(300);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a peer told us in its handshake.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub api_addr: String,
    pub pristine: bool,
}

struct Peer {
    addr: watch::Sender<String>,
    conn: watch::Sender<Option<Arc<Conn>>>,
    /// Other live connections accepted from this peer. Handshakes can finish out of order (a
    /// dial the peer already gave up on, stuck in a paused node's backlog, may finish after the
    /// peer's next dial): when the registered connection closes, a live spare takes its place,
    /// since the peer, whose own connection still works, has no reason to dial again.
    spares: Mutex<Vec<Arc<Conn>>>,
    info: Mutex<Option<PeerInfo>>,
    dialing: AtomicBool,
}

/// This node's identity as told to peers.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub api_addr: String,
    pub raft_addr: String,
    /// Outbound connections start from this address: the node's listen IP when it names one, so
    /// peers (and firewalls, and fault proxies) see one address per node.
    pub source_ip: Option<std::net::IpAddr>,
    /// Mutual TLS with peers; `None`: plain TCP, unauthenticated (`--insecure`).
    pub tls: Option<Arc<super::tls::PeerTls>>,
}

/// Answers a question about the local node's state (set once by the node).
pub type Probe = Box<dyn Fn(NodeId) -> bool + Send + Sync>;
/// The local cluster layout's epoch (set once by the node).
pub type EpochProbe = Box<dyn Fn() -> u64 + Send + Sync>;

pub struct PeerPool {
    pub me: LocalIdentity,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
    inbound: Arc<dyn Inbound>,
    pristine: AtomicBool,
    /// This node has been in a cluster layout (recorded in its data directory).
    was_member: AtomicBool,
    /// Whether the local cluster layout lists a node as a member.
    member: std::sync::OnceLock<Probe>,
    /// The local cluster layout's epoch (0: none yet).
    epoch: std::sync::OnceLock<EpochProbe>,
    /// Set when this node must not go on (its data was lost); the reason names both sides.
    fatal: watch::Sender<Option<String>>,
    shutdown: watch::Receiver<bool>,
}

impl PeerPool {
    pub fn new(
        me: LocalIdentity,
        inbound: Arc<dyn Inbound>,
        pristine: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(PeerPool {
            me,
            peers: Mutex::new(HashMap::new()),
            inbound,
            pristine: AtomicBool::new(pristine),
            was_member: AtomicBool::new(false),
            member: std::sync::OnceLock::new(),
            epoch: std::sync::OnceLock::new(),
            fatal: watch::channel(None).0,
            shutdown,
        })
    }

    pub fn inbound(&self) -> Arc<dyn Inbound> {
        self.inbound.clone()
    }

    pub fn set_member_probe(&self, p: Probe) {
        let _ = self.member.set(p);
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.member.get().is_some_and(|f| f(id))
    }

    pub fn set_was_member(&self, v: bool) {
        self.was_member.store(v, Ordering::Relaxed);
    }

    pub fn was_member(&self) -> bool {
        self.was_member.load(Ordering::Relaxed)
    }

    pub fn set_epoch_probe(&self, p: EpochProbe) {
        let _ = self.epoch.set(p);
    }

    pub fn layout_epoch(&self) -> u64 {
        self.epoch.get().map_or(0, |f| f())
    }

    /// A peer whose layout is at least as new as ours does not list this node, which has been
    /// a member: it was removed from the cluster (`raftchat admin members remove`), perhaps while
    /// it was away. It stops, saying so; returns the reason when that is the case.
    pub fn check_removed(&self, peer: NodeId, peer_says_member: bool, peer_epoch: u64) -> Option<String> {
        let mine = self.layout_epoch();
        if peer_says_member || peer_epoch < mine || peer_epoch == 0 || self.pristine() || !self.was_member() {
            return None;
        }
        Some(self.removed(&format!("node {peer}'s cluster layout (epoch {peer_epoch}) no longer lists it")))
    }

    /// Stops this node: it was removed from the cluster; `why` says how it knows.
    pub fn removed(&self, why: &str) -> String {
        let me = self.me.node_id;
        let reason = format!(
            "node {me} was removed from cluster {c:?}: {why}. Stop it; to bring this machine back, start it on an \
             empty data directory and run `raftchat admin members add`",
            c = self.me.cluster_id
        );
        tracing::error!(%reason, "stopping: removed from the cluster");
        self.fatal.send_replace(Some(reason.clone()));
        reason
    }

    /// Resolves with the reason once this node must stop.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    /// A peer knows this node as a member although this node has no state: its data was lost.
    pub fn lost_data(&self, peer: NodeId) -> String {
        let reason = format!(
            "node {me}'s data directory holds no cluster state, but node {peer} knows node {me} as a member of cluster {c:?}: \
             its data was lost or this is the wrong directory. Start node {me} on its own data directory, \
             or remove node {me} from the cluster before it joins again with empty data",
            me = self.me.node_id,
            c = self.me.cluster_id
        );
        tracing::error!(%reason, "refusing to run with lost data");
        self.fatal.send_replace(Some(reason.clone()));
        reason
    }

    pub fn set_pristine(&self, p: bool) {
        self.pristine.store(p, Ordering::Relaxed);
    }

    pub fn pristine(&self) -> bool {
        self.pristine.load(Ordering::Relaxed)
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Arc<Peer>>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peer(&self, id: NodeId) -> Arc<Peer> {
        self.peers()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Peer {
                    addr: watch::channel(String::new()).0,
                    conn: watch::channel(None).0,
                    spares: Mutex::new(Vec::new()),
                    info: Mutex::new(None),
                    dialing: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Records a peer's Raft address; starts dialing it if this node has the lower id.
    pub fn learn(self: &Arc<Self>, id: NodeId, addr: &str) {
        if id == self.me.node_id || addr.is_empty() {
            return;
        }
        let peer = self.peer(id);
        peer.addr.send_if_modified(|a| {
            if a != addr {
                *a = addr.to_string();
                true
            } else {
                false
            }
        });
        if self.me.node_id < id && !peer.dialing.swap(true, Ordering::SeqCst) {
            let pool = self.clone();
            tokio::spawn(async move { pool.dial_loop(id, peer).await });
        }
    }

    /// Handshake facts of a connected peer.
    pub fn info(&self, id: NodeId) -> Option<PeerInfo> {
        let peer = self.peers().get(&id).cloned()?;
        live_conn(&peer)?;
        let info = peer.info.lock().unwrap_or_else(|e| e.into_inner()).clone();
        info
    }

    /// Ids of peers with a live connection.
    pub fn connected(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> =
            self.peers().iter().filter(|(_, p)| live_conn(p).is_some()).map(|(id, _)| *id).collect();
        v.sort_unstable();
        v
    }

    /// Installs a connection accepted from `id` (by the listener, after the handshake).
    pub fn accepted(&self, id: NodeId, conn: Arc<Conn>, info: PeerInfo, raft_addr: &str) {
        let peer = self.peer(id);
        peer.addr.send_replace(raft_addr.to_string());
        *peer.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        if let Some(old) = peer.conn.send_replace(Some(conn)) {
            tracing::info!(peer = id, closed = old.is_closed(), "peer reconnected");
            if !old.is_closed() {
                let mut spares = peer.spares.lock().unwrap_or_else(|e| e.into_inner());
                spares.retain(|c| !c.is_closed());
                spares.push(old);
            }
        }
    }

    /// Sends `req` for `group` to node `to`.
    pub async fn call(
        &self,
        to: NodeId,
        group: GroupId,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, CallError> {
        let peer = self.peers().get(&to).cloned().ok_or(CallError::Unreachable)?;
        let mut rx = peer.conn.subscribe();
        let wait = CONNECT_WAIT_MAX.min(timeout);
        let conn = tokio::time::timeout(wait, async {
            loop {
                rx.mark_unchanged();
                if let Some(c) = live_conn(&peer) {
                    return Some(c);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
        .ok_or(CallError::Unreachable)?;
        conn.call(group, req, timeout).await
    }

    async fn dial_loop(self: Arc<Self>, id: NodeId, peer: Arc<Peer>) {
        let mut shutdown = self.shutdown.clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let addr = peer.addr.borrow().clone();
            match self.dial_once(id, &addr).await {
                Ok((conn, info)) => {
                    tracing::info!(peer = id, %addr, "connected to peer");
                    *peer.info.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
                    peer.conn.send_replace(Some(conn.clone()));
                    backoff = BACKOFF_MIN;
                    tokio::select! {
                        _ = conn.closed() => tracing::info!(peer = id, "connection to peer lost"),
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = id, %addr, cause = %e, "dial failed");
                }
            }
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
            let sleep = backoff + Duration::from_millis(jitter);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Connects to `addr` from [`LocalIdentity::source_ip`] when the families match.
    async fn connect(&self, addr: &str) -> std::io::Result<TcpStream> {
        let Some(ip) = self.me.source_ip else { return TcpStream::connect(addr).await };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} resolves to nothing"));
        for target in tokio::net::lookup_host(addr).await? {
            let socket = match target {
                std::net::SocketAddr::V4(_) if ip.is_ipv4() => tokio::net::TcpSocket::new_v4()?,
                std::net::SocketAddr::V6(_) if ip.is_ipv6() => tokio::net::TcpSocket::new_v6()?,
                _ => return TcpStream::connect(target).await,
            };
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
            match socket.connect(target).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn dial_once(&self, id: NodeId, addr: &str) -> Result<(Arc<Conn>, PeerInfo), String> {
        let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.me.tls {
            None => self.handshake(id, addr, tcp, Stream::Plain).await,
            Some(tls) => {
                let name = super::tls::node_name(&self.me.cluster_id, id);
                let server_name = rustls::pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_string())?
                    .map_err(|e| format!("TLS handshake with node {id} at {addr} failed: {e}"))?;
                self.handshake(id, addr, stream, |s| Stream::Tls(Box::new(s))).await
            }
        }
    }

    /// The hello and its answer, over an established (and, with TLS, authenticated) stream.
    async fn handshake<S>(
        &self,
        id: NodeId,
        addr: &str,
        mut stream: S,
        wrap: impl FnOnce(S) -> Stream,
    ) -> Result<(Arc<Conn>, PeerInfo), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let hello = Frame::Hello(Hello {
            format_version: raftchat_storage::codec::FORMAT_VERSION,
            cluster_id: self.me.cluster_id.clone(),
            from: self.me.node_id,
            to: id,
            from_api_addr: self.me.api_addr.clone(),
            from_raft_addr: self.me.raft_addr.clone(),
            pristine: self.pristine(),
            you_are_member: self.is_member(id),
            layout_epoch: self.layout_epoch(),
        });
        let bytes = frame::encode(&hello).map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes).await?;
            tokio::io::AsyncWriteExt::flush(&mut stream).await?;
            frame::read_max(&mut stream, frame::HANDSHAKE_FRAME_BYTES_MAX).await.map_err(std::io::Error::other)
        })
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
        match reply {
            Frame::Welcome(w) if w.node == id && w.you_are_member && self.pristine() => Err(self.lost_data(id)),
            Frame::Welcome(w) if w.node == id && self.check_removed(id, w.you_are_member, w.layout_epoch).is_some() => {
                Err(format!("node {} was removed from the cluster", self.me.node_id))
            }
            Frame::Welcome(w) if w.node == id => {
                let conn = Conn::spawn(wrap(stream), id, self.inbound.clone(), self.shutdown.clone());
                Ok((conn, PeerInfo { api_addr: w.api_addr, pristine: w.pristine }))
            }
            Frame::Welcome(w) => Err(format!("expected node {id} at {addr}, found node {}", w.node)),
            Frame::Refused(reason) => {
                tracing::error!(peer = id, %addr, %reason, "peer refused the handshake");
                Err(reason)
            }
            _ => Err("unexpected handshake reply".into()),
        }
    }
}

/// The peer's registered connection if it is live, else a live spare, which becomes the
/// registered one.
fn live_conn(peer: &Peer) -> Option<Arc<Conn>> {
    if let Some(c) = peer.conn.borrow().as_ref().filter(|c| !c.is_closed()) {
        return Some(c.clone());
    }
    let mut spares = peer.spares.lock().unwrap_or_else(|e| e.into_inner());
    spares.retain(|c| !c.is_closed());
    let spare = spares.pop()?;
    tracing::info!(peer = spare.peer(), "registered connection closed; using another live one from the same peer");
    peer.conn.send_replace(Some(spare.clone()));
    Some(spare)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

    use super::*;
    use crate::rpc::RpcRequest;

    /// Answers every request with the id of the node that answered.
    struct Echo(NodeId);

    impl Inbound for Echo {
        fn handle(
            &self,
            _from: NodeId,
            _group: GroupId,
            _req: RpcRequest,
        ) -> Pin<Box<dyn Future<Output = RpcResponse> + Send>> {
            let me = self.0;
            Box::pin(async move { RpcResponse::App(me.to_be_bytes().to_vec()) })
        }
    }

    /// A connected pair of established connections: (ours, the peer's end).
    async fn pair(peer: NodeId, shutdown: &watch::Receiver<bool>) -> (Arc<Conn>, Arc<Conn>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        let shutdown = shutdown.clone();
        let ours = Conn::spawn(Stream::Plain(b.unwrap().0), peer, Arc::new(Echo(2)), shutdown.clone());
        let theirs = Conn::spawn(Stream::Plain(a.unwrap()), 2, Arc::new(Echo(peer)), shutdown);
        (ours, theirs)
    }

    /// Our established end, and the peer's end as a plain socket (dropping it closes ours).
    async fn raw_pair(peer: NodeId, shutdown: &watch::Receiver<bool>) -> (Arc<Conn>, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (Conn::spawn(Stream::Plain(b.unwrap().0), peer, Arc::new(Echo(2)), shutdown.clone()), a.unwrap())
    }

    fn pool(shutdown: &watch::Receiver<bool>) -> Arc<PeerPool> {
        let me = LocalIdentity {
            cluster_id: "c".into(),
            node_id: 2,
            api_addr: String::new(),
            raft_addr: "127.0.0.1:1".into(),
            source_ip: None,
            tls: None,
        };
        PeerPool::new(me, Arc::new(Echo(2)), false, shutdown.clone())
    }

    fn info() -> PeerInfo {
        PeerInfo { api_addr: String::new(), pristine: false }
    }

    #[tokio::test]
    async fn a_stale_handshake_finishing_last_does_not_cut_the_peer_off() {
        let (_keep, shutdown) = watch::channel(false);
        let pool = pool(&shutdown);
        // The peer's live connection is accepted first; a dial it already gave up on finishes
        // its handshake afterwards and then closes.
        let (live, _live_peer_end) = pair(1, &shutdown).await;
        let (stale, stale_peer_end) = raw_pair(1, &shutdown).await;
        pool.accepted(1, live, info(), "127.0.0.1:9");
        pool.accepted(1, stale.clone(), info(), "127.0.0.1:9");
        drop(stale_peer_end);
        tokio::time::timeout(Duration::from_secs(5), stale.closed()).await.unwrap();
        let resp = pool.call(1, 0, RpcRequest::App { topic: 0, body: vec![] }, Duration::from_secs(5)).await;
        assert!(
            matches!(&resp, Ok(RpcResponse::App(b)) if *b == 1u64.to_be_bytes()),
            "the live spare answers: {resp:?}"
        );
        assert_eq!(pool.connected(), vec![1]);
    }
}
