//! Token buckets per key (a user, a client address, an account name), kept on each node for
//! the clients it serves.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

/// Buckets idle this long are forgotten.
const IDLE_SECS: f64 = 300.0;
/// Keys tracked at most; past it, idle buckets are swept (and, if still full, all of them: a
/// flood of distinct keys costs the flooder its own history, never unbounded memory).
const KEYS_MAX: usize = 1_000_000;

pub struct RateLimiter<K = Uuid> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter { rate, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Seconds until a refused key has a token again (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs_for(1.0)
    }

    /// Seconds until a refused key has `cost` tokens again.
    pub fn retry_after_secs_for(&self, cost: f64) -> u64 {
        (self.cost(cost) / self.rate).ceil().max(1.0) as u64
    }

    /// Takes one token for `key`; false when it is over the limit.
    pub fn allow(&self, key: K) -> bool {
        self.allow_cost(key, 1.0)
    }

    /// A cost as charged: at least one token, at most the burst (so it can always be paid once
    /// the bucket is full).
    fn cost(&self, cost: f64) -> f64 {
        cost.max(1.0).min(self.burst.max(1.0))
    }

    /// Takes `cost` tokens for `key` (a share of the limit: a cost of n leaves the key 1/n of
    /// the rate and of the burst); false when it is over the limit.
    pub fn allow_cost(&self, key: K, cost: f64) -> bool {
        let cost = self.cost(cost);
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= KEYS_MAX {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < IDLE_SECS);
            if b.len() >= KEYS_MAX {
                b.clear();
            }
        }
        let (tokens, last) = b.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= cost {
            *tokens -= cost;
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
        let r: super::RateLimiter = super::RateLimiter::new(1.0, 3.0);
        let u = uuid::Uuid::new_v4();
        assert!((0..3).all(|_| r.allow(u)));
        assert!(!r.allow(u));
        assert!(r.allow(uuid::Uuid::new_v4()));
    }

    #[test]
    fn a_cost_of_n_leaves_a_nth_of_the_burst() {
        let r: super::RateLimiter = super::RateLimiter::new(0.001, 10.0);
        let u = uuid::Uuid::new_v4();
        assert_eq!((0..20).filter(|_| r.allow_cost(u, 2.0)).count(), 5);
        // A cost above the burst is charged as the whole burst, never refused for ever.
        let v = uuid::Uuid::new_v4();
        assert!(r.allow_cost(v, 50.0));
        assert!(!r.allow_cost(v, 50.0));
        assert_eq!(r.retry_after_secs_for(2.0), 2000);
        assert_eq!(r.retry_after_secs_for(0.5), r.retry_after_secs());
    }
}
