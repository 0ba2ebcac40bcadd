//! One test run: start the nodes, set up users and chats, run workers, subscriptions and the
//! nemesis for the time limit, heal everything, read every log back, check the history and
//! write the results.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::time::Instant;

use crate::checker::Verdict;
use crate::db::Db;
use crate::db::DbOpts;
use crate::nemesis::Fault;
use crate::nemesis::NemesisOpts;
use crate::recorder::Recorder;
use crate::workload::WorkloadOpts;

#[derive(Debug, Clone)]
pub struct TestOpts {
    pub nodes: u64,
    pub time_limit: Duration,
    pub faults: Vec<Fault>,
    pub rate: f64,
    pub unsafe_knob: Option<String>,
    pub out: PathBuf,
    /// The raftchat binary; resolved (and built when needed) by [`crate::build`] when unset.
    pub binary: PathBuf,
    pub workers: usize,
    pub chats: usize,
    pub subscribers: usize,
    pub interval: Duration,
    pub hold: Duration,
    pub snapshot_every: u64,
    pub logs_kept: u64,
    pub data_groups: u32,
    /// Node-to-node partitions with network namespaces and iptables instead of proxies.
    pub netns: bool,
    /// TLS between nodes and for clients (certificates from a test CA).
    pub tls: bool,
}

/// What a run concluded.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub verdict: Verdict,
    /// Names of the anomalies found.
    pub anomalies: Vec<String>,
    /// Why the verdict is unknown, when it is.
    pub reasons: Vec<String>,
    pub dir: PathBuf,
}

impl RunOutcome {
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }
}

pub async fn run(o: TestOpts) -> anyhow::Result<RunOutcome> {
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let db = Arc::new(
        Db::start(DbOpts {
            nodes: o.nodes,
            binary: o.binary.clone(),
            data_groups: o.data_groups,
            snapshot_every: o.snapshot_every,
            logs_kept: o.logs_kept,
            unsafe_knob: o.unsafe_knob.clone(),
            dir: o.out.join("nodes"),
            lazyfs: o.faults.contains(&Fault::LostWrites) && Fault::LostWrites.unsupported().is_none(),
            netns: o.netns,
            tls: o.tls,
        })
        .await?,
    );
    let wo = WorkloadOpts {
        workers: o.workers,
        chats: o.chats,
        subscribers: o.subscribers,
        rate: o.rate,
        op_timeout: Duration::from_secs(3),
        resend: 0.05,
    };
    let run_id = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());
    let setup = Arc::new(crate::workload::setup(&db, &wo, &run_id).await.context("setting up users and chats")?);
    let rec = Arc::new(Recorder::create(&o.out.join("history.jsonl"))?);
    let until = Instant::now() + o.time_limit;
    let mut tasks = Vec::new();
    for w in 0..o.workers {
        tasks.push(tokio::spawn(crate::workload::worker(w, db.clone(), setup.clone(), rec.clone(), wo.clone(), until)));
    }
    for k in 0..o.subscribers {
        tasks.push(tokio::spawn(crate::workload::subscriber(k, db.clone(), setup.clone(), rec.clone(), until)));
    }
    let snapshots = Arc::new(crate::snapshots::Watch::default());
    let watch = tokio::spawn(snapshots.clone().run(db.clone(), until));
    let nemesis = tokio::spawn(crate::nemesis::run(
        db.clone(),
        rec.clone(),
        NemesisOpts { faults: o.faults.clone(), interval: o.interval, hold: o.hold },
        until,
    ));
    for t in tasks {
        let _ = t.await;
    }
    let coverage = nemesis.await.unwrap_or_default();
    let _ = watch.await;
    let run_end = rec.now() as f64 / 1e9;
    crate::nemesis::heal_all(&db);
    rec.nemesis("heal", json!({}));
    let mut reasons = Vec::new();
    if let Err(e) = db.wait_ready(Duration::from_secs(60)).await {
        let mut stuck = Vec::new();
        for id in db.ids() {
            if !db.ready(id).await {
                stuck.push(format!("{}: {}", crate::db::name(id), db.readiness(id).await.trim()));
                db.save_stacks(id).await;
            }
        }
        reasons.push(format!("liveness: {stuck:?} not ready 60 s after healing ({e:#}); stacks in nodes/"));
    }
    if !crate::workload::after_heal(&db, &setup, &rec, Duration::from_secs(30)).await {
        reasons.push("liveness: a chat took no write within 30 s after healing".into());
    }
    if !crate::workload::final_reads(&db, &setup, &rec, Duration::from_secs(30)).await {
        reasons.push("liveness: a final read (linearizable, or of a replica) never succeeded".into());
    }
    rec.flush()?;
    drop(rec);
    let text = std::fs::read_to_string(o.out.join("history.jsonl"))?;
    let events = crate::history::parse(&text)?;
    let report = crate::checker::check(&events);
    let ops = crate::checker::pair(&events);
    reasons.extend(crate::guards::coverage_problems(&o, &coverage, report.counts.acked));
    reasons.extend(crate::guards::snapshot_problems(&o, &coverage, snapshots.counts()));
    reasons.extend(crate::guards::activity_problems(&o, &ops, &coverage));
    let verdict = match report.verdict {
        Verdict::Valid if !reasons.is_empty() => Verdict::Unknown,
        v => v,
    };
    let mut anomalies: Vec<String> = report.anomalies.iter().map(|a| a.kind.to_string()).collect();
    anomalies.sort();
    anomalies.dedup();
    let outcome = RunOutcome { verdict, anomalies, reasons, dir: o.out.clone() };
    let stats = crate::report::stats(&ops);
    crate::report::write(&o, &outcome, &report, &coverage, &stats)?;
    let title = format!(
        "raftchat, {} nodes{}, nemesis {}{}: {:?}",
        o.nodes,
        if o.netns { " (netns)" } else { "" },
        o.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        o.unsafe_knob.as_deref().map(|k| format!(", unsafe knob {k}")).unwrap_or_default(),
        verdict
    );
    std::fs::write(o.out.join("latency.svg"), crate::plot::svg(&ops, &coverage.intervals, run_end, &title))?;
    for id in db.ids() {
        if let Some(code) = db.exited(id) {
            eprintln!("jepsen: {} had exited with {code}:\n{}", crate::db::name(id), crate::db::tail(&db.log(id), 10));
        }
    }
    Ok(outcome)
}

/// The default results directory: `target/jepsen/<label>-<unix time>` in the workspace.
pub fn default_out(label: &str) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    workspace().join("target").join("jepsen").join(format!("{label}-{secs}"))
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
