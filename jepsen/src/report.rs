//! A run's results: `report.json` (machine-readable) and `summary.txt` (for people).

use serde::Serialize;
use serde_json::json;

use crate::checker::Op;
use crate::checker::Outcome;
use crate::checker::Report;
use crate::nemesis::Coverage;
use crate::runner::RunOutcome;
use crate::runner::TestOpts;

/// Operation counts and latencies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub sends_ok: usize,
    pub sends_info: usize,
    pub sends_fail: usize,
    pub reads_ok: usize,
    pub reads_info: usize,
    pub reads_fail: usize,
    pub deliveries: usize,
    pub send_ok_p50_ms: f64,
    pub send_ok_p99_ms: f64,
    pub send_ok_max_ms: f64,
}

pub fn stats(ops: &[Op]) -> Stats {
    let mut s = Stats::default();
    let mut lat: Vec<f64> = Vec::new();
    for op in ops {
        match (op.f.as_str(), op.outcome) {
            ("send", Outcome::Ok) => {
                s.sends_ok += 1;
                if let Some(c) = op.complete_time {
                    lat.push(c.saturating_sub(op.invoke_time) as f64 / 1e6);
                }
            }
            ("send", Outcome::Info) => s.sends_info += 1,
            ("send", Outcome::Fail) => s.sends_fail += 1,
            ("read", Outcome::Ok) => s.reads_ok += 1,
            ("read", Outcome::Info) => s.reads_info += 1,
            ("read", Outcome::Fail) => s.reads_fail += 1,
            ("deliver", _) => s.deliveries += 1,
            _ => {}
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    s.send_ok_p50_ms = q(0.5);
    s.send_ok_p99_ms = q(0.99);
    s.send_ok_max_ms = lat.last().copied().unwrap_or(0.0);
    s
}

pub fn write(o: &TestOpts, out: &RunOutcome, r: &Report, cov: &Coverage, st: &Stats) -> std::io::Result<()> {
    let faults: Vec<&str> = o.faults.iter().map(|f| f.name()).collect();
    let report = json!({
        "verdict": out.verdict,
        "reasons": out.reasons,
        "anomaly_kinds": out.anomalies,
        "counts": r.counts,
        "anomalies": r.anomalies,
        "unchecked_chats": r.unchecked_chats,
        "coverage": cov,
        "stats": st,
        "opts": {
            "nodes": o.nodes,
            "time_limit_s": o.time_limit.as_secs_f64(),
            "nemesis": faults,
            "rate": o.rate,
            "unsafe_knob": o.unsafe_knob,
            "workers": o.workers,
            "chats": o.chats,
            "subscribers": o.subscribers,
            "interval_s": o.interval.as_secs_f64(),
            "hold_s": o.hold.as_secs_f64(),
            "snapshot_every": o.snapshot_every,
            "logs_kept": o.logs_kept,
            "binary": o.binary,
        },
    });
    let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
    std::fs::write(o.out.join("report.json"), text)?;
    std::fs::write(o.out.join("summary.txt"), summary(o, out, r, cov, st))
}

pub fn summary(o: &TestOpts, out: &RunOutcome, r: &Report, cov: &Coverage, st: &Stats) -> String {
    let mut s = String::new();
    let faults: Vec<&str> = o.faults.iter().map(|f| f.name()).collect();
    s += &format!(
        "raftchat jepsen run: {} nodes, {:.0} s, nemesis [{}], {:.0} ops/s{}\n",
        o.nodes,
        o.time_limit.as_secs_f64(),
        faults.join(","),
        o.rate,
        o.unsafe_knob.as_deref().map(|k| format!(", UNSAFE KNOB {k}")).unwrap_or_default()
    );
    s += &format!("verdict: {:?}\n", out.verdict);
    for why in &out.reasons {
        s += &format!("  because {why}\n");
    }
    let c = &r.counts;
    s += &format!(
        "messages: {} attempted, {} acknowledged, {} recovered (outcome unknown, present), {} lost, {} unknown (outcome unknown, absent)\n",
        c.attempted, c.acked, c.recovered, c.lost, c.unknown
    );
    s += &format!(
        "sends: {} ok, {} info, {} fail (ok p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms); reads: {} ok, {} info, {} fail; deliveries: {}\n",
        st.sends_ok, st.sends_info, st.sends_fail, st.send_ok_p50_ms, st.send_ok_p99_ms, st.send_ok_max_ms,
        st.reads_ok, st.reads_info, st.reads_fail, st.deliveries
    );
    for (f, n) in &cov.started {
        s +=
            &format!("fault {}: {} started, {} took effect\n", f.name(), n, cov.effective.get(f).copied().unwrap_or(0));
    }
    for (f, why) in &cov.skipped {
        s += &format!("fault {}: skipped: {why}\n", f.name());
    }
    if r.anomalies.is_empty() {
        s += "anomalies: none\n";
    } else {
        s += &format!("anomalies ({}):\n", r.anomalies.len());
        for a in r.anomalies.iter().take(40) {
            s += &format!("  {} in chat {}: {} (history indexes {:?})\n", a.kind, a.chat, a.detail, a.ops);
        }
        if r.anomalies.len() > 40 {
            s += &format!("  ... and {} more in report.json\n", r.anomalies.len() - 40);
        }
    }
    s += &format!("files: {}/{{history.jsonl,report.json,summary.txt,latency.svg,nodes/}}\n", out.dir.display());
    s
}
