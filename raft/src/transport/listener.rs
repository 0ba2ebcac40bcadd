//! Accepts node-to-node connections and checks the handshake: format version, cluster id and
//! node ids. A refusal names both sides, so a misconfigured node says what is wrong.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::sync::Semaphore;

use super::conn::Conn;
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

async fn handshake(mut stream: TcpStream, pool: &Arc<PeerPool>, shutdown: watch::Receiver<bool>) -> Result<(), String> {
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, frame::read(&mut stream))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let Frame::Hello(hello) = first else { return Err("first frame was not a hello".into()) };
    let me = &pool.me;
    if let Some(reason) = check_hello(&hello, &me.cluster_id, me.node_id) {
        if let Ok(bytes) = frame::encode(&Frame::Refused(reason.clone())) {
            let _ =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes)).await;
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
            let _ =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes)).await;
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
    tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let conn = Conn::spawn(stream, hello.from, pool.inbound(), shutdown);
    pool.accepted(
        hello.from,
        conn,
        PeerInfo { api_addr: hello.from_api_addr, pristine: hello.pristine },
        &hello.from_raft_addr,
    );
    Ok(())
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
