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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs;

    #[test]
    fn a_renewed_certificate_replaces_the_old_and_a_bad_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = certs::create_ca("c", 30).unwrap();
        let signer = certs::Ca::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        certs::write(&d.join(crate::tls::CA_CERT), &ca.cert_pem, false, true).unwrap();
        let issue = |node: u64| {
            let n = signer.node("c", node, &["localhost".into()], 30).unwrap();
            certs::write(&d.join(crate::tls::NODE_CERT), &n.cert_pem, false, true).unwrap();
            certs::write(&d.join(crate::tls::NODE_KEY), &n.key_pem, true, true).unwrap();
        };
        issue(1);
        let tls = NodeTls::load(d, "c", 1).unwrap();
        let first = tls.key.current().cert[0].clone();
        issue(1);
        reload(&tls).unwrap();
        let second = tls.key.current().cert[0].clone();
        assert_ne!(first, second, "the renewed certificate is in use");
        // A certificate for another node is refused, and the one in use stays.
        issue(2);
        assert!(reload(&tls).is_err());
        assert_eq!(tls.key.current().cert[0], second);
    }
}
