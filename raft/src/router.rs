//! Routing: any node sends a group's writes and reads to that group's leader.
//!
//! The leader comes from the local replica's metrics when this node hosts the group, else from a
//! cache fed by `NotLeader` hints and successful answers, else from the group's replicas in turn.
//! Writes are retried across leader changes until the deadline; commands are idempotent (apply
//! deduplicates on the client message id), so a retry never makes a second message. A write
//! whose fate is unknown is reported as [`AppError::Unknown`], never as failed.
//!
//! A command is encoded once, here; writes for another node go through that node's forwarder
//! (one task per peer), which sends every command waiting for the peer in one `WriteBatch` RPC
//! and keeps a few such RPCs in flight: under load one RPC carries many commands, and an idle
//! gateway adds no wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::batch::EncodedCommand;
use crate::command::ChatCommand;
use crate::command::CommandOutcome;
use crate::node::GroupHandle;
use crate::node::Node;
use crate::rpc::AppError;
use crate::rpc::ReadQuery;
use crate::rpc::ReadResult;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::transport::CallError;
use crate::types::GroupId;
use crate::types::NodeId;

/// Deadline of one forwarded call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Commands queued for one peer's forwarder at most.
const FORWARD_QUEUE: usize = 16_384;
/// Commands in one forwarded batch at most.
const FORWARD_BATCH_MAX: usize = 1024;
/// Batches in flight to one peer at most.
const FORWARD_IN_FLIGHT: usize = 8;

type Forward = (GroupId, EncodedCommand, oneshot::Sender<Result<CommandOutcome, AppError>>);

pub struct Router {
    node: Node,
    leaders: Mutex<HashMap<GroupId, NodeId>>,
    forwarders: Mutex<HashMap<NodeId, mpsc::Sender<Forward>>>,
}

/// Why routed work gave up.
enum Failure {
    /// An answer that retrying cannot change.
    Definite(AppError),
    /// The deadline passed; `maybe_applied` when some attempt may have taken effect.
    Deadline { last: AppError, maybe_applied: bool },
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed by the leader with a quorum round (`ensure_linearizable`).
    Linearizable,
    /// Whatever a replica has applied; this node's own replica when it has one.
    Local,
}

impl Router {
    pub fn new(node: Node) -> Self {
        Router { node, leaders: Mutex::new(HashMap::new()), forwarders: Mutex::new(HashMap::new()) }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    fn cached(&self, g: GroupId) -> Option<NodeId> {
        self.leaders.lock().unwrap_or_else(|e| e.into_inner()).get(&g).copied()
    }

    fn remember(&self, g: GroupId, leader: Option<NodeId>) {
        let mut m = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        match leader {
            Some(l) => m.insert(g, l),
            None => m.remove(&g),
        };
    }

    /// Where to send the next attempt for `g`.
    fn target(&self, g: GroupId, attempt: usize) -> Option<NodeId> {
        if let Some(l) = self.node.group(g).and_then(|h| h.leader()) {
            return Some(l);
        }
        if let Some(l) = self.cached(g) {
            return Some(l);
        }
        let layout = self.node.layout()?;
        let replicas = layout.replicas(g);
        if replicas.is_empty() {
            return None;
        }
        Some(replicas[attempt % replicas.len()])
    }

    /// Commits `cmd` in group `g` and returns its outcome.
    pub async fn write(&self, g: GroupId, cmd: ChatCommand) -> Result<CommandOutcome, AppError> {
        let cmd = EncodedCommand::encode(&cmd).map_err(|e| AppError::Unavailable(format!("encoding: {e}")))?;
        let me = self.node.id();
        let res = self
            .with_leader(g, true, |target| {
                let cmd = cmd.clone();
                async move {
                    if target == me {
                        match self.node.group(g) {
                            Some(h) => self.node.propose_local(&h, cmd).await,
                            None => Err(AppError::GroupNotHosted),
                        }
                    } else {
                        self.forward(target, g, cmd).await
                    }
                }
            })
            .await;
        match res {
            Ok(out) => Ok(out),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Deadline { last, maybe_applied: true }) => {
                Err(AppError::Unknown(format!("deadline passed; last error: {last}")))
            }
            Err(Failure::Deadline { last, maybe_applied: false }) => {
                Err(AppError::Unavailable(format!("deadline passed; last error: {last}")))
            }
        }
    }

    /// Reads from group `g` at the given consistency.
    pub async fn read(&self, g: GroupId, query: ReadQuery, consistency: Consistency) -> Result<ReadResult, AppError> {
        if consistency == Consistency::Local {
            if let Some(h) = self.node.group(g) {
                return read_local(&h, &query, false, self.node.id()).await;
            }
        }
        let linearizable = consistency == Consistency::Linearizable;
        let me = self.node.id();
        let res = self
            .with_leader(g, linearizable, |target| {
                let query = query.clone();
                async move {
                    if target == me {
                        match self.node.group(g) {
                            Some(h) => read_local(&h, &query, linearizable, target).await,
                            None => Err(AppError::GroupNotHosted),
                        }
                    } else {
                        match self.call(target, g, RpcRequest::Read { query, linearizable }).await? {
                            RpcResponse::Read(r) => r,
                            RpcResponse::GroupNotHosted => Err(AppError::GroupNotHosted),
                            _ => Err(AppError::Unknown("unexpected response".into())),
                        }
                    }
                }
            })
            .await;
        match res {
            Ok(r) => Ok(r),
            Err(Failure::Definite(e)) => Err(e),
            Err(Failure::Deadline { last, .. }) => {
                Err(AppError::Unavailable(format!("deadline passed; last error: {last}")))
            }
        }
    }

    /// Runs `attempt_at(target)` against the group's leader (as best known) until it succeeds,
    /// fails definitely, or the deadline passes; updates the leader cache along the way.
    async fn with_leader<T, F, Fut>(&self, g: GroupId, remember: bool, mut attempt_at: F) -> Result<T, Failure>
    where
        F: FnMut(NodeId) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        let deadline = tokio::time::Instant::now() + self.node.inner.config.write_timeout;
        let mut maybe_applied = false;
        let mut last = AppError::Unavailable("no leader found".into());
        let mut attempt = 0;
        while tokio::time::Instant::now() < deadline {
            attempt += 1;
            let Some(target) = self.target(g, attempt) else {
                backoff().await;
                continue;
            };
            match attempt_at(target).await {
                Ok(v) => {
                    if remember {
                        self.remember(g, Some(target));
                    }
                    return Ok(v);
                }
                Err(e) => {
                    if !self.retryable(g, target, &e, &mut maybe_applied).await {
                        return Err(Failure::Definite(e));
                    }
                    last = e;
                }
            }
        }
        Err(Failure::Deadline { last, maybe_applied })
    }

    /// Polls recent events of group `g` from `from` (a replica), waiting up to `wait_ms`.
    pub async fn poll_events(
        &self,
        g: GroupId,
        from: NodeId,
        epoch: u64,
        after: Option<u64>,
        wait_ms: u32,
    ) -> Result<crate::events::EventBatch, AppError> {
        if from == self.node.id() && self.node.group(g).is_some() {
            let wait = Duration::from_millis(u64::from(wait_ms));
            return Ok(self.node.events().poll(g, epoch, after, wait).await);
        }
        match self.call(from, g, RpcRequest::PollEvents { epoch, after, wait_ms }).await? {
            RpcResponse::Events(b) => Ok(b),
            RpcResponse::GroupNotHosted => Err(AppError::GroupNotHosted),
            _ => Err(AppError::Unknown("unexpected response".into())),
        }
    }

    async fn call(&self, target: NodeId, g: GroupId, req: RpcRequest) -> Result<RpcResponse, AppError> {
        call(&self.node, target, g, req).await
    }

    /// Sends `cmd` for group `g` to `target` through that peer's forwarder.
    async fn forward(&self, target: NodeId, g: GroupId, cmd: EncodedCommand) -> Result<CommandOutcome, AppError> {
        let tx = {
            let mut map = self.forwarders.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(target)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
                    tokio::spawn(forward_loop(self.node.clone(), target, rx));
                    tx
                })
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        tx.try_send((g, cmd, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                AppError::Overloaded(format!("forwarding queue to node {target} is full"))
            }
            mpsc::error::TrySendError::Closed(_) => AppError::Unavailable("node is shutting down".into()),
        })?;
        answer.await.map_err(|_| AppError::Unknown("forwarder stopped".into()))?
    }

    /// Updates routing from an error; returns whether to try again.
    async fn retryable(&self, g: GroupId, target: NodeId, e: &AppError, maybe_applied: &mut bool) -> bool {
        match e {
            AppError::NotLeader { leader: Some(l) } if *l != target => {
                self.remember(g, Some(*l));
                *maybe_applied = true;
                true
            }
            AppError::NotLeader { .. } => {
                self.remember(g, None);
                *maybe_applied = true;
                backoff().await;
                true
            }
            AppError::GroupNotHosted | AppError::Unavailable(_) => {
                self.remember(g, None);
                backoff().await;
                true
            }
            AppError::Unknown(_) => {
                self.remember(g, None);
                *maybe_applied = true;
                backoff().await;
                true
            }
            AppError::Overloaded(_) | AppError::NoSuchChat => false,
        }
    }
}

async fn call(node: &Node, target: NodeId, g: GroupId, req: RpcRequest) -> Result<RpcResponse, AppError> {
    node.pool().call(target, g, req, CALL_TIMEOUT).await.map_err(|e| match e {
        CallError::Unreachable => AppError::Unavailable(format!("node {target} unreachable")),
        CallError::Timeout => AppError::Unknown(format!("node {target} did not answer in time")),
        CallError::Encode(m) => AppError::Unavailable(m),
    })
}

/// One peer's forwarder: every command waiting goes in one `WriteBatch`; a few batches fly at
/// once. Ends at shutdown, dropping what waits (its callers see `Unknown`, as for any lost RPC).
async fn forward_loop(node: Node, target: NodeId, mut rx: mpsc::Receiver<Forward>) {
    let mut shutdown = node.inner.shutdown.clone();
    let mut in_flight = FuturesUnordered::new();
    let mut buf = Vec::with_capacity(FORWARD_BATCH_MAX);
    let mut open = true;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            n = rx.recv_many(&mut buf, FORWARD_BATCH_MAX), if open && in_flight.len() < FORWARD_IN_FLIGHT => {
                if n == 0 {
                    open = false;
                    continue;
                }
                let mut items = Vec::with_capacity(n);
                let mut replies = Vec::with_capacity(n);
                for (g, cmd, reply) in buf.drain(..) {
                    items.push((g, cmd));
                    replies.push(reply);
                }
                let node = node.clone();
                in_flight.push(async move { (call(&node, target, 0, RpcRequest::WriteBatch(items)).await, replies) });
            }
            Some((res, replies)) = in_flight.next(), if !in_flight.is_empty() => {
                match res {
                    Ok(RpcResponse::WriteBatch(outs)) if outs.len() == replies.len() => {
                        for (reply, out) in replies.into_iter().zip(outs) {
                            let _ = reply.send(out);
                        }
                    }
                    Ok(_) => fail_all(replies, AppError::Unknown("unexpected response to a forwarded batch".into())),
                    Err(e) => fail_all(replies, e),
                }
            }
            else => return,
        }
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<CommandOutcome, AppError>>>, e: AppError) {
    for r in replies {
        let _ = r.send(Err(e.clone()));
    }
}

async fn backoff() {
    let ms = rand::thread_rng().gen_range(30..120);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs `query` on this node's replica of `g`; with `linearizable`, only as a confirmed leader.
pub async fn read_local(
    g: &GroupHandle,
    query: &ReadQuery,
    linearizable: bool,
    me: NodeId,
) -> Result<ReadResult, AppError> {
    if linearizable {
        if let Err(e) = g.raft.ensure_linearizable().await {
            return Err(match e.forward_to_leader() {
                Some(f) => AppError::NotLeader { leader: f.leader_id.filter(|l| *l != me) },
                None => AppError::Unknown(e.to_string()),
            });
        }
    }
    execute(&g.state, query).map_err(|e| match e {
        QueryError::NoSuchChat => AppError::NoSuchChat,
        QueryError::Reserved => AppError::Unknown(e.to_string()),
        QueryError::Storage(s) => AppError::Unavailable(format!("storage: {s}")),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no such chat")]
    NoSuchChat,
    /// The cluster layout (and its token secret) is never answered to a query.
    #[error("the replicated keys under meta/ are not readable through queries")]
    Reserved,
    #[error(transparent)]
    Storage(#[from] raftchat_storage::StorageError),
}

/// Keys no query answers: the cluster layout, which holds the session-token secret. A node
/// reads its own layout from its own replica; nothing asks another node for it.
const RESERVED_PREFIX: &[u8] = b"meta/";

/// Whether a scan of `prefix` could reach a reserved key.
fn covers_reserved(prefix: &[u8]) -> bool {
    prefix.starts_with(RESERVED_PREFIX) || RESERVED_PREFIX.starts_with(prefix)
}

/// Answers a query from a group's applied state.
pub fn execute(state: &raftchat_storage::chat_store::GroupState, query: &ReadQuery) -> Result<ReadResult, QueryError> {
    match query {
        ReadQuery::History { chat, after, before, limit, newest_first } => {
            let header = state.chat(chat)?.ok_or(QueryError::NoSuchChat)?;
            let head = header.next_seq - 1;
            let from = after.saturating_add(1);
            let to = (*before).min(head + 1);
            let limit = (*limit).clamp(1, 1000) as usize;
            let mut messages = state.messages(chat, from, to, limit + 1, *newest_first)?;
            let has_more = messages.len() > limit;
            messages.truncate(limit);
            Ok(ReadResult::History { messages, has_more, head })
        }
        ReadQuery::Chat { chat, member_limit } => {
            let header = state.chat(chat)?.ok_or(QueryError::NoSuchChat)?;
            let members = state.members(chat, *member_limit as usize)?;
            Ok(ReadResult::Chat { header, members })
        }
        ReadQuery::Member { chat, user } => {
            state.chat(chat)?.ok_or(QueryError::NoSuchChat)?;
            Ok(ReadResult::Member(state.member(chat, user)?))
        }
        ReadQuery::Key { key } if key.starts_with(RESERVED_PREFIX) => Err(QueryError::Reserved),
        ReadQuery::Key { key } => Ok(ReadResult::Key(state.kv_get(key)?)),
        ReadQuery::KeyPrefix { prefix, .. } | ReadQuery::KeysAfter { prefix, .. } if covers_reserved(prefix) => {
            Err(QueryError::Reserved)
        }
        ReadQuery::KeyPrefix { prefix, limit } => Ok(ReadResult::Keys(state.kv_scan(prefix, None, *limit as usize)?)),
        ReadQuery::KeysAfter { prefix, after, limit } => {
            Ok(ReadResult::Keys(state.kv_scan(prefix, Some(after), *limit as usize)?))
        }
        ReadQuery::ChatsPastCursor { after, cursor_prefix, limit } => {
            let limit = (*limit).clamp(1, 10_000) as usize;
            let page = state.chats_after(*after, limit)?;
            let next = (page.len() == limit).then(|| page.last().map(|(c, _)| *c)).flatten();
            let mut chats = Vec::new();
            for (chat, header) in page {
                let head = header.next_seq.saturating_sub(1);
                let mut key = cursor_prefix.clone();
                key.extend_from_slice(chat.as_bytes());
                let cursor =
                    state.kv_get(&key)?.and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes)).unwrap_or(0);
                if head > cursor {
                    chats.push((chat, head, cursor));
                }
            }
            Ok(ReadResult::ChatsPastCursor { chats, next })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_and_its_secret_are_out_of_every_query() {
        assert!(crate::meta::LAYOUT_KEY.starts_with(RESERVED_PREFIX));
        for p in [&b""[..], b"m", b"meta", b"meta/", b"meta/layout"] {
            assert!(covers_reserved(p), "{p:?}");
        }
        for p in [&b"un/"[..], b"mr/", b"metab", b"n"] {
            assert!(!covers_reserved(p), "{p:?}");
        }
    }
}
