//! Proposal batching: commands for one group that arrive together ride in one Raft entry.
//!
//! Each group has one batcher task. It takes every waiting proposal (up to `batch_max`) into one
//! `Request::Chat` entry and proposes it; up to `in_flight_max` entries of a group are in flight
//! at once. While they replicate, new proposals queue up and form the next, larger batch: the cost
//! of a Raft round and an fsync per message falls as load rises.

use std::sync::Arc;

use openraft::error::ClientWriteError;
use openraft::error::RaftError as OpenRaftError;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio::sync::Semaphore;

use crate::command::ChatCommand;
use crate::command::CommandOutcome;
use crate::rpc::AppError;
use crate::types::GroupId;
use crate::types::NodeId;
use crate::types::Raft;
use crate::types::Request;
use crate::types::Response;

type Reply = oneshot::Sender<Result<CommandOutcome, AppError>>;

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(ChatCommand, Reply)>,
    /// Commands accepted for proposal since start.
    proposed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Batcher {
    pub fn spawn(
        raft: Raft,
        group: GroupId,
        queue_len: usize,
        batch_max: usize,
        in_flight_max: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(queue_len);
        let span = tracing::info_span!("group", group);
        tokio::spawn(tracing::Instrument::instrument(run(raft, group, rx, batch_max, in_flight_max, shutdown), span));
        Batcher { tx, proposed: Default::default() }
    }

    /// Proposes `cmd`; resolves once it is applied (or surely failed, or may have applied).
    pub async fn propose(&self, cmd: ChatCommand) -> Result<CommandOutcome, AppError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send((cmd, tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AppError::Overloaded("proposal queue is full".into()),
            mpsc::error::TrySendError::Closed(_) => AppError::Unavailable("group is shutting down".into()),
        })?;
        self.proposed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rx.await.map_err(|_| AppError::Unknown("proposal dropped while in flight".into()))?
    }

    /// Commands accepted for proposal on this node since it started.
    pub fn proposed(&self) -> u64 {
        self.proposed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn run(
    raft: Raft,
    group: GroupId,
    mut rx: mpsc::Receiver<(ChatCommand, Reply)>,
    batch_max: usize,
    in_flight_max: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let mut buf = Vec::with_capacity(batch_max);
    loop {
        // Wait for a free slot first, so proposals keep piling into the next batch meanwhile.
        let permit = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let n = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            n = rx.recv_many(&mut buf, batch_max) => n,
        };
        if n == 0 {
            return;
        }
        let (cmds, replies): (Vec<ChatCommand>, Vec<Reply>) = buf.drain(..).unzip();
        let raft = raft.clone();
        tokio::spawn(async move {
            let res = raft.client_write(Request::Chat(cmds)).await;
            drop(permit);
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
        });
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
