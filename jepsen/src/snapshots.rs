//! Whether a run exercised snapshots: the nodes' build and install counts, read from each
//! node's `/metrics` every two seconds while the run lasts. A killed node starts its counters
//! from zero again; a count that goes down is such a restart, and what it had counted is kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::db::Db;

const BUILDS: &str = "raftchat_snapshot_build_duration_seconds_count";
const INSTALLS: &str = "raftchat_snapshot_install_duration_seconds_count";

/// One counter of one node, across its restarts.
#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    /// What earlier incarnations counted.
    before: u64,
    /// The latest reading of this incarnation.
    last: u64,
}

impl Counter {
    fn read(&mut self, v: u64) {
        if v < self.last {
            self.before += self.last;
        }
        self.last = v;
    }

    fn total(&self) -> u64 {
        self.before + self.last
    }
}

/// Snapshot builds and installs seen over a run, all nodes together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotCounts {
    pub built: u64,
    pub installed: u64,
}

/// The value of an unlabelled sample `name` in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let v = rest.strip_prefix(' ')?;
        v.trim().parse::<f64>().ok().map(|f| f as u64)
    })
}

#[derive(Default)]
pub struct Watch {
    counters: Mutex<HashMap<u64, (Counter, Counter)>>,
}

impl Watch {
    /// Reads every node's counters until `until`, then once more.
    pub async fn run(self: Arc<Self>, db: Arc<Db>, until: Instant) {
        loop {
            for id in db.ids() {
                let Ok(resp) = db.http.get(format!("{}/metrics", db.url(id))).send().await else { continue };
                let Ok(text) = resp.text().await else { continue };
                let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
                let (builds, installs) = c.entry(id).or_default();
                if let Some(v) = sample(&text, BUILDS) {
                    builds.read(v);
                }
                if let Some(v) = sample(&text, INSTALLS) {
                    installs.read(v);
                }
            }
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    pub fn counts(&self) -> SnapshotCounts {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        SnapshotCounts {
            built: c.values().map(|(b, _)| b.total()).sum(),
            installed: c.values().map(|(_, i)| i.total()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_restarts_are_read() {
        let text = "# HELP x\nraftchat_snapshot_build_duration_seconds_count 7\nraftchat_snapshot_build_duration_seconds_sum 0.5\n";
        assert_eq!(sample(text, BUILDS), Some(7));
        assert_eq!(sample(text, INSTALLS), None);
        let mut c = Counter::default();
        for v in [1, 4, 0, 2] {
            c.read(v);
        }
        assert_eq!(c.total(), 6, "4 before the restart, 2 after");
    }
}
