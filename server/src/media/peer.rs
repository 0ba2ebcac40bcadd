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

/// How long a peer token is good for: a captured one can be replayed for this long at most.
pub const PEER_TOKEN_TTL_MS: u64 = 60_000;

/// The token peers send as `Authorization: Bearer`: `EXPIRY.MAC`, the MAC an HMAC-SHA256 of a
/// label and the expiry (ms) under the cluster's secret. Over HTTPS the node certificate is
/// sent too; on plain HTTP the token is all there is.
pub fn peer_token(secret: &[u8], now_ms: u64) -> String {
    let expiry = now_ms + PEER_TOKEN_TTL_MS;
    format!(
        "{expiry}.{}",
        to_hex(&crate::auth::hmac_sha256(secret, &[b"raftchat media peer v2", &expiry.to_be_bytes()]))
    )
}

/// Clocks of nodes may differ by this much (a token is judged on the receiver's clock).
const CLOCK_SKEW_MS: u64 = 5 * 60_000;

/// Whether `given` is a peer token good at `now_ms`, allowing for skewed clocks; a captured
/// token is useless after TTL plus skew.
pub fn peer_token_valid(secret: &[u8], given: &str, now_ms: u64) -> bool {
    let Some((expiry, _)) = given.split_once('.') else { return false };
    let Ok(expiry) = expiry.parse::<u64>() else { return false };
    if expiry + CLOCK_SKEW_MS < now_ms || expiry > now_ms + PEER_TOKEN_TTL_MS + CLOCK_SKEW_MS {
        return false;
    }
    crate::http::constant_time_eq(given.as_bytes(), peer_token(secret, expiry - PEER_TOKEN_TTL_MS).as_bytes())
}

#[cfg(test)]
mod token_tests {
    #[test]
    fn peer_tokens_expire_and_bind_the_secret() {
        let t = super::peer_token(b"secret-secret-secret", 1_000_000);
        assert!(super::peer_token_valid(b"secret-secret-secret", &t, 1_000_000));
        assert!(!super::peer_token_valid(b"other-secret-secret!", &t, 1_000_000));
        assert!(!super::peer_token_valid(b"secret-secret-secret", &t, 1_000_000 + 7 * 60_000));
        let forged = format!("{}.{}", 9_000_000, t.split_once('.').unwrap().1);
        assert!(!super::peer_token_valid(b"secret-secret-secret", &forged, 8_990_000));
    }
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
    nodes: crate::tls::client::NodeHttp,
}

impl PeerClient {
    pub fn new(nodes: &crate::tls::client::NodeHttp) -> Self {
        let http = nodes
            .builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        PeerClient { http, nodes: nodes.clone() }
    }

    fn url(&self, addr: &str, path: &str) -> String {
        format!("{}/internal/v1/blobs/{path}", self.nodes.url(addr))
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
        let r = self.http.get(self.url(addr, sha)).bearer_auth(token).send().await;
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
        let url = self.url(addr, &format!("{}/chunks/{i}", to_hex(&m.sha256)));
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
            let url = self.url(addr, &format!("{sha}/chunks/{i}?transfer={transfer}&sha256={}", to_hex(chunk_sha)));
            Self::check(addr, self.http.put(url).bearer_auth(token).body(bytes).send().await).await?;
        }
        let url = self.url(addr, &format!("{sha}/commit?transfer={transfer}"));
        let body = ManifestJson::from_manifest(m);
        Self::check(addr, self.http.post(url).bearer_auth(token).json(&body).send().await).await?;
        Ok(())
    }
}
