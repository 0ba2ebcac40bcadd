//! Network partitions the way Jepsen makes them: each node in its own network namespace on a
//! bridge, links cut with iptables DROP rules inside the receiving node's namespace. Needs
//! root, iproute2 and iptables (Debian: `iptables`); [`probe`] says why not when they are
//! missing. Everything lives in namespaces named `jepsen-*` and the private subnet
//! 10.201.0.0/24: the harness creates them, and removes them when done (and any left over by a
//! run that died, when it starts).
//!
//! ```text
//! jepsen-sw:  br0 ── jps1 ─ jpv1 (jepsen-n1, 10.201.0.1)
//!                ├── jps2 ─ jpv2 (jepsen-n2, 10.201.0.2) ...
//!                └── jpsh ─ jph0 (host, 10.201.0.254: the harness and its clients)
//! ```

use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use anyhow::Context;

const SWITCH: &str = "jepsen-sw";
const HOST_IF: &str = "jph0";

pub struct Netns {
    nodes: u64,
    /// Packets dropped by rules that were flushed since.
    flushed: AtomicU64,
}

pub fn ns(id: u64) -> String {
    format!("jepsen-n{id}")
}

pub fn ip_of(id: u64) -> String {
    format!("10.201.0.{id}")
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args[0]))?;
    anyhow::ensure!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// Whether namespaces and iptables work here (tried once, for real).
pub fn probe() -> Result<(), String> {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !nix::unistd::Uid::effective().is_root() {
                return Err("network namespaces and iptables need root".into());
            }
            let name = "jepsen-probe";
            let _ = run(&["ip", "netns", "del", name]);
            let r = run(&["ip", "netns", "add", name])
                .and_then(|_| in_ns(name, &["iptables", "-A", "INPUT", "-s", "10.201.0.1", "-j", "DROP"]))
                .map(|_| ())
                .map_err(|e| format!("{e:#} (Debian packages: iproute2, iptables)"));
            let _ = run(&["ip", "netns", "del", name]);
            r
        })
        .clone()
}

/// Removes every namespace and interface a run may have left.
fn cleanup() {
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with("jepsen-") {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    let _ = run(&["ip", "link", "del", HOST_IF]);
}

impl Netns {
    pub fn create(nodes: u64) -> anyhow::Result<Netns> {
        cleanup();
        let net = Netns { nodes, flushed: AtomicU64::new(0) };
        run(&["ip", "netns", "add", SWITCH])?;
        run(&["ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", SWITCH, "link", "set", "br0", "up"])?;
        for id in 1..=nodes {
            let (n, v, s) = (ns(id), format!("jpv{id}"), format!("jps{id}"));
            run(&["ip", "netns", "add", &n])?;
            run(&["ip", "link", "add", &v, "type", "veth", "peer", "name", &s])?;
            run(&["ip", "link", "set", &v, "netns", &n])?;
            run(&["ip", "link", "set", &s, "netns", SWITCH])?;
            run(&["ip", "-n", SWITCH, "link", "set", &s, "master", "br0", "up"])?;
            run(&["ip", "-n", &n, "addr", "add", &format!("{}/24", ip_of(id)), "dev", &v])?;
            run(&["ip", "-n", &n, "link", "set", &v, "up"])?;
            run(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        }
        run(&["ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "jpsh"])?;
        run(&["ip", "link", "set", "jpsh", "netns", SWITCH])?;
        run(&["ip", "-n", SWITCH, "link", "set", "jpsh", "master", "br0", "up"])?;
        run(&["ip", "addr", "add", "10.201.0.254/24", "dev", HOST_IF])?;
        run(&["ip", "link", "set", HOST_IF, "up"])?;
        Ok(net)
    }

    fn expand(&self, who: &str) -> Vec<u64> {
        match who {
            "*" => (1..=self.nodes).collect(),
            n => n.strip_prefix('n').and_then(|d| d.parse().ok()).into_iter().collect(),
        }
    }

    /// Drops every packet from `from` to `to` (node names, or `*`), at `to`.
    pub fn cut(&self, from: &str, to: &str) {
        for t in self.expand(to) {
            for f in self.expand(from).into_iter().filter(|f| *f != t) {
                let src = ip_of(f);
                if let Err(e) = in_ns(&ns(t), &["iptables", "-A", "INPUT", "-s", &src, "-j", "DROP"]) {
                    eprintln!("jepsen: netns cut n{f} -> n{t} failed: {e:#}");
                }
            }
        }
    }

    /// Packets dropped by cuts since the run began.
    pub fn dropped(&self) -> u64 {
        self.flushed.load(Ordering::Relaxed) + self.current()
    }

    fn current(&self) -> u64 {
        (1..=self.nodes)
            .filter_map(|id| in_ns(&ns(id), &["iptables", "-L", "INPUT", "-v", "-n", "-x"]).ok())
            .flat_map(|out| {
                out.lines()
                    .filter(|l| l.contains("DROP"))
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    pub fn heal(&self) {
        self.flushed.fetch_add(self.current(), Ordering::Relaxed);
        for id in 1..=self.nodes {
            if let Err(e) = in_ns(&ns(id), &["iptables", "-F", "INPUT"]) {
                eprintln!("jepsen: netns heal of n{id} failed: {e:#}");
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        cleanup();
    }
}
