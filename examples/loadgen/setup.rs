//! Users, sessions and chats for a run, through the internal API (`--internal-api`): a session
//! for a user id costs one HMAC, where a registered account would cost a password hash.

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use uuid::Uuid;

use crate::conn::Conn;
use crate::report::Stats;

/// Connections opened (and sessions fetched) at once.
const SETUP_CONCURRENCY: usize = 256;
/// Connections per source address: well under the ~28,000 ephemeral ports of one address.
const CONNS_PER_SOURCE_IP: usize = 20_000;

/// One node as the generator reaches it.
#[derive(Clone, Debug)]
pub struct Node {
    /// `http://host:port`
    pub url: String,
    pub addr: SocketAddr,
}

impl Node {
    pub fn parse(url: &str) -> anyhow::Result<Node> {
        let url = url.trim_end_matches('/').to_string();
        let hostport = url.split("://").nth(1).unwrap_or(&url).to_string();
        let addr = hostport.parse().with_context(|| format!("{url}: need http://IP:PORT"))?;
        Ok(Node { url, addr })
    }
}

/// The source address of the i-th connection of a large run: 127.1.x.y, so that 100,000
/// connections to one node do not run out of ports. `None` for small runs.
pub fn source_ip(i: usize, total: usize) -> Option<IpAddr> {
    if total <= CONNS_PER_SOURCE_IP {
        return None;
    }
    let n = (i / CONNS_PER_SOURCE_IP) as u32 + 1;
    Some(IpAddr::V4(Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8)))
}

pub async fn session(http: &reqwest::Client, node: &Node, user: Uuid) -> anyhow::Result<String> {
    let r = http
        .post(format!("{}/internal/v1/sessions", node.url))
        .json(&serde_json::json!({ "userId": user }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "session: {} (is the node started with --internal-api?)", r.status());
    let v: serde_json::Value = r.json().await?;
    v["token"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("session: no token"))
}

pub async fn create_chat(
    http: &reqwest::Client,
    node: &Node,
    kind: &str,
    creator: Uuid,
    members: &[Uuid],
) -> anyhow::Result<Uuid> {
    let chat = Uuid::new_v4();
    let body =
        serde_json::json!({ "chatId": chat, "kind": kind, "creator": creator, "members": members, "index": true });
    let r = http.post(format!("{}/internal/v1/chats", node.url)).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "create chat: {} {}", r.status(), r.text().await.unwrap_or_default());
    Ok(chat)
}

/// Opens one connection per `(user, node)`, `SETUP_CONCURRENCY` at a time; returns them in
/// order and the connection setup rate (connections per second, session included).
pub async fn connect_all(
    http: &reqwest::Client,
    users: &[(Uuid, Node)],
    stats: &Arc<Stats>,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<(Vec<Conn>, f64)> {
    let started = std::time::Instant::now();
    let total = users.len();
    let bar = bar.cloned();
    let results: Vec<anyhow::Result<Conn>> = futures::stream::iter(users.iter().cloned().enumerate())
        .map(|(i, (user, node))| {
            let (http, stats, bar) = (http.clone(), stats.clone(), bar.clone());
            async move {
                let token = session(&http, &node, user).await?;
                let c = crate::conn::connect(
                    node.addr,
                    node.url.starts_with("https://"),
                    source_ip(i, total),
                    &token,
                    user,
                    stats,
                )
                .await;
                if let Some(b) = &bar {
                    b.inc(1);
                }
                c.with_context(|| format!("connection {i} to {}", node.url))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let conns = results.into_iter().collect::<anyhow::Result<Vec<Conn>>>()?;
    Ok((conns, total as f64 / started.elapsed().as_secs_f64()))
}
