//! The system under test: `raftchat node` processes on this machine, each with its own data
//! directory, loopback address and fault proxies.
//!
//! Node `i` listens for peers on 127.0.0.(10+i) and dials from it, so the proxy in front of each
//! node knows which node a connection comes from: every node-to-node link can be cut on its own,
//! in one direction or both. Clients reach each node through a client proxy too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;

use crate::net::proxy::Proxy;
use crate::net::proxy::Rules;
use crate::net::proxy::Who;

/// How to run the nodes.
#[derive(Debug, Clone)]
pub struct DbOpts {
    pub nodes: u64,
    pub binary: PathBuf,
    pub data_groups: u32,
    pub snapshot_every: u64,
    pub logs_kept: u64,
    pub unsafe_knob: Option<String>,
    /// Where data directories and logs go.
    pub dir: PathBuf,
    /// Put each data directory on a [`crate::lazyfs`] mount (for the lost-writes nemesis).
    pub lazyfs: bool,
    /// Run each node in its own network namespace; partitions are iptables rules
    /// ([`crate::net::netns`]) instead of proxy rules.
    pub netns: bool,
    /// TLS on: mutual TLS between nodes (through the link proxies, which forward it untouched)
    /// and HTTPS/WSS for clients, with certificates from the test CA.
    pub tls: bool,
}

struct NodeProc {
    id: u64,
    http: String,
    raft: String,
    /// The address peers dial: the node's link proxy, or its namespace address.
    raft_advertise: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    /// `LD_PRELOAD` and `FAKETIME` for the next start (clock nemesis).
    clock: Mutex<Option<(PathBuf, String)>>,
}

pub struct Db {
    pub opts: DbOpts,
    nodes: Vec<NodeProc>,
    peers: String,
    /// Node-to-node faults (proxies in front of every node's peer port).
    pub links: Arc<Rules>,
    /// Client-to-node faults (proxies in front of every node's HTTP port).
    pub clients: Arc<Rules>,
    link_proxies: Vec<Proxy>,
    client_proxies: Vec<Proxy>,
    pub http: reqwest::Client,
    /// One per node when `lazyfs` is on; unmounted after the nodes are killed (field order).
    mounts: Vec<crate::lazyfs::Mount>,
    /// The namespaces, removed last.
    netns: Option<crate::net::netns::Netns>,
}

pub fn name(id: u64) -> String {
    format!("n{id}")
}

fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", 10 + id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free port on `ip` (bound, then released just before the node binds it).
fn free_port(ip: &str) -> anyhow::Result<(std::net::TcpListener, u16)> {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).with_context(|| format!("binding {ip}:0"))?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

impl Db {
    /// Starts the proxies and every node, and waits until all are ready.
    pub async fn start(opts: DbOpts) -> anyhow::Result<Db> {
        std::fs::create_dir_all(&opts.dir)?;
        let links = Arc::new(Rules::default());
        let clients = Arc::new(Rules::default());
        let who_node: Who = Arc::new(|ip: IpAddr| match ip {
            IpAddr::V4(v4) if v4.octets()[0] == 127 && v4.octets()[3] > 10 => name(u64::from(v4.octets()[3] - 10)),
            _ => "client".to_string(),
        });
        let who_client: Who = Arc::new(|_| "client".to_string());
        let mut reserved = Vec::new();
        let mut nodes = Vec::new();
        let mut link_proxies = Vec::new();
        let mut client_proxies = Vec::new();
        let netns = if opts.netns { Some(crate::net::netns::Netns::create(opts.nodes)?) } else { None };
        for id in 1..=opts.nodes {
            let (http, raft, raft_advertise) = if netns.is_some() {
                let ip = crate::net::netns::ip_of(id);
                (format!("{ip}:7700"), format!("{ip}:7800"), format!("{ip}:7800"))
            } else {
                let (l1, http_port) = free_port("127.0.0.1")?;
                let (l2, raft_port) = free_port(&node_ip(id))?;
                reserved.push(l1);
                reserved.push(l2);
                let raft = format!("{}:{raft_port}", node_ip(id));
                let p = Proxy::start("127.0.0.1:0", raft.clone(), name(id), who_node.clone(), links.clone()).await?;
                let advertise = p.addr.clone();
                link_proxies.push(p);
                (format!("127.0.0.1:{http_port}"), raft, advertise)
            };
            client_proxies
                .push(Proxy::start("127.0.0.1:0", http.clone(), name(id), who_client.clone(), clients.clone()).await?);
            nodes.push(NodeProc {
                id,
                http,
                raft,
                raft_advertise,
                data_dir: opts.dir.join(format!("{}-data", name(id))),
                log: opts.dir.join(format!("{}.log", name(id))),
                child: Mutex::new(None),
                clock: Mutex::new(None),
            });
        }
        let peers = nodes.iter().map(|n| format!("{}={}", n.id, n.raft_advertise)).collect::<Vec<_>>().join(",");
        if opts.tls {
            let ca = raftchat_tests::tls::ca(&opts.binary)?;
            for n in &nodes {
                let ip = n.http.rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or_default();
                raftchat_tests::tls::node_certs_for(&opts.binary, ca, &opts.dir, n.id, &[ip])?;
            }
        }
        let http = if opts.tls { raftchat_tests::tls::admin_builder()? } else { raftchat_tests::tls::http_builder() };
        let http = http.timeout(Duration::from_secs(10)).build()?;
        let mut mounts = Vec::new();
        if opts.lazyfs {
            for n in &nodes {
                let backing = opts.dir.join(format!("{}-backing", name(n.id)));
                mounts.push(
                    crate::lazyfs::LazyFs::mount(&backing, &n.data_dir)
                        .with_context(|| format!("mounting lazyfs at {}", n.data_dir.display()))?,
                );
            }
        }
        drop(reserved);
        let db = Db { opts, nodes, peers, links, clients, link_proxies, client_proxies, http, mounts, netns };
        for id in db.ids() {
            db.spawn(id)?;
        }
        db.wait_ready(Duration::from_secs(90)).await?;
        Ok(db)
    }

    fn scheme(&self) -> &'static str {
        if self.opts.tls {
            "https"
        } else {
            "http"
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        (1..=self.opts.nodes).collect()
    }

    fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[id as usize - 1]
    }

    /// The node's HTTP address, direct (no fault proxy).
    pub fn url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme(), self.node(id).http)
    }

    /// The node's HTTP address as clients reach it, through the client proxy.
    pub fn client_url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme(), self.client_proxies[id as usize - 1].addr)
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        lock(&self.node(id).child).as_ref().map(|c| c.id())
    }

    pub fn is_up(&self, id: u64) -> bool {
        lock(&self.node(id).child).is_some()
    }

    /// Runs the node with `LD_PRELOAD=lib FAKETIME=spec` from its next start on (None: real time).
    pub fn set_clock(&self, id: u64, clock: Option<(PathBuf, String)>) {
        *lock(&self.node(id).clock) = clock;
    }

    pub fn spawn(&self, id: u64) -> anyhow::Result<()> {
        let n = self.node(id);
        let o = &self.opts;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log)?;
        let mut cmd = match &self.netns {
            Some(_) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &crate::net::netns::ns(id)]).arg(&o.binary);
                c
            }
            None => Command::new(&o.binary),
        };
        cmd.arg("node")
            // With TLS the certificates name the test CA's cluster.
            .args([
                "--node-id",
                &id.to_string(),
                "--cluster-id",
                if o.tls { raftchat_tests::tls::CLUSTER_ID } else { "jepsen" },
            ])
            .args(["--listen", &n.http, "--advertise", &n.http])
            .args(["--raft-listen", &n.raft, "--raft-advertise", &n.raft_advertise])
            .args(["--peers", &self.peers, "--internal-api"])
            .args(if o.tls {
                vec!["--certs-dir".to_string(), o.dir.join(format!("certs-{id}")).to_string_lossy().into_owned()]
            } else if self.netns.is_some() {
                // Namespace addresses are not loopback: plain HTTP there is an explicit choice.
                vec!["--insecure".to_string()]
            } else {
                Vec::new()
            })
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--data-groups", &o.data_groups.to_string()])
            .args(["--snapshot-every", &o.snapshot_every.to_string(), "--logs-kept", &o.logs_kept.to_string()])
            .args(["--heartbeat-ms", "150", "--election-ms", "750", "--failure-detect-ms", "2000"])
            // The workload sends (and its subscribers acknowledge) as fast as the schedule says;
            // the per-user limits are not under test.
            .args(["--sends-per-sec", "10000", "--sends-burst", "10000"])
            .args(["--receipts-per-sec", "10000", "--receipts-burst", "10000"])
            .env("RUST_LOG", std::env::var("JEPSEN_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(knob) = &o.unsafe_knob {
            cmd.args(["--unsafe-knob", knob, "--i-know-this-is-unsafe"]);
        }
        if let Some((lib, spec)) = lock(&n.clock).as_ref() {
            cmd.env("LD_PRELOAD", lib).env("FAKETIME", spec);
        }
        let child = cmd.spawn().with_context(|| format!("spawning {}", o.binary.display()))?;
        *lock(&n.child) = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&self, id: u64) {
        if let Some(mut c) = lock(&self.node(id).child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, id: u64, sig: nix::sys::signal::Signal) -> bool {
        match self.pid(id) {
            Some(pid) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).is_ok(),
            None => false,
        }
    }

    /// Drops node `id`'s writes that were not fsynced (it must be killed first); returns the
    /// bytes lost. Zero without lazyfs.
    pub fn lose_unsynced(&self, id: u64) -> u64 {
        self.mounts.get(id as usize - 1).map_or(0, |m| m.fs.clear())
    }

    /// Whether the process is stopped (state `T` in /proc).
    pub fn is_stopped(&self, id: u64) -> bool {
        let Some(pid) = self.pid(id) else { return false };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s == "T")
    }

    /// Exit code of a node that stopped by itself.
    pub fn exited(&self, id: u64) -> Option<i32> {
        let mut child = lock(&self.node(id).child);
        let status = child.as_mut()?.try_wait().ok()??;
        child.take();
        Some(status.code().unwrap_or(-1))
    }

    /// The node's log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// What `/readyz` says.
    pub async fn readiness(&self, id: u64) -> String {
        match self.http.get(format!("{}/readyz", self.url(id))).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("no answer: {e}"),
        }
    }

    /// Saves what a stuck node can tell: its status (`nodes/<name>.status.json`) and every
    /// thread's stack (`nodes/<name>.stacks.txt`, with gdb).
    pub async fn save_stacks(&self, id: u64) {
        if let Ok(st) = self.status(id).await {
            let _ = std::fs::write(self.opts.dir.join(format!("{}.status.json", name(id))), st.to_string());
        }
        let Some(pid) = self.pid(id) else { return };
        let out = Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
            .stdin(Stdio::null())
            .output();
        let path = self.opts.dir.join(format!("{}.stacks.txt", name(id)));
        let text = match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => format!("gdb could not run: {e}"),
        };
        let _ = std::fs::write(path, text);
    }

    /// Cuts node-to-node traffic from `from` to `to` (node names, or `*` for every node).
    pub fn cut(&self, from: &str, to: &str) {
        match &self.netns {
            Some(n) => n.cut(from, to),
            None => self.links.cut(from, to),
        }
    }

    /// What node-to-node cuts dropped so far: bytes (proxies) or packets (iptables).
    pub fn link_drops(&self) -> u64 {
        match &self.netns {
            Some(n) => n.dropped(),
            None => self.links.dropped.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Lifts every node-to-node cut (and resets the proxied connections that lost bytes).
    pub fn heal_links(&self) {
        match &self.netns {
            Some(n) => n.heal(),
            None => {
                self.links.heal();
                for p in &self.link_proxies {
                    p.reset_tainted();
                }
            }
        }
    }

    pub fn heal_clients(&self) {
        self.clients.heal();
        for p in &self.client_proxies {
            p.reset_tainted();
        }
    }

    pub async fn ready(&self, id: u64) -> bool {
        matches!(self.http.get(format!("{}/readyz", self.url(id))).send().await, Ok(r) if r.status().is_success())
    }

    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut all = true;
            for id in self.ids() {
                if !self.is_up(id) {
                    continue;
                }
                if let Some(code) = self.exited(id) {
                    anyhow::bail!("{} exited with {code}: {}", name(id), tail(&self.log(id), 15));
                }
                all &= self.ready(id).await;
            }
            if all {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("nodes not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn status(&self, id: u64) -> anyhow::Result<serde_json::Value> {
        Ok(self.http.get(format!("{}/internal/v1/status", self.url(id))).send().await?.json().await?)
    }

    /// The node that leads the most groups, as node `id` sees it.
    pub async fn busiest_leader(&self) -> Option<u64> {
        for id in self.ids() {
            let Ok(st) = self.status(id).await else { continue };
            let mut count = std::collections::BTreeMap::<u64, usize>::new();
            for g in st["groups"].as_array().into_iter().flatten() {
                if let Some(l) = g["leader"].as_u64() {
                    *count.entry(l).or_default() += 1;
                }
            }
            if let Some((l, _)) = count.into_iter().max_by_key(|(_, c)| *c) {
                return Some(l);
            }
        }
        None
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for n in &self.nodes {
            if let Some(mut c) = lock(&n.child).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
