//! Real node processes on 127.0.0.1.

use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

/// Settings of a test cluster.
#[derive(Debug, Clone)]
pub struct Opts {
    pub nodes: u64,
    pub data_groups: u32,
    pub snapshot_every: u64,
    pub logs_kept: u64,
    /// The binary to run; [`binary`] when unset.
    pub binary: Option<PathBuf>,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
    /// Route each node's inbound node-to-node traffic through a fault proxy.
    pub proxied: bool,
    /// TLS everywhere: nodes get certificates from the test CA ([`crate::tls`]), peers use
    /// mutual TLS, clients HTTPS and WSS.
    pub secure: bool,
    /// `--internal-api` (the unauthenticated test API; the admin API open to all).
    pub internal_api: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            nodes: 3,
            data_groups: 64,
            snapshot_every: 10_000,
            logs_kept: 2_000,
            binary: None,
            extra_args: Vec::new(),
            proxied: false,
            secure: crate::tls::secure_by_env(),
            internal_api: true,
        }
    }
}

struct NodeProc {
    id: u64,
    http: String,
    raft: String,
    /// The address peers use: the proxy's when proxied, else `raft`.
    advertise: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: std::sync::Mutex<Option<Child>>,
    /// `--peers` of this node: the initial nodes, plus itself for nodes added later.
    peers: String,
}

pub struct Cluster {
    proxies: Vec<crate::proxy::Proxy>,
    dir: tempfile::TempDir,
    nodes: Vec<NodeProc>,
    peers: String,
    opts: Opts,
    pub http: reqwest::Client,
}

/// The `raftchat` binary under test: `$RAFTCHAT_BIN`, else the workspace's debug build.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("RAFTCHAT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/raftchat");
    anyhow::ensure!(p.exists(), "{} not found: run `cargo build --bin raftchat` first", p.display());
    Ok(p)
}

/// The release build of `raftchat` for benchmarks: `$RAFTCHAT_BIN`, else the workspace's.
pub fn release_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::var("RAFTCHAT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/raftchat"));
    anyhow::ensure!(bin.exists(), "{} not found: cargo build --release --bin raftchat", bin.display());
    Ok(bin)
}

/// Every client of a test cluster is 127.0.0.1: tests register hundreds of users and load
/// generators open thousands of sockets from it, so the per-address limits are lifted unless
/// a test sets them (the per-account and per-user limits stay).
fn per_address_defaults(extra: &[String]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for flag in ["--auth-attempts-per-addr-per-min", "--connections-per-addr-max"] {
        if !extra.iter().any(|a| a == flag) {
            out.extend([flag, "1000000"]);
        }
    }
    out
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `n` listeners on 127.0.0.1 port 0. Callers hold them until every other port they need
/// is bound too, so the OS never hands the same port out twice, then drop them just before the
/// processes that use the ports start.
fn reserve_ports(n: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    Ok((0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?)
}

impl Cluster {
    pub async fn start(opts: Opts) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let reserved = reserve_ports(opts.nodes as usize * 2)?;
        let ports: Vec<u16> = reserved.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..opts.nodes {
            let id = i + 1;
            let raft = format!("127.0.0.1:{}", ports[i as usize * 2 + 1]);
            let advertise = if opts.proxied {
                let p = crate::proxy::Proxy::start(std::net::TcpListener::bind("127.0.0.1:0")?, raft.clone())?;
                let a = p.addr.clone();
                proxies.push(p);
                a
            } else {
                raft.clone()
            };
            nodes.push(NodeProc {
                id,
                http: format!("127.0.0.1:{}", ports[i as usize * 2]),
                raft,
                advertise,
                data_dir: dir.path().join(format!("node-{id}")),
                log: dir.path().join(format!("node-{id}.log")),
                child: std::sync::Mutex::new(None),
                peers: String::new(),
            });
        }
        let peers = nodes.iter().map(|n| format!("{}={}", n.id, n.advertise)).collect::<Vec<_>>().join(",");
        for n in &mut nodes {
            n.peers = peers.clone();
        }
        if opts.secure {
            let bin = match &opts.binary {
                Some(b) => b.clone(),
                None => binary()?,
            };
            let ca = crate::tls::ca(&bin)?;
            for n in &nodes {
                crate::tls::node_certs(&bin, ca, dir.path(), n.id)?;
            }
            eprintln!("test cluster: TLS on (peers mutual TLS, clients HTTPS and WSS)");
        }
        let http = if opts.secure { crate::tls::admin_builder()? } else { crate::tls::http_builder() };
        let http = http.timeout(Duration::from_secs(15)).build()?;
        // The proxies hold their own listeners; release the node ports for the nodes to bind.
        drop(reserved);
        let c = Cluster { proxies, dir, nodes, peers, opts, http };
        for id in 1..=c.opts.nodes {
            c.spawn(id)?;
        }
        c.wait_ready(Duration::from_secs(60)).await?;
        Ok(c)
    }

    fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[id as usize - 1]
    }

    fn spawn(&self, id: u64) -> anyhow::Result<()> {
        self.spawn_with(id, &[])
    }

    fn spawn_with(&self, id: u64, extra: &[&str]) -> anyhow::Result<()> {
        let bin = match &self.opts.binary {
            Some(b) => b.clone(),
            None => binary()?,
        };
        let opts = self.opts.clone();
        let n = &self.nodes[id as usize - 1];
        let peers = n.peers.clone();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log)?;
        let child = Command::new(bin)
            .arg("node")
            .args(["--node-id", &id.to_string(), "--cluster-id", "test-cluster"])
            .args(["--listen", &n.http, "--raft-listen", &n.raft, "--raft-advertise", &n.advertise])
            .args(["--peers", &peers])
            .args(opts.internal_api.then_some("--internal-api"))
            .args(opts.secure.then(|| "--certs-dir".to_string()))
            .args(opts.secure.then(|| self.dir.path().join(format!("certs-{id}")).to_string_lossy().into_owned()))
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--data-groups", &opts.data_groups.to_string()])
            .args(["--snapshot-every", &opts.snapshot_every.to_string(), "--logs-kept", &opts.logs_kept.to_string()])
            .args(per_address_defaults(&opts.extra_args))
            .args(&opts.extra_args)
            .args(extra)
            .env("RUST_LOG", std::env::var("RAFTCHAT_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning raftchat node")?;
        *lock(&n.child) = Some(child);
        Ok(())
    }

    /// Starts one more node with the next id and an empty data directory. It knows the initial
    /// nodes but is in no layout: it joins only through `raftchat admin members add`.
    pub async fn add_node(&mut self) -> anyhow::Result<u64> {
        anyhow::ensure!(!self.opts.proxied, "add_node does not support proxied clusters");
        let id = self.nodes.len() as u64 + 1;
        let reserved = reserve_ports(2)?;
        let ports: Vec<u16> = reserved.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        let raft = format!("127.0.0.1:{}", ports[1]);
        self.nodes.push(NodeProc {
            id,
            http: format!("127.0.0.1:{}", ports[0]),
            raft: raft.clone(),
            advertise: raft.clone(),
            data_dir: self.dir.path().join(format!("node-{id}")),
            log: self.dir.path().join(format!("node-{id}.log")),
            child: std::sync::Mutex::new(None),
            peers: format!("{},{id}={raft}", self.peers),
        });
        drop(reserved);
        if self.opts.secure {
            let bin = match &self.opts.binary {
                Some(b) => b.clone(),
                None => binary()?,
            };
            crate::tls::node_certs(&bin, crate::tls::ca(&bin)?, self.dir.path(), id)?;
        }
        self.spawn(id)?;
        let url = self.url(id);
        crate::eventually(Duration::from_secs(30), "the new node answers /livez", || async {
            matches!(self.http.get(format!("{url}/livez")).send().await, Ok(r) if r.status().is_success()).then_some(())
        })
        .await?;
        Ok(id)
    }

    /// Stops node `id` and starts it again on new ports (same id, same data): as when a
    /// machine comes back with a new address.
    pub fn readdress(&mut self, id: u64) -> anyhow::Result<()> {
        anyhow::ensure!(!self.opts.proxied, "readdress does not support proxied clusters");
        self.kill(id);
        let reserved = reserve_ports(2)?;
        let ports: Vec<u16> = reserved.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        let n = &mut self.nodes[id as usize - 1];
        n.http = format!("127.0.0.1:{}", ports[0]);
        n.raft = format!("127.0.0.1:{}", ports[1]);
        n.advertise = n.raft.clone();
        drop(reserved);
        self.spawn(id)
    }

    /// The node's Raft address as peers reach it.
    pub fn raft_addr(&self, id: u64) -> String {
        self.node(id).advertise.clone()
    }

    /// The node's client address (`host:port`).
    pub fn api_addr(&self, id: u64) -> String {
        self.node(id).http.clone()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&self, id: u64) {
        if let Some(mut c) = lock(&self.nodes[id as usize - 1].child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&self, id: u64) -> anyhow::Result<()> {
        self.kill(id);
        self.spawn(id)
    }

    /// Restarts node `id` with more flags, for this start only.
    pub fn restart_with(&self, id: u64, extra: &[&str]) -> anyhow::Result<()> {
        self.kill(id);
        self.spawn_with(id, extra)
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).data_dir.clone()
    }

    /// The fault proxy in front of node `id` (clusters started with `proxied`).
    pub fn proxy(&self, id: u64) -> Option<&crate::proxy::Proxy> {
        self.proxies.get(id as usize - 1)
    }

    /// The process id of a running node.
    pub fn pid(&self, id: u64) -> Option<u32> {
        lock(&self.node(id).child).as_ref().map(|c| c.id())
    }

    /// Waits up to `timeout` for node `id` to exit by itself; returns its exit code.
    pub async fn wait_exit(&self, id: u64, timeout: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            {
                let mut child = lock(&self.node(id).child);
                if let Some(c) = child.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        child.take();
                        return Some(status.code().unwrap_or(-1));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn is_up(&self, id: u64) -> bool {
        lock(&self.node(id).child).is_some()
    }

    pub fn url(&self, id: u64) -> String {
        let scheme = if self.opts.secure { "https" } else { "http" };
        format!("{scheme}://{}", self.node(id).http)
    }

    /// `raftchat admin --server <node id> [TLS flags]`, ready for the verb.
    pub fn admin_command(&self, id: u64) -> anyhow::Result<Command> {
        let mut cmd = Command::new(binary()?);
        cmd.args(["admin", "--server", &self.url(id)]);
        if self.opts.secure {
            cmd.args(crate::tls::admin_flags());
        }
        Ok(cmd)
    }

    /// Node `id`'s certificates directory (secure clusters).
    pub fn certs_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("certs-{id}"))
    }

    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    pub fn live(&self) -> Vec<u64> {
        self.ids().into_iter().filter(|i| self.is_up(*i)).collect()
    }

    /// The node's log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn ready(&self, id: u64) -> bool {
        matches!(self.http.get(format!("{}/readyz", self.url(id))).send().await, Ok(r) if r.status().is_success())
    }

    /// Waits until every live node answers /readyz with 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let live = self.live();
        let res = crate::eventually(timeout, "all live nodes ready", || async {
            for id in &live {
                if !self.ready(*id).await {
                    return None;
                }
            }
            Some(())
        })
        .await;
        if res.is_err() {
            for id in &live {
                let log = self.log(*id);
                let tail: String =
                    log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                eprintln!("--- node {id} log tail ---\n{tail}");
            }
        }
        res
    }

    pub async fn status(&self, id: u64) -> anyhow::Result<serde_json::Value> {
        Ok(self.http.get(format!("{}/internal/v1/status", self.url(id))).send().await?.json().await?)
    }

    /// Group id -> leader, as seen by node `id`.
    pub async fn leaders(&self, id: u64) -> anyhow::Result<Vec<(u64, Option<u64>)>> {
        let st = self.status(id).await?;
        let groups = st["groups"].as_array().cloned().unwrap_or_default();
        Ok(groups.iter().map(|g| (g["group"].as_u64().unwrap_or(0), g["leader"].as_u64())).collect())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            if let Some(mut c) = lock(&n.child).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
