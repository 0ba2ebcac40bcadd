//! The repair pass, on every node every `repair_every`: for each blob this node holds,
//! - no record and older than the grace period (an upload that was never recorded, or one
//!   collected below): delete the local copy;
//! - recorded, referenced by no message, last uploaded longer ago than the grace period: the
//!   blob's first holder deletes the record, so every copy goes on the next pass;
//! - otherwise: copy it to every holder that lacks it (a node lost, added or wiped), and drop
//!   the local copy if this node is no longer a holder and every holder has it.

use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use raftchat_storage::blobs::to_hex;
use raftchat_storage::blobs::BlobEntry;

use super::Media;

/// A copy from a sender that stopped half-way is dropped after this long.
const STALE_TRANSFER: Duration = Duration::from_secs(3600);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub checked: usize,
    pub copied: usize,
    pub dropped: usize,
    pub collected: usize,
}

pub async fn run(media: Arc<Media>) {
    let mut shutdown = media.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(media.config.repair_every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let report = media.repair_pass().await;
        if report.copied + report.dropped + report.collected > 0 {
            tracing::info!(?report, "media repair pass");
        }
    }
}

impl Media {
    pub async fn repair_pass(self: &Arc<Self>) -> PassReport {
        let mut report = PassReport::default();
        if self.service.node.layout().is_none() {
            return report;
        }
        let store = self.store.clone();
        let entries = match tokio::task::spawn_blocking(move || {
            store.sweep_incoming(STALE_TRANSFER);
            store.list()
        })
        .await
        {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, "cannot list media blobs");
                return report;
            }
            Err(e) => {
                tracing::warn!(cause = %e, "cannot list media blobs");
                return report;
            }
        };
        for e in entries {
            if *self.shutdown.borrow() {
                break;
            }
            report.checked += 1;
            if let Err(err) = self.repair_one(&e, &mut report).await {
                tracing::debug!(blob = %to_hex(&e.sha256), cause = %err, "media repair skipped a blob");
            }
        }
        report
    }

    async fn repair_one(self: &Arc<Self>, e: &BlobEntry, report: &mut PassReport) -> Result<(), String> {
        let sha = e.sha256;
        let now = SystemTime::now();
        let age = now.duration_since(e.touched).unwrap_or_default();
        let remove = |media: &Arc<Media>| {
            let store = media.store.clone();
            async move { tokio::task::spawn_blocking(move || store.remove(&sha)).await }
        };
        match self.service.media_liveness(&sha).await.map_err(|e| e.to_string())? {
            None => {
                if age > self.config.grace && matches!(remove(self).await, Ok(Ok(true))) {
                    report.collected += 1;
                }
                return Ok(());
            }
            Some((referenced, last_upload_ms)) => {
                let now_ms = crate::service::now_ms();
                let idle = Duration::from_millis(now_ms.saturating_sub(last_upload_ms));
                let first_holder = self.holders(&sha).first().map(|(n, _)| *n) == Some(self.me());
                if !referenced && idle > self.config.grace && age > self.config.grace && first_holder {
                    self.service.forget_media(&sha).await.map_err(|e| e.to_string())?;
                    tracing::info!(blob = %to_hex(&sha), "unreferenced upload collected");
                    return Ok(());
                }
            }
        }
        let me = self.me();
        let holders = self.holders(&sha);
        let token = self.token().map_err(|e| e.to_string())?;
        let manifest = self.store.manifest(&sha).map_err(|e| e.to_string())?.ok_or("blob vanished")?;
        let mut held_elsewhere = 0;
        for (node, addr) in holders.iter().filter(|(n, _)| *n != me) {
            match self.peers.manifest(addr, &token, &to_hex(&sha)).await {
                Ok(Some(_)) => held_elsewhere += 1,
                Ok(None) => match self.peers.push(&self.store, addr, &token, &manifest).await {
                    Ok(()) => {
                        held_elsewhere += 1;
                        report.copied += 1;
                        self.service.metrics.media_copies_restored.inc();
                        tracing::info!(blob = %to_hex(&sha), to = node, "media copy restored");
                    }
                    Err(e) => tracing::warn!(blob = %to_hex(&sha), to = node, cause = %e, "media copy failed"),
                },
                Err(e) => tracing::debug!(node, cause = %e, "holder did not answer"),
            }
        }
        let holder_here = holders.iter().any(|(n, _)| *n == me);
        let redundant = !holder_here && held_elsewhere == holders.len() && holders.len() >= super::placement::COPIES;
        if redundant && matches!(remove(self).await, Ok(Ok(true))) {
            report.dropped += 1;
        }
        Ok(())
    }
}
