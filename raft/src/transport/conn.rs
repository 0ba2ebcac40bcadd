//! One established node-to-node connection: a reader task and a writer task.
//!
//! Both nodes send requests and responses over the same connection. The writer has two lanes:
//! the control lane (votes, heartbeats, small appends, every response) always goes first; the
//! bulk lane (snapshot chunks, large appends) is written only when the control lane is empty, so
//! a snapshot never delays a heartbeat past its deadline. Frames waiting in the control lane are
//! coalesced into one write.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::watch;

use super::frame;
use super::frame::Frame;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::GroupId;
use crate::types::NodeId;

/// Frames larger than this go to the bulk lane.
const BULK_THRESHOLD: usize = 64 * 1024;
const CONTROL_LANE_LEN: usize = 8192;
const BULK_LANE_LEN: usize = 16;
/// Bytes coalesced into one write at most.
const WRITE_COALESCE_BYTES: usize = 1024 * 1024;
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// After this many timeouts in a row the connection is presumed dead and dropped.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 8;

/// Serves requests that arrive from the peer.
pub trait Inbound: Send + Sync + 'static {
    fn handle(
        &self,
        from: NodeId,
        group: GroupId,
        req: RpcRequest,
    ) -> Pin<Box<dyn Future<Output = RpcResponse> + Send>>;
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("peer unreachable")]
    Unreachable,
    #[error("timed out")]
    Timeout,
    #[error("request could not be encoded: {0}")]
    Encode(String),
}

/// The read half of an established connection (plain TCP or TLS).
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of an established connection.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// An established stream, in halves: plain TCP splits without a lock; TLS through tokio's split.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<dyn TlsIo>),
}

/// A TLS stream (either side of the handshake).
pub trait TlsIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> TlsIo for T {}

impl Stream {
    fn halves(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tls(tls) => {
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<RpcResponse>>>>;

pub struct Conn {
    peer: NodeId,
    control: mpsc::Sender<Vec<u8>>,
    bulk: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    timeouts_in_row: AtomicU32,
    closed_tx: watch::Sender<bool>,
}

/// Removes a pending call when the caller stops waiting (timeout or cancellation).
struct PendingGuard<'a>(&'a Pending, u64);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<RpcResponse>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// Starts the reader and writer of an established (handshaken) stream.
    pub fn spawn(
        stream: Stream,
        peer: NodeId,
        inbound: Arc<dyn Inbound>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Conn> {
        let (rd, wr) = stream.halves();
        let (control, control_rx) = mpsc::channel(CONTROL_LANE_LEN);
        let (bulk, bulk_rx) = mpsc::channel(BULK_LANE_LEN);
        let (closed_tx, _) = watch::channel(false);
        let conn = Arc::new(Conn {
            peer,
            control,
            bulk,
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
            timeouts_in_row: AtomicU32::new(0),
            closed_tx,
        });
        let c = conn.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            let res = write_loop(wr, control_rx, bulk_rx, sd, c.closed_tx.subscribe()).await;
            tracing::debug!(peer = c.peer, ?res, "connection writer ended");
            c.close();
        });
        let c = conn.clone();
        tokio::spawn(async move {
            let res = read_loop(rd, &c, inbound, shutdown).await;
            tracing::debug!(peer = c.peer, ?res, "connection reader ended");
            c.close();
        });
        conn
    }

    pub fn peer(&self) -> NodeId {
        self.peer
    }

    pub fn is_closed(&self) -> bool {
        *self.closed_tx.borrow()
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        let mut rx = self.closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    fn close(&self) {
        self.closed_tx.send_replace(true);
        // Dropping the senders fails every waiting call at once.
        lock(&self.pending).clear();
    }

    /// Sends a request to the peer and waits for its response.
    pub async fn call(&self, group: GroupId, body: RpcRequest, timeout: Duration) -> Result<RpcResponse, CallError> {
        if self.is_closed() {
            return Err(CallError::Unreachable);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bulk_kind = matches!(body, RpcRequest::Snapshot(_));
        let bytes = frame::encode(&Frame::Request { id, group, body }).map_err(|e| CallError::Encode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let _guard = PendingGuard(&self.pending, id);
        let lane = if bulk_kind || bytes.len() > BULK_THRESHOLD { &self.bulk } else { &self.control };
        let res = tokio::time::timeout(timeout, async {
            lane.send(bytes).await.map_err(|_| CallError::Unreachable)?;
            rx.await.map_err(|_| CallError::Unreachable)
        })
        .await;
        match res {
            Ok(r) => {
                self.timeouts_in_row.store(0, Ordering::Relaxed);
                r
            }
            Err(_) => {
                if self.timeouts_in_row.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_RECONNECT {
                    tracing::warn!(peer = self.peer, "too many timeouts in a row; dropping connection");
                    self.close();
                }
                Err(CallError::Timeout)
            }
        }
    }

    fn respond(&self, id: u64, body: RpcResponse) {
        match frame::encode(&Frame::Response { id, body }) {
            Ok(bytes) => {
                let lane = if bytes.len() > BULK_THRESHOLD { &self.bulk } else { &self.control };
                if let Err(e) = lane.try_send(bytes) {
                    // A full lane means the peer does not read; it will time out and retry.
                    tracing::warn!(peer = self.peer, cause = %e, "dropping response: lane full or closed");
                }
            }
            Err(e) => tracing::error!(peer = self.peer, cause = %e, "could not encode response"),
        }
    }
}

async fn write_loop(
    mut wr: WriteHalf,
    mut control: mpsc::Receiver<Vec<u8>>,
    mut bulk: mpsc::Receiver<Vec<u8>>,
    mut shutdown: watch::Receiver<bool>,
    mut closed: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_COALESCE_BYTES);
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = closed.wait_for(|c| *c) => return Ok(()),
            f = control.recv() => f,
            f = bulk.recv() => f,
        };
        let Some(first) = first else { return Ok(()) };
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < WRITE_COALESCE_BYTES {
            match control.try_recv() {
                Ok(f) => buf.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        wr.write_all(&buf).await?;
        // TLS holds records until flushed; on plain TCP this is free.
        wr.flush().await?;
    }
}

type Reader = tokio::io::BufReader<ReadHalf>;

/// Reads one frame, handing the reader back: a read in progress is never dropped half-way.
async fn read_one(mut rd: Reader) -> (Reader, Result<Frame, frame::FrameError>) {
    let f = frame::read(&mut rd).await;
    (rd, f)
}

/// Requests of one connection being handled at once at most; past it, reading pauses.
const HANDLING_MAX: usize = 4096;

async fn read_loop(
    rd: ReadHalf,
    conn: &Arc<Conn>,
    inbound: Arc<dyn Inbound>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), frame::FrameError> {
    // Buffered: one read syscall brings in many frames instead of two syscalls per frame.
    let rd = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, rd);
    let mut closed = conn.closed_tx.subscribe();
    let mut reading = Box::pin(read_one(rd));
    // Requests are handled concurrently, as futures of this task (no task each): one slow
    // group never stalls the others on this connection.
    let mut handling = FuturesUnordered::new();
    loop {
        let f = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = closed.wait_for(|c| *c) => return Ok(()),
            Some((id, resp)) = handling.next(), if !handling.is_empty() => {
                conn.respond(id, resp);
                continue;
            }
            (rd, f) = &mut reading, if handling.len() < HANDLING_MAX => {
                reading = Box::pin(read_one(rd));
                f?
            }
        };
        match f {
            Frame::Request { id, group, body } => {
                let inbound = inbound.clone();
                let peer = conn.peer;
                handling.push(async move { (id, inbound.handle(peer, group, body).await) });
            }
            Frame::Response { id, body } => {
                if let Some(tx) = lock(&conn.pending).remove(&id) {
                    let _ = tx.send(body);
                }
            }
            other => {
                tracing::warn!(peer = conn.peer, frame = ?std::mem::discriminant(&other), "unexpected frame after handshake");
                return Ok(());
            }
        }
    }
}
