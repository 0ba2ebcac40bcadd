//! Recent committed events of each group hosted on this node, for delivery to clients.
//!
//! The state machine pushes every event into a bounded ring per group as it applies. Readers,
//! on this node or (through `RpcRequest::PollEvents`) on any other, poll a ring from the last
//! id they saw and wait for new events. A reader that fell behind the ring, or whose ring was
//! recreated (`epoch` changed: the node restarted), gets `reset` and must resync from storage;
//! delivery does that per chat anyway by filling seq gaps from history.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use tokio::sync::Notify;

use crate::apply::Applied;
use crate::types::GroupId;

/// Events kept per group.
pub const RING_LEN: usize = 8192;
/// Events returned by one poll at most.
pub const POLL_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub epoch: u64,
    /// Ids and events, oldest first.
    pub events: Vec<(u64, Applied)>,
    /// The id to poll after next time.
    pub last: u64,
    /// Events between the caller's position and `events` were lost.
    pub reset: bool,
}

struct Ring {
    epoch: u64,
    /// Id of the newest event (0 = none yet).
    last: u64,
    buf: VecDeque<(u64, Applied)>,
    notify: Arc<Notify>,
}

impl Ring {
    /// Events with ids after `pos`, at most [`POLL_MAX`]. Ids in the ring are consecutive, so
    /// the first one is found by arithmetic, not by a scan of the ring: a scan made every poll
    /// cost O(ring) and, once the rings filled, was the largest single cost of a loaded node.
    fn after(&self, pos: u64) -> Vec<(u64, Applied)> {
        let Some((front, _)) = self.buf.front() else { return Vec::new() };
        let skip = (pos + 1).saturating_sub(*front);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX).min(self.buf.len());
        self.buf.range(skip..).take(POLL_MAX).cloned().collect()
    }
}

#[derive(Default)]
pub struct EventLog {
    rings: Mutex<HashMap<GroupId, Ring>>,
}

impl EventLog {
    fn rings(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Ring>> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring(rings: &mut HashMap<GroupId, Ring>, group: GroupId) -> &mut Ring {
        rings.entry(group).or_insert_with(|| Ring {
            epoch: rand::random::<u64>() | 1,
            last: 0,
            buf: VecDeque::new(),
            notify: Arc::new(Notify::new()),
        })
    }

    pub fn push(&self, group: GroupId, events: impl IntoIterator<Item = Applied>) {
        let mut rings = self.rings();
        let ring = Self::ring(&mut rings, group);
        let mut any = false;
        for e in events {
            ring.last += 1;
            ring.buf.push_back((ring.last, e));
            if ring.buf.len() > RING_LEN {
                ring.buf.pop_front();
            }
            any = true;
        }
        if any {
            ring.notify.notify_waiters();
        }
    }

    /// Events of `group` after `after` in ring `epoch`; `None` starts from now. Waits up to
    /// `wait` when there is nothing new.
    pub async fn poll(&self, group: GroupId, epoch: u64, after: Option<u64>, wait: Duration) -> EventBatch {
        let deadline = tokio::time::Instant::now() + wait;
        // The first look at the ring fixes the position: events arriving while we wait come after it.
        let (pos, reset, ring_epoch, notify) = {
            let mut rings = self.rings();
            let ring = Self::ring(&mut rings, group);
            let (pos, mut reset) = match after {
                Some(a) if epoch == ring.epoch && a <= ring.last => (a, false),
                Some(_) => (ring.buf.front().map_or(ring.last, |(id, _)| id - 1), true),
                None => (ring.last, false),
            };
            let oldest = ring.buf.front().map_or(ring.last + 1, |(id, _)| *id);
            if pos + 1 < oldest {
                reset = true;
            }
            (pos, reset, ring.epoch, ring.notify.clone())
        };
        loop {
            // Register for the wake-up before looking, so a push between the look and the wait
            // is never missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut rings = self.rings();
                let ring = Self::ring(&mut rings, group);
                let events = ring.after(pos);
                if !events.is_empty() || reset || tokio::time::Instant::now() >= deadline {
                    let last = events.last().map_or(pos, |(id, _)| *id);
                    return EventBatch { epoch: ring_epoch, events, last, reset };
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Applied {
        Applied::Members { chat: uuid::Uuid::from_u128(i as u128) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_poll_sees_every_push_promptly() {
        let log = Arc::new(EventLog::default());
        let start = log.poll(1, 0, None, Duration::from_millis(1)).await;
        let mut last = start.last;
        for i in 0..200u64 {
            let l2 = log.clone();
            let pusher = tokio::spawn(async move { l2.push(1, [ev(i)]) });
            let t = std::time::Instant::now();
            let got = log.poll(1, start.epoch, Some(last), Duration::from_secs(5)).await;
            pusher.await.unwrap();
            assert!(t.elapsed() < Duration::from_secs(1), "poll {i} waited {:?}", t.elapsed());
            assert_eq!(got.events.len(), 1);
            last = got.last;
        }
        // Waiting from "now" returns what arrives during the wait.
        let l2 = log.clone();
        let waiter = tokio::spawn(async move { l2.poll(1, 0, None, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.push(1, [ev(999)]);
        assert_eq!(waiter.await.unwrap().events.len(), 1);
    }

    #[test]
    fn after_finds_the_position_in_a_wrapped_ring() {
        let log = EventLog::default();
        log.push(7, (0..RING_LEN as u64 * 2 + 5).map(ev));
        let rings = log.rings();
        let ring = &rings[&7];
        let front = ring.buf.front().map(|(id, _)| *id).unwrap();
        assert_eq!(front, ring.last - RING_LEN as u64 + 1);
        for pos in [0, front - 1, front, front + 1, ring.last - 3, ring.last - 1, ring.last, ring.last + 9] {
            let got = ring.after(pos);
            let want: Vec<u64> = ring.buf.iter().map(|(id, _)| *id).filter(|id| *id > pos).take(POLL_MAX).collect();
            assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), want, "after {pos}");
        }
    }

    #[tokio::test]
    async fn poll_from_now_then_after_and_reset() {
        let log = Arc::new(EventLog::default());
        let start = log.poll(1, 0, None, Duration::from_millis(1)).await;
        assert!(start.events.is_empty() && !start.reset);
        let l2 = log.clone();
        let waiter =
            tokio::spawn(async move { l2.poll(1, start.epoch, Some(start.last), Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.push(1, [ev(1), ev(2)]);
        let got = waiter.await.unwrap();
        assert_eq!(got.events.len(), 2);
        assert!(!got.reset);
        // A stale epoch or a position before the ring's start resets.
        let stale = log.poll(1, 12345, Some(got.last), Duration::from_millis(1)).await;
        assert!(stale.reset);
        log.push(1, (0..RING_LEN as u64 + 10).map(ev));
        let behind = log.poll(1, got.epoch, Some(got.last), Duration::from_millis(1)).await;
        assert!(behind.reset);
        assert_eq!(behind.events.len(), POLL_MAX);
    }
}
