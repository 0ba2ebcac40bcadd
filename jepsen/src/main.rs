//! `jepsen test ...` runs raftchat under faults and checks it; `jepsen suite` runs every nemesis
//! and every negative control; `jepsen check HISTORY.jsonl` checks a history.
//! Exit code: 0 valid (suite: all passed), 1 invalid (suite: a case failed), 2 unknown or a
//! harness error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jepsen::checker::Verdict;
use jepsen::nemesis::Fault;
use jepsen::runner::TestOpts;

#[derive(Parser)]
#[command(name = "jepsen", about = "Jepsen-style consistency testing for raftchat")]
enum Cli {
    /// Run raftchat under faults and check the history.
    Test(TestArgs),
    /// Every nemesis, then every negative control (the CI suite).
    Suite {
        #[command(flatten)]
        args: TestArgs,
        /// Run only the cases whose name contains one of these (e.g. `kill,no_dedup`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Seconds of each negative-control run (the nemesis runs take --time-limit).
        #[arg(long, default_value_t = 25)]
        control_time_limit: u64,
        /// Let a case this machine cannot run (no root, FUSE, iptables or libfaketime) pass as
        /// skipped; without it a skipped case fails the suite.
        #[arg(long)]
        allow_skips: bool,
    },
    /// Random schedules (faults, nodes, rate, TLS) run after run for `--hours`, keeping only the
    /// runs that were not valid, each under the seed that picked its schedule.
    Soak {
        #[command(flatten)]
        args: TestArgs,
        #[arg(long, default_value_t = 1.0)]
        hours: f64,
        /// The first seed (each run takes the next); default: the time.
        #[arg(long)]
        seed: Option<u64>,
        /// Run the schedule of this seed once instead.
        #[arg(long)]
        replay: Option<u64>,
    },
    /// Check a JSON-lines history and print the report as JSON.
    Check { history: PathBuf },
}

#[derive(clap::Args, Clone)]
struct TestArgs {
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Faults: kill, pause, partition, client, clock, lost-writes; `all` (every one this machine
    /// supports) or `none`.
    #[arg(long, default_value = "partition,kill,pause", value_delimiter = ',')]
    nemesis: Vec<String>,
    /// Operations per second over all workers.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Run a raftchat built with this deliberate bug (built by the harness when needed).
    #[arg(long = "unsafe")]
    unsafe_knob: Option<String>,
    /// Results directory [default: target/jepsen/<label>-<time>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The raftchat binary [default: $RAFTCHAT_BIN, else the workspace's build].
    #[arg(long)]
    binary: Option<PathBuf>,
    #[arg(long, default_value_t = 6)]
    workers: usize,
    #[arg(long, default_value_t = 3)]
    chats: usize,
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// Seconds of quiet before each fault.
    #[arg(long, default_value_t = 3.0)]
    interval: f64,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 6.0)]
    hold: f64,
    /// Entries per group between snapshots: small, so that every run builds snapshots and a
    /// replica that fell behind catches up by one (runs at or below 1,000 must, or are unknown).
    #[arg(long, default_value_t = 50)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot: fewer than a paused or killed node misses.
    #[arg(long, default_value_t = 10)]
    logs_kept: u64,
    #[arg(long, default_value_t = 16)]
    data_groups: u32,
    /// How partitions cut node-to-node links: `proxy` (userspace proxies, no root) or `netns`
    /// (a network namespace per node and iptables DROP rules; root).
    #[arg(long, default_value = "proxy")]
    net: String,
    /// Run the nodes with TLS: mutual TLS between them, HTTPS and WSS for clients.
    #[arg(long)]
    tls: bool,
}

fn faults(names: &[String]) -> anyhow::Result<Vec<Fault>> {
    let mut out = Vec::new();
    for n in names {
        match n.as_str() {
            "all" => out.extend(Fault::ALL),
            "none" | "" => {}
            other => out.push(Fault::parse(other).ok_or_else(|| {
                let all: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                anyhow::anyhow!("unknown nemesis {other:?}; known: {all:?}, all, none")
            })?),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn opts(a: &TestArgs, label: &str) -> anyhow::Result<TestOpts> {
    let fs = faults(&a.nemesis)?;
    anyhow::ensure!(a.nodes >= 3, "--nodes must be at least 3");
    let netns = match a.net.as_str() {
        "proxy" => false,
        "netns" => {
            jepsen::net::netns::probe().map_err(|why| anyhow::anyhow!("--net netns is not available here: {why}"))?;
            true
        }
        other => anyhow::bail!("--net must be proxy or netns, not {other:?}"),
    };
    anyhow::ensure!(a.rate > 0.0 && a.workers > 0 && a.chats > 0, "--rate, --workers and --chats must be positive");
    Ok(TestOpts {
        nodes: a.nodes,
        time_limit: Duration::from_secs(a.time_limit),
        faults: fs,
        rate: a.rate,
        unsafe_knob: a.unsafe_knob.clone(),
        out: a.out.clone().unwrap_or_else(|| jepsen::runner::default_out(label)),
        binary: jepsen::binary::resolve(a.binary.clone(), a.unsafe_knob.is_some())?,
        workers: a.workers,
        chats: a.chats,
        subscribers: a.subscribers,
        interval: Duration::from_secs_f64(a.interval),
        hold: Duration::from_secs_f64(a.hold),
        snapshot_every: a.snapshot_every,
        logs_kept: a.logs_kept,
        data_groups: a.data_groups,
        netns,
        tls: a.tls,
    })
}

fn check(history: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(history)?;
    let events = jepsen::history::parse(&text)?;
    let report = jepsen::checker::check(&events);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::from(match report.verdict {
        Verdict::Valid => 0,
        Verdict::Invalid => 1,
        Verdict::Unknown => 2,
    }))
}

async fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let label = a.unsafe_knob.clone().unwrap_or_else(|| a.nemesis.join("-"));
    let o = opts(&a, &label)?;
    let r = jepsen::runner::run(o).await?;
    print!("{}", std::fs::read_to_string(r.dir.join("summary.txt")).unwrap_or_default());
    Ok(ExitCode::from(r.exit_code()))
}

async fn suite(
    mut a: TestArgs,
    only: Vec<String>,
    control_time: Duration,
    allow_skips: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.unsafe_knob.is_none(), "the suite picks its own knobs; drop --unsafe");
    a.nemesis = vec!["none".into()];
    let out = a.out.clone().unwrap_or_else(jepsen::suite::default_out);
    let base = opts(&a, "suite")?;
    let results = jepsen::suite::run(&base, control_time, &only, &out).await?;
    println!("{:<34} {:<6} detail", "case", "result");
    for r in &results {
        let verdict = match (&r.skipped, r.passed) {
            (Some(_), _) if allow_skips => "SKIP",
            (Some(_), _) => "FAIL (skipped)",
            (None, true) => "PASS",
            (None, false) => "FAIL",
        };
        println!("{:<34} {:<6} {}", r.name, verdict, r.skipped.as_deref().unwrap_or(&r.detail));
    }
    println!("results: {}", out.display());
    let ok = results.iter().all(|r| r.passed && (allow_skips || r.skipped.is_none()));
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}

async fn soak(a: TestArgs, hours: f64, seed: Option<u64>, replay: Option<u64>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(hours > 0.0, "--hours must be positive");
    let base = opts(&a, "soak")?;
    if let Some(s) = replay {
        let o = TestOpts { out: base.out.join(format!("seed-{s}")), ..jepsen::soak::schedule(&base, s) };
        let r = jepsen::runner::run(o).await?;
        print!("{}", std::fs::read_to_string(r.dir.join("summary.txt")).unwrap_or_default());
        return Ok(ExitCode::from(r.exit_code()));
    }
    let first = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    let s = jepsen::soak::run(&base, Duration::from_secs_f64(hours * 3600.0), first, &base.out).await?;
    println!("soak: {} runs, {} valid, {} kept, {} s; seeds from {first}", s.runs, s.valid, s.kept.len(), s.seconds);
    for k in &s.kept {
        println!("  seed {}: {:?} {:?} {:?} {}", k.seed, k.verdict, k.anomalies, k.reasons, k.dir);
    }
    println!("results: {}", base.out.display());
    Ok(ExitCode::from(if s.kept.is_empty() { 0 } else { 1 }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jepsen: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let res = rt.block_on(async move {
        match cli {
            Cli::Test(a) => test(a).await,
            Cli::Suite { args, only, control_time_limit, allow_skips } => {
                suite(args, only, Duration::from_secs(control_time_limit), allow_skips).await
            }
            Cli::Soak { args, hours, seed, replay } => soak(args, hours, seed, replay).await,
            Cli::Check { history } => check(&history),
        }
    });
    res.unwrap_or_else(|e| {
        eprintln!("jepsen: {e:#}");
        ExitCode::from(2)
    })
}
