//! A userspace TCP proxy for fault injection between nodes (tc netem is not available here).
//!
//! Every node's inbound node-to-node traffic can be routed through its own proxy. Since the
//! lower node id dials, the proxy of node j carries every link between j and the nodes with
//! lower ids, and the links j dials itself go through the other nodes' proxies. Isolating the
//! highest-id node therefore needs only its own proxy; `isolate` drops every proxied
//! connection and refuses new ones until `heal`.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::net::TcpListener;
use tokio::net::TcpStream;

pub struct Proxy {
    pub addr: String,
    blocked: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listener` and forwards to `target`.
    pub fn start(listener: std::net::TcpListener, target: String) -> anyhow::Result<Proxy> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let listener = TcpListener::from_std(listener)?;
        let blocked = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let (b, l) = (blocked.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if b.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let mut inbound = inbound;
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut links = l.lock().unwrap_or_else(|e| e.into_inner());
                links.retain(|h| !h.is_finished());
                links.push(task.abort_handle());
            }
        });
        Ok(Proxy { addr, blocked, links, accept })
    }

    /// Cuts every link through this proxy and refuses new ones.
    pub fn isolate(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for h in self.links.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            h.abort();
        }
    }

    pub fn heal(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.isolate();
    }
}
