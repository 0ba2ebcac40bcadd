//! A userspace TCP proxy that drops bytes on command (tc netem is not available here, and it
//! needs no root).
//!
//! Each proxy forwards to one target. Every accepted connection is tagged with who dialed it
//! (the [`Proxy`]'s `who` maps the source IP to a name: a node, or "client"), and every chunk
//! read on either side asks the proxy's [`Rules`] whether it may pass. A dropped chunk leaves
//! the TCP stream with a hole, so the connection is marked tainted; when the rule that dropped
//! it is lifted, tainted connections are reset and the endpoints reconnect, as after a real
//! outage. Silent drops (no RST while the fault lasts) are what iptables DROP does: timeouts,
//! not fast errors.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;

/// Who sends a chunk through a proxy, and to whom. Names are node names ("n1") or "client".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub from: String,
    pub to: String,
}

/// The faults in force: links whose bytes are dropped.
#[derive(Debug, Default)]
pub struct Rules {
    cut: Mutex<HashSet<Link>>,
    /// Bytes dropped since start.
    pub dropped: AtomicU64,
}

impl Rules {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Link>> {
        self.cut.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cut(&self, from: &str, to: &str) {
        self.lock().insert(Link { from: from.into(), to: to.into() });
    }

    pub fn is_cut(&self, from: &str, to: &str) -> bool {
        self.lock().contains(&Link { from: from.into(), to: to.into() })
    }

    pub fn any_cut(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Lifts every cut.
    pub fn heal(&self) {
        self.lock().clear();
    }
}

struct Conn {
    tainted: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// One listening proxy in front of `target`, whose owner is named `owner`.
pub struct Proxy {
    pub addr: String,
    conns: Arc<Mutex<Vec<Conn>>>,
    accept: tokio::task::JoinHandle<()>,
}

/// Maps a dialer's source IP to its name.
pub type Who = Arc<dyn Fn(IpAddr) -> String + Send + Sync>;

impl Proxy {
    /// Listens on `listen` and forwards to `target`.
    pub async fn start(
        listen: &str,
        target: String,
        owner: String,
        who: Who,
        rules: Arc<Rules>,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?.to_string();
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                let from = who(peer.ip());
                let tainted = Arc::new(AtomicBool::new(false));
                let task =
                    tokio::spawn(forward(inbound, target.clone(), from, owner.clone(), rules.clone(), tainted.clone()));
                let mut conns = c.lock().unwrap_or_else(|e| e.into_inner());
                conns.retain(|c| !c.task.is_finished());
                conns.push(Conn { tainted, task: task.abort_handle() });
            }
        });
        Ok(Proxy { addr, conns, accept })
    }

    /// Resets the connections that lost bytes (call after lifting the rules that cut them).
    pub fn reset_tainted(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for c in conns.iter().filter(|c| c.tainted.load(Ordering::SeqCst)) {
            c.task.abort();
        }
        conns.retain(|c| !c.task.is_finished() && !c.tainted.load(Ordering::SeqCst));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            c.task.abort();
        }
    }
}

async fn forward(
    inbound: TcpStream,
    target: String,
    from: String,
    to: String,
    rules: Arc<Rules>,
    tainted: Arc<AtomicBool>,
) {
    let Ok(outbound) = TcpStream::connect(&target).await else { return };
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    let up = pump(ri, wo, Link { from: from.clone(), to: to.clone() }, rules.clone(), tainted.clone());
    let down = pump(ro, wi, Link { from: to, to: from }, rules, tainted);
    // Either side closing ends the connection.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    rules: Arc<Rules>,
    tainted: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if rules.is_cut(&link.from, &link.to) || rules.is_cut(&link.from, "*") || rules.is_cut("*", &link.to) {
            rules.dropped.fetch_add(n as u64, Ordering::Relaxed);
            tainted.store(true, Ordering::SeqCst);
            continue;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_drops_and_resets() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let rules = Arc::new(Rules::default());
        let who: Who = Arc::new(|_| "client".to_string());
        let p = Proxy::start("127.0.0.1:0", target, "n1".into(), who, rules.clone()).await.unwrap();
        let mut s = TcpStream::connect(&p.addr).await.unwrap();
        let mut buf = [0u8; 4];
        s.write_all(b"ping").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // Responses dropped: the request goes through, the echo never comes back.
        rules.cut("n1", "client");
        s.write_all(b"lost").await.unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_millis(300), s.read_exact(&mut buf)).await;
        assert!(r.is_err(), "a dropped response must not arrive");
        assert!(rules.dropped.load(Ordering::Relaxed) >= 4);
        // Healing resets the damaged connection; a new one works.
        rules.heal();
        p.reset_tainted();
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "the tainted connection is closed");
        let mut s2 = TcpStream::connect(&p.addr).await.unwrap();
        s2.write_all(b"again").await.unwrap();
        let mut b5 = [0u8; 5];
        s2.read_exact(&mut b5).await.unwrap();
        assert_eq!(&b5, b"again");
    }
}
