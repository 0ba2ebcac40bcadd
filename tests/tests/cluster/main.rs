//! Cluster tests: real `raftchat node` processes on 127.0.0.1 (build the binary first:
//! `cargo build --bin raftchat`). One module per scenario; they run one at a time.

mod admin;
mod backup;
mod bad_data_dir;
mod failover;
mod force_new_cluster;
mod idempotency;
mod internal_api;
mod leadership;
mod lost_data;
mod membership;
mod metrics;
mod replication;
mod restart;
mod retention;
mod security;
mod store_crashes;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use futures::StreamExt;
use raftchat_tests::client;
use raftchat_tests::client::AppendError;
use raftchat_tests::Cluster;
use uuid::Uuid;

/// A chat with its two members.
#[derive(Clone, Copy)]
pub struct TestChat {
    pub id: Uuid,
    pub a: Uuid,
    pub b: Uuid,
}

pub async fn make_chats(c: &Cluster, n: usize) -> anyhow::Result<Vec<TestChat>> {
    let chats: Vec<TestChat> =
        (0..n).map(|_| TestChat { id: Uuid::new_v4(), a: Uuid::new_v4(), b: Uuid::new_v4() }).collect();
    let ids = c.ids();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(chats.iter().enumerate())
        .map(|(i, t)| {
            let base = c.url(ids[i % ids.len()]);
            let http = c.http.clone();
            async move { client::create_chat(&http, &base, t.id, "direct", t.a, &[t.b]).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(chats)
}

/// One acknowledged append.
#[derive(Debug, Clone)]
pub struct Ack {
    pub chat: Uuid,
    pub cmid: String,
    pub seq: u64,
    pub at: Instant,
}

/// What a load run saw.
#[derive(Default)]
pub struct LoadResult {
    pub acks: Vec<Ack>,
    /// (chat, cmid) whose outcome stayed unknown.
    pub unknown: Vec<(Uuid, String)>,
    pub failed: usize,
}

/// Appends `count` messages over `chats` from `concurrency` clients, spread over `nodes`,
/// retrying each message with the same client message id on unknown outcomes.
pub async fn load(c: &Cluster, chats: &[TestChat], count: usize, concurrency: usize, tag: &str) -> LoadResult {
    load_padded(c, chats, count, concurrency, tag, 0).await
}

/// [`load`] with message texts padded by `pad` bytes.
pub async fn load_padded(
    c: &Cluster,
    chats: &[TestChat],
    count: usize,
    concurrency: usize,
    tag: &str,
    pad: usize,
) -> LoadResult {
    let result = Arc::new(Mutex::new(LoadResult::default()));
    let padding = "p".repeat(pad);
    futures::stream::iter(0..count)
        .map(|i| {
            let t = chats[i % chats.len()];
            let cmid = format!("{tag}-{i}");
            let nodes = c.live();
            let http = c.http.clone();
            let urls: Vec<String> = nodes.iter().map(|n| c.url(*n)).collect();
            let result = result.clone();
            let text = format!("text {cmid} {padding}");
            async move {
                let mut outcome = None;
                for attempt in 0..6 {
                    let base = &urls[(i + attempt) % urls.len()];
                    match client::append(&http, base, t.id, t.a, &cmid, &text).await {
                        Ok(a) => {
                            outcome = Some(Ok(a));
                            break;
                        }
                        Err(AppendError::Unknown(e)) => outcome = Some(Err(Some(e))),
                        Err(AppendError::Failed(_, e)) => {
                            if outcome.is_none() {
                                outcome = Some(Err(None));
                            }
                            let _ = e;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let mut r = result.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Some(Ok(a)) => r.acks.push(Ack { chat: t.id, cmid, seq: a.seq, at: Instant::now() }),
                    Some(Err(Some(_))) => r.unknown.push((t.id, cmid)),
                    _ => r.failed += 1,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    Arc::try_unwrap(result).map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).unwrap_or_default()
}

/// Checks one chat's log against the acks: seqs 1..N without gaps, every ack present exactly
/// once at its acked seq, unknown outcomes at most once, nothing else.
pub fn check_log(
    chat: Uuid,
    log: &[client::Message],
    acked: &HashMap<String, u64>,
    unknown: &[String],
    who: &str,
) -> anyhow::Result<()> {
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, m) in log.iter().enumerate() {
        anyhow::ensure!(
            m.seq == i as u64 + 1,
            "{who}: chat {chat}: seq {} at position {} (gap or reorder)",
            m.seq,
            i + 1
        );
        anyhow::ensure!(
            seen.insert(&m.client_msg_id, m.seq).is_none(),
            "{who}: chat {chat}: duplicate message {}",
            m.client_msg_id
        );
        anyhow::ensure!(
            acked.contains_key(&m.client_msg_id) || unknown.contains(&m.client_msg_id),
            "{who}: chat {chat}: phantom message {}",
            m.client_msg_id
        );
    }
    for (cmid, seq) in acked {
        match seen.get(cmid.as_str()) {
            Some(s) if s == seq => {}
            Some(s) => anyhow::bail!("{who}: chat {chat}: {cmid} acked at seq {seq} but found at {s}"),
            None => anyhow::bail!("{who}: chat {chat}: acknowledged {cmid} (seq {seq}) is lost"),
        }
    }
    Ok(())
}

/// Per chat: acked cmid -> seq, and unknown cmids.
pub fn by_chat(r: &LoadResult) -> HashMap<Uuid, (HashMap<String, u64>, Vec<String>)> {
    let mut m: HashMap<Uuid, (HashMap<String, u64>, Vec<String>)> = HashMap::new();
    for a in &r.acks {
        m.entry(a.chat).or_default().0.insert(a.cmid.clone(), a.seq);
    }
    for (chat, cmid) in &r.unknown {
        m.entry(*chat).or_default().1.push(cmid.clone());
    }
    m
}

/// Checks every chat through `node` at `consistency`, waiting for a replica to catch up.
pub async fn check_all(
    c: &Cluster,
    node: u64,
    consistency: &str,
    chats: &[TestChat],
    r: &LoadResult,
) -> anyhow::Result<()> {
    let expect = by_chat(r);
    let empty = (HashMap::new(), Vec::new());
    let base = c.url(node);
    for t in chats {
        let (acked, unknown) = expect.get(&t.id).unwrap_or(&empty);
        let min_len = acked.values().max().copied().unwrap_or(0) as usize;
        // A follower may lag a little behind the commit; wait until it has every ack.
        let log = raftchat_tests::eventually(Duration::from_secs(30), "replica catch-up", || {
            let http = c.http.clone();
            let base = base.clone();
            async move {
                let log = client::history(&http, &base, t.id, consistency).await.ok()?;
                (log.len() >= min_len).then_some(log)
            }
        })
        .await?;
        check_log(t.id, &log, acked, unknown, &format!("node {node} ({consistency})"))?;
    }
    Ok(())
}
