//! A node-wide rate limit on outgoing snapshot bytes, so that moving replicas (`rebalance`,
//! `members add|remove`) or catching up a node does not starve client traffic of bandwidth,
//! disk reads and CPU. Every group's snapshot chunks to every peer share it.

use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

pub struct Throttle {
    /// Bytes per second; `None`: unlimited.
    rate: Option<f64>,
    /// When the bytes reserved so far will have been sent at `rate`.
    next_free: Mutex<Instant>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle { rate: (bytes_per_sec > 0).then_some(bytes_per_sec as f64), next_free: Mutex::new(Instant::now()) }
    }

    /// Reserves `bytes` at `now`; returns when they may be sent.
    fn reserve(&self, bytes: usize, now: Instant) -> Instant {
        let Some(rate) = self.rate else { return now };
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(bytes as f64 / rate);
        start
    }

    /// Waits until `bytes` more may be sent.
    pub async fn acquire(&self, bytes: usize) {
        let at = self.reserve(bytes, Instant::now());
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_spaced_at_the_rate_and_an_idle_throttle_does_not_bank_credit() {
        let t = Throttle::new(1_000_000);
        let now = Instant::now();
        assert_eq!(t.reserve(500_000, now), now);
        assert_eq!(t.reserve(500_000, now), now + Duration::from_millis(500));
        assert_eq!(t.reserve(1, now), now + Duration::from_secs(1));
        // After a long pause the next chunk goes at once, but not earlier than now.
        let later = now + Duration::from_secs(10);
        assert_eq!(t.reserve(1_000_000, later), later);
        assert_eq!(t.reserve(1, later), later + Duration::from_secs(1));
        let free = Throttle::new(0);
        assert_eq!(free.reserve(usize::MAX, now), now);
    }
}
