//! Media: uploads stored in the cluster itself, instead of an object store.
//!
//! A blob is named by its SHA-256 and kept on three nodes picked by [`placement`]. An upload
//! is written to the receiving node's [`BlobStore`] as it streams in ([`upload`]), copied to the
//! other holders ([`peer`]), and acknowledged once two copies are fsynced; its record and the
//! uploader's right to it are then committed through Raft ([`crate::service::media`]). Any node
//! serves a download ([`download`]), from its own copy or a holder's, checking every chunk.
//! [`repair`] restores missing copies and collects uploads no message references. [`inert`]
//! decides what a browser may show inline (the rest is an attachment, always sandboxed).

pub mod download;
pub mod inert;
pub mod peer;
pub mod placement;
pub mod repair;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use raftchat_raft::types::NodeId;
use raftchat_storage::blobs::to_hex;
use raftchat_storage::blobs::BlobManifest;
use raftchat_storage::blobs::BlobStore;
use raftchat_storage::blobs::Sha;
use raftchat_storage::StorageError;
use tokio::sync::watch;
use tokio::sync::Semaphore;

use self::peer::PeerClient;
use crate::http::error::ApiError;
use crate::service::ChatService;

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Largest upload.
    pub max_bytes: u64,
    /// How long an upload no message references is kept.
    pub grace: Duration,
    /// Time between repair passes.
    pub repair_every: Duration,
    /// After the first 10 s, an upload slower than this on average is dropped (408).
    pub min_bytes_per_sec: u64,
    /// An upload must finish within this.
    pub deadline: Duration,
    /// Uploads of one user in progress on this node at most.
    pub per_user_max: usize,
    /// Uploads in progress on this node at most.
    pub total_max: usize,
}

/// Blobs whose inline decision a node remembers at most.
const INLINE_KNOWN_MAX: usize = 10_000;

/// Copies to other nodes running in the background at most (the third copy of an upload).
const BACKGROUND_COPIES_MAX: usize = 8;

/// The media side of a node.
pub struct Media {
    pub store: Arc<BlobStore>,
    pub service: ChatService,
    pub peers: PeerClient,
    pub config: MediaConfig,
    background: Arc<Semaphore>,
    /// Uploads in progress, per user (bounded by `per_user_max` and `total_max`).
    uploading: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, usize>>,
    /// Whether a blob may be shown inline ([`inert`]), decided once from its first bytes
    /// (a blob and its record never change); at most [`INLINE_KNOWN_MAX`] remembered.
    inline_known: std::sync::Mutex<std::collections::HashMap<raftchat_storage::blobs::Sha, bool>>,
    shutdown: watch::Receiver<bool>,
}

pub fn storage_error(e: StorageError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
}

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

impl Media {
    pub fn start(
        store: Arc<BlobStore>,
        service: ChatService,
        config: MediaConfig,
        peers: PeerClient,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Media> {
        let media = Arc::new(Media {
            store,
            service,
            peers,
            config,
            background: Arc::new(Semaphore::new(BACKGROUND_COPIES_MAX)),
            uploading: std::sync::Mutex::new(std::collections::HashMap::new()),
            inline_known: std::sync::Mutex::new(std::collections::HashMap::new()),
            shutdown,
        });
        tokio::spawn(repair::run(media.clone()));
        media
    }

    fn me(&self) -> NodeId {
        self.service.node.id()
    }

    /// The token to call peers with, from the replicated cluster secret.
    pub fn token(&self) -> Result<String, ApiError> {
        Ok(peer::peer_token(&self.service.token_secret()?, crate::service::now_ms()))
    }

    fn up(&self) -> impl Fn(NodeId) -> bool {
        let connected = self.service.node.pool().connected();
        let me = self.me();
        move |n| n == me || connected.contains(&n)
    }

    /// (node, client address) of every node in the layout, best-ranked for `sha` first.
    fn ranked_nodes(&self, sha: &Sha) -> Vec<(NodeId, String)> {
        let Some(layout) = self.service.node.layout() else { return Vec::new() };
        placement::ranked(sha, layout.nodes.keys().copied())
            .into_iter()
            .filter_map(|n| layout.nodes.get(&n).map(|i| (n, i.api_addr.clone())))
            .collect()
    }

    /// The nodes that should hold `sha` now (the best three that are up), with their addresses.
    pub fn holders(&self, sha: &Sha) -> Vec<(NodeId, String)> {
        let Some(layout) = self.service.node.layout() else { return Vec::new() };
        placement::holders(sha, layout.nodes.keys().copied(), self.up())
            .into_iter()
            .filter_map(|n| layout.nodes.get(&n).map(|i| (n, i.api_addr.clone())))
            .collect()
    }

    /// Up nodes other than this one, best-ranked first: where to look for a copy.
    fn sources(&self, sha: &Sha) -> Vec<(NodeId, String)> {
        let (up, me) = (self.up(), self.me());
        self.ranked_nodes(sha).into_iter().filter(|(n, _)| *n != me && up(*n)).collect()
    }

    /// The manifest of a blob: this node's, else the first holder's that answers.
    pub async fn manifest(&self, sha: &Sha) -> Result<Option<BlobManifest>, ApiError> {
        let (st, s) = (self.store.clone(), *sha);
        match tokio::task::spawn_blocking(move || st.manifest(&s)).await.map_err(join_error)? {
            Ok(Some(m)) => return Ok(Some(m)),
            Ok(None) => {}
            Err(e) => tracing::warn!(blob = %to_hex(sha), cause = %e, "local manifest unreadable; asking a peer"),
        }
        let token = self.token()?;
        for (node, addr) in self.sources(sha) {
            match self.peers.manifest(&addr, &token, &to_hex(sha)).await {
                Ok(Some(m)) if m.sha256 == *sha => return Ok(Some(m)),
                Ok(_) => {}
                Err(e) => tracing::debug!(node, cause = %e, "no manifest from peer"),
            }
        }
        Ok(None)
    }

    /// Chunk `i`, checked: from this node's copy, else from a peer. A local copy found missing
    /// or damaged is mended with the peer's chunk.
    pub async fn chunk(&self, m: &BlobManifest, i: usize) -> Result<Vec<u8>, ApiError> {
        let (st, mm) = (self.store.clone(), m.clone());
        let local = tokio::task::spawn_blocking(move || st.read_chunk(&mm, i)).await.map_err(join_error)?;
        let held_here = self.store.contains(&m.sha256);
        match local {
            Ok(Some(bytes)) => return Ok(bytes),
            Ok(None) if !held_here => {}
            Ok(None) => tracing::warn!(blob = %to_hex(&m.sha256), chunk = i, "local chunk missing; fetching a copy"),
            Err(e) => {
                tracing::warn!(blob = %to_hex(&m.sha256), chunk = i, cause = %e, "local chunk damaged; fetching a copy")
            }
        }
        let token = self.token()?;
        let mut last = String::from("no other node is up");
        for (node, addr) in self.sources(&m.sha256) {
            match self.peers.chunk(&addr, &token, m, i).await {
                Ok(bytes) => {
                    if held_here {
                        let (st, mm, b) = (self.store.clone(), m.clone(), bytes.clone());
                        match tokio::task::spawn_blocking(move || st.replace_chunk(&mm, i, &b)).await {
                            Ok(Ok(())) => {
                                tracing::info!(blob = %to_hex(&m.sha256), chunk = i, from = node, "local chunk mended")
                            }
                            Ok(Err(e)) => tracing::warn!(cause = %e, "could not mend a local chunk"),
                            Err(e) => tracing::warn!(cause = %e, "could not mend a local chunk"),
                        }
                    }
                    return Ok(bytes);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            format!("no good copy of chunk {i} of {} is reachable: {last}", to_hex(&m.sha256)),
        ))
    }

    /// Copies a blob held here to its other holders. Returns once `needed` copies (this node's
    /// included, if it is a holder) are durable; the remaining copies go on in the background.
    pub async fn replicate(self: &Arc<Self>, m: &BlobManifest, needed: usize) -> Result<(), ApiError> {
        use futures::StreamExt;
        let me = self.me();
        let holders = self.holders(&m.sha256);
        let mut durable = usize::from(holders.iter().any(|(n, _)| *n == me));
        let needed = needed.min(holders.len());
        let token = self.token()?;
        let mut pushes: futures::stream::FuturesUnordered<_> = holders
            .into_iter()
            .filter(|(n, _)| *n != me)
            .map(|(node, addr)| {
                let (media, m, token) = (self.clone(), m.clone(), token.clone());
                async move { (node, media.peers.push(&media.store, &addr, &token, &m).await) }
            })
            .collect();
        let mut errors = Vec::new();
        while durable < needed {
            match pushes.next().await {
                Some((_, Ok(()))) => durable += 1,
                Some((node, Err(e))) => errors.push(format!("node {node}: {e}")),
                None => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "media_unavailable",
                        format!("only {durable} of {needed} copies could be stored: {}", errors.join("; ")),
                    ))
                }
            }
        }
        if !pushes.is_empty() {
            // The rest finish on their own (or the repair pass does it), bounded in number and
            // stopped by shutdown.
            if let Ok(permit) = self.background.clone().try_acquire_owned() {
                let mut shutdown = self.shutdown.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let drain = async { while pushes.next().await.is_some() {} };
                    tokio::select! {
                        _ = drain => {}
                        _ = shutdown.wait_for(|s| *s) => {}
                    }
                });
            }
        }
        Ok(())
    }
}
