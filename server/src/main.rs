//! # raftchat
//!
//! The binary: `raftchat node` runs one node; `raftchat dev` runs a local cluster.
//!
//! - [`config`]: flags > env > file > defaults, resolved into the core's settings.
//! - [`run`]: starts a node (the replicated core plus its HTTP server) and stops it cleanly.
//! - [`dev`]: N nodes on 127.0.0.1 in one process, for trying raftchat out.
//! - [`admin`]: the admin CLI (`raftchat admin --server URL status`).
//! - [`http`]: the HTTP server: health, the core API, errors.
//! - [`api`]: the public REST API under `/api/v1`; [`ws`]: the WebSocket endpoint `/ws`.
//! - [`service`]: what the chat API does (accounts, chats, messages), on the core's router.
//! - [`delivery`]: committed events to the connections of this node.
//! - [`presence`]: the gossiped presence table, typing indicators.
//! - [`metrics`]: `/metrics` for Prometheus.
//! - [`auth`]: password hashes and session tokens.
//! - [`tls`]: certificates (`raftchat cert`), the HTTPS listener, certificate reload.

mod admin;
mod admin_backup;
mod admin_dlq;
mod admin_media;
mod admin_members;
mod admin_retention;
mod api;
mod auth;
mod config;
mod delivery;
mod dev;
mod http;
mod media;
mod metrics;
mod presence;
mod push;
mod run;
mod service;
mod tls;
mod ws;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use clap::Subcommand;

#[derive(Parser)]
#[command(name = "raftchat", version, about = "A Raft-replicated chat cluster with no external database.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Node(Box<config::NodeArgs>),
    /// Run a local cluster of N nodes on 127.0.0.1 until Ctrl-C.
    Dev(dev::DevArgs),
    /// Administer a running cluster through any node.
    Admin(admin::AdminArgs),
    /// Create and list the cluster CA and node and client certificates.
    Cert(tls::cli::CertArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Node(args) = &cli.command {
        if let Some(n) = args.worker_threads.filter(|n| *n > 0) {
            builder.worker_threads(n);
        }
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftchat: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Node(args) => run::node_main(*args).await,
            Command::Dev(args) => dev::dev_main(args).await,
            Command::Admin(args) => admin::admin_main(args).await,
            Command::Cert(args) => tls::cli::cert_main(args),
        }
    });
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftchat: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
