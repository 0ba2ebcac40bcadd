//! Per-user token buckets, kept on each node for the users it serves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

/// Buckets idle this long are forgotten.
const IDLE_SECS: f64 = 300.0;
/// Users tracked at most; past it, idle buckets are swept.
const USERS_MAX: usize = 1_000_000;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter { rate, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `user`; false when the user is over the limit.
    pub fn allow(&self, user: Uuid) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= USERS_MAX {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < IDLE_SECS);
        }
        let (tokens, last) = b.entry(user).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn burst_then_refuse() {
        let r = super::RateLimiter::new(1.0, 3.0);
        let u = uuid::Uuid::new_v4();
        assert!((0..3).all(|_| r.allow(u)));
        assert!(!r.allow(u));
        assert!(r.allow(uuid::Uuid::new_v4()));
    }
}
