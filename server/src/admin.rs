//! `raftchat admin --server URL <verb>`: the admin CLI. Every verb is an HTTP call to a node's
//! client port (`/internal/v1/...`), so everything it shows is also available to scripts.
//!
//! - `status`: nodes (up/down, address), per group replicas, leader, term, applied index per
//!   replica, replication lag, and the cluster's fault tolerance ("can lose 1 node").
//! - `members add|remove`, `rebalance`, `drain`, `transfer-leader`: see [`crate::admin_members`].
//! - `backup`, `restore`: see [`crate::admin_backup`]; `retention`: [`crate::admin_retention`].
//!
//! With `--token` (or `RAFTCHAT_ADMIN_TOKEN`), every call carries the nodes' admin token.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Any node's client URL, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "RAFTCHAT_SERVER", default_value = "http://127.0.0.1:7700")]
    server: String,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    output: String,
    /// The nodes' admin token (their --admin-token), sent as `Authorization: Bearer`.
    #[arg(long, env = "RAFTCHAT_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token.
    #[arg(long, env = "RAFTCHAT_ADMIN_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Certificates directory: `ca.crt` to trust the nodes' HTTPS, and `client.crt` and
    /// `client.key` (from `raftchat cert create-client`) to authenticate as an administrator.
    #[arg(long, env = "RAFTCHAT_CERTS_DIR")]
    certs_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Nodes, groups, leaders, lag and fault tolerance.
    Status,
    /// Add or remove nodes.
    Members {
        #[command(subcommand)]
        verb: crate::admin_members::MembersVerb,
    },
    /// Spread replicas evenly over the nodes (after adding nodes).
    Rebalance,
    /// Move leadership of every group away from a node before restarting it (`--off` undoes).
    Drain {
        node: u64,
        #[arg(long)]
        off: bool,
    },
    /// Make a node the leader of a group.
    TransferLeader { group: u32, node: u64 },
    /// Write an online backup of every data group to FILE (consistent per group).
    Backup {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The cluster-wide history retention policy.
    Retention {
        #[command(subcommand)]
        verb: crate::admin_retention::RetentionVerb,
    },
    /// Media blobs: counts, bytes, copies.
    Media {
        #[command(subcommand)]
        verb: crate::admin_media::MediaVerb,
    },
    /// Push notifications that failed every attempt: list them, or send them again.
    Dlq {
        #[command(subcommand)]
        verb: crate::admin_dlq::DlqVerb,
    },
    /// Load a backup into a fresh cluster with the same number of data groups.
    Restore {
        #[arg(long = "in")]
        input: std::path::PathBuf,
        /// Write into groups that hold data already (resuming a restore that stopped half-way);
        /// records whose keys exist are left as they are.
        #[arg(long)]
        resume: bool,
    },
}

/// A node's client URL from its advertised address, with the scheme of `server` (the URL the
/// operator gave): every node of a cluster serves clients the same way.
pub fn url_of(server: &str, addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return addr.to_string();
    }
    let scheme = if server.starts_with("https://") { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// Where and how the admin CLI talks to the cluster.
pub struct Admin {
    pub server: String,
    pub token: Option<String>,
    pub json: bool,
    /// From `--certs-dir`: the cluster CA to trust, and the admin client certificate if present.
    pub tls: Option<rustls::ClientConfig>,
}

impl Admin {
    /// An HTTP client that sends the admin token with every request.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the admin token must be printable ASCII")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut b = reqwest::Client::builder().timeout(timeout).default_headers(headers);
        if let Some(config) = &self.tls {
            b = b.use_preconfigured_tls(config.clone());
        }
        Ok(b.build()?)
    }
}

pub async fn admin_main(args: AdminArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.output == "table" || args.output == "json", "--output must be table or json");
    let token = match (args.token, &args.token_file) {
        (Some(_), Some(_)) => anyhow::bail!("give --token or --token-file, not both"),
        (Some(t), None) => Some(t),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the admin token from {}", f.display()))?
                .trim_end()
                .to_string(),
        ),
        (None, None) => None,
    };
    let tls = match &args.certs_dir {
        Some(dir) => Some(admin_tls(dir)?),
        None => None,
    };
    let a = Admin { server: args.server.trim_end_matches('/').to_string(), token, json: args.output == "json", tls };
    let http = a.client(Duration::from_secs(3))?;
    match args.verb {
        Verb::Status => {
            let report = status(&http, &a.server).await?;
            if args.output == "json" {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_table(&report);
            }
        }
        Verb::Members { verb } => crate::admin_members::members(&a, verb).await?,
        Verb::Rebalance => crate::admin_members::rebalance(&a).await?,
        Verb::Drain { node, off } => crate::admin_members::drain(&a, node, !off).await?,
        Verb::TransferLeader { group, node } => crate::admin_members::transfer_leader(&a, group, node).await?,
        Verb::Backup { out } => crate::admin_backup::backup(&a, &out).await?,
        Verb::Restore { input, resume } => crate::admin_backup::restore(&a, &input, resume).await?,
        Verb::Retention { verb } => crate::admin_retention::retention(&a, verb).await?,
        Verb::Media { verb } => crate::admin_media::media(&a, verb).await?,
        Verb::Dlq { verb } => crate::admin_dlq::dlq(&a, verb).await?,
    }
    Ok(())
}

/// TLS for the admin CLI from a certificates directory: trust the cluster CA; with `client.crt`
/// and `client.key`, present them (offering the admin protocol, so the node asks for them).
fn admin_tls(dir: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
    use raftchat_raft::transport::tls;
    let ca = crate::tls::load::certs(&dir.join(crate::tls::CA_CERT))?;
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(tls::roots(&ca)?);
    let (cert, key) = (dir.join(crate::tls::CLIENT_CERT), dir.join(crate::tls::CLIENT_KEY));
    if !cert.exists() {
        return Ok(builder.with_no_client_auth());
    }
    let chain = crate::tls::load::certs(&cert)?;
    let key = crate::tls::load::key(&key)?;
    let mut config = builder.with_client_auth_cert(chain, key).context("client.crt and client.key do not match")?;
    config.alpn_protocols = vec![crate::tls::ADMIN_ALPN.to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = r.status();
    if !status.is_success() {
        let body: Value = r.json().await.unwrap_or_default();
        let why = body["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("GET {url}: {status} {why}");
    }
    Ok(r.json().await?)
}

/// Builds the cluster report from the layout and every node's own status.
pub(crate) async fn status(http: &reqwest::Client, server: &str) -> anyhow::Result<Value> {
    let cluster = get(http, &format!("{server}/internal/v1/cluster")).await?;
    anyhow::ensure!(cluster["initialized"] == true, "the cluster is not initialized yet");
    let nodes = cluster["nodes"].as_array().cloned().unwrap_or_default();
    let mut node_status: BTreeMap<u64, Option<Value>> = BTreeMap::new();
    for n in &nodes {
        let id = n["nodeId"].as_u64().unwrap_or(0);
        let addr = n["apiAddr"].as_str().unwrap_or("");
        let url = url_of(server, addr);
        node_status.insert(id, get(http, &format!("{url}/internal/v1/status")).await.ok());
    }
    let up = |id: u64| node_status.get(&id).is_some_and(|s| s.is_some());
    // Per group: what each up node reports.
    let mut groups = Vec::new();
    let mut min_spare = i64::MAX;
    let mut group_ids: Vec<(u64, Vec<u64>)> = vec![(0, node_status.keys().copied().collect())];
    for g in cluster["groups"].as_array().cloned().unwrap_or_default() {
        let replicas: Vec<u64> =
            g["replicas"].as_array().cloned().unwrap_or_default().iter().filter_map(Value::as_u64).collect();
        group_ids.push((g["group"].as_u64().unwrap_or(0), replicas));
    }
    for (gid, replicas) in group_ids {
        let mut leader = None;
        let mut term = 0;
        let mut applied = BTreeMap::new();
        let mut bytes = 0u64;
        let mut voter_ids: Vec<u64> = Vec::new();
        for (nid, st) in &node_status {
            let Some(st) = st else { continue };
            let Some(view) =
                st["groups"].as_array().and_then(|gs| gs.iter().find(|x| x["group"].as_u64() == Some(gid)))
            else {
                continue;
            };
            term = term.max(view["term"].as_u64().unwrap_or(0));
            if view["isLeader"] == true || voter_ids.is_empty() {
                voter_ids = view["voters"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
            }
            if view["isLeader"] == true {
                leader = Some(*nid);
            }
            applied.insert(*nid, view["appliedIndex"].as_u64().unwrap_or(0));
            let here = view["logBytes"].as_u64().unwrap_or(0) + view["snapshotBytes"].as_u64().unwrap_or(0);
            bytes = bytes.max(here);
        }
        // Quorum counts voters (the leader's view; the layout's replicas when no one answered).
        let voters: Vec<u64> = if voter_ids.is_empty() { replicas.clone() } else { voter_ids };
        let alive = voters.iter().filter(|r| up(**r)).count();
        let quorum = voters.len() / 2 + 1;
        min_spare = min_spare.min(alive as i64 - quorum as i64);
        let lag = applied.values().max().unwrap_or(&0) - applied.values().min().unwrap_or(&0);
        groups.push(serde_json::json!({
            "group": gid, "replicas": replicas, "leader": leader, "term": term,
            "applied": applied, "lag": lag, "voters": voters, "aliveVoters": alive, "storageBytes": bytes,
        }));
    }
    let can_lose = min_spare.max(0);
    let node_rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let id = n["nodeId"].as_u64().unwrap_or(0);
            serde_json::json!({ "nodeId": id, "apiAddr": n["apiAddr"], "raftAddr": n["raftAddr"], "up": up(id) })
        })
        .collect();
    Ok(serde_json::json!({
        "clusterId": cluster["clusterId"],
        "epoch": cluster["epoch"],
        "nodes": node_rows,
        "groups": groups,
        "faultTolerance": { "canLoseNodes": can_lose,
            "summary": format!("can lose {can_lose} node{}", if can_lose == 1 { "" } else { "s" }) },
    }))
}

fn print_table(r: &Value) {
    println!("cluster {}  (layout epoch {})", r["clusterId"].as_str().unwrap_or("?"), r["epoch"]);
    println!();
    println!("{:<6} {:<6} {:<22} {:<22}", "NODE", "STATE", "CLIENT", "RAFT");
    for n in r["nodes"].as_array().into_iter().flatten() {
        println!(
            "{:<6} {:<6} {:<22} {:<22}",
            n["nodeId"].to_string(),
            if n["up"] == true { "up" } else { "DOWN" },
            n["apiAddr"].as_str().unwrap_or(""),
            n["raftAddr"].as_str().unwrap_or("")
        );
    }
    println!();
    println!(
        "{:<6} {:<12} {:<7} {:<6} {:<8} {:<6} {:>10}",
        "GROUP", "REPLICAS", "LEADER", "TERM", "APPLIED", "LAG", "STORAGE"
    );
    for g in r["groups"].as_array().into_iter().flatten() {
        let replicas: Vec<String> = g["replicas"].as_array().into_iter().flatten().map(|v| v.to_string()).collect();
        let max_applied =
            g["applied"].as_object().map(|m| m.values().filter_map(Value::as_u64).max().unwrap_or(0)).unwrap_or(0);
        println!(
            "{:<6} {:<12} {:<7} {:<6} {:<8} {:<6} {:>10}",
            g["group"].to_string(),
            replicas.join(","),
            g["leader"].as_u64().map_or("none".to_string(), |l| l.to_string()),
            g["term"].to_string(),
            max_applied,
            g["lag"].to_string(),
            human_bytes(g["storageBytes"].as_u64().unwrap_or(0))
        );
    }
    println!();
    println!("fault tolerance: {}", r["faultTolerance"]["summary"].as_str().unwrap_or("?"));
}

/// 1536 -> "1.5 KiB".
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
