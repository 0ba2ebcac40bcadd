//! Parts of the configuration with rules of their own: the initial peers, the push webhook,
//! the unsafe knobs of the Jepsen negative controls.

use std::collections::BTreeMap;

use raftchat_storage::unsafe_knobs;
use raftchat_storage::unsafe_knobs::Knob;

use super::ConfigError;
use crate::service::quotas::Bucket;
use crate::service::quotas::QuotaConfig;

pub(super) fn push_config(
    webhook: Option<String>,
    secret: Option<String>,
    max_attempts: Option<u32>,
    base_ms: Option<u64>,
    max_ms: Option<u64>,
) -> Result<crate::push::PushConfig, ConfigError> {
    if let Some(url) = &webhook {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(ConfigError::Invalid(format!("--push-webhook {url:?}: needs an http:// or https:// URL")));
        }
        if secret.as_ref().is_none_or(|s| s.len() < 16) {
            return Err(ConfigError::Invalid("--push-webhook needs --push-secret of at least 16 characters".into()));
        }
    }
    let base = base_ms.unwrap_or(1000).max(10);
    Ok(crate::push::PushConfig {
        webhook,
        secret: secret.unwrap_or_default(),
        max_attempts: max_attempts.unwrap_or(8).max(1),
        retry_base: std::time::Duration::from_millis(base),
        retry_max: std::time::Duration::from_millis(max_ms.unwrap_or(300_000).max(base)),
    })
}

/// The per-user quotas from their flags, defaults from [`QuotaConfig::default`].
pub(super) fn quota_config(a: &super::NodeArgs) -> QuotaConfig {
    let d = QuotaConfig::default();
    // A rate of 0 would refuse for ever once the burst is spent: the floor is one per 1000 s.
    let bucket = |per_sec: Option<f64>, burst: Option<f64>, d: Bucket| Bucket {
        per_sec: per_sec.unwrap_or(d.per_sec).max(0.001),
        burst: burst.unwrap_or(d.burst).max(1.0),
    };
    QuotaConfig {
        receipts: bucket(a.receipts_per_sec, a.receipts_burst, d.receipts),
        typing: bucket(a.typing_per_sec, a.typing_burst, d.typing),
        membership: bucket(a.membership_changes_per_sec, a.membership_changes_burst, d.membership),
        chats: bucket(a.chats_created_per_sec, a.chats_created_burst, d.chats),
        ws_per_user_max: a.ws_connections_per_user_max.unwrap_or(d.ws_per_user_max).max(1),
        upload_bytes_per_day: a
            .upload_mib_per_user_per_day
            .map_or(d.upload_bytes_per_day, |m| m.saturating_mul(1024 * 1024)),
    }
}

/// Checks `--unsafe-knob` names: refused unless the build has the feature and the operator
/// confirmed.
pub(super) fn knobs(names: &[String], confirmed: bool) -> Result<Vec<Knob>, ConfigError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if !unsafe_knobs::COMPILED {
        return Err(ConfigError::Invalid(
            "--unsafe-knob needs a raftchat built with `--features unsafe-knobs`; this build has none".into(),
        ));
    }
    if !confirmed {
        return Err(ConfigError::Invalid(format!(
            "--unsafe-knob {names:?} breaks raftchat's guarantees on purpose (Jepsen negative controls); \
             add --i-know-this-is-unsafe to run it anyway"
        )));
    }
    names
        .iter()
        .map(|n| {
            Knob::parse(n).ok_or_else(|| {
                let all: Vec<&str> = Knob::ALL.iter().map(|k| k.name()).collect();
                ConfigError::Invalid(format!("unknown unsafe knob {n:?}; known: {all:?}"))
            })
        })
        .collect()
}

/// Parses `1=127.0.0.1:7800,2=127.0.0.1:7801`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ConfigError::Peers { entry: entry.to_string() };
        let (id, addr) = entry.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        if addr.trim().is_empty() || !addr.contains(':') {
            return Err(bad());
        }
        out.insert(id, addr.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::NodeArgs;
    use super::*;

    #[test]
    fn peers_parse_and_reject() {
        let p = parse_peers("1=127.0.0.1:7800, 2=127.0.0.1:7801").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[&2], "127.0.0.1:7801");
        assert!(parse_peers("x=1:2").is_err());
        assert!(parse_peers("1").is_err());
        assert!(parse_peers("1=nohost").is_err());
    }

    #[test]
    fn unsafe_knobs_need_the_feature_and_a_confirmation() {
        let args = |knobs: &[&str], ok: bool| NodeArgs {
            unsafe_knobs: knobs.iter().map(|s| s.to_string()).collect(),
            i_know_this_is_unsafe: ok,
            ..Default::default()
        };
        assert!(args(&[], false).resolve().unwrap().unsafe_knobs.is_empty());
        let e = args(&["no_dedup"], false).resolve().unwrap_err().to_string();
        assert!(e.contains("unsafe-knobs") || e.contains("--i-know-this-is-unsafe"), "{e}");
        let r = args(&["no_dedup"], true).resolve();
        if unsafe_knobs::COMPILED {
            assert_eq!(r.unwrap().unsafe_knobs, vec![Knob::NoDedup]);
            assert!(args(&["bogus"], true).resolve().unwrap_err().to_string().contains("unknown unsafe knob"));
        } else {
            assert!(r.unwrap_err().to_string().contains("--features unsafe-knobs"));
        }
    }
}
