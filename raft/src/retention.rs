//! History retention: each data group's leader deletes what the cluster's policy no longer keeps.
//!
//! The policy is one record in the meta group ([`RetentionPolicy`], set with
//! `raftchat admin retention set`). Every `sweep` interval, and on demand, a node walks the
//! chats of each group it leads, decides from its applied state and its clock which seq each
//! chat is trimmed through ([`trim_point`]), and commits `Trim` commands of at most
//! [`TRIM_MAX`] messages each. Apply only deletes, so replicas stay equal; a group that lost
//! messages then takes a snapshot, after which its Raft log is purged: the disk is freed in the
//! state database, the snapshot file and the log.

use std::time::Duration;

use serde::Serialize;

use crate::command::ChatCommand;
use crate::command::CommandOutcome;
use crate::command::TRIM_MAX;
use crate::meta::read_retention;
use crate::meta::RetentionPolicy;
use crate::meta::RETENTION_KEY;
use crate::node::Node;
use crate::rpc::AppError;
use crate::types::META_GROUP;

/// Chats read per step of a sweep.
const CHATS_PER_STEP: usize = 1000;
/// How long the purge after a retention snapshot waits for that snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);
/// `Trim` commands per chat in one sweep (each deletes at most [`TRIM_MAX`]).
const TRIMS_PER_CHAT: usize = 100;

/// The seq a chat is trimmed through under `policy` at `now_ms`, or `None` when nothing goes.
/// `oldest` is `(seq, timestamp)` of its oldest stored messages, oldest first.
pub fn trim_point(next_seq: u64, oldest: &[(u64, u64)], policy: &RetentionPolicy, now_ms: u64) -> Option<u64> {
    let first = oldest.first()?.0;
    let last = next_seq.saturating_sub(1);
    let by_count = policy.max_messages.map_or(0, |n| last.saturating_sub(n));
    let by_age = policy.max_age_ms.map_or(0, |age| {
        let cutoff = now_ms.saturating_sub(age);
        oldest.iter().take_while(|(_, ts)| *ts < cutoff).last().map_or(0, |(s, _)| *s)
    });
    let through = by_count.max(by_age).min(last);
    (through >= first).then_some(through)
}

/// What one sweep did on one node.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Groups this node led and swept.
    pub groups: u32,
    pub chats: u64,
    pub removed: u64,
}

impl Node {
    /// The retention policy as this node's meta replica knows it.
    pub fn retention_policy(&self) -> RetentionPolicy {
        let Some(meta) = self.group(META_GROUP) else { return RetentionPolicy::default() };
        match meta.state.kv_get(RETENTION_KEY) {
            Ok(Some(b)) => read_retention(&b).unwrap_or_else(|e| {
                tracing::error!(cause = %e, "unreadable retention policy; keeping everything");
                RetentionPolicy::default()
            }),
            Ok(None) => RetentionPolicy::default(),
            Err(e) => {
                tracing::error!(cause = %e, "cannot read the retention policy; keeping everything");
                RetentionPolicy::default()
            }
        }
    }

    /// Applies the retention policy to every group this node leads, at time `now_ms`.
    pub async fn sweep_retention(&self, now_ms: u64) -> Result<SweepReport, AppError> {
        let policy = self.retention_policy();
        let mut report = SweepReport::default();
        if policy.keeps_everything() {
            self.snapshot_trimmed_groups().await;
            return Ok(report);
        }
        let storage = |e: raftchat_storage::StorageError| AppError::Unavailable(format!("storage: {e}"));
        for h in self.groups() {
            if h.id == META_GROUP || h.leader() != Some(self.id()) {
                continue;
            }
            report.groups += 1;
            let mut removed_here = 0u64;
            let mut after = None;
            loop {
                let chats = h.state.chats_after(after, CHATS_PER_STEP).map_err(storage)?;
                for (chat, header) in &chats {
                    report.chats += 1;
                    for _ in 0..TRIMS_PER_CHAT {
                        let oldest = h.state.oldest_messages(chat, TRIM_MAX).map_err(storage)?;
                        let Some(through) = trim_point(header.next_seq, &oldest, &policy, now_ms) else { break };
                        let trim = ChatCommand::Trim { chat: *chat, through_seq: through };
                        let trim = crate::batch::EncodedCommand::encode(&trim)
                            .map_err(|e| AppError::Unavailable(format!("encoding a trim: {e}")))?;
                        match self.propose_local(&h, trim).await? {
                            CommandOutcome::Trimmed { removed, .. } => {
                                removed_here += u64::from(removed);
                                if (removed as usize) < TRIM_MAX {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                if chats.len() < CHATS_PER_STEP {
                    break;
                }
                after = chats.last().map(|(c, _)| *c);
            }
            if removed_here > 0 {
                tracing::info!(group = h.id, removed = removed_here, "retention removed old messages");
            }
            report.removed += removed_here;
        }
        self.snapshot_trimmed_groups().await;
        Ok(report)
    }

    /// Every replica (followers too) that applied deletions takes a snapshot without them, so
    /// that the Raft log still holding them can be purged.
    async fn snapshot_trimmed_groups(&self) {
        let keep = self.inner.config.logs_kept_after_snapshot;
        for h in self.groups() {
            if !h.state.take_trimmed() {
                continue;
            }
            let applied = h.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
            if let Err(e) = h.raft.trigger().snapshot().await {
                tracing::warn!(group = h.id, cause = %e, "snapshot after retention");
                continue;
            }
            // Then purge right away, below openraft's purge batch size too: that is where the
            // deleted messages' log entries are.
            let mut shutdown = self.inner.shutdown.clone();
            tokio::spawn(async move {
                let mut rx = h.raft.metrics();
                let built = rx.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied));
                tokio::select! {
                    r = tokio::time::timeout(SNAPSHOT_WAIT, built) => if !matches!(r, Ok(Ok(_))) { return },
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                let upto = applied.saturating_sub(keep);
                if let Err(e) = h.raft.trigger().purge_log(upto).await {
                    tracing::warn!(group = h.id, cause = %e, "purge after retention");
                }
            });
        }
    }

    /// Sweeps every `every` until shutdown.
    pub(crate) async fn run_retention(&self, every: Duration) {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            if let Err(e) = self.sweep_retention(now_ms).await {
                tracing::warn!(cause = %e, "retention sweep stopped early");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_points() {
        let msgs: Vec<(u64, u64)> = (1..=10).map(|s| (s, s * 1000)).collect();
        let keep_all = RetentionPolicy::default();
        assert_eq!(trim_point(11, &msgs, &keep_all, 1_000_000), None);
        let count = RetentionPolicy { max_messages: Some(4), max_age_ms: None };
        assert_eq!(trim_point(11, &msgs, &count, 0), Some(6));
        assert_eq!(trim_point(11, &msgs[6..], &count, 0), None, "already trimmed");
        let age = RetentionPolicy { max_age_ms: Some(3500), max_messages: None };
        // now 10_000: cutoff 6_500, messages 1..=6 are older.
        assert_eq!(trim_point(11, &msgs, &age, 10_000), Some(6));
        assert_eq!(trim_point(11, &msgs, &age, 1_000), None, "nothing is old yet");
        let both = RetentionPolicy { max_age_ms: Some(3500), max_messages: Some(8) };
        assert_eq!(trim_point(11, &msgs, &both, 10_000), Some(6), "the stricter rule wins");
        assert_eq!(trim_point(1, &[], &count, 0), None, "an empty chat");
        // A count larger than what is stored keeps everything.
        let big = RetentionPolicy { max_messages: Some(100), max_age_ms: None };
        assert_eq!(trim_point(11, &msgs, &big, 0), None);
    }
}
