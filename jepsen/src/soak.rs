//! `jepsen soak`: run after run of random schedules until the time is up, keeping only the runs
//! that were not valid.
//!
//! Each run's schedule (which faults, how many nodes, the rate, how often and how long faults
//! last) comes from a seed: `jepsen soak --replay SEED` runs that schedule again. The timing of
//! each fault inside a run and the workload's choices are random per run, so a replay repeats
//! the schedule, not the exact interleaving: run it a few times.

use std::path::Path;
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::time::Instant;

use crate::checker::Verdict;
use crate::nemesis::Fault;
use crate::runner::TestOpts;

/// The schedule a seed picks.
pub fn schedule(base: &TestOpts, seed: u64) -> TestOpts {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let supported: Vec<Fault> = Fault::ALL.into_iter().filter(|f| f.unsupported().is_none()).collect();
    let mut faults = Vec::new();
    let n = r.gen_range(1..=3.min(supported.len().max(1)));
    while faults.len() < n && !supported.is_empty() {
        let f = supported[r.gen_range(0..supported.len())];
        if !faults.contains(&f) {
            faults.push(f);
        }
    }
    faults.sort();
    TestOpts {
        nodes: if r.gen_bool(0.3) { 5 } else { 3 },
        faults,
        rate: [50.0, 100.0, 200.0][r.gen_range(0..3)],
        interval: Duration::from_secs_f64(r.gen_range(1.0..5.0)),
        hold: Duration::from_secs_f64(r.gen_range(3.0..10.0)),
        tls: r.gen_bool(0.3),
        ..base.clone()
    }
}

/// One run of a soak that was not valid.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub seed: u64,
    pub verdict: Verdict,
    pub anomalies: Vec<String>,
    pub reasons: Vec<String>,
    pub dir: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub runs: u64,
    pub valid: u64,
    pub kept: Vec<Kept>,
    pub seconds: u64,
}

/// Runs schedules from seeds `first_seed`, `first_seed + 1`, ... for `duration` (a run begun is
/// finished); writes `summary.json` under `out` after every run.
pub async fn run(base: &TestOpts, duration: Duration, first_seed: u64, out: &Path) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(out)?;
    let started = Instant::now();
    let mut s = Summary::default();
    let mut seed = first_seed;
    while started.elapsed() < duration {
        let dir = out.join(format!("seed-{seed}"));
        let opts = TestOpts { out: dir.clone(), ..schedule(base, seed) };
        let names: Vec<&str> = opts.faults.iter().map(|f| f.name()).collect();
        eprintln!("jepsen soak: run {} seed {seed}: {} nodes, nemesis {}", s.runs + 1, opts.nodes, names.join(","));
        let r = crate::runner::run(opts).await?;
        s.runs += 1;
        if r.verdict == Verdict::Valid {
            s.valid += 1;
            // Only failures are kept: a long soak must not fill the disk.
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            eprintln!(
                "jepsen soak: seed {seed}: {:?} {:?} {:?} in {}",
                r.verdict,
                r.anomalies,
                r.reasons,
                dir.display()
            );
            s.kept.push(Kept {
                seed,
                verdict: r.verdict,
                anomalies: r.anomalies,
                reasons: r.reasons,
                dir: dir.display().to_string(),
            });
        }
        s.seconds = started.elapsed().as_secs();
        std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&s)?)?;
        seed += 1;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TestOpts {
        TestOpts {
            nodes: 3,
            time_limit: Duration::from_secs(60),
            faults: Vec::new(),
            rate: 100.0,
            unsafe_knob: None,
            out: std::path::PathBuf::new(),
            binary: std::path::PathBuf::new(),
            workers: 5,
            chats: 3,
            subscribers: 3,
            interval: Duration::from_secs(3),
            hold: Duration::from_secs(6),
            snapshot_every: 200,
            logs_kept: 50,
            data_groups: 16,
            netns: false,
            tls: false,
        }
    }

    #[test]
    fn a_seed_always_picks_the_same_schedule() {
        let (a, b) = (schedule(&base(), 7), schedule(&base(), 7));
        assert_eq!(
            (a.nodes, &a.faults, a.rate, a.interval, a.hold, a.tls),
            (b.nodes, &b.faults, b.rate, b.interval, b.hold, b.tls)
        );
        let kinds: std::collections::HashSet<Vec<Fault>> = (0..50).map(|s| schedule(&base(), s).faults).collect();
        assert!(kinds.len() > 5, "seeds pick varied schedules: {kinds:?}");
        assert!((0..50).all(|s| (1..=3).contains(&schedule(&base(), s).faults.len())));
    }
}
