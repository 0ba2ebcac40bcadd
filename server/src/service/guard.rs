//! Guards on the password endpoints: login and registration attempts per client address and
//! per account name (429 with `Retry-After`), a bounded number of password hashes at once, and
//! the same work for an unknown username as for a known one (response time does not tell
//! which names exist). Token refreshes are counted per client address too, in buckets of their
//! own (a refreshing client never uses up its address's logins).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::Semaphore;

use super::rate::RateLimiter;
use crate::http::error::ApiError;

/// A password hash waits this long for its turn at most.
const HASH_WAIT: Duration = Duration::from_secs(5);

/// The limits (flags, docs/OPERATIONS.md).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Login and registration attempts per client address per minute (and the burst); token
    /// refreshes per address are limited to as many, counted apart.
    pub per_addr_per_min: f64,
    /// Login attempts per account name per minute (and the burst).
    pub per_account_per_min: f64,
    /// Password hashes computed at once on this node.
    pub hashes_max: usize,
}

pub struct AccountGuard {
    by_addr: RateLimiter<IpAddr>,
    by_account: RateLimiter<String>,
    refresh_by_addr: RateLimiter<IpAddr>,
    hashes: Arc<Semaphore>,
    dummy: OnceLock<String>,
}

impl AccountGuard {
    pub fn new(c: &GuardConfig) -> Self {
        let per_min = |n: f64| (n.max(1.0) / 60.0, n.max(1.0));
        let (addr_rate, addr_burst) = per_min(c.per_addr_per_min);
        let (acct_rate, acct_burst) = per_min(c.per_account_per_min);
        AccountGuard {
            by_addr: RateLimiter::new(addr_rate, addr_burst),
            by_account: RateLimiter::new(acct_rate, acct_burst),
            refresh_by_addr: RateLimiter::new(addr_rate, addr_burst),
            hashes: Arc::new(Semaphore::new(c.hashes_max.max(1))),
            dummy: OnceLock::new(),
        }
    }

    /// One attempt from `addr` (when known), and for `account` (logins).
    pub fn attempt(&self, addr: Option<IpAddr>, account: Option<&str>) -> Result<(), ApiError> {
        if let Some(a) = addr {
            if !self.by_addr.allow(a) {
                return Err(ApiError::rate_limited(
                    "too many login or registration attempts from this address",
                    self.by_addr.retry_after_secs(),
                ));
            }
        }
        if let Some(name) = account {
            if !self.by_account.allow(name.to_ascii_lowercase()) {
                return Err(ApiError::rate_limited(
                    "too many login attempts for this account",
                    self.by_account.retry_after_secs(),
                ));
            }
        }
        Ok(())
    }

    /// One token refresh from `addr` (when known).
    pub fn refresh_attempt(&self, addr: Option<IpAddr>) -> Result<(), ApiError> {
        match addr {
            Some(a) if !self.refresh_by_addr.allow(a) => Err(ApiError::rate_limited(
                "too many token refreshes from this address",
                self.refresh_by_addr.retry_after_secs(),
            )),
            _ => Ok(()),
        }
    }

    /// Runs a password hash or check on the blocking pool, at most `hashes_max` at once.
    pub async fn hash_work<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(HASH_WAIT, self.hashes.clone().acquire_owned())
            .await
            .map_err(|_| ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many logins at once; retry")
            })?
            .map_err(ApiError::internal)?;
        let out = tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(out)
    }

    /// A hash to check a password against when the username does not exist.
    pub fn dummy_hash(&self) -> String {
        self.dummy.get_or_init(|| crate::auth::hash_password("not a password of anyone").unwrap_or_default()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_limited_across_addresses() {
        let g = AccountGuard::new(&GuardConfig { per_addr_per_min: 1000.0, per_account_per_min: 10.0, hashes_max: 1 });
        let addrs: Vec<IpAddr> = (1..=20).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        let refused = addrs.iter().filter(|a| g.attempt(Some(**a), Some("alice")).is_err()).count();
        assert_eq!(refused, 10, "after 10 attempts for alice, the next 10 are refused whatever the address");
        let e = g.attempt(Some(addrs[0]), Some("Alice")).unwrap_err();
        assert_eq!((e.status, e.retry_after_secs), (StatusCode::TOO_MANY_REQUESTS, Some(6)));
        assert!(g.attempt(Some(addrs[0]), Some("bob")).is_ok(), "another account is not affected");
    }

    #[test]
    fn refreshes_are_limited_per_address_apart_from_logins() {
        let g = AccountGuard::new(&GuardConfig { per_addr_per_min: 5.0, per_account_per_min: 10.0, hashes_max: 1 });
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert!((0..5).all(|_| g.refresh_attempt(Some(a)).is_ok()));
        let e = g.refresh_attempt(Some(a)).unwrap_err();
        assert_eq!((e.status, e.retry_after_secs), (StatusCode::TOO_MANY_REQUESTS, Some(12)));
        assert!(g.refresh_attempt(Some(b)).is_ok(), "another address is not affected");
        assert!(g.attempt(Some(a), None).is_ok(), "the address's logins are counted apart");
        assert!(g.refresh_attempt(None).is_ok(), "an unknown address is not limited here");
    }
}
