//! When a run says too little to be valid: the guards that turn a run without anomalies into
//! `unknown` (each with its reason) when its faults never took effect, it acknowledged too few
//! sends, read or delivered too little, acknowledged nothing while a fault was in force, or left
//! the snapshot path untested.

use crate::checker::Op;
use crate::checker::Outcome;
use crate::nemesis::Coverage;
use crate::nemesis::Fault;
use crate::runner::TestOpts;
use crate::snapshots::SnapshotCounts;

/// Acknowledged sends below this make a run vacuous.
const ACKED_MIN: usize = 20;

/// Below these a run says too little to be valid: linearizable reads that succeeded, messages
/// delivered to subscriptions, and sends acknowledged while a fault was in force.
const LIN_READS_MIN: usize = 10;
const DELIVERIES_MIN: usize = 20;
const ACKED_DURING_FAULTS_MIN: usize = 1;

pub fn activity_problems(o: &TestOpts, ops: &[Op], c: &Coverage) -> Vec<String> {
    fn ok<'a>(ops: &'a [Op], f: &'a str) -> impl Iterator<Item = &'a Op> {
        ops.iter().filter(move |op| op.f == f && op.outcome == Outcome::Ok)
    }
    let mut out = Vec::new();
    let lin_reads = ok(ops, "read").filter(|r| r.mode() == "linearizable").count();
    if lin_reads < LIN_READS_MIN {
        out.push(format!("coverage: only {lin_reads} linearizable reads succeeded (at least {LIN_READS_MIN} needed)"));
    }
    let delivered = ok(ops, "deliver").count();
    if o.subscribers > 0 && delivered < DELIVERIES_MIN {
        out.push(format!("coverage: only {delivered} deliveries (at least {DELIVERIES_MIN} needed)"));
    }
    if !c.intervals.is_empty() {
        let during = ok(ops, "send")
            .filter_map(|s| s.complete_time)
            .filter(|t| {
                let t = *t as f64 / 1e9;
                c.intervals.iter().any(|(_, a, b)| *a <= t && t <= *b)
            })
            .count();
        if during < ACKED_DURING_FAULTS_MIN {
            out.push("coverage: no send was acknowledged while a fault was in force".into());
        }
    }
    out
}

/// Runs at this snapshot threshold or below must build snapshots, and install one when a fault
/// left a replica behind; otherwise the snapshot path went untested and the run is unknown.
pub const SNAPSHOT_GUARD_EVERY_MAX: u64 = 1_000;

pub fn snapshot_problems(o: &TestOpts, c: &Coverage, s: SnapshotCounts) -> Vec<String> {
    eprintln!("jepsen: snapshots built {}, installed {}", s.built, s.installed);
    if o.snapshot_every > SNAPSHOT_GUARD_EVERY_MAX {
        return Vec::new();
    }
    let mut out = Vec::new();
    if s.built == 0 {
        out.push(format!("coverage: no snapshot was built (--snapshot-every {})", o.snapshot_every));
    }
    // Faults that leave a replica behind by more than the log it keeps.
    let lagging = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::LostWrites];
    let lagged = o.faults.iter().any(|f| lagging.contains(f) && c.effective.get(f).copied().unwrap_or(0) > 0);
    if lagged && s.installed == 0 {
        out.push(format!("coverage: no snapshot was installed (--logs-kept {})", o.logs_kept));
    }
    out
}

pub fn coverage_problems(o: &TestOpts, c: &Coverage, acked: usize) -> Vec<String> {
    let mut out = Vec::new();
    if acked < ACKED_MIN {
        out.push(format!("coverage: only {acked} sends were acknowledged (at least {ACKED_MIN} needed)"));
    }
    for f in &o.faults {
        if c.skipped.contains_key(f) {
            continue;
        }
        if c.effective.get(f).copied().unwrap_or(0) == 0 {
            out.push(format!(
                "coverage: the {} nemesis never took effect ({} started)",
                f.name(),
                c.started.get(f).copied().unwrap_or(0)
            ));
        }
    }
    if !o.faults.is_empty() && o.faults.iter().all(|f| c.skipped.contains_key(f)) {
        out.push("coverage: every nemesis asked for is unsupported here".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn opts(faults: Vec<Fault>, snapshot_every: u64) -> TestOpts {
        TestOpts {
            nodes: 3,
            time_limit: Duration::from_secs(1),
            faults,
            rate: 1.0,
            unsafe_knob: None,
            out: std::path::PathBuf::new(),
            binary: std::path::PathBuf::new(),
            workers: 1,
            chats: 1,
            subscribers: 1,
            interval: Duration::from_secs(1),
            hold: Duration::from_secs(1),
            snapshot_every,
            logs_kept: 10,
            data_groups: 1,
            netns: false,
            tls: false,
        }
    }

    fn took_effect(f: Fault) -> Coverage {
        let mut c = Coverage::default();
        c.effective.insert(f, 1);
        c.intervals.push((f, 1.0, 2.0));
        c
    }

    #[test]
    fn snapshots_must_be_built_and_installed_after_a_lag() {
        let none = SnapshotCounts::default();
        let built = SnapshotCounts { built: 3, installed: 0 };
        let both = SnapshotCounts { built: 3, installed: 1 };
        assert_eq!(snapshot_problems(&opts(vec![Fault::Kill], 200), &took_effect(Fault::Kill), none).len(), 2);
        assert_eq!(snapshot_problems(&opts(vec![Fault::Kill], 200), &took_effect(Fault::Kill), built).len(), 1);
        assert!(snapshot_problems(&opts(vec![Fault::Kill], 200), &took_effect(Fault::Kill), both).is_empty());
        // A fault that leaves no replica behind needs no install; large thresholds need nothing.
        assert!(snapshot_problems(&opts(vec![Fault::Client], 200), &took_effect(Fault::Client), built).is_empty());
        assert!(snapshot_problems(&opts(vec![Fault::Kill], 10_000), &took_effect(Fault::Kill), none).is_empty());
    }

    fn op(f: &str, outcome: Outcome, complete_s: f64, mode: &str) -> Op {
        let events = vec![crate::history::Event {
            index: 0,
            time: (complete_s * 1e9) as u64,
            process: serde_json::json!(1),
            session: None,
            kind: match outcome {
                Outcome::Ok => crate::history::Kind::Ok,
                Outcome::Fail => crate::history::Kind::Fail,
                Outcome::Info => crate::history::Kind::Info,
            },
            f: f.into(),
            chat: Some("c".into()),
            node: None,
            value: serde_json::json!({}),
        }];
        let mut o = crate::checker::pair(&events).remove(0);
        o.args = serde_json::json!({ "mode": mode });
        o
    }

    #[test]
    fn a_run_that_read_delivered_or_acked_too_little_says_so() {
        let c = took_effect(Fault::Kill);
        let o = opts(vec![Fault::Kill], 200);
        let mut ops: Vec<Op> = (0..10).map(|_| op("read", Outcome::Ok, 0.5, "linearizable")).collect();
        ops.extend((0..20).map(|_| op("deliver", Outcome::Ok, 0.5, "")));
        ops.push(op("send", Outcome::Ok, 0.5, ""));
        // Nothing acknowledged between 1 s and 2 s, when the fault was in force.
        assert_eq!(
            activity_problems(&o, &ops, &c),
            vec!["coverage: no send was acknowledged while a fault was in force"]
        );
        ops.push(op("send", Outcome::Ok, 1.5, ""));
        assert!(activity_problems(&o, &ops, &c).is_empty());
        // Local reads and failed reads do not count.
        ops.retain(|x| x.f != "read");
        ops.push(op("read", Outcome::Ok, 0.5, "local"));
        ops.push(op("read", Outcome::Fail, 0.5, "linearizable"));
        assert_eq!(activity_problems(&o, &ops, &c).len(), 1);
    }
}
