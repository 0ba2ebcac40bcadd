//! The TOML config file (`--config`): fills the options the command line and the environment
//! left unset. Every option with a value must be named in a `merge!` here.

use super::ConfigError;
use super::NodeArgs;

macro_rules! merge {
    ($a:expr, $f:expr, $($field:ident),*) => { $( if $a.$field.is_none() { $a.$field = $f.$field.clone(); } )* };
}

impl NodeArgs {
    /// Fills unset options from the config file, if one is named.
    pub fn with_file(mut self) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read { path: path.clone(), source: e })?;
        let file: NodeArgs = toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.clone(), source: e })?;
        merge!(self, file, node_id, cluster_id, listen, advertise, raft_listen, raft_advertise, data_dir, peers);
        merge!(
            self,
            file,
            data_groups,
            heartbeat_ms,
            election_ms,
            snapshot_every,
            logs_kept,
            max_text_bytes,
            log_format,
            admin_token,
            certs_dir,
            admin_token_file,
            push_secret_file
        );
        merge!(self, file, worker_threads, batches_in_flight, token_ttl_secs, sends_per_sec, sends_burst);
        merge!(self, file, auth_attempts_per_addr_per_min, login_attempts_per_account_per_min, password_hashes_max);
        merge!(self, file, connections_per_addr_max, header_read_timeout_secs, rest_presence_ttl_secs);
        merge!(self, file, session_check_secs, access_token_ttl_secs, refresh_token_ttl_secs);
        merge!(self, file, ws_connections_max, ws_queue_len, heartbeat_secs, away_secs, failure_detect_ms);
        merge!(self, file, retention_sweep_secs, wal_segment_mib, snapshot_send_mib_per_sec);
        merge!(self, file, message_segment_mib, dedup_window_secs);
        merge!(self, file, media_max_mib, media_grace_secs, media_repair_secs);
        merge!(self, file, upload_min_bytes_per_sec, upload_deadline_secs, uploads_per_user_max, uploads_max);
        merge!(self, file, upload_mib_per_user_per_day, receipts_per_sec, receipts_burst, typing_per_sec, typing_burst);
        merge!(self, file, membership_changes_per_sec, membership_changes_burst, chats_created_per_sec);
        merge!(self, file, chats_created_burst, ws_connections_per_user_max);
        merge!(self, file, push_webhook, push_secret, push_max_attempts, push_retry_base_ms, push_retry_max_ms);
        self.internal_api |= file.internal_api;
        self.insecure |= file.insecure;
        self.plain_http |= file.plain_http;
        self.public_metrics |= file.public_metrics;
        Ok(self)
    }
}
