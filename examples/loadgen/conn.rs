//! One load-generator WebSocket connection: a writer task and a reader task, with frames parsed
//! just enough to time them. Every sent message carries its send time (microseconds since the
//! run started) at the start of its text, so any receiver in this process can time delivery.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use crate::report::Stats;

/// How long connecting (TCP + upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The fields of a server frame this generator looks at.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    client_msg_id: Option<&'a str>,
    #[serde(default)]
    from: Option<Uuid>,
    #[serde(default)]
    text: Option<&'a str>,
    #[serde(default)]
    code: Option<&'a str>,
}

/// What the reader tells a sender about its own messages.
pub enum Answer {
    /// Acknowledged; the number after the last `-` of its clientMsgId.
    Ack(u64),
    Error(String),
}

pub struct Conn {
    pub out: mpsc::Sender<String>,
    /// Acks and errors of this connection's own sends.
    pub answers: mpsc::Receiver<Answer>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Text of a message sent at `micros` (since the run started), padded to `size` bytes.
pub fn message_text(micros: u64, size: usize) -> String {
    let mut t = format!("{micros:020}");
    if t.len() < size {
        t.extend(std::iter::repeat_n('x', size - t.len()));
    }
    t
}

fn sent_at(text: &str) -> Option<u64> {
    text.get(..20)?.parse().ok()
}

/// Opens a connection to `addr` as the holder of `token` (user `me`), from `src` when given.
/// Messages from other users are timed into `stats`.
pub async fn connect(
    addr: SocketAddr,
    tls: bool,
    src: Option<IpAddr>,
    token: &str,
    me: Uuid,
    stats: Arc<Stats>,
) -> anyhow::Result<Conn> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = src {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr)).await??;
    stream.set_nodelay(true)?;
    let url = format!("{}://{addr}/ws?token={token}", if tls { "wss" } else { "ws" });
    // Small buffers: a generator with 100,000 connections must not need 128 KiB for each.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let connector = if tls { raftchat_tests::tls::ws_connector() } else { None };
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_tls_with_config(url, stream, Some(config), connector),
    )
    .await??;
    let (mut sink, mut source) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<String>(256);
    let (answer_tx, answers) = mpsc::channel::<Answer>(1024);
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(WsMessage::Text(text.into())).await.is_err() {
                return;
            }
        }
    });
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            let WsMessage::Text(t) = msg else { continue };
            let Ok(f) = serde_json::from_str::<Frame>(&t) else { continue };
            match f.kind {
                "message" if f.from != Some(me) => {
                    if let Some(t0) = f.text.and_then(sent_at) {
                        stats.delivered(t0);
                    }
                }
                "ack" => {
                    let n = f.client_msg_id.and_then(|c| c.rsplit('-').next()).and_then(|n| n.parse().ok());
                    if let Some(n) = n {
                        let _ = answer_tx.try_send(Answer::Ack(n));
                    }
                }
                "error" => {
                    let _ = answer_tx.try_send(Answer::Error(f.code.unwrap_or("error").to_string()));
                }
                _ => {}
            }
        }
    });
    Ok(Conn { out, answers, tasks: vec![writer, reader] })
}
