//! Copying blobs between nodes over their HTTP ports (`/internal/v1/blobs`, see
//! [`crate::http::blob_api`]). Peers prove membership with a token derived from the cluster's
//! replicated secret, so clients, who never see the secret, cannot call these routes.

use std::sync::Arc;
use std::time::Duration;

use raftchat_storage::blobs::parse_hex;
use raftchat_storage::blobs::to_hex;
use raftchat_storage::blobs::BlobManifest;
use raftchat_storage::blobs::BlobStore;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

/// A blob's manifest as JSON between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestJson {
    pub sha256: String,
    pub size: u64,
    pub chunk_bytes: u32,
    pub chunks: Vec<String>,
}

impl ManifestJson {
    pub fn from_manifest(m: &BlobManifest) -> Self {
        ManifestJson {
            sha256: to_hex(&m.sha256),
            size: m.size,
            chunk_bytes: m.chunk_bytes,
            chunks: m.chunks.iter().map(to_hex).collect(),
        }
    }

    pub fn to_manifest(&self) -> Option<BlobManifest> {
        let m = BlobManifest {
            sha256: parse_hex(&self.sha256)?,
            size: self.size,
            chunk_bytes: self.chunk_bytes,
            chunks: self.chunks.iter().map(|c| parse_hex(c)).collect::<Option<Vec<_>>>()?,
        };
        m.is_consistent().then_some(m)
    }
}

/// The token peers send as `Authorization: Bearer`: HMAC-SHA256 of a fixed label under the
/// cluster's secret.
pub fn peer_token(secret: &[u8]) -> String {
    to_hex(&crate::auth::hmac_sha256(secret, &[b"raftchat media peer v1"]))
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("node {addr}: {source}")]
    Http { addr: String, source: reqwest::Error },
    #[error("node {addr} answered {status}: {body}")]
    Status { addr: String, status: u16, body: String },
    #[error("node {addr} sent a chunk that does not match its checksum")]
    BadChunk { addr: String },
    #[error("local blob store: {0}")]
    Local(String),
}

#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
}

impl PeerClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        PeerClient { http }
    }

    fn url(addr: &str, path: &str) -> String {
        format!("http://{addr}/internal/v1/blobs/{path}")
    }

    async fn check(addr: &str, r: Result<reqwest::Response, reqwest::Error>) -> Result<reqwest::Response, PeerError> {
        let r = r.map_err(|e| PeerError::Http { addr: addr.to_string(), source: e })?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default().chars().take(300).collect();
        Err(PeerError::Status { addr: addr.to_string(), status, body })
    }

    /// The manifest of a blob a peer holds; `None` if it holds none.
    pub async fn manifest(&self, addr: &str, token: &str, sha: &str) -> Result<Option<BlobManifest>, PeerError> {
        let r = self.http.get(Self::url(addr, sha)).bearer_auth(token).send().await;
        if let Ok(resp) = &r {
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
        }
        let r = Self::check(addr, r).await?;
        let j: ManifestJson = r.json().await.map_err(|e| PeerError::Http { addr: addr.to_string(), source: e })?;
        Ok(j.to_manifest())
    }

    /// Chunk `i` of a blob from a peer, checked against the manifest.
    pub async fn chunk(&self, addr: &str, token: &str, m: &BlobManifest, i: usize) -> Result<Vec<u8>, PeerError> {
        let url = Self::url(addr, &format!("{}/chunks/{i}", to_hex(&m.sha256)));
        let r = Self::check(addr, self.http.get(url).bearer_auth(token).send().await).await?;
        let bytes = r.bytes().await.map_err(|e| PeerError::Http { addr: addr.to_string(), source: e })?;
        if Some(&raftchat_storage::blobs::sha256(&bytes)) != m.chunks.get(i) {
            return Err(PeerError::BadChunk { addr: addr.to_string() });
        }
        Ok(bytes.to_vec())
    }

    /// Copies a local blob to a peer; returns when the peer has it durably.
    pub async fn push(
        &self,
        store: &Arc<BlobStore>,
        addr: &str,
        token: &str,
        m: &BlobManifest,
    ) -> Result<(), PeerError> {
        let sha = to_hex(&m.sha256);
        if self.manifest(addr, token, &sha).await?.is_some() {
            return Ok(());
        }
        let transfer = Uuid::new_v4();
        for (i, chunk_sha) in m.chunks.iter().enumerate() {
            let (st, mm) = (store.clone(), m.clone());
            let bytes = tokio::task::spawn_blocking(move || st.read_chunk(&mm, i))
                .await
                .map_err(|e| PeerError::Local(e.to_string()))?
                .map_err(|e| PeerError::Local(e.to_string()))?
                .ok_or_else(|| PeerError::Local(format!("chunk {i} of {sha} is missing here")))?;
            let url = Self::url(addr, &format!("{sha}/chunks/{i}?transfer={transfer}&sha256={}", to_hex(chunk_sha)));
            Self::check(addr, self.http.put(url).bearer_auth(token).body(bytes).send().await).await?;
        }
        let url = Self::url(addr, &format!("{sha}/commit?transfer={transfer}"));
        let body = ManifestJson::from_manifest(m);
        Self::check(addr, self.http.post(url).bearer_auth(token).json(&body).send().await).await?;
        Ok(())
    }
}
