//! Follows one group's committed events for the hub.
//!
//! The source is this node's own replica when it has one, else the group's replicas in turn
//! (long-polling `PollEvents`). Whenever the feed (re)starts or the source says events were
//! lost, every subscribed chat of the group is told to resync from history, so nothing that
//! committed while the feed was not looking is missed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Hub;
use crate::service::ChatService;

/// How long one poll waits for new events.
const POLL_WAIT_MS: u32 = 2_000;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub async fn run(
    hub: Arc<Hub>,
    service: ChatService,
    group: u32,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let node = service.node.clone();
    let mut epoch = 0u64;
    let mut after: Option<u64> = None;
    let mut attempt = 0usize;
    loop {
        if *stop.borrow() || *shutdown.borrow() {
            return;
        }
        let source = if node.group(group).is_some() {
            Some(node.id())
        } else {
            node.layout().and_then(|l| {
                let r = l.replicas(group);
                (!r.is_empty()).then(|| r[attempt % r.len()])
            })
        };
        let Some(source) = source else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        // The first poll only takes a position (no wait), so the resync below runs at once.
        let wait = if after.is_none() { 0 } else { POLL_WAIT_MS };
        let poll = service.router.poll_events(group, source, epoch, after, wait);
        let res = tokio::select! {
            r = poll => r,
            _ = stop.wait_for(|s| *s) => return,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match res {
            Ok(batch) => {
                let first = after.is_none();
                if batch.reset || first {
                    // Anything committed before this point is read from history instead.
                    hub.resync_group(group);
                }
                epoch = batch.epoch;
                after = Some(batch.last);
                if !batch.events.is_empty() {
                    hub.dispatch(batch.events.into_iter().map(|(_, e)| e).collect());
                }
            }
            Err(e) => {
                tracing::debug!(group, source, cause = %e, "event poll failed; trying another replica");
                attempt += 1;
                after = None;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}
