//! A certificates directory read into the node's TLS settings: mutual TLS for peers, HTTPS for
//! clients (client certificates optional: an admin certificate authorizes the admin API).

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use raftchat_raft::transport::tls;
use raftchat_raft::transport::tls::PeerTls;
use raftchat_raft::transport::tls::SwapKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;

use super::TlsError;

/// The node's TLS settings, built once at start; the node's key can be swapped (reload).
pub struct NodeTls {
    pub dir: PathBuf,
    pub cluster_id: String,
    pub node_id: u64,
    pub key: Arc<SwapKey>,
    pub peer: Arc<PeerTls>,
    /// The client-facing listener's settings: no client certificate asked for.
    pub https: Arc<rustls::ServerConfig>,
    /// For connections offering [`super::ADMIN_ALPN`]: a client certificate from the cluster CA
    /// is required.
    pub https_admin: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").field("dir", &self.dir).finish()
    }
}

pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |why: String| TlsError::Pem { path: path.to_path_buf(), why };
    let bytes = std::fs::read(path).map_err(|e| TlsError::Io { path: path.to_path_buf(), source: e })?;
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Io { path: path.to_path_buf(), source: e })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem { path: path.to_path_buf(), why: e.to_string() })
}

/// Reads the node certificate and checks it names this node.
pub fn node_key(
    dir: &Path,
    cluster_id: &str,
    node_id: u64,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = dir.join(super::NODE_CERT);
    let chain = certs(&cert_path)?;
    let want = tls::node_name(cluster_id, node_id);
    if !tls::cert_has_name(&chain[0], &want) {
        return Err(TlsError::Invalid(format!(
            "{} is not issued to node {node_id} of cluster {cluster_id:?} (it must name {want}); create it with \
             `raftchat cert create-node --node-id {node_id} --cluster-id {cluster_id}`",
            cert_path.display()
        )));
    }
    Ok((chain, key(&dir.join(super::NODE_KEY))?))
}

impl NodeTls {
    pub fn load(dir: &Path, cluster_id: &str, node_id: u64) -> Result<Arc<NodeTls>, TlsError> {
        let ca = certs(&dir.join(super::CA_CERT))?;
        let (chain, node_key) = node_key(dir, cluster_id, node_id)?;
        let key = SwapKey::new(chain, node_key)?;
        let peer = Arc::new(PeerTls::new(&ca, key.clone())?);
        let roots = tls::roots(&ca)?;
        let mut https = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(key.clone());
        https.alpn_protocols = vec![b"http/1.1".to_vec()];
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, tls::provider())
            .build()
            .map_err(|e| TlsError::Invalid(format!("client certificate verifier: {e}")))?;
        let mut https_admin = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(key.clone());
        https_admin.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(NodeTls {
            dir: dir.to_path_buf(),
            cluster_id: cluster_id.to_string(),
            node_id,
            key,
            peer,
            https: Arc::new(https),
            https_admin: Arc::new(https_admin),
        }))
    }

    /// A client configuration for calling nodes as this node: the cluster CA, the node's
    /// certificate, and [`super::ADMIN_ALPN`] so that it is asked for.
    pub fn admin_client_config(&self) -> rustls::ClientConfig {
        let mut c = (*self.peer.client).clone();
        c.alpn_protocols = vec![super::ADMIN_ALPN.to_vec(), b"http/1.1".to_vec()];
        c
    }

    /// Whether a client certificate, verified against the cluster CA in the handshake,
    /// authorizes the admin API: an admin certificate of this cluster, or a node's (nodes
    /// forward admin calls to each other).
    pub fn is_admin(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok(params) = rcgen::CertificateParams::from_ca_cert_der(cert) else { return false };
        let admin = tls::admin_name(&self.cluster_id);
        let node_suffix = format!(".{}.raftchat.invalid", tls::cluster_label(&self.cluster_id));
        params.subject_alt_names.iter().any(|n| match n {
            rcgen::SanType::DnsName(d) => {
                let d = d.as_str();
                d == admin
                    || d.strip_suffix(node_suffix.as_str())
                        .and_then(|h| h.strip_prefix("node-"))
                        .is_some_and(|id| id.parse::<u64>().is_ok())
            }
            _ => false,
        })
    }
}
