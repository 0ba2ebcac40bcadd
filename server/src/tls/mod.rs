//! TLS for a node: its certificates, the HTTPS listener, and the `raftchat cert` tooling.
//!
//! - [`certs`]: generating the cluster CA and node and client certificates (rcgen).
//! - [`cli`]: `raftchat cert create-ca|create-node|create-client|list`.
//! - [`client`]: HTTP clients for node-to-node calls (the node certificate over HTTPS).
//! - [`load`]: reading a certificates directory into the node's TLS settings ([`NodeTls`]).
//! - [`serve`]: the HTTP(S) accept loop: TLS, a clear answer to plain HTTP on a TLS port,
//!   client certificates as request extensions, header-read timeout, graceful shutdown.
//! - [`reload`]: picks up a renewed node certificate on SIGHUP or when its file changes.
//!
//! A certificates directory holds `ca.crt` (the cluster CA), `node.crt` and `node.key` (this
//! node), and for the admin CLI `client.crt` and `client.key`. `ca.key` signs new certificates
//! and belongs on the machine that issues them, not on nodes.

pub mod certs;
pub mod cli;
pub mod client;
pub mod load;
pub mod reload;
pub mod serve;

pub use load::NodeTls;

/// The ALPN protocol an admin client (the admin CLI, a node calling another) offers before
/// `http/1.1` to be asked for its client certificate. Browsers and chat clients never offer it,
/// so they are never asked: Chromium fails a cross-origin WebSocket whose server asks for one.
pub const ADMIN_ALPN: &[u8] = b"raftchat-admin";

/// File names in a certificates directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const NODE_CERT: &str = "node.crt";
pub const NODE_KEY: &str = "node.key";
pub const CLIENT_CERT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: {why}")]
    Pem { path: std::path::PathBuf, why: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(transparent)]
    Peer(#[from] raftchat_raft::transport::tls::TlsError),
    #[error("{0}")]
    Invalid(String),
}
