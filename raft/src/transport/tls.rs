//! Mutual TLS between nodes, and the names certificates carry.
//!
//! A cluster CA signs every node's certificate. The certificate names the node as the DNS name
//! [`node_name`] (`node-<id>.<cluster>.raftchat.invalid`; `.invalid` is reserved and never
//! resolves), so one stock check does both jobs: the dialer verifies the peer it dials under
//! the name of the node id it expects, and the acceptor verifies that the certificate the
//! dialer presented names the node id its hello claims. A peer without a certificate from the
//! cluster CA never gets past the TLS handshake; one claiming another id is refused before any
//! request is read.
//!
//! The node's own certificate sits behind [`SwapKey`], so a renewed certificate is picked up
//! without a restart (new connections use it).

use std::sync::Arc;
use std::sync::RwLock;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::ServerName;
use rustls::server::ClientHello;
use rustls::server::ResolvesServerCert;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls::SignatureScheme;

use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the CA file holds no usable certificate: {0}")]
    Roots(String),
    #[error("the certificate or key is unusable: {0}")]
    Key(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The one crypto provider raftchat uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The DNS label standing for a cluster id in certificate names: the id itself when it is a
/// valid lowercase label, else `x` and a hash of it.
pub fn cluster_label(cluster_id: &str) -> String {
    let ok = !cluster_id.is_empty()
        && cluster_id.len() <= 63
        && cluster_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !cluster_id.starts_with('-')
        && !cluster_id.ends_with('-');
    if ok {
        return cluster_id.to_string();
    }
    // FNV-1a: stable across versions and platforms (not for secrecy: the CA is the trust).
    let h = cluster_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("x{h:016x}")
}

/// The name a node's certificate carries.
pub fn node_name(cluster_id: &str, node: NodeId) -> String {
    format!("node-{node}.{}.raftchat.invalid", cluster_label(cluster_id))
}

/// The name an administrator's client certificate carries (`raftchat cert create-client`).
pub fn admin_name(cluster_id: &str) -> String {
    format!("admin.{}.raftchat.invalid", cluster_label(cluster_id))
}

/// Whether `cert` (already chained to the cluster CA by the handshake) is valid for `name`.
pub fn cert_has_name(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = ServerName::try_from(name.to_string()) else { return false };
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee.verify_is_valid_for_subject_name(&server_name).is_ok(),
        Err(_) => false,
    }
}

/// The node's certificate and key, replaceable while connections use the old one.
#[derive(Debug)]
pub struct SwapKey(RwLock<Arc<CertifiedKey>>);

impl SwapKey {
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(SwapKey(RwLock::new(certified(chain, key)?))))
    }

    /// Installs a new certificate and key (certificate rotation).
    pub fn replace(&self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<(), TlsError> {
        let k = certified(chain, key)?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = k;
        Ok(())
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn certified(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::Key("the certificate file holds no certificate".into()));
    }
    let signer = provider().key_provider.load_private_key(key).map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

impl ResolvesServerCert for SwapKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for SwapKey {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Trust anchors from the CA certificates.
pub fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(ca.iter().cloned());
    if added == 0 {
        return Err(TlsError::Roots(format!("{} certificate(s), none parsable as a CA", ca.len())));
    }
    Ok(Arc::new(store))
}

/// TLS settings of the node-to-node connection.
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    pub key: Arc<SwapKey>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// Peers must present a certificate from `ca`; this node presents `key`'s.
    pub fn new(ca: &[CertificateDer<'static>], key: Arc<SwapKey>) -> Result<Self, TlsError> {
        let roots = roots(ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(key.clone());
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(key.clone());
        Ok(PeerTls { server: Arc::new(server), client: Arc::new(client), key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_dns_for_any_cluster_id() {
        assert_eq!(node_name("test-cluster", 3), "node-3.test-cluster.raftchat.invalid");
        for id in ["Big_Cluster", "", "-x", "a.b", &"y".repeat(80)] {
            let name = node_name(id, 1);
            assert!(ServerName::try_from(name.clone()).is_ok(), "{name}");
            assert_ne!(cluster_label(id), cluster_label("other"));
        }
        assert_ne!(cluster_label("A"), cluster_label("B"));
    }
}
