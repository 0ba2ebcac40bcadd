//! HTTP clients a node uses to call other nodes (media copies, forwarded admin calls): over
//! HTTPS they present the node's certificate and trust only the cluster CA.

use std::sync::Arc;

use super::NodeTls;

/// How this node reaches other nodes' client ports.
#[derive(Clone, Default)]
pub struct NodeHttp {
    /// `Some` when nodes serve clients over HTTPS.
    pub tls: Option<Arc<NodeTls>>,
}

impl NodeHttp {
    /// A client builder; with TLS, mutual: the node certificate and the cluster CA.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let b = reqwest::Client::builder();
        match &self.tls {
            Some(tls) => b.use_preconfigured_tls(tls.admin_client_config()),
            None => b,
        }
    }

    /// `http(s)://addr`, unless `addr` names its scheme.
    pub fn url(&self, addr: &str) -> String {
        if addr.starts_with("http://") || addr.starts_with("https://") {
            return addr.to_string();
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }
}
