//! Replicated appends through a real local cluster: throughput, commit latency, appends per
//! fsync and CPU per append, fsync on.
//!
//! `cargo build --release --bin raftchat && cargo run --release -p raftchat-tests --example bench_core -- [seconds] [groups,..] [in-flight,..]`
//!
//! For 1 and 64 data groups, and 1, 64 and 256 appends in flight (closed loop), 200-byte
//! messages over 1,000 chats, sent round-robin through all three nodes over HTTP.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use hdrhistogram::Histogram;
use raftchat_tests::client;
use raftchat_tests::procstat::cpu_secs;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use uuid::Uuid;

const CHATS: usize = 1_000;
const MESSAGE_BYTES: usize = 200;

async fn wal_counters(c: &Cluster) -> (u64, u64) {
    let mut f = 0;
    let mut e = 0;
    for id in c.ids() {
        if let Ok(st) = c.status(id).await {
            f += st["walFsyncs"].as_u64().unwrap_or(0);
            e += st["walEntries"].as_u64().unwrap_or(0);
        }
    }
    (f, e)
}

struct Row {
    groups: u32,
    in_flight: usize,
    acks: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
    fsyncs: u64,
    entries: u64,
    node_cpu: f64,
}

async fn run(c: &Cluster, chats: &[(Uuid, Uuid)], groups: u32, in_flight: usize, secs: u64) -> anyhow::Result<Row> {
    let urls: Vec<String> = c.ids().iter().map(|i| c.url(*i)).collect();
    let pids: Vec<u32> = c.ids().iter().filter_map(|i| c.pid(*i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let measuring = Arc::new(AtomicBool::new(false));
    let text = "x".repeat(MESSAGE_BYTES);
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let (stop, acks, errors, hist, measuring) =
            (stop.clone(), acks.clone(), errors.clone(), hist.clone(), measuring.clone());
        let (urls, http, text) = (urls.clone(), c.http.clone(), text.clone());
        let chats = chats.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            let mut local = Histogram::<u64>::new(3).expect("histogram");
            while !stop.load(Ordering::Relaxed) {
                let (chat, sender) = chats[i % chats.len()];
                let t = Instant::now();
                let r = client::append(&http, &urls[i % urls.len()], chat, sender, &format!("b{w}-{i}"), &text).await;
                if measuring.load(Ordering::Relaxed) {
                    match r {
                        Ok(_) => {
                            acks.fetch_add(1, Ordering::Relaxed);
                            let _ = local.record(t.elapsed().as_micros() as u64);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                i += in_flight;
            }
            if let Ok(mut h) = hist.lock() {
                let _ = h.add(&local);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let (f0, e0) = wal_counters(c).await;
    let cpu0: f64 = pids.iter().map(|p| cpu_secs(*p)).sum();
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1: f64 = pids.iter().map(|p| cpu_secs(*p)).sum();
    let (f1, e1) = wal_counters(c).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let hist = hist.lock().map(|h| h.clone()).map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(Row {
        groups,
        in_flight,
        acks: acks.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        secs: elapsed,
        hist,
        fsyncs: f1 - f0,
        entries: e1 - e0,
        node_cpu: cpu1 - cpu0,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize| std::env::args().nth(i);
    let secs: u64 = arg(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let list = |i: usize, default: &[u64]| -> Vec<u64> {
        arg(i).map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect()).unwrap_or_else(|| default.to_vec())
    };
    let group_counts = list(2, &[1, 64]);
    let in_flights = list(3, &[1, 64, 256]);
    let bin = raftchat_tests::release_binary()?;
    println!(
        "{:>6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>12} {:>10} {:>6}",
        "groups",
        "in-flight",
        "appends/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "entries/fsync",
        "appends/entry",
        "cpu us/app",
        "errors"
    );
    for groups in group_counts.iter().map(|g| *g as u32) {
        let extra_args: Vec<String> = std::env::var("RAFTCHAT_BENCH_NODE_ARGS")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let opts = Opts { data_groups: groups, binary: Some(bin.clone()), extra_args, ..Default::default() };
        let c = Cluster::start(opts).await?;
        let chats: Vec<(Uuid, Uuid)> = (0..CHATS).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
        for (i, (chat, sender)) in chats.iter().enumerate() {
            client::create_chat(&c.http, &c.url(c.ids()[i % 3]), *chat, "direct", *sender, &[Uuid::new_v4()]).await?;
        }
        for in_flight in in_flights.iter().map(|n| *n as usize) {
            let r = run(&c, &chats, groups, in_flight, secs).await?;
            let q = |p: f64| r.hist.value_at_quantile(p) as f64 / 1000.0;
            println!(
                "{:>6} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>13.1} {:>12.1} {:>10.1} {:>6}",
                r.groups,
                r.in_flight,
                r.acks as f64 / r.secs,
                q(0.5),
                q(0.99),
                q(0.999),
                r.entries as f64 / r.fsyncs.max(1) as f64,
                // Each append is an entry on 3 replicas' logs; entries counts all three.
                (r.acks * 3) as f64 / r.entries.max(1) as f64,
                r.node_cpu * 1e6 / r.acks.max(1) as f64,
                r.errors
            );
        }
    }
    Ok(())
}
