//! A node with mutual TLS against the peers an attacker can fake: plain TCP, TLS without a
//! certificate, a certificate from another cluster's CA, and a valid certificate claiming
//! another node id. Each is refused before any request is read, and the node goes on serving
//! its real peer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::conn::Inbound;
use super::frame;
use super::frame::Frame;
use super::frame::Hello;
use super::pool::LocalIdentity;
use super::pool::PeerPool;
use super::tls::node_name;
use super::tls::PeerTls;
use super::tls::SwapKey;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::GroupId;
use crate::types::NodeId;

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca() -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    Ca { cert: p.self_signed(&key).unwrap(), key }
}

impl Ca {
    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn issue(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).unwrap())
    }

    fn peer_tls(&self, cluster: &str, node: NodeId) -> Arc<PeerTls> {
        let (chain, key) = self.issue(&node_name(cluster, node));
        Arc::new(PeerTls::new(&[self.der()], SwapKey::new(chain, key).unwrap()).unwrap())
    }
}

/// Counts requests that reach the node.
struct Counting(Arc<AtomicUsize>);

impl Inbound for Counting {
    fn handle(&self, _: NodeId, _: GroupId, _: RpcRequest) -> Pin<Box<dyn Future<Output = RpcResponse> + Send>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { RpcResponse::App(Vec::new()) })
    }
}

fn pool(id: NodeId, tls: Arc<PeerTls>, calls: Arc<AtomicUsize>, sd: &watch::Receiver<bool>) -> Arc<PeerPool> {
    let me = LocalIdentity {
        cluster_id: "c".into(),
        node_id: id,
        api_addr: String::new(),
        raft_addr: "127.0.0.1:1".into(),
        source_ip: None,
        tls: Some(tls),
    };
    PeerPool::new(me, Arc::new(Counting(calls)), false, sd.clone())
}

fn hello(from: NodeId) -> Vec<u8> {
    frame::encode(&Frame::Hello(Hello {
        format_version: raftchat_storage::codec::FORMAT_VERSION,
        cluster_id: "c".into(),
        from,
        to: 3,
        from_api_addr: String::new(),
        from_raft_addr: "127.0.0.1:9".into(),
        pristine: false,
        // What an attacker would send to make the node stop itself.
        you_are_member: false,
        layout_epoch: u64::MAX,
    }))
    .unwrap()
}

/// Sends a hello over `s` and reads what comes back: `true` if it was a welcome.
async fn welcomed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, from: NodeId) -> bool {
    let io = async {
        s.write_all(&hello(from)).await?;
        s.flush().await?;
        frame::read_max(s, frame::HANDSHAKE_FRAME_BYTES_MAX).await.map_err(std::io::Error::other)
    };
    matches!(tokio::time::timeout(Duration::from_secs(5), io).await, Ok(Ok(Frame::Welcome(_))))
}

/// A TLS client to node 3 with this client configuration.
async fn tls_attempt(addr: std::net::SocketAddr, config: rustls::ClientConfig, from: NodeId) -> bool {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(node_name("c", 3)).unwrap();
    match tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await {
        Ok(mut s) => welcomed(&mut s, from).await,
        Err(_) => false,
    }
}

#[tokio::test]
async fn unauthenticated_and_misidentified_peers_are_refused() {
    let (_keep, sd) = watch::channel(false);
    let (ours, theirs) = (ca(), ca());
    let calls = Arc::new(AtomicUsize::new(0));
    let node3 = pool(3, ours.peer_tls("c", 3), calls.clone(), &sd);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(super::listener::serve(listener, node3.clone(), sd.clone()));
    let provider = super::tls::provider;
    let roots = super::tls::roots(&[ours.der()]).unwrap();
    let client = || {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
    };

    // Plain TCP: a hello without TLS.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(!welcomed(&mut plain, 1).await, "plain TCP must not be welcomed");
    // TLS without a client certificate.
    assert!(!tls_attempt(addr, client().with_no_client_auth(), 1).await, "no certificate");
    // A certificate from another cluster's CA, naming node 1 of the same cluster id.
    let (chain, key) = theirs.issue(&node_name("c", 1));
    assert!(!tls_attempt(addr, client().with_client_auth_cert(chain, key).unwrap(), 1).await, "another CA");
    // A valid certificate of node 1 claiming to be node 2.
    let (chain, key) = ours.issue(&node_name("c", 1));
    assert!(!tls_attempt(addr, client().with_client_auth_cert(chain, key).unwrap(), 2).await, "wrong node id");
    // A certificate of node 1 of another cluster id, from this CA.
    let (chain, key) = ours.issue(&node_name("other", 1));
    assert!(!tls_attempt(addr, client().with_client_auth_cert(chain, key).unwrap(), 1).await, "other cluster");

    // Nothing reached the node, and it did not stop.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(node3.fatal().borrow().is_none(), "an unauthenticated hello must not stop the node");
    assert!(node3.connected().is_empty());

    // The real node 1 connects and its requests are served.
    let node1 = pool(1, ours.peer_tls("c", 1), Arc::new(AtomicUsize::new(0)), &sd);
    node1.learn(3, &addr.to_string());
    let resp = node1.call(3, 0, RpcRequest::App { topic: 0, body: vec![] }, Duration::from_secs(5)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut resp = resp;
    while resp.is_err() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        resp = node1.call(3, 0, RpcRequest::App { topic: 0, body: vec![] }, Duration::from_secs(5)).await;
    }
    assert!(matches!(resp, Ok(RpcResponse::App(_))), "{resp:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(node3.connected(), vec![1]);
    // The same client code as the attempts above is welcomed with the right certificate and id:
    // the refusals were the checks at work, not a broken client.
    let (chain, key) = ours.issue(&node_name("c", 1));
    assert!(tls_attempt(addr, client().with_client_auth_cert(chain, key).unwrap(), 1).await);
    let _ = plain.read(&mut [0u8; 1]).await;
}
