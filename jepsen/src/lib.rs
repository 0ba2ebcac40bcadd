//! # jepsen
//!
//! Jepsen-style consistency testing of raftchat. It treats raftchat as a black box: it runs the
//! real binary as processes, talks to it only over its public HTTP and WebSocket API (plus the
//! read-only replica dumps of `--internal-api` for the final reads), and links no node
//! internals.
//!
//! - [`history`]: the JSON-lines history format (invoke, then ok / fail / info), as in
//!   ../shared/research/reliability.md §2; [`recorder`] writes it during a run.
//! - [`checker`]: the properties checked over a history, with a verdict (valid, invalid,
//!   unknown), counts and the offending operations.
//! - [`db`]: the nodes as processes, with their fault proxies ([`net::proxy`]).
//! - [`client`]: one operation against the API and how its outcome is classified;
//!   [`observed`]: the entry a read or a delivery records of a message; [`workload`]: workers,
//!   subscriptions and the final reads.
//! - [`nemesis`]: the faults and their schedule, with a coverage record; [`lazyfs`]: the FUSE
//!   passthrough that loses unsynced writes.
//! - [`snapshots`]: whether a run built and installed snapshots (from the nodes' metrics).
//! - [`guards`]: when a run says too little to be valid (then it is unknown).
//! - [`soak`]: random schedules run after run, keeping the failures with their seeds.
//! - [`runner`]: one run end to end; [`report`] and [`plot`]: its results; [`suite`]: the
//!   CI suite (every nemesis, every negative control); [`binary`]: which raftchat runs.

pub mod binary;
pub mod checker;
pub mod client;
pub mod db;
pub mod guards;
pub mod history;
pub mod lazyfs;
pub mod nemesis;
pub mod net;
pub mod observed;
pub mod plot;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod snapshots;
pub mod soak;
pub mod suite;
pub mod workload;
