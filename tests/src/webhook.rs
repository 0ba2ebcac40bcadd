//! A local webhook receiver for the push notification tests: records every request and answers
//! 200, or 503 while told to fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::net::TcpStream;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Call {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub raw: Vec<u8>,
    pub body: serde_json::Value,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    fail: AtomicBool,
}

pub struct Webhook {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest request head or body accepted.
const LIMIT: usize = 1 << 20;

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        let mut head_len = line.len();
        loop {
            let mut h = String::new();
            head_len += r.read_line(&mut h).await?;
            if head_len > LIMIT {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0).min(LIMIT);
        let mut raw = vec![0u8; len];
        r.read_exact(&mut raw).await?;
        let status = if shared.fail.load(Ordering::SeqCst) { 503 } else { 200 };
        let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        shared.calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call { headers, raw, body, status });
        let reason = if status == 200 { "OK" } else { "Service Unavailable" };
        r.get_mut().write_all(format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await?;
    }
}

impl Webhook {
    pub async fn start() -> anyhow::Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_conn(stream, s.clone()));
            }
        });
        Ok(Webhook { addr, shared, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// From now on answer 503 (`true`) or 200.
    pub fn fail(&self, on: bool) {
        self.shared.fail.store(on, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls about `user`'s notifications, in arrival order.
    pub fn calls_for(&self, user: uuid::Uuid) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.body["userId"] == user.to_string()).collect()
    }
}
