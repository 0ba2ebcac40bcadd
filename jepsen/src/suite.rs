//! The suite CI runs: every nemesis once (each must be valid), and every negative control (each
//! unsafe knob with its targeted schedule must be invalid with its named anomaly, within three
//! runs; the same schedule without the knob must be valid).

use std::path::PathBuf;
use std::time::Duration;

use crate::checker::Verdict;
use crate::nemesis::Fault;
use crate::runner::TestOpts;

/// A negative control: a knob, the schedule that exposes it, and the anomalies that count.
pub struct Control {
    pub knob: &'static str,
    pub faults: &'static [Fault],
    /// Snapshot settings: small values make snapshots (and their installs) happen in a short run.
    pub snapshot_every: u64,
    pub logs_kept: u64,
    pub expect: &'static [&'static str],
}

pub const CONTROLS: [Control; 6] = [
    Control {
        knob: "ack_before_commit",
        faults: &[Fault::Partition],
        snapshot_every: 10_000,
        logs_kept: 2_000,
        expect: &["lost", "inconsistent-seq", "wrong-seq"],
    },
    Control {
        knob: "skip_fsync",
        faults: &[Fault::LostWrites],
        snapshot_every: 10_000,
        logs_kept: 2_000,
        expect: &["lost", "lost-on-node", "inconsistent-seq", "non-prefix"],
    },
    Control {
        knob: "local_reads",
        faults: &[Fault::Partition],
        snapshot_every: 10_000,
        logs_kept: 2_000,
        expect: &["stale-read", "read-regress"],
    },
    Control {
        knob: "no_dedup",
        faults: &[Fault::Client],
        snapshot_every: 10_000,
        logs_kept: 2_000,
        expect: &["duplicate"],
    },
    Control {
        knob: "dedup_not_in_snapshot",
        faults: &[Fault::Kill],
        snapshot_every: 40,
        logs_kept: 10,
        expect: &["duplicate", "non-prefix", "inconsistent-seq", "lost-on-node"],
    },
    Control {
        knob: "seq_at_gateway",
        faults: &[Fault::Kill],
        snapshot_every: 10_000,
        logs_kept: 2_000,
        expect: &["inconsistent-seq", "gap", "lost", "wrong-seq"],
    },
];

/// One line of the suite's result table.
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub skipped: Option<String>,
    pub detail: String,
}

/// Runs the suite; `base` gives every run's settings but faults, knob and output directory.
pub async fn run(
    base: &TestOpts,
    control_time: Duration,
    only: &[String],
    out: &std::path::Path,
) -> anyhow::Result<Vec<CaseResult>> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let mut results = Vec::new();
    for f in Fault::ALL {
        let name = format!("nemesis-{}", f.name());
        if !wanted(&name) {
            continue;
        }
        if let Some(why) = f.unsupported() {
            eprintln!("jepsen suite: {name}: skipped: {why}");
            results.push(CaseResult { name, passed: true, skipped: Some(why), detail: String::new() });
            continue;
        }
        // Partitions run with TLS on: mutual TLS between nodes through the fault proxies, HTTPS and
        // WSS for the clients; the other nemeses run in plain text.
        let tls = base.tls || f == Fault::Partition;
        let opts = TestOpts { faults: vec![f], out: out.join(&name), tls, ..base.clone() };
        results.push(judge_valid(name, run_covered(opts).await?));
    }
    // Partitions once more the way Jepsen makes them, where root allows.
    let name = "nemesis-partition-netns".to_string();
    if wanted(&name) {
        if let Err(why) = crate::net::netns::probe() {
            eprintln!("jepsen suite: {name}: skipped: {why}");
            results.push(CaseResult { name, passed: true, skipped: Some(why), detail: String::new() });
        } else {
            let opts = TestOpts { faults: vec![Fault::Partition], netns: true, out: out.join(&name), ..base.clone() };
            results.push(judge_valid(name, run_covered(opts).await?));
        }
    }
    let unsafe_bin = if CONTROLS.iter().any(|c| wanted(&format!("control-{}", c.knob))) {
        Some(crate::binary::resolve(None, true)?)
    } else {
        None
    };
    for c in &CONTROLS {
        let name = format!("control-{}", c.knob);
        if !wanted(&name) {
            continue;
        }
        if let Some(why) = c.faults.iter().find_map(|f| f.unsupported()) {
            eprintln!("jepsen suite: {name}: skipped: {why}");
            results.push(CaseResult { name, passed: true, skipped: Some(why), detail: String::new() });
            continue;
        }
        let schedule = TestOpts {
            time_limit: control_time,
            faults: c.faults.to_vec(),
            snapshot_every: c.snapshot_every,
            logs_kept: c.logs_kept,
            ..base.clone()
        };
        let mut caught = None;
        for attempt in 1..=3 {
            let opts = TestOpts {
                unsafe_knob: Some(c.knob.to_string()),
                binary: unsafe_bin.clone().unwrap_or_else(|| base.binary.clone()),
                out: out.join(format!("{name}-knob-{attempt}")),
                ..schedule.clone()
            };
            let r = crate::runner::run(opts).await?;
            eprintln!("jepsen suite: {name} attempt {attempt}: {:?} {:?}", r.verdict, r.anomalies);
            if r.verdict == Verdict::Invalid && r.anomalies.iter().any(|a| c.expect.contains(&a.as_str())) {
                caught = Some((attempt, r.anomalies));
                break;
            }
        }
        let control = crate::runner::run(TestOpts { out: out.join(format!("{name}-without")), ..schedule }).await?;
        let passed = caught.is_some() && control.verdict == Verdict::Valid;
        let detail = format!(
            "with the knob: {}; without: {:?} {:?} {:?}",
            match &caught {
                Some((n, a)) => format!("caught on attempt {n} as {a:?}"),
                None => format!("NOT caught in 3 runs (expected one of {:?})", c.expect),
            },
            control.verdict,
            control.anomalies,
            control.reasons
        );
        eprintln!("jepsen suite: {name}: {}: {detail}", if passed { "PASS" } else { "FAIL" });
        results.push(CaseResult { name, passed, skipped: None, detail });
    }
    Ok(results)
}

/// A run that must be valid, run a second time (in `<out>-again`) when the first said too
/// little (unknown for coverage reasons only: a fault that happened not to leave a replica
/// behind, too few reads): a run that found an anomaly or lost liveness is never retried.
async fn run_covered(opts: TestOpts) -> anyhow::Result<crate::runner::RunOutcome> {
    let again = TestOpts { out: opts.out.with_extension("again"), ..opts.clone() };
    let first = crate::runner::run(opts).await?;
    let thin = first.verdict == Verdict::Unknown && first.reasons.iter().all(|r| r.starts_with("coverage:"));
    if !thin {
        return Ok(first);
    }
    eprintln!("jepsen suite: {:?}: once more", first.reasons);
    crate::runner::run(again).await
}

/// A run that must be valid.
fn judge_valid(name: String, r: crate::runner::RunOutcome) -> CaseResult {
    let passed = r.verdict == Verdict::Valid;
    let detail = format!("{:?} {:?} {:?}", r.verdict, r.anomalies, r.reasons);
    eprintln!("jepsen suite: {name}: {}: {detail}", if passed { "PASS" } else { "FAIL" });
    CaseResult { name, passed, skipped: None, detail }
}

/// The suite's default results directory.
pub fn default_out() -> PathBuf {
    crate::runner::default_out("suite")
}
