//! TLS for test clusters: one test CA per process (made by `raftchat cert`, the operator's
//! tool), node certificates per cluster, and clients that trust that CA.
//!
//! Every client of this crate (REST, WebSocket, the cluster's own) trusts the process's test
//! CA for `https://` and `wss://` URLs, so a test switches a cluster to TLS with
//! `Opts { secure: true, .. }` and changes nothing else.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;

use anyhow::Context;

/// The cluster id test certificates are issued for.
pub const CLUSTER_ID: &str = "test-cluster";

/// The process's test CA: `ca.crt`, `ca.key`, and an admin `client.crt`/`client.key`.
pub struct TestCa {
    pub dir: PathBuf,
    _keep: tempfile::TempDir,
}

static CA: OnceLock<TestCa> = OnceLock::new();
static CA_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `raftchat cert ...`.
pub fn cert(bin: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(bin).arg("cert").args(args).output().context("running raftchat cert")?;
    anyhow::ensure!(out.status.success(), "raftchat cert {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The test CA, created on first use.
pub fn ca(bin: &Path) -> anyhow::Result<&'static TestCa> {
    let _g = CA_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ca) = CA.get() {
        return Ok(ca);
    }
    let keep = tempfile::tempdir()?;
    let dir = keep.path().to_path_buf();
    let d = dir.to_string_lossy().into_owned();
    cert(bin, &["create-ca", "--certs-dir", &d, "--cluster-id", CLUSTER_ID])?;
    cert(bin, &["create-client", "--certs-dir", &d, "--cluster-id", CLUSTER_ID])?;
    // The CA alone: the admin CLI trusts the nodes but has no admin certificate.
    std::fs::create_dir_all(dir.join("trust"))?;
    std::fs::copy(dir.join("ca.crt"), dir.join("trust").join("ca.crt"))?;
    Ok(CA.get_or_init(|| TestCa { dir, _keep: keep }))
}

/// A certificates directory for node `id` in `dir`: the CA certificate and the node's own.
pub fn node_certs(bin: &Path, ca: &TestCa, dir: &Path, id: u64) -> anyhow::Result<PathBuf> {
    node_certs_for(bin, ca, dir, id, &[])
}

/// [`node_certs`] for a node clients reach at `hosts` too (beyond localhost and 127.0.0.1).
pub fn node_certs_for(bin: &Path, ca: &TestCa, dir: &Path, id: u64, hosts: &[String]) -> anyhow::Result<PathBuf> {
    let d = dir.join(format!("certs-{id}"));
    std::fs::create_dir_all(&d)?;
    std::fs::copy(ca.dir.join("ca.crt"), d.join("ca.crt"))?;
    let key = ca.dir.join("ca.key").to_string_lossy().into_owned();
    let ds = d.to_string_lossy().into_owned();
    let id = id.to_string();
    let mut args =
        vec!["create-node", "--certs-dir", &ds, "--ca-key", &key, "--cluster-id", CLUSTER_ID, "--node-id", &id];
    let mut all = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    all.extend(hosts.iter().cloned());
    for h in &all {
        args.extend(["--host", h.as_str()]);
    }
    cert(bin, &args)?;
    Ok(d)
}

/// Flags for `raftchat admin` against a secure cluster: trust the test CA, with no admin
/// certificate (tests of the admin token stay meaningful).
pub fn admin_flags() -> Vec<String> {
    match CA.get() {
        Some(ca) => vec!["--certs-dir".into(), ca.dir.join("trust").to_string_lossy().into_owned()],
        None => Vec::new(),
    }
}

/// Whether tests run their clusters over TLS (`RAFTCHAT_TEST_SECURE=1`): the same tests, with
/// certificates, mutual TLS between nodes and HTTPS/WSS for clients.
pub fn secure_by_env() -> bool {
    std::env::var("RAFTCHAT_TEST_SECURE").is_ok_and(|v| v == "1")
}

/// The CA clients trust, once a secure cluster has made it.
pub fn ca_pem() -> Option<Vec<u8>> {
    CA.get().and_then(|ca| std::fs::read(ca.dir.join("ca.crt")).ok())
}

/// A reqwest builder trusting the test CA (when there is one).
pub fn http_builder() -> reqwest::ClientBuilder {
    let b = reqwest::Client::builder();
    match ca_pem().and_then(|pem| reqwest::Certificate::from_pem(&pem).ok()) {
        Some(ca) => b.add_root_certificate(ca),
        None => b,
    }
}

/// The ALPN protocol a client offers to be asked for its admin certificate (the server's
/// `tls::ADMIN_ALPN`; a protocol constant, see docs/SECURITY.md).
pub const ADMIN_ALPN: &[u8] = b"raftchat-admin";

/// A reqwest builder presenting the client certificate in `dir` (`client.crt`, `client.key`)
/// as an administrator, trusting the test CA.
pub fn admin_builder_from(dir: &Path) -> anyhow::Result<reqwest::ClientBuilder> {
    use rustls::pki_types::pem::PemObject;
    let pem = ca_pem().context("no test CA yet")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c?)?;
    }
    let chain: Vec<_> =
        rustls::pki_types::CertificateDer::pem_file_iter(dir.join("client.crt"))?.collect::<Result<_, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("client.key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ADMIN_ALPN.to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().use_preconfigured_tls(config))
}

/// A reqwest builder for the test CA's administrator (secure clusters, once [`ca`] made it).
pub fn admin_builder() -> anyhow::Result<reqwest::ClientBuilder> {
    admin_builder_from(&CA.get().context("no test CA yet")?.dir)
}

/// A WebSocket connector trusting the test CA (for `wss://`).
pub fn ws_connector() -> Option<tokio_tungstenite::Connector> {
    use rustls::pki_types::pem::PemObject;
    let pem = ca_pem()?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
        roots.add(c).ok()?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}
