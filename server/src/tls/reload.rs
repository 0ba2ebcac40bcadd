//! Certificate rotation without a restart: the node's certificate and key are read again on
//! SIGHUP, and when `node.crt` changes on disk (checked every 10 s). New connections use the
//! new certificate; established ones keep theirs. A bad new file is logged and the old
//! certificate stays in use.

use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use tokio::sync::watch;

use super::NodeTls;

const POLL: Duration = Duration::from_secs(10);

fn modified(tls: &NodeTls) -> Option<SystemTime> {
    let m = |f: &str| std::fs::metadata(tls.dir.join(f)).and_then(|m| m.modified()).ok();
    m(super::NODE_CERT).max(m(super::NODE_KEY))
}

/// Reloads now; says what happened.
pub fn reload(tls: &NodeTls) -> Result<(), super::TlsError> {
    let (chain, key) = super::load::node_key(&tls.dir, &tls.cluster_id, tls.node_id)?;
    tls.key.replace(chain, key)?;
    Ok(())
}

/// Runs until shutdown.
pub async fn watch(tls: Arc<NodeTls>, mut shutdown: watch::Receiver<bool>) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = modified(&tls);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let why = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = hangup => "SIGHUP",
            _ = tokio::time::sleep(POLL) => {
                let now = modified(&tls);
                if now == seen {
                    continue;
                }
                seen = now;
                "node.crt changed"
            }
        };
        match reload(&tls) {
            Ok(()) => tracing::info!(%why, dir = %tls.dir.display(), "node certificate reloaded"),
            Err(e) => tracing::error!(%why, cause = %e, "node certificate not reloaded; the old one stays in use"),
        }
    }
}
