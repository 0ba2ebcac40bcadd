//! # raftchat-tests
//!
//! Harness for cluster tests: real `raftchat node` processes on 127.0.0.1, killed with SIGKILL
//! and restarted from their data directories, driven over the real HTTP API.
//!
//! - [`Cluster`]: start N nodes, kill, restart, wait for readiness, read status.
//! - [`client`]: the core HTTP API (create chat, append, history).
//! - [`proxy`]: a userspace TCP proxy per node for partitions between nodes.
//! - [`chat`]: the chat API client (REST and WebSocket), also used by examples.
//! - [`media`]: uploads and downloads of media through that client.
//! - [`webhook`]: a local webhook receiver that can fail on command (push notifications).
//! - [`procstat`]: CPU time and memory of a process, for benchmarks.
//! - [`tls`]: the test CA, node certificates, and clients that trust them (`Opts::secure`).
//!
//! Tests wait on conditions with deadlines ([`eventually`]), never on fixed sleeps.

pub mod chat;
pub mod client;
mod cluster;
pub mod media;
pub mod procstat;
pub mod proxy;
pub mod tls;
pub mod webhook;

pub use cluster::binary;
pub use cluster::release_binary;

pub use cluster::Cluster;
pub use cluster::Opts;

use std::future::Future;
use std::time::Duration;

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cluster tests share two cores: they run one at a time. (An async mutex: each test has its own
/// runtime, and the guard is held across the whole test.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
