//! The scenarios: each sets up its users, chats and connections, runs bounded in time, and
//! returns its measured rows.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;

use crate::conn::message_text;
use crate::conn::Answer;
use crate::conn::Conn;
use crate::report::Procs;
use crate::report::Row;
use crate::report::Stats;
use crate::setup::connect_all;
use crate::setup::create_chat;
use crate::setup::Node;

/// Time to settle before a measured window starts.
const WARMUP: Duration = Duration::from_secs(2);
/// A send without an answer for this long counts as an error and stops its sender.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What every scenario works with.
pub struct Ctx {
    pub nodes: Vec<Node>,
    pub procs: Procs,
    pub http: reqwest::Client,
    pub secs: u64,
    pub size: usize,
}

impl Ctx {
    fn node(&self, i: usize) -> Node {
        self.nodes[i % self.nodes.len()].clone()
    }
}

/// Sends over `conn` until `stop`: closed loop (next send when the previous one is acked), or
/// paced at one send per `interval`, with latency counted from the intended send time.
async fn sender(
    mut conn: Conn,
    id: usize,
    chats: Vec<Uuid>,
    stats: Arc<Stats>,
    size: usize,
    interval: Option<Duration>,
    stop: Arc<AtomicBool>,
) {
    let mut due = stats.now_micros();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && !chats.is_empty() {
        let t0 = match interval {
            Some(iv) => {
                let now = stats.now_micros();
                if due > now {
                    tokio::time::sleep(Duration::from_micros(due - now)).await;
                }
                let t = due;
                due += iv.as_micros() as u64;
                t
            }
            None => stats.now_micros(),
        };
        n += 1;
        let chat = chats[n as usize % chats.len()];
        let frame = serde_json::json!({
            "type": "message", "chatId": chat, "text": message_text(t0, size), "clientMsgId": format!("lg{id}-{n}"),
        });
        if conn.out.send(frame.to_string()).await.is_err() {
            stats.error("closed");
            return;
        }
        loop {
            match tokio::time::timeout(ANSWER_TIMEOUT, conn.answers.recv()).await {
                Ok(Some(Answer::Ack(k))) if k == n => {
                    stats.acked(t0);
                    break;
                }
                Ok(Some(Answer::Ack(_))) => continue,
                Ok(Some(Answer::Error(code))) => {
                    stats.error(&code);
                    break;
                }
                Ok(None) => {
                    stats.error("closed");
                    return;
                }
                Err(_) => {
                    stats.error("timeout");
                    return;
                }
            }
        }
    }
}

/// Runs `senders` for a warm-up and then a measured window of `secs`; returns the row.
async fn measure(
    ctx: &Ctx,
    stats: &Arc<Stats>,
    scenario: &str,
    phase: String,
    senders: Vec<tokio::task::JoinHandle<()>>,
    stop: &Arc<AtomicBool>,
) -> Row {
    tokio::time::sleep(WARMUP).await;
    let bar = indicatif::ProgressBar::new(ctx.secs);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{scenario} {phase}"));
    stats.begin();
    let cpu0 = ctx.procs.cpu();
    let started = std::time::Instant::now();
    for s in 1..=ctx.secs {
        tokio::time::sleep_until((started + Duration::from_secs(s)).into()).await;
        let el = started.elapsed().as_secs_f64();
        bar.set_message(format!(
            "{:.0} acked/s, {:.0} delivered/s",
            stats.acked_count() as f64 / el,
            stats.delivered_count() as f64 / el
        ));
        bar.inc(1);
    }
    let secs = started.elapsed().as_secs_f64();
    stats.end();
    bar.finish_and_clear();
    let cpu = match (cpu0, ctx.procs.cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let row = stats.row(scenario, phase, secs, cpu, ctx.procs.rss());
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, s).await;
    }
    row
}

/// `k` senders, each on its own connection, over `chats` direct chats whose recipients are
/// connected to another node than their sender. Returns the senders' connections with their
/// chats, and the recipients' connections (kept open while the phase runs).
async fn direct_chats(
    ctx: &Ctx,
    stats: &Arc<Stats>,
    k: usize,
    chats: usize,
) -> anyhow::Result<(Vec<(Conn, Vec<Uuid>)>, Vec<Conn>)> {
    let senders: Vec<Uuid> = (0..k).map(|_| Uuid::new_v4()).collect();
    let recipients: Vec<Uuid> = (0..chats).map(|_| Uuid::new_v4()).collect();
    let created: Vec<anyhow::Result<(usize, Uuid)>> = futures::stream::iter(0..chats)
        .map(|j| {
            let (s, r, node) = (senders[j % k], recipients[j], ctx.node(j));
            let http = ctx.http.clone();
            async move { Ok((j % k, create_chat(&http, &node, "direct", s, &[r]).await?)) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut per_sender: Vec<Vec<Uuid>> = vec![Vec::new(); k];
    for c in created {
        let (i, chat) = c?;
        per_sender[i].push(chat);
    }
    let sender_nodes: Vec<(Uuid, Node)> = senders.iter().enumerate().map(|(i, u)| (*u, ctx.node(i))).collect();
    let recipient_nodes: Vec<(Uuid, Node)> =
        recipients.iter().enumerate().map(|(j, u)| (*u, ctx.node(j % k + 1))).collect();
    let (sconns, _) = connect_all(&ctx.http, &sender_nodes, stats, None).await?;
    let (rconns, _) = connect_all(&ctx.http, &recipient_nodes, stats, None).await?;
    Ok((sconns.into_iter().zip(per_sender).collect(), rconns))
}

fn spawn_senders(
    senders: Vec<(Conn, Vec<Uuid>)>,
    stats: &Arc<Stats>,
    size: usize,
    interval: Option<Duration>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    senders
        .into_iter()
        .enumerate()
        .map(|(i, (conn, chats))| tokio::spawn(sender(conn, i, chats, stats.clone(), size, interval, stop.clone())))
        .collect()
}

/// Closed loop at each number of messages in flight (one per sender connection).
pub async fn throughput(ctx: &Ctx, in_flight: &[usize], chats: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &k in in_flight {
        let k = k.max(1);
        let stats = Arc::new(Stats::new());
        let (senders, _recipients) = direct_chats(ctx, &stats, k, chats.max(k)).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_senders(senders, &stats, ctx.size, None, &stop);
        rows.push(measure(ctx, &stats, "throughput", format!("in-flight={k}"), tasks, &stop).await);
    }
    Ok(rows)
}

/// A fixed total rate over 64 paced senders.
pub async fn paced(ctx: &Ctx, scenario: &str, rate: u64, chats: usize) -> anyhow::Result<Row> {
    let k = 64usize;
    let stats = Arc::new(Stats::new());
    let (senders, _recipients) = direct_chats(ctx, &stats, k, chats.max(k)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(k as f64 / rate.max(1) as f64);
    let tasks = spawn_senders(senders, &stats, ctx.size, Some(interval), &stop);
    Ok(measure(ctx, &stats, scenario, format!("rate={rate}/s"), tasks, &stop).await)
}

/// Idle connections on the first node, then a steady message rate to recipients on it.
pub async fn connections(ctx: &Ctx, n: usize, rate: u64) -> anyhow::Result<Row> {
    let stats = Arc::new(Stats::new());
    let first = ctx.node(0);
    let pid = ctx.procs.0.first().copied();
    let rss_before = pid.map(raftchat_tests::procstat::rss_bytes);
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("connecting {bar:30} {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let idle: Vec<(Uuid, Node)> = (0..n).map(|_| (Uuid::new_v4(), first.clone())).collect();
    let (idle_conns, setup_rate) = connect_all(&ctx.http, &idle, &stats, Some(&bar)).await?;
    bar.finish_and_clear();
    tokio::time::sleep(WARMUP).await;
    let rss_after = pid.map(raftchat_tests::procstat::rss_bytes);
    // 100 active pairs: senders on the other nodes, recipients on the loaded one.
    let pairs = 100usize;
    let mut senders = Vec::new();
    let mut recipients = Vec::new();
    for i in 0..pairs {
        let (s, r) = (Uuid::new_v4(), Uuid::new_v4());
        let chat = create_chat(&ctx.http, &first, "direct", s, &[r]).await?;
        senders.push(((s, ctx.node(1 + i % ctx.nodes.len().saturating_sub(1).max(1))), chat));
        recipients.push((r, first.clone()));
    }
    let (sconns, _) =
        connect_all(&ctx.http, &senders.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), &stats, None).await?;
    let (_rconns, _) = connect_all(&ctx.http, &recipients, &stats, None).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(pairs as f64 / rate.max(1) as f64);
    let per_sender = sconns.into_iter().zip(senders.iter().map(|(_, c)| vec![*c])).collect();
    let tasks = spawn_senders(per_sender, &stats, ctx.size, Some(interval), &stop);
    let mut row = measure(ctx, &stats, "connections", format!("idle={n},rate={rate}/s"), tasks, &stop).await;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) / n.max(1) as u64),
        _ => None,
    };
    row.extra = serde_json::json!({
        "connections": idle_conns.len(), "setupPerSec": setup_rate.round(),
        "loadedNodeRssBefore": rss_before, "loadedNodeRssAfter": rss_after, "bytesPerConnection": per_conn,
    });
    drop(idle_conns);
    Ok(row)
}

/// One group of `members`, spread over the nodes; one sender at `rate` messages per second.
pub async fn fanout(ctx: &Ctx, members: usize, rate: u64) -> anyhow::Result<Row> {
    let stats = Arc::new(Stats::new());
    let users: Vec<Uuid> = (0..members.max(2)).map(|_| Uuid::new_v4()).collect();
    let chat = create_chat(&ctx.http, &ctx.node(0), "group", users[0], &users[1..]).await?;
    let bar = indicatif::ProgressBar::new(users.len() as u64 - 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("connecting members {bar:30} {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let placed: Vec<(Uuid, Node)> = users[1..].iter().enumerate().map(|(i, u)| (*u, ctx.node(i))).collect();
    let (member_conns, setup_rate) = connect_all(&ctx.http, &placed, &stats, Some(&bar)).await?;
    bar.finish_and_clear();
    let (sconn, _) = connect_all(&ctx.http, &[(users[0], ctx.node(0))], &stats, None).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let tasks =
        spawn_senders(sconn.into_iter().map(|c| (c, vec![chat])).collect(), &stats, ctx.size, Some(interval), &stop);
    let mut row = measure(ctx, &stats, "fanout", format!("members={members},rate={rate}/s"), tasks, &stop).await;
    let expected = row.acked_per_sec * row.secs * (members.max(2) - 1) as f64;
    row.extra = serde_json::json!({
        "members": members, "connected": member_conns.len(), "setupPerSec": setup_rate.round(),
        "deliveriesExpected": expected.round(), "deliveries": (row.delivered_per_sec * row.secs).round(),
    });
    drop(member_conns);
    Ok(row)
}

/// `paced` for `minutes`, sampling the nodes' memory every 10 s: it must stay flat.
pub async fn soak(ctx: &Ctx, minutes: u64, rate: u64) -> anyhow::Result<Row> {
    let long = Ctx {
        nodes: ctx.nodes.clone(),
        procs: ctx.procs.clone(),
        http: ctx.http.clone(),
        secs: minutes.max(1) * 60,
        size: ctx.size,
    };
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    let sampler = {
        let (procs, samples) = (ctx.procs.clone(), samples.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                if let Some(rss) = procs.rss() {
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push((started.elapsed().as_secs(), rss));
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        })
    };
    let mut row = paced(&long, "soak", rate, 1000).await?;
    sampler.abort();
    row.scenario = "soak".into();
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Growth from the end of the first minute (caches filled) to the end.
    let settled = samples.iter().find(|(t, _)| *t >= 60).or(samples.first()).map(|(_, r)| *r);
    let last = samples.last().map(|(_, r)| *r);
    let growth = match (settled, last) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) * 100.0 / a as f64),
        _ => None,
    };
    row.extra = serde_json::json!({
        "rssSamples": samples, "rssAfterFirstMinute": settled, "rssLast": last, "rssGrowthPercent": growth,
    });
    Ok(row)
}
