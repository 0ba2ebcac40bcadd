//! The client listener's accept loop, plain or TLS, serving the axum router over HTTP/1.1
//! (WebSocket upgrades included).
//!
//! On a TLS port a client that speaks plain HTTP gets a short plain-text 400 saying to use
//! https:// instead of a handshake failure it cannot read. Only a client offering
//! [`super::ADMIN_ALPN`] is asked for a certificate (and must present one from the cluster CA).
//! Each request carries a [`ClientCert`] extension: whether the connection presented an admin
//! certificate.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::NodeTls;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the client listener (flags).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections from one client address at most.
    pub per_addr_max: usize,
    /// A request's headers must arrive within this (a slow-header client is cut off).
    pub header_read_timeout: Duration,
}
/// Connections finishing their requests at shutdown get this long.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The client's address (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// What the client's TLS connection proved (a request extension).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCert {
    /// A certificate from the cluster CA naming an administrator (or a node).
    pub admin: bool,
}

/// Open connections per client address, capped: one address cannot take every descriptor.
struct PerAddr {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One open connection of an address; closing it gives the slot back.
struct AddrSlot(Arc<PerAddr>, std::net::IpAddr);

/// A connection's hold on its address slot (a request extension): a WebSocket upgrade keeps
/// it for as long as the socket lives, since hyper lets go of an upgraded connection.
#[derive(Clone)]
pub struct ConnectionHold {
    _slot: Arc<AddrSlot>,
}

impl PerAddr {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddrSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddrSlot(self.clone(), ip))
    }
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Serves `app` on `listener` until shutdown; TLS when `tls` is given; within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<NodeTls>>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let per_addr = Arc::new(PerAddr { max: limits.per_addr_max.max(1), open: Default::default() });
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = per_addr.take(remote.ip()).map(|s| ConnectionHold { _slot: Arc::new(s) }) else {
            tracing::debug!(%remote, "connection refused: too many from this address");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            let res = match tls {
                None => connection(tcp, remote, ClientCert::default(), slot, app, limits, sd).await,
                Some(tls) => match secure(tcp, &tls).await {
                    Ok(Some((stream, cert))) => connection(stream, remote, cert, slot, app, limits, sd).await,
                    Ok(None) => Ok(()),
                    Err(why) => Err(why),
                },
            };
            if let Err(why) = res {
                tracing::debug!(%remote, %why, "client connection ended");
            }
        });
    }
}

/// The TLS handshake; `None` when the client spoke plain HTTP and was told so.
async fn secure(
    tcp: TcpStream,
    tls: &NodeTls,
) -> Result<Option<(tokio_rustls::server::TlsStream<TcpStream>, ClientCert)>, String> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return Ok(None),
        Err(_) => return Err("no handshake in time".into()),
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        plain_http_refusal(tcp).await;
        return Ok(None);
    }
    // The client's hello decides: a client offering the admin protocol must present its
    // certificate; nobody else is asked for one.
    let handshake = async {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(|e| format!("TLS hello: {e}"))?;
        let admin = start.client_hello().alpn().is_some_and(|mut protocols| protocols.any(|p| p == super::ADMIN_ALPN));
        let config = if admin { tls.https_admin.clone() } else { tls.https.clone() };
        start.into_stream(config).await.map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "TLS handshake timed out".to_string())??;
    let admin = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).is_some_and(|c| tls.is_admin(c));
    Ok(Some((stream, ClientCert { admin })))
}

async fn plain_http_refusal(mut tcp: TcpStream) {
    let body = "This port speaks HTTPS: use https:// (and wss:// for the WebSocket).\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        tcp.write_all(reply.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

async fn connection<S>(
    stream: S,
    remote: std::net::SocketAddr,
    cert: ClientCert,
    hold: ConnectionHold,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(cert);
        req.extensions_mut().insert(ClientAddr(remote));
        req.extensions_mut().insert(hold.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r.map_err(|e| e.to_string()),
        _ = shutdown.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(DRAIN_TIMEOUT, conn).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("did not finish in time at shutdown".into()),
    }
}
