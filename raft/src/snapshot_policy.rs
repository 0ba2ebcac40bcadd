//! When each hosted group takes a snapshot.
//!
//! A snapshot file holds the group's whole state, so with openraft's fixed policy (every N
//! entries) the cost of snapshotting grows with the state while its frequency does not: a
//! group with twice the history paid twice per entry, and the node slowed down the longer it
//! ran (docs/BENCHMARKS.md, the soak). This policy keeps the cost per log byte bounded: a
//! group snapshots once at least `snapshot_every_logs` entries have been applied since its
//! last snapshot **and** its unpurged log is at least `1 / LOG_SHARE` of its last snapshot's
//! size. Each snapshot then writes at most `LOG_SHARE` bytes per byte of log it lets go, and
//! the log on disk stays under that share of the state (plus the entries kept behind it).
//!
//! Snapshots are taken one at a time per node, so 64 groups crossing the threshold together
//! do not all copy their state at once.

use std::time::Duration;

use crate::node::GroupHandle;
use crate::node::Node;

/// A group's log must reach 1 / LOG_SHARE of its last snapshot before the next one.
pub const LOG_SHARE: u64 = 2;
/// How often the thresholds are checked.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long one snapshot may take before the policy moves on to the next group.
const BUILD_WAIT: Duration = Duration::from_secs(60);

/// Whether a group with these figures should snapshot now.
pub fn due(applied_since: u64, every_logs: u64, log_bytes: u64, snapshot_bytes: u64) -> bool {
    applied_since >= every_logs.max(1) && log_bytes.saturating_mul(LOG_SHARE) >= snapshot_bytes
}

impl Node {
    pub(crate) async fn run_snapshot_policy(&self) {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            for h in self.groups() {
                if *shutdown.borrow() {
                    return;
                }
                let Some(last) = self.snapshot_due(&h) else { continue };
                if let Err(e) = h.raft.trigger().snapshot().await {
                    tracing::warn!(group = h.id, cause = %e, "could not trigger a snapshot");
                    continue;
                }
                self.wait_for_snapshot(&h, last, &mut shutdown).await;
            }
        }
    }

    /// The index of the group's last snapshot, when `h` is due for the next one.
    fn snapshot_due(&self, h: &GroupHandle) -> Option<u64> {
        let (applied, snapshot) = {
            let m = h.raft.metrics();
            let m = m.borrow();
            (m.last_applied.map_or(0, |l| l.index), m.snapshot.map_or(0, |l| l.index))
        };
        let (since, every) = (applied.saturating_sub(snapshot), self.inner.config.snapshot_every_logs);
        if since < every {
            // Most groups, most of the time: no need to look at file sizes.
            return None;
        }
        let (log_bytes, snapshot_bytes) = self.group_bytes(h.id);
        due(since, every, log_bytes, snapshot_bytes).then_some(snapshot)
    }

    /// Waits until the group has a snapshot newer than `last`. (openraft ignores a trigger
    /// that finds a build already running; that build counts.)
    async fn wait_for_snapshot(&self, h: &GroupHandle, last: u64, shutdown: &mut tokio::sync::watch::Receiver<bool>) {
        let mut metrics = h.raft.metrics();
        let built = metrics.wait_for(|m| m.snapshot.is_some_and(|l| l.index > last));
        tokio::select! {
            r = tokio::time::timeout(BUILD_WAIT, built) => {
                if r.is_err() {
                    tracing::warn!(group = h.id, last, "no new snapshot after {BUILD_WAIT:?}; moving on");
                }
            }
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_needs_both_the_entry_count_and_the_log_share() {
        // Young group: the entry count decides.
        assert!(!due(9_999, 10_000, 5_000_000, 0));
        assert!(due(10_000, 10_000, 3_000_000, 0));
        // Large state: the log must reach half of the last snapshot.
        assert!(!due(10_000, 10_000, 3_000_000, 8_000_000));
        assert!(due(30_000, 10_000, 4_000_000, 8_000_000));
        // A zero setting still means "at least one entry".
        assert!(!due(0, 0, 10, 0));
        assert!(due(1, 0, 10, 0));
        // Sizes near the limit do not overflow.
        assert!(due(10, 10, u64::MAX, u64::MAX));
    }

    #[test]
    fn snapshot_bytes_written_per_log_byte_stay_bounded_as_state_grows() {
        // Simulate a group that only grows: each entry adds `e` bytes of log and of state.
        let (e, every) = (300u64, 100u64);
        let (mut state, mut log, mut since, mut snap) = (0u64, 0u64, 0u64, 0u64);
        let (mut written, mut logged) = (0u64, 0u64);
        for _ in 0..1_000_000u64 {
            state += e;
            log += e;
            logged += e;
            since += 1;
            if due(since, every, log, snap) {
                written += state;
                snap = state;
                log = 0;
                since = 0;
            }
        }
        let per_log_byte = written as f64 / logged as f64;
        assert!(per_log_byte <= (LOG_SHARE + 1) as f64, "wrote {per_log_byte:.2} snapshot bytes per log byte");
    }
}
