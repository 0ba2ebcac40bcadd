//! Faults, each on a schedule: start one, hold it, undo it, wait, start the next.
//!
//! Every fault probes what this machine supports before the run and is skipped with a message
//! when it cannot work here, never assumed. Every fault also checks that it took effect (the
//! process really stopped, bytes really were dropped, the clock really moved): a run whose
//! faults never bit proves nothing, and the coverage guard turns it into an `unknown` verdict.

mod clock;
mod lost_writes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::db::name;
use crate::db::Db;
use crate::recorder::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL a node (often the busiest leader), restart it later on the same data.
    Kill,
    /// SIGSTOP a node, SIGCONT it later: a GC pause or a stalled VM, sockets still open.
    Pause,
    /// Cut node-to-node links: one node isolated, the busiest leader isolated, a minority
    /// split off, or one direction only.
    Partition,
    /// Drop the answers to clients of some nodes: requests go through, replies never arrive,
    /// clients time out and retry.
    Client,
    /// Restart a node with its clock skewed by tens of seconds (libfaketime).
    Clock,
    /// Kill a node and lose every write it had not fsynced (FUSE passthrough that keeps
    /// unsynced writes in memory).
    LostWrites,
}

impl Fault {
    pub const ALL: [Fault; 6] =
        [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Client, Fault::Clock, Fault::LostWrites];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Client => "client",
            Fault::Clock => "clock",
            Fault::LostWrites => "lost-writes",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Why this machine cannot inject the fault, if it cannot.
    pub fn unsupported(self) -> Option<String> {
        match self {
            Fault::Clock => clock::library().err(),
            Fault::LostWrites => lost_writes::probe().err(),
            _ => None,
        }
    }
}

/// What the faults did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Per fault: how many were started, and how many were seen to take effect.
    pub started: BTreeMap<Fault, u32>,
    pub effective: BTreeMap<Fault, u32>,
    /// Faults asked for that this machine cannot inject, with the reason.
    pub skipped: BTreeMap<Fault, String>,
    /// (fault, start, end) in seconds since the run began, for the plot.
    pub intervals: Vec<(Fault, f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct NemesisOpts {
    pub faults: Vec<Fault>,
    /// Quiet time before each fault.
    pub interval: Duration,
    /// How long each fault lasts.
    pub hold: Duration,
}

/// A fault in force, and how to undo it.
enum Active {
    Killed(u64),
    Paused(u64),
    Partitioned(String),
    ClientsCut,
    Skewed(u64),
    LostWrites(Vec<u64>),
}

/// Runs faults until `until`, then undoes the last one. Every fault is undone before this
/// returns.
pub async fn run(db: Arc<Db>, rec: Arc<Recorder>, o: NemesisOpts, until: Instant) -> Coverage {
    let mut cov = Coverage::default();
    let mut faults = Vec::new();
    for f in &o.faults {
        match f.unsupported() {
            Some(why) => {
                eprintln!("jepsen: skipping the {} nemesis: {why}", f.name());
                cov.skipped.insert(*f, why);
            }
            None => faults.push(*f),
        }
    }
    if faults.is_empty() {
        return cov;
    }
    for round in 0usize.. {
        tokio::time::sleep(o.interval).await;
        if Instant::now() + o.hold >= until {
            break;
        }
        let fault = faults[round % faults.len()];
        let nth = {
            let n = cov.started.entry(fault).or_default();
            *n += 1;
            (*n - 1) as usize
        };
        let begun = rec.now();
        let (active, effective) = start(&db, &rec, fault, nth).await;
        if effective {
            *cov.effective.entry(fault).or_default() += 1;
        }
        tokio::time::sleep(o.hold).await;
        stop(&db, &rec, active).await;
        cov.intervals.push((fault, begun as f64 / 1e9, rec.now() as f64 / 1e9));
    }
    cov
}

async fn target(db: &Db, leader_first: bool) -> u64 {
    if leader_first {
        if let Some(l) = db.busiest_leader().await {
            return l;
        }
    }
    rand::thread_rng().gen_range(1..=db.opts.nodes)
}

/// Starts the `nth` fault of its kind; returns it and whether it was seen to take effect.
async fn start(db: &Db, rec: &Recorder, fault: Fault, nth: usize) -> (Active, bool) {
    let leader_first = nth.is_multiple_of(2);
    match fault {
        Fault::Kill => {
            let n = target(db, leader_first).await;
            db.kill(n);
            rec.nemesis("kill", json!({ "node": name(n) }));
            (Active::Killed(n), !db.is_up(n))
        }
        Fault::Pause => {
            let n = target(db, leader_first).await;
            let sent = db.signal(n, Signal::SIGSTOP);
            rec.nemesis("pause", json!({ "node": name(n) }));
            let stopped = sent && wait_until(Duration::from_secs(2), || db.is_stopped(n)).await;
            (Active::Paused(n), stopped)
        }
        Fault::Partition => {
            let before = db.link_drops();
            let shape = partition(db, nth).await;
            rec.nemesis("start-partition", json!({ "shape": shape }));
            // Heartbeats flow every 150 ms: a cut that takes effect drops bytes within a second.
            let took = wait_until(Duration::from_secs(3), || db.link_drops() > before).await;
            (Active::Partitioned(shape), took)
        }
        Fault::Client => {
            let before = db.clients.dropped.load(std::sync::atomic::Ordering::Relaxed);
            let mut ids = db.ids();
            ids.shuffle(&mut rand::thread_rng());
            let cut: Vec<u64> = ids.into_iter().take(db.opts.nodes as usize / 2 + 1).collect();
            for n in &cut {
                db.clients.cut(&name(*n), "client");
            }
            rec.nemesis("start-client-cut", json!({ "nodes": cut.iter().map(|n| name(*n)).collect::<Vec<_>>() }));
            let took = wait_until(Duration::from_secs(3), || {
                db.clients.dropped.load(std::sync::atomic::Ordering::Relaxed) > before
            })
            .await;
            (Active::ClientsCut, took)
        }
        Fault::Clock => {
            let n = target(db, false).await;
            let secs: i64 = if nth.is_multiple_of(2) { 45 } else { -45 };
            let effective = clock::skew(db, n, secs).await;
            rec.nemesis("clock", json!({ "node": name(n), "offset_s": secs }));
            (Active::Skewed(n), effective)
        }
        Fault::LostWrites => {
            let leader = db.busiest_leader().await;
            let (nodes, lost) = lost_writes::crash(db, nth, leader).await;
            let names: Vec<String> = nodes.iter().map(|n| name(*n)).collect();
            rec.nemesis("lose-unsynced", json!({ "nodes": names, "bytes_lost": lost }));
            (Active::LostWrites(nodes), lost > 0)
        }
    }
}

async fn stop(db: &Db, rec: &Recorder, active: Active) {
    match active {
        Active::Killed(n) => restart(db, rec, &[n]),
        Active::LostWrites(nodes) => restart(db, rec, &nodes),
        Active::Paused(n) => {
            db.signal(n, Signal::SIGCONT);
            rec.nemesis("resume", json!({ "node": name(n) }));
        }
        Active::Partitioned(shape) => {
            db.heal_links();
            rec.nemesis("stop-partition", json!({ "shape": shape }));
        }
        Active::ClientsCut => {
            db.heal_clients();
            rec.nemesis("stop-client-cut", json!({}));
        }
        Active::Skewed(n) => {
            clock::reset(db, n);
            rec.nemesis("clock", json!({ "node": name(n), "offset_s": 0 }));
        }
    }
}

fn restart(db: &Db, rec: &Recorder, nodes: &[u64]) {
    for n in nodes {
        if let Err(e) = db.spawn(*n) {
            eprintln!("jepsen: restarting {} failed: {e:#}", name(*n));
        }
        rec.nemesis("start", json!({ "node": name(*n) }));
    }
}

/// Cuts links in one of the shapes, taking turns; returns the shape's description.
async fn partition(db: &Db, nth: usize) -> String {
    let ids = db.ids();
    match nth % 4 {
        0 => {
            let n = target(db, false).await;
            db.cut(&name(n), "*");
            db.cut("*", &name(n));
            format!("isolate {}", name(n))
        }
        1 => {
            let n = target(db, true).await;
            db.cut(&name(n), "*");
            db.cut("*", &name(n));
            format!("isolate leader {}", name(n))
        }
        2 => {
            let mut shuffled = ids.clone();
            shuffled.shuffle(&mut rand::thread_rng());
            let minority: Vec<u64> = shuffled[..(ids.len() - 1) / 2].to_vec();
            for a in &minority {
                for b in ids.iter().filter(|b| !minority.contains(b)) {
                    db.cut(&name(*a), &name(*b));
                    db.cut(&name(*b), &name(*a));
                }
            }
            format!("minority {:?} | majority", minority.iter().map(|n| name(*n)).collect::<Vec<_>>())
        }
        _ => {
            let n = target(db, true).await;
            if (nth / 4).is_multiple_of(2) {
                db.cut("*", &name(n));
                format!("leader {} cannot hear", name(n))
            } else {
                db.cut(&name(n), "*");
                format!("leader {} cannot speak", name(n))
            }
        }
    }
}

/// Polls `f` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Undoes everything a nemesis may have left: every node running at real time and unpaused,
/// every link and client path whole.
pub fn heal_all(db: &Db) {
    for n in db.ids() {
        db.signal(n, Signal::SIGCONT);
        if !db.is_up(n) {
            if let Err(e) = db.spawn(n) {
                eprintln!("jepsen: restarting {} failed: {e:#}", name(n));
            }
        }
    }
    db.heal_links();
    db.heal_clients();
}
