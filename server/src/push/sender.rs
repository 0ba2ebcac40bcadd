//! Posting due notifications to the webhook, and tidying records of users back online.
//!
//! Each body is signed: `X-Raftchat-Signature: t=<unix secs>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" under --push-secret>`; `Idempotency-Key` is the record's id, the same on every
//! attempt and every node.

use std::sync::atomic::Ordering;

use futures::StreamExt;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_raft::types::GroupId;

use super::notifier::Puts;
use super::record::*;
use super::Follow;
use super::Push;
use crate::http::error::ApiError;
use crate::presence::table::Status;
use crate::service::unexpected;

/// Records looked at per group and pass.
const SWEEP_PAGE: u32 = 1_000;
/// Webhook calls in flight per node at most.
const SENDS_IN_FLIGHT: usize = 8;

pub fn signature(secret: &[u8], ts: u64, body: &[u8]) -> String {
    let d = crate::auth::hmac_sha256(secret, &[ts.to_string().as_bytes(), b".", body]);
    format!("t={ts},v1={}", raftchat_storage::blobs::to_hex(&d))
}

impl Push {
    /// One POST of a notification; `Err` says why it did not count as delivered.
    pub async fn post(&self, r: &PushRecord) -> Result<(), String> {
        let url = self.config.webhook.as_deref().ok_or("push is not configured")?;
        let now = crate::service::now_ms();
        let body = r.payload(now).to_string();
        let sig = signature(self.config.secret.as_bytes(), now / 1000, body.as_bytes());
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &r.id)
            .header("X-Raftchat-Signature", sig)
            .header("X-Raftchat-Node", self.service.node.id().to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook unreachable: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", resp.status()))
        }
    }

    /// Sends the group's due notifications and drops those of users who are online again.
    pub(super) async fn send_due(&self, g: GroupId, follow: &mut Follow) -> Result<(), ApiError> {
        let prefix = PENDING_PREFIX.to_vec();
        let query = match follow.sweep_after.take() {
            Some(after) => ReadQuery::KeysAfter { prefix, after, limit: SWEEP_PAGE },
            None => ReadQuery::KeyPrefix { prefix, limit: SWEEP_PAGE },
        };
        let keys = match self.service.read(g, query, Consistency::Local).await? {
            ReadResult::Keys(keys) => keys,
            other => return Err(unexpected(other)),
        };
        if keys.len() == SWEEP_PAGE as usize {
            follow.sweep_after = keys.last().map(|(k, _)| k.clone());
        }
        let records: Vec<PushRecord> = keys.iter().filter_map(|(_, v)| PushRecord::decode(v)).collect();
        let now = crate::service::now_ms();
        let mut puts = Puts::new();
        let mut due = Vec::new();
        for r in records {
            if self.presence.view(&r.user).status != Status::Offline {
                puts.push((pending_key(&r.chat, &r.user), None));
            } else if r.state == PushState::Pending && r.next_attempt_ms <= now {
                due.push(r);
            }
        }
        let outcomes: Vec<(PushRecord, Result<(), String>)> = futures::stream::iter(due)
            .map(|r| async move {
                let res = self.post(&r).await;
                (r, res)
            })
            .buffer_unordered(SENDS_IN_FLIGHT)
            .collect()
            .await;
        for (mut r, res) in outcomes {
            let key = pending_key(&r.chat, &r.user);
            match res {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    r.state = PushState::Sent;
                    r.attempts += 1;
                    puts.push((key, Some(r.encode().map_err(ApiError::internal)?)));
                }
                Err(e) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    r.attempts += 1;
                    r.last_error = e;
                    if r.attempts >= self.config.max_attempts {
                        tracing::warn!(id = %r.id, attempts = r.attempts, cause = %r.last_error, "push notification dead-lettered");
                        self.stats.dead.fetch_add(1, Ordering::Relaxed);
                        r.state = PushState::Dead;
                        puts.push((key, None));
                        puts.push((dead_key(&r), Some(r.encode().map_err(ApiError::internal)?)));
                    } else {
                        let (base, max) =
                            (self.config.retry_base.as_millis() as u64, self.config.retry_max.as_millis() as u64);
                        r.next_attempt_ms = now + backoff_ms(base, max, r.attempts, rand::random::<f64>());
                        puts.push((key, Some(r.encode().map_err(ApiError::internal)?)));
                    }
                }
            }
        }
        self.flush(g, &mut puts).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_cover_time_and_body() {
        let a = super::signature(b"secret", 10, b"{}");
        assert!(a.starts_with("t=10,v1=") && a.len() == 8 + 64);
        assert_ne!(a, super::signature(b"secret", 11, b"{}"));
        assert_ne!(a, super::signature(b"secret", 10, b"{ }"));
        assert_ne!(a, super::signature(b"other", 10, b"{}"));
    }
}
