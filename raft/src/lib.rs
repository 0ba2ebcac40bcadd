//! # raftchat-raft
//!
//! The replicated core of raftchat: many Raft groups per node (openraft 0.9), the chat state they
//! replicate, and the node-to-node transport. It never touches client sockets; the `server`
//! crate drives it.
//!
//! - [`types`]: openraft's type configuration; the entry payload [`types::Request`].
//! - [`command`]: chat commands and their outcomes (what clients ask for).
//! - [`batch`]: commands encoded once at the gateway, and the batch of them a Raft entry carries.
//! - [`apply`]: pure, deterministic apply of chat commands; per-chat seqs, dedup, receipts.
//! - [`meta`]: the metadata group: nodes, placement of data groups, chat -> slot -> group.
//! - [`events`]: recent committed events per group, polled locally or by other nodes.
//! - [`state_machine`]: openraft's state machine over `raftchat_storage`; snapshot files.
//! - [`transport`]: one multiplexed TCP connection per node pair, handshake, priority lanes.
//! - [`network`]: openraft's `RaftNetwork` for one (group, peer) over the transport.
//! - [`throttle`]: the node-wide limit on outgoing snapshot bytes (replica moves, catch-up).
//! - [`node`]: a node hosting the meta group and its data groups; inbound RPCs.
//! - [`reconcile`]: bootstrap, and following the layout: groups started, retired; removal.
//! - [`batcher`]: proposal batching: many commands of one group ride in one Raft entry.
//! - [`router`]: any node forwards writes and reads to a group's leader, with retries.
//! - [`recovery`]: `--force-new-cluster`, when a majority is lost for good.
//! - [`retention`]: history retention: leaders trim what the cluster's policy no longer keeps.
//! - [`snapshot_policy`]: when each group snapshots: bounded cost per log byte, one at a time.
//! - [`backup`]: online backups: a group's snapshot covering a linearizable read point.
//!
//! Data flows one way: `router` -> `batcher` -> openraft -> `storage` (log) -> `network` ->
//! quorum commit -> `state_machine` -> `apply` -> `storage` (state) -> events to listeners.

// openraft's error types are large by design; boxing them at every call site buys nothing.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod backup;
pub mod batch;
pub mod batcher;
pub mod command;
pub mod config;
pub mod error;
pub mod events;
pub mod leadership;
pub mod membership;
pub mod meta;
pub mod network;
pub mod node;
pub mod reconcile;
pub mod recovery;
pub mod retention;
pub mod router;
pub mod rpc;
pub mod snapshot_policy;
pub mod state_machine;
pub mod throttle;
pub mod transport;
pub mod types;

pub use error::RaftError;
