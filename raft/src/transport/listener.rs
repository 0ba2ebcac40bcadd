//! Accepts node-to-node connections and checks the handshake: with TLS, the peer's certificate
//! (from the cluster CA, naming the node id its hello claims); then format version, cluster id
//! and node ids. A refusal names both sides, so a misconfigured node says what is wrong. Nothing
//! a peer sends before it is authenticated can do more than be refused: handshake frames are
//! read with a small limit, and no request is read before the hello is accepted.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::sync::Semaphore;

use super::conn::Conn;
use super::conn::Stream;
use super::frame;
use super::frame::Frame;
use super::frame::Hello;
use super::frame::Welcome;
use super::pool::PeerInfo;
use super::pool::PeerPool;

/// At most this many connections may be in their handshake at once.
const HANDSHAKES_MAX: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn serve(listener: TcpListener, pool: Arc<PeerPool>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many handshakes in progress; dropping connection");
            continue;
        };
        let pool = pool.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            if let Err(reason) = handshake(stream, &pool, sd).await {
                tracing::warn!(%remote, %reason, "refused node connection");
            }
            drop(permit);
        });
    }
}

/// Why a hello is refused, or `None` when it is acceptable.
pub fn check_hello(h: &Hello, cluster_id: &str, me: u64) -> Option<String> {
    if h.format_version != raftchat_storage::codec::FORMAT_VERSION {
        return Some(format!(
            "protocol version mismatch: node {} speaks {}, node {me} speaks {}",
            h.from,
            h.format_version,
            raftchat_storage::codec::FORMAT_VERSION
        ));
    }
    if h.cluster_id != cluster_id {
        return Some(format!(
            "cluster id mismatch: node {} is in cluster {:?}, node {me} is in cluster {:?}",
            h.from, h.cluster_id, cluster_id
        ));
    }
    if h.to != me {
        return Some(format!("node {} dialed node {} at this address, but this is node {me}", h.from, h.to));
    }
    if h.from == me {
        return Some(format!("duplicate node id: a node at {} also claims id {me}", h.from_raft_addr));
    }
    if h.from > me {
        return Some(format!("node {} must wait for node {me} to dial (the lower id dials)", h.from));
    }
    None
}

async fn handshake(tcp: TcpStream, pool: &Arc<PeerPool>, shutdown: watch::Receiver<bool>) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = pool.me.tls.clone() else { return hello(tcp, None, pool, shutdown, Stream::Plain).await };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed (no certificate from this cluster's CA?): {e}"))?;
    let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
    let Some(cert) = cert else { return Err("the peer presented no certificate".into()) };
    hello(stream, Some(cert), pool, shutdown, |s| Stream::Tls(Box::new(s))).await
}

/// Reads and answers the hello; with TLS, `cert` is the dialer's verified certificate.
async fn hello<S>(
    mut stream: S,
    cert: Option<rustls::pki_types::CertificateDer<'static>>,
    pool: &Arc<PeerPool>,
    shutdown: watch::Receiver<bool>,
    wrap: impl FnOnce(S) -> Stream,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, frame::read_max(&mut stream, frame::HANDSHAKE_FRAME_BYTES_MAX))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let Frame::Hello(hello) = first else { return Err("first frame was not a hello".into()) };
    let me = &pool.me;
    if let Some(cert) = &cert {
        let name = super::tls::node_name(&me.cluster_id, hello.from);
        if !super::tls::cert_has_name(cert, &name) {
            // Says nothing back: the peer is not who it claims to be.
            return Err(format!(
                "the peer claims node {} of cluster {:?}, but its certificate is not issued to {name}",
                hello.from, me.cluster_id
            ));
        }
    }
    if let Some(reason) = check_hello(&hello, &me.cluster_id, me.node_id) {
        if let Ok(bytes) = frame::encode(&Frame::Refused(reason.clone())) {
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, send(&mut stream, &bytes)).await;
        }
        return Err(reason);
    }
    let lost_or_removed = if hello.you_are_member && pool.pristine() {
        Some(pool.lost_data(hello.from))
    } else {
        pool.check_removed(hello.from, hello.you_are_member, hello.layout_epoch)
    };
    if let Some(reason) = lost_or_removed {
        if let Ok(bytes) = frame::encode(&Frame::Refused(reason.clone())) {
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, send(&mut stream, &bytes)).await;
        }
        return Err(reason);
    }
    let welcome = Frame::Welcome(Welcome {
        node: me.node_id,
        api_addr: me.api_addr.clone(),
        pristine: pool.pristine(),
        you_are_member: pool.is_member(hello.from),
        layout_epoch: pool.layout_epoch(),
    });
    let bytes = frame::encode(&welcome).map_err(|e| e.to_string())?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, send(&mut stream, &bytes))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let conn = Conn::spawn(wrap(stream), hello.from, pool.inbound(), shutdown);
    pool.accepted(
        hello.from,
        conn,
        PeerInfo { api_addr: hello.from_api_addr, pristine: hello.pristine },
        &hello.from_raft_addr,
    );
    Ok(())
}

async fn send<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    tokio::io::AsyncWriteExt::write_all(stream, bytes).await?;
    tokio::io::AsyncWriteExt::flush(stream).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: &str, from: u64, to: u64) -> Hello {
        Hello {
            format_version: raftchat_storage::codec::FORMAT_VERSION,
            cluster_id: cluster.into(),
            from,
            to,
            from_api_addr: String::new(),
            from_raft_addr: "127.0.0.1:1".into(),
            pristine: false,
            you_are_member: false,
            layout_epoch: 0,
        }
    }

    #[test]
    fn refusals_name_both_sides() {
        assert_eq!(check_hello(&hello("c", 1, 2), "c", 2), None);
        let r = check_hello(&hello("other", 1, 2), "c", 2).unwrap();
        assert!(r.contains("\"other\"") && r.contains("\"c\""), "{r}");
        let r = check_hello(&hello("c", 1, 3), "c", 2).unwrap();
        assert!(r.contains("node 3") && r.contains("node 2"), "{r}");
        assert!(check_hello(&hello("c", 2, 2), "c", 2).unwrap().contains("duplicate"));
        let mut h = hello("c", 1, 2);
        h.format_version = 99;
        assert!(check_hello(&h, "c", 2).unwrap().contains("99"));
    }
}
