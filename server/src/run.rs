//! Running a node: the replicated core plus its HTTP server, stopped by a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use raftchat_raft::node::Node;
use raftchat_raft::router::Router as GroupRouter;
use tokio::sync::watch;

use crate::config::NodeArgs;
use crate::config::NodeConfig;
use crate::http;

/// A started node.
pub struct RunningNode {
    pub node: Node,
    pub http_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn start(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<RunningNode> {
    if !cfg.unsafe_knobs.is_empty() {
        // Process-wide and write-once; `raftchat dev` starts several nodes in one process and
        // never enables knobs.
        anyhow::ensure!(
            raftchat_storage::unsafe_knobs::enable(cfg.unsafe_knobs.clone()),
            "unsafe knobs were already set in this process"
        );
    }
    private_dir(&cfg.core.data_dir)?;
    let listener =
        tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let http_addr = listener.local_addr()?;
    let mut core = cfg.core.clone();
    if core.api_advertise == cfg.listen {
        core.api_advertise = http_addr.to_string();
    }
    let node = Node::start(core, shutdown.clone())
        .await
        .with_context(|| format!("node {} failed to start", cfg.core.node_id))?;
    let router = Arc::new(GroupRouter::new(node.clone()));
    let metrics = crate::metrics::Metrics::new();
    metrics.observe_wal(&node);
    metrics.spawn_sampler(node.clone(), shutdown.clone());
    let service = crate::service::ChatService {
        node: node.clone(),
        router: router.clone(),
        config: crate::service::ServiceConfig {
            max_text_bytes: cfg.max_text_bytes,
            access_ttl_ms: cfg.access_token_ttl_secs.saturating_mul(1000),
            refresh_ttl_ms: cfg.refresh_token_ttl_secs.saturating_mul(1000),
            dedup_window_ms: cfg.dedup_window_secs * 1000,
        },
        limiter: Arc::new(crate::service::rate::RateLimiter::new(cfg.sends_per_sec, cfg.sends_burst)),
        quotas: Arc::new(crate::service::quotas::Quotas::new(&cfg.quotas)),
        guard: Arc::new(crate::service::guard::AccountGuard::new(&cfg.guard)),
        sessions: Arc::new(crate::service::sessions::RevocationCache::default()),
        metrics: metrics.clone(),
    };
    let hub = crate::delivery::Hub::new(service.clone(), cfg.ws_queue_len, shutdown.clone());
    let presence = crate::presence::Presence::start(
        node.clone(),
        hub.clone(),
        crate::presence::PresenceConfig {
            failure_after: Duration::from_millis(cfg.failure_detect_ms),
            rest_ttl: Duration::from_secs(cfg.rest_presence_ttl_secs),
        },
        shutdown.clone(),
    );
    // The send limit's share per node follows where each user is connected.
    let nodes_present: std::sync::Weak<crate::presence::Presence> = Arc::downgrade(&presence);
    service.quotas.set_presence(nodes_present);
    let timing = crate::ws::connection::Timing {
        ping_every: Duration::from_secs(cfg.heartbeat_secs).min(Duration::from_secs(10)).max(Duration::from_secs(1))
            / 3,
        heartbeat_timeout: Duration::from_secs(cfg.heartbeat_secs),
        away_after: Duration::from_secs(cfg.away_secs),
        session_check_every: Duration::from_secs(cfg.session_check_secs),
    };
    let blobs = raftchat_storage::blobs::BlobStore::open(&cfg.core.data_dir)
        .with_context(|| format!("cannot open the media store in {}", cfg.core.data_dir.display()))?;
    let peers_http = crate::tls::client::NodeHttp { tls: if cfg.plain_http { None } else { cfg.tls.clone() } };
    let media = crate::media::Media::start(
        Arc::new(blobs),
        service.clone(),
        cfg.media.clone(),
        crate::media::peer::PeerClient::new(&peers_http),
        shutdown.clone(),
    );
    let push = crate::push::Push::new(service.clone(), presence.clone(), cfg.push.clone());
    tokio::spawn(push.clone().run(shutdown.clone()));
    let state = http::AppState {
        node: node.clone(),
        service,
        hub,
        ws_slots: Arc::new(tokio::sync::Semaphore::new(cfg.ws_connections_max)),
        shutdown: shutdown.clone(),
        presence,
        timing,
        metrics,
        media,
        push,
        https: !cfg.plain_http,
        peers_http: peers_http.clone(),
        admin_token: cfg.admin_token.clone(),
    };
    let access = http::Access {
        internal_api: cfg.internal_api,
        admin_token: cfg.admin_token.clone(),
        public_metrics: cfg.public_metrics,
    };
    let app = http::routes(state, access);
    if let Some(tls) = &cfg.tls {
        tokio::spawn(crate::tls::reload::watch(tls.clone(), shutdown.clone()));
    }
    let client_tls = if cfg.plain_http { None } else { cfg.tls.clone() };
    let limits = crate::tls::serve::Limits {
        per_addr_max: cfg.connections_per_addr_max,
        header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
    };
    let server = tokio::spawn(crate::tls::serve::serve(listener, app, client_tls, limits, shutdown.clone()));
    let scheme = if cfg.plain_http { "http" } else { "https" };
    let peers = if cfg.tls.is_some() { "mutual TLS" } else { "plain TCP, unauthenticated (insecure)" };
    tracing::info!(node = node.id(), http = %format!("{scheme}://{http_addr}"), raft = %node.raft_addr(), %peers, "node serving");
    if cfg.tls.is_none() {
        tracing::warn!(
            "running without TLS: any process that reaches the Raft port is treated as a peer; give --certs-dir"
        );
    }
    Ok(RunningNode { node, http_addr, server })
}

/// The data directory, created (or narrowed to) mode 0700: only the node's user reads its data.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    crate::tls::certs::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))?;
    }
    Ok(())
}

impl RunningNode {
    /// Waits for the HTTP server to drain (bounded), then stops the core.
    pub async fn stop(self) {
        if tokio::time::timeout(Duration::from_secs(5), self.server).await.is_err() {
            tracing::warn!("http server did not drain in 5 s");
        }
        self.node.shutdown().await;
    }
}

pub async fn node_main(args: NodeArgs) -> anyhow::Result<()> {
    let cfg = args.with_file()?.resolve()?;
    init_logging(&cfg.log_format);
    let (tx, rx) = watch::channel(false);
    let running = start(cfg, rx).await?;
    let mut fatal = running.node.fatal();
    let reason = tokio::select! {
        _ = signal() => None,
        r = fatal.wait_for(|f| f.is_some()) => r.ok().and_then(|f| f.clone()),
    };
    tracing::info!("shutting down");
    tx.send_replace(true);
    running.stop().await;
    match reason {
        Some(r) => Err(anyhow::anyhow!(r)),
        None => Ok(()),
    }
}
