//! Node configuration: flags > environment (`RAFTCHAT_*`) > TOML file > defaults.
//!
//! Every option is an `Option` on the command line so that an unset flag falls through to the
//! file and then to the default; clap itself puts flags before environment variables.
//!
//! - [`exposure`]: secrets from files; no unauthenticated surface beyond loopback without
//!   `--insecure`.
//! - [`file`]: the TOML config file.
//! - [`parts`]: the initial peers, the push webhook, the unsafe knobs.

use std::path::Path;
use std::path::PathBuf;

use raftchat_raft::config::CoreConfig;

mod exposure;
mod file;
mod parts;
use exposure::check_exposure;
use exposure::secret;
use parts::knobs;
pub use parts::parse_peers;
use parts::push_config;
use parts::quota_config;
use raftchat_storage::unsafe_knobs::Knob;
use serde::Deserialize;

#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeArgs {
    /// TOML file with any of these options (kebab-case keys).
    #[arg(long, env = "RAFTCHAT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id: unique in the cluster, stable for the life of its data directory.
    #[arg(long, env = "RAFTCHAT_NODE_ID")]
    pub node_id: Option<u64>,
    /// The cluster's id; nodes of another cluster are refused at the handshake.
    #[arg(long, env = "RAFTCHAT_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// HTTP and WebSocket listen address for clients [default: 127.0.0.1:7700].
    #[arg(long, env = "RAFTCHAT_LISTEN")]
    pub listen: Option<String>,
    /// Client address told to peers and clients [default: the listen address].
    #[arg(long, env = "RAFTCHAT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Node-to-node (Raft) listen address [default: 127.0.0.1:7800].
    #[arg(long, env = "RAFTCHAT_RAFT_LISTEN")]
    pub raft_listen: Option<String>,
    /// Node-to-node address told to peers [default: the raft listen address].
    #[arg(long, env = "RAFTCHAT_RAFT_ADVERTISE")]
    pub raft_advertise: Option<String>,
    /// Data directory [default: ./raftchat-data/node-<id>].
    #[arg(long, env = "RAFTCHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial cluster members, `id=raft_addr,...` (this node included). Used once, at first start.
    #[arg(long, env = "RAFTCHAT_PEERS")]
    pub peers: Option<String>,
    /// Data groups of a new cluster [default: 3]. Fixed once the cluster exists.
    #[arg(long, env = "RAFTCHAT_DATA_GROUPS")]
    pub data_groups: Option<u32>,
    /// Raft heartbeat interval in ms [default: 300].
    #[arg(long, env = "RAFTCHAT_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Raft election timeout minimum in ms [default: 1500]; the maximum is twice this.
    #[arg(long, env = "RAFTCHAT_ELECTION_MS")]
    pub election_ms: Option<u64>,
    /// Log entries between snapshots of a group, at least; a group also waits until its log is
    /// half the size of its last snapshot [default: 10000].
    #[arg(long, env = "RAFTCHAT_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot [default: 2000].
    #[arg(long, env = "RAFTCHAT_LOGS_KEPT")]
    pub logs_kept: Option<u64>,
    /// Largest message text in bytes [default: 65536].
    #[arg(long, env = "RAFTCHAT_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Raft entries of one group in flight at once [default: 4]; fewer makes larger batches.
    #[arg(long, env = "RAFTCHAT_BATCHES_IN_FLIGHT")]
    pub batches_in_flight: Option<usize>,
    /// Access token lifetime in seconds [default: 3600]; a client refreshes it with its refresh token.
    #[arg(long, env = "RAFTCHAT_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// The old name of --access-token-ttl-secs (still read; the new name wins).
    #[arg(long, env = "RAFTCHAT_TOKEN_TTL_SECS", hide = true)]
    pub token_ttl_secs: Option<u64>,
    /// Refresh token lifetime in seconds, from its issue; each refresh issues a new one [default: 2592000].
    #[arg(long, env = "RAFTCHAT_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,
    /// Messages per second a user may send, sustained [default: 50].
    #[arg(long, env = "RAFTCHAT_SENDS_PER_SEC")]
    pub sends_per_sec: Option<f64>,
    /// Messages a user may send in a burst above the sustained rate [default: 200].
    #[arg(long, env = "RAFTCHAT_SENDS_BURST")]
    pub sends_burst: Option<f64>,
    /// Login and registration attempts per client address per minute, and the burst [default: 60].
    #[arg(long, env = "RAFTCHAT_AUTH_ATTEMPTS_PER_ADDR_PER_MIN")]
    pub auth_attempts_per_addr_per_min: Option<f64>,
    /// Login attempts per account per minute on each node, and the burst [default: 10].
    #[arg(long, env = "RAFTCHAT_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MIN")]
    pub login_attempts_per_account_per_min: Option<f64>,
    /// Password hashes (argon2, about 19 MiB each) computed at once [default: the number of cores].
    #[arg(long, env = "RAFTCHAT_PASSWORD_HASHES_MAX")]
    pub password_hashes_max: Option<usize>,
    /// Open client connections (HTTP and WebSocket) from one address at most [default: 1024].
    #[arg(long, env = "RAFTCHAT_CONNECTIONS_PER_ADDR_MAX")]
    pub connections_per_addr_max: Option<usize>,
    /// Seconds a client has to send a request's headers [default: 10].
    #[arg(long, env = "RAFTCHAT_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// WebSocket connections this node accepts at most [default: 100000].
    #[arg(long, env = "RAFTCHAT_WS_CONNECTIONS_MAX")]
    pub ws_connections_max: Option<usize>,
    /// Deliveries queued per WebSocket before it is dropped as a slow consumer [default: 4096].
    #[arg(long, env = "RAFTCHAT_WS_QUEUE_LEN")]
    pub ws_queue_len: Option<usize>,
    /// A WebSocket silent this long (no frame, no pong) is closed and its user goes offline [default: 30].
    #[arg(long, env = "RAFTCHAT_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// An open WebSocket re-checks that its session was not logged out or revoked this often,
    /// in seconds [default: 60].
    #[arg(long, env = "RAFTCHAT_SESSION_CHECK_SECS")]
    pub session_check_secs: Option<u64>,
    /// A connection without a client frame this long is away [default: 300].
    #[arg(long, env = "RAFTCHAT_AWAY_SECS")]
    pub away_secs: Option<u64>,
    /// A presence status set over REST lasts this long unless posted again [default: 60].
    #[arg(long, env = "RAFTCHAT_REST_PRESENCE_TTL_SECS")]
    pub rest_presence_ttl_secs: Option<u64>,
    /// A node unreachable this long is declared dead and its users offline [default: 5000].
    #[arg(long, env = "RAFTCHAT_FAILURE_DETECT_MS")]
    pub failure_detect_ms: Option<u64>,
    /// Size of one Raft log segment file in MiB [default: 64]; purged segments are deleted whole.
    #[arg(long, env = "RAFTCHAT_WAL_SEGMENT_MIB")]
    pub wal_segment_mib: Option<u64>,
    /// Size at which a group's message segment is sealed, in MiB [default: 64]; retention
    /// frees disk a whole segment at a time.
    #[arg(long, env = "RAFTCHAT_MESSAGE_SEGMENT_MIB")]
    pub message_segment_mib: Option<u64>,
    /// How long a clientMsgId answers a retry with its original message, in seconds [default:
    /// 86400]. Measured on the chat's group clock (message times), not on a node's clock.
    #[arg(long, env = "RAFTCHAT_DEDUP_WINDOW_SECS")]
    pub dedup_window_secs: Option<u64>,
    /// Outgoing snapshot bandwidth of this node in MiB/s, over all groups (replica moves and
    /// catch-up); 0 is unlimited [default: 64].
    #[arg(long, env = "RAFTCHAT_SNAPSHOT_SEND_MIB_PER_SEC")]
    pub snapshot_send_mib_per_sec: Option<u64>,
    /// How often each group's leader applies the history retention policy, in seconds [default: 60].
    #[arg(long, env = "RAFTCHAT_RETENTION_SWEEP_SECS")]
    pub retention_sweep_secs: Option<u64>,
    /// Largest media upload in MiB [default: 100].
    #[arg(long, env = "RAFTCHAT_MEDIA_MAX_MIB")]
    pub media_max_mib: Option<u64>,
    /// Seconds an uploaded blob that no message references is kept [default: 86400].
    #[arg(long, env = "RAFTCHAT_MEDIA_GRACE_SECS")]
    pub media_grace_secs: Option<u64>,
    /// After its first 10 s, an upload slower than this on average is dropped [default: 1024].
    #[arg(long, env = "RAFTCHAT_UPLOAD_MIN_BYTES_PER_SEC")]
    pub upload_min_bytes_per_sec: Option<u64>,
    /// An upload must finish within this many seconds [default: 3600].
    #[arg(long, env = "RAFTCHAT_UPLOAD_DEADLINE_SECS")]
    pub upload_deadline_secs: Option<u64>,
    /// Uploads in progress per user on a node [default: 4], and on the node [default: 64].
    #[arg(long, env = "RAFTCHAT_UPLOADS_PER_USER_MAX")]
    pub uploads_per_user_max: Option<usize>,
    #[arg(long, env = "RAFTCHAT_UPLOADS_MAX")]
    pub uploads_max: Option<usize>,
    /// Upload MiB per user per UTC day, over the cluster; 0 is unlimited [default: 1024].
    #[arg(long, env = "RAFTCHAT_UPLOAD_MIB_PER_USER_PER_DAY")]
    pub upload_mib_per_user_per_day: Option<u64>,
    /// Receipts (delivered, read) per user per second on a node, and the burst [default: 50, 200].
    #[arg(long, env = "RAFTCHAT_RECEIPTS_PER_SEC")]
    pub receipts_per_sec: Option<f64>,
    #[arg(long, env = "RAFTCHAT_RECEIPTS_BURST")]
    pub receipts_burst: Option<f64>,
    /// Typing signals per user per second on a node (more are dropped), and the burst [default: 5, 20].
    #[arg(long, env = "RAFTCHAT_TYPING_PER_SEC")]
    pub typing_per_sec: Option<f64>,
    #[arg(long, env = "RAFTCHAT_TYPING_BURST")]
    pub typing_burst: Option<f64>,
    /// Members added or removed per user per second on a node, and the burst [default: 10, 50].
    #[arg(long, env = "RAFTCHAT_MEMBERSHIP_CHANGES_PER_SEC")]
    pub membership_changes_per_sec: Option<f64>,
    #[arg(long, env = "RAFTCHAT_MEMBERSHIP_CHANGES_BURST")]
    pub membership_changes_burst: Option<f64>,
    /// Chats created per user per second on a node, and the burst [default: 2, 50].
    #[arg(long, env = "RAFTCHAT_CHATS_CREATED_PER_SEC")]
    pub chats_created_per_sec: Option<f64>,
    #[arg(long, env = "RAFTCHAT_CHATS_CREATED_BURST")]
    pub chats_created_burst: Option<f64>,
    /// WebSockets of one user on a node at most [default: 32].
    #[arg(long, env = "RAFTCHAT_WS_CONNECTIONS_PER_USER_MAX")]
    pub ws_connections_per_user_max: Option<usize>,
    /// Seconds between passes that restore missing media copies and collect unreferenced
    /// uploads [default: 60].
    #[arg(long, env = "RAFTCHAT_MEDIA_REPAIR_SECS")]
    pub media_repair_secs: Option<u64>,
    /// Push notifications for offline users are POSTed here (http://host:port/path); unset, push
    /// is off.
    #[arg(long, env = "RAFTCHAT_PUSH_WEBHOOK")]
    pub push_webhook: Option<String>,
    /// Key of the HMAC-SHA256 signature on every push body (at least 16 characters).
    #[arg(long, env = "RAFTCHAT_PUSH_SECRET", hide_env_values = true)]
    pub push_secret: Option<String>,
    /// Attempts before a push notification goes to the dead-letter queue [default: 8].
    #[arg(long, env = "RAFTCHAT_PUSH_MAX_ATTEMPTS")]
    pub push_max_attempts: Option<u32>,
    /// First retry delay in ms, doubled per attempt, with jitter [default: 1000].
    #[arg(long, env = "RAFTCHAT_PUSH_RETRY_BASE_MS")]
    pub push_retry_base_ms: Option<u64>,
    /// Longest retry delay in ms [default: 300000].
    #[arg(long, env = "RAFTCHAT_PUSH_RETRY_MAX_MS")]
    pub push_retry_max_ms: Option<u64>,
    /// Async runtime worker threads [default: the number of cores].
    #[arg(long, env = "RAFTCHAT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Serve the unauthenticated `/internal/v1` chat and presence API (tests, benchmarks, local
    /// development). Never on a network clients can reach.
    #[arg(long, env = "RAFTCHAT_INTERNAL_API")]
    #[serde(default)]
    pub internal_api: bool,
    /// Serve the admin API (`raftchat admin`) to requests carrying this token as
    /// `Authorization: Bearer <token>`. Without it, the admin API is served only with --internal-api.
    #[arg(long, env = "RAFTCHAT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Certificates directory (`ca.crt`, `node.crt`, `node.key`; see `raftchat cert`): mutual
    /// TLS between nodes and HTTPS/WSS for clients.
    #[arg(long, env = "RAFTCHAT_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Run without TLS: peers unauthenticated, clients over plain HTTP. Needed to run without
    /// --certs-dir on any address but loopback.
    #[arg(long, env = "RAFTCHAT_INSECURE")]
    #[serde(default)]
    pub insecure: bool,
    /// With --certs-dir, serve clients over plain HTTP anyway (peers keep mutual TLS); on loopback
    /// only, unless --insecure.
    #[arg(long, env = "RAFTCHAT_PLAIN_HTTP")]
    #[serde(default)]
    pub plain_http: bool,
    /// Serve /metrics without admin credentials (for a Prometheus on a private network).
    #[arg(long, env = "RAFTCHAT_PUBLIC_METRICS")]
    #[serde(default)]
    pub public_metrics: bool,
    /// File holding the admin token (instead of --admin-token, which is visible in ps).
    #[arg(long, env = "RAFTCHAT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the push signature key (instead of --push-secret).
    #[arg(long, env = "RAFTCHAT_PUSH_SECRET_FILE")]
    pub push_secret_file: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "RAFTCHAT_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Break a guarantee on purpose, for the Jepsen negative controls (builds with the
    /// `unsafe-knobs` feature only; needs --i-know-this-is-unsafe). Repeatable.
    #[arg(long = "unsafe-knob", value_name = "KNOB")]
    #[serde(skip)]
    pub unsafe_knobs: Vec<String>,
    /// Confirms --unsafe-knob.
    #[arg(long)]
    #[serde(skip)]
    pub i_know_this_is_unsafe: bool,
    /// Rewrite the state database before serving, giving the space of deleted messages back to
    /// the file system (like etcd's defrag; one node at a time, after `raftchat admin drain`).
    #[arg(long)]
    #[serde(skip)]
    pub compact_state: bool,
    /// Start even if the WAL has a damaged record with intact ones after it: cut the log there
    /// (logging what is dropped) and let the node catch up from its peers. Once, after reading
    /// the refusal's message; see docs/OPERATIONS.md ("Recovery runbook").
    #[arg(long)]
    #[serde(skip)]
    pub repair_wal: bool,
    /// Disaster recovery when a majority of nodes is lost for good: this node becomes the only
    /// voter of every group it holds and the only node of the cluster. Once; see
    /// docs/OPERATIONS.md ("Recovery runbook").
    #[arg(long)]
    #[serde(skip)]
    pub force_new_cluster: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid --peers entry {entry:?}: expected id=host:port")]
    Peers { entry: String },
    #[error("{0}")]
    Invalid(String),
}

/// The resolved settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub core: CoreConfig,
    pub listen: String,
    pub max_text_bytes: usize,
    pub log_format: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub dedup_window_secs: u64,
    pub sends_per_sec: f64,
    pub sends_burst: f64,
    pub ws_connections_max: usize,
    pub ws_queue_len: usize,
    pub heartbeat_secs: u64,
    pub away_secs: u64,
    pub failure_detect_ms: u64,
    pub rest_presence_ttl_secs: u64,
    pub session_check_secs: u64,
    pub internal_api: bool,
    pub admin_token: Option<String>,
    /// TLS settings from --certs-dir; `None`: insecure.
    pub tls: Option<std::sync::Arc<crate::tls::NodeTls>>,
    /// Clients over plain HTTP even with `tls` (peers keep mutual TLS).
    pub plain_http: bool,
    pub public_metrics: bool,
    pub guard: crate::service::guard::GuardConfig,
    pub quotas: crate::service::quotas::QuotaConfig,
    pub connections_per_addr_max: usize,
    pub header_read_timeout_secs: u64,
    pub media: crate::media::MediaConfig,
    pub push: crate::push::PushConfig,
    /// Deliberate bugs to enable (see `raftchat_storage::unsafe_knobs`).
    pub unsafe_knobs: Vec<Knob>,
}

impl NodeArgs {
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let quotas = quota_config(&self);
        let node_id = self.node_id.unwrap_or(1);
        let cluster_id = self.cluster_id.unwrap_or_else(|| "raftchat".into());
        let data_dir = self.data_dir.unwrap_or_else(|| Path::new("raftchat-data").join(format!("node-{node_id}")));
        let listen = self.listen.unwrap_or_else(|| "127.0.0.1:7700".into());
        let mut core = CoreConfig::new(node_id, &cluster_id, data_dir);
        core.raft_listen = self.raft_listen.unwrap_or_else(|| "127.0.0.1:7800".into());
        core.raft_advertise = self.raft_advertise;
        core.api_advertise = self.advertise.unwrap_or_else(|| listen.clone());
        core.initial_peers = parse_peers(self.peers.as_deref().unwrap_or(""))?;
        if core.initial_peers.is_empty() {
            let own = core.raft_advertise.clone().unwrap_or_else(|| core.raft_listen.clone());
            core.initial_peers.insert(node_id, own);
        }
        if let Some(g) = self.data_groups {
            core.data_groups = g;
        }
        if let Some(h) = self.heartbeat_ms {
            core.heartbeat_ms = h;
        }
        if let Some(e) = self.election_ms {
            core.election_min_ms = e;
            core.election_max_ms = e * 2;
        }
        if let Some(s) = self.snapshot_every {
            core.snapshot_every_logs = s;
        }
        if let Some(k) = self.logs_kept {
            core.logs_kept_after_snapshot = k;
        }
        core.force_new_cluster = self.force_new_cluster;
        core.compact_state = self.compact_state;
        core.repair_wal = self.repair_wal;
        if let Some(m) = self.snapshot_send_mib_per_sec {
            core.snapshot_send_bytes_per_sec = m.saturating_mul(1024 * 1024);
        }
        if let Some(m) = self.wal_segment_mib {
            if !(1..=4096).contains(&m) {
                return Err(ConfigError::Invalid(format!("--wal-segment-mib must be 1..=4096, got {m}")));
            }
            core.wal_segment_bytes = m * 1024 * 1024;
        }
        if let Some(m) = self.message_segment_mib {
            if !(1..=1024).contains(&m) {
                return Err(ConfigError::Invalid(format!("--message-segment-mib must be 1..=1024, got {m}")));
            }
            core.message_segment_bytes = m * 1024 * 1024;
        }
        let dedup_window_secs = self.dedup_window_secs.unwrap_or(86_400);
        if !(1..=30 * 86_400).contains(&dedup_window_secs) {
            return Err(ConfigError::Invalid(format!(
                "--dedup-window-secs must be 1..=2592000 (30 days), got {dedup_window_secs}"
            )));
        }
        core.retention_sweep = std::time::Duration::from_secs(self.retention_sweep_secs.unwrap_or(60).max(1));
        if let Some(b) = self.batches_in_flight {
            core.batches_in_flight_max = b.max(1);
        }
        core.validate().map_err(ConfigError::Invalid)?;
        let log_format = self.log_format.unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            return Err(ConfigError::Invalid(format!("log format must be text or json, not {log_format:?}")));
        }
        let admin_token = secret(self.admin_token, self.admin_token_file.as_deref(), "admin token")?;
        let push_secret = secret(self.push_secret, self.push_secret_file.as_deref(), "push secret")?;
        if let Some(t) = &admin_token {
            if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::Invalid(
                    "the admin token must be at least 16 printable ASCII characters without spaces".into(),
                ));
            }
        }
        let tls = match &self.certs_dir {
            Some(dir) => Some(
                crate::tls::NodeTls::load(dir, &core.cluster_id, core.node_id)
                    .map_err(|e| ConfigError::Invalid(format!("--certs-dir {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        check_exposure(&listen, &core.raft_listen, tls.is_some(), self.plain_http, self.internal_api, self.insecure)?;
        core.peer_tls = tls.as_ref().map(|t| t.peer.clone());
        let push = push_config(
            self.push_webhook,
            push_secret,
            self.push_max_attempts,
            self.push_retry_base_ms,
            self.push_retry_max_ms,
        )?;
        Ok(NodeConfig {
            push,
            quotas,
            core,
            listen,
            max_text_bytes: self.max_text_bytes.unwrap_or(64 * 1024),
            log_format,
            access_token_ttl_secs: self.access_token_ttl_secs.or(self.token_ttl_secs).unwrap_or(3600).max(1),
            refresh_token_ttl_secs: self.refresh_token_ttl_secs.unwrap_or(30 * 86_400).max(1),
            dedup_window_secs,
            sends_per_sec: self.sends_per_sec.unwrap_or(50.0).max(0.1),
            sends_burst: self.sends_burst.unwrap_or(200.0).max(1.0),
            ws_connections_max: self.ws_connections_max.unwrap_or(100_000).max(1),
            ws_queue_len: self.ws_queue_len.unwrap_or(4096).max(16),
            heartbeat_secs: self.heartbeat_secs.unwrap_or(30).max(2),
            away_secs: self.away_secs.unwrap_or(300).max(1),
            failure_detect_ms: self.failure_detect_ms.unwrap_or(5000).max(500),
            rest_presence_ttl_secs: self.rest_presence_ttl_secs.unwrap_or(60).clamp(1, 86_400),
            session_check_secs: self.session_check_secs.unwrap_or(60).clamp(1, 3_600),
            internal_api: self.internal_api,
            admin_token,
            plain_http: self.plain_http || tls.is_none(),
            tls,
            public_metrics: self.public_metrics,
            connections_per_addr_max: self.connections_per_addr_max.unwrap_or(1024).max(1),
            header_read_timeout_secs: self.header_read_timeout_secs.unwrap_or(10).clamp(1, 300),
            guard: crate::service::guard::GuardConfig {
                per_addr_per_min: self.auth_attempts_per_addr_per_min.unwrap_or(60.0).max(1.0),
                per_account_per_min: self.login_attempts_per_account_per_min.unwrap_or(10.0).max(1.0),
                hashes_max: self
                    .password_hashes_max
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
                    .max(1),
            },
            media: crate::media::MediaConfig {
                max_bytes: self.media_max_mib.unwrap_or(100).max(1).saturating_mul(1024 * 1024),
                grace: std::time::Duration::from_secs(self.media_grace_secs.unwrap_or(86_400)),
                repair_every: std::time::Duration::from_secs(self.media_repair_secs.unwrap_or(60).max(1)),
                min_bytes_per_sec: self.upload_min_bytes_per_sec.unwrap_or(1024),
                deadline: std::time::Duration::from_secs(self.upload_deadline_secs.unwrap_or(3600).max(1)),
                per_user_max: self.uploads_per_user_max.unwrap_or(4).max(1),
                total_max: self.uploads_max.unwrap_or(64).max(1),
            },
            unsafe_knobs: knobs(&self.unsafe_knobs, self.i_know_this_is_unsafe)?,
        })
    }
}

#[cfg(test)]
mod tests;
