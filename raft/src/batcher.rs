//! Proposal batching: commands for one group that arrive together ride in one Raft entry.
//!
//! Each group has one batcher task. It takes every waiting proposal (up to `batch_max`) into one
//! `Request::Chat` entry and proposes it; up to `in_flight_max` entries of a group are in flight
//! at once. While they replicate, new proposals queue up and form the next, larger batch: the cost
//! of a Raft round and an fsync per message falls as load rises. The entries in flight are
//! futures polled by the batcher task itself, not a task each.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use openraft::error::ClientWriteError;
use openraft::error::RaftError as OpenRaftError;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::watch;

use crate::batch::CommandBatch;
use crate::batch::EncodedCommand;
use crate::command::CommandOutcome;
use crate::rpc::AppError;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::Raft;
use crate::types::Request;
use crate::types::Response;

type Reply = oneshot::Sender<Result<CommandOutcome, AppError>>;

/// What a node's batchers proposed, for the metrics (commands per entry).
#[derive(Debug, Default)]
pub struct ProposalStats {
    pub entries: AtomicU64,
    pub commands: AtomicU64,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(EncodedCommand, Reply)>,
    /// Commands accepted for proposal since start.
    proposed: Arc<AtomicU64>,
}

impl Batcher {
    pub fn spawn(
        raft: Raft,
        group: GroupId,
        limits: (usize, usize, usize),
        stats: Arc<ProposalStats>,
        shutdown: watch::Receiver<bool>,
    ) -> Batcher {
        let (queue_len, batch_max, in_flight_max) = limits;
        let (tx, rx) = mpsc::channel(queue_len);
        let span = tracing::info_span!("group", group);
        let job = run(raft, group, rx, batch_max, in_flight_max.max(1), stats, shutdown);
        tokio::spawn(tracing::Instrument::instrument(job, span));
        Batcher { tx, proposed: Default::default() }
    }

    /// Proposes `cmd`; resolves once it is applied (or surely failed, or may have applied).
    pub async fn propose(&self, cmd: EncodedCommand) -> Result<CommandOutcome, AppError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send((cmd, tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AppError::Overloaded("proposal queue is full".into()),
            mpsc::error::TrySendError::Closed(_) => AppError::Unavailable("group is shutting down".into()),
        })?;
        self.proposed.fetch_add(1, Ordering::Relaxed);
        rx.await.map_err(|_| AppError::Unknown("proposal dropped while in flight".into()))?
    }

    /// Commands accepted for proposal on this node since it started.
    pub fn proposed(&self) -> u64 {
        self.proposed.load(Ordering::Relaxed)
    }
}

async fn run(
    raft: Raft,
    group: GroupId,
    mut rx: mpsc::Receiver<(EncodedCommand, Reply)>,
    batch_max: usize,
    in_flight_max: usize,
    stats: Arc<ProposalStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut buf = Vec::with_capacity(batch_max);
    let mut open = true;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            // Only with a free slot: meanwhile proposals keep piling into the next batch.
            n = rx.recv_many(&mut buf, batch_max), if open && in_flight.len() < in_flight_max => {
                if n == 0 {
                    open = false;
                    continue;
                }
                let (cmds, replies): (Vec<EncodedCommand>, Vec<Reply>) = buf.drain(..).unzip();
                stats.entries.fetch_add(1, Ordering::Relaxed);
                stats.commands.fetch_add(cmds.len() as u64, Ordering::Relaxed);
                let raft = raft.clone();
                in_flight.push(async move {
                    let res = raft.client_write(Request::Chat(CommandBatch::of(&cmds))).await;
                    (res, replies)
                });
            }
            Some((res, replies)) = in_flight.next(), if !in_flight.is_empty() => answer(group, res, replies),
            else => return,
        }
    }
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
    OpenRaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
>;

fn answer(group: GroupId, res: WriteResult, replies: Vec<Reply>) {
    match res {
        Ok(r) => match r.data {
            Response::Chat(outs) if outs.len() == replies.len() => {
                for (reply, out) in replies.into_iter().zip(outs) {
                    let _ = reply.send(Ok(out));
                }
            }
            other => {
                tracing::error!(group, ?other, "batch response does not match the batch");
                fail_all(replies, AppError::Unknown("mismatched batch response".into()));
            }
        },
        Err(e) => fail_all(replies, map_write_error(e)),
    }
}

fn fail_all(replies: Vec<Reply>, e: AppError) {
    for r in replies {
        let _ = r.send(Err(e.clone()));
    }
}

/// A write error never proves the entry was not committed, except when this node was not the
/// leader to begin with; retries are safe because apply deduplicates.
fn map_write_error(e: OpenRaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>) -> AppError {
    match e {
        OpenRaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AppError::NotLeader { leader: f.leader_id },
        OpenRaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => AppError::Unknown(c.to_string()),
        OpenRaftError::Fatal(f) => AppError::Unknown(format!("raft stopped: {f}")),
    }
}
