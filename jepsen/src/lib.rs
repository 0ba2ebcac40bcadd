//! # jepsen
//!
//! Jepsen-style consistency testing of raftchat. It treats raftchat as a black box: it never
//! links node internals, only reads and writes histories of what clients saw.
//!
//! - [`history`]: the JSON-lines history format (invoke, then ok / fail / info), as in
//!   ../shared/research/reliability.md §2.
//! - [`checker`]: the properties checked over a history, with a verdict (valid, invalid,
//!   unknown), counts and the offending operations.
//!
//! The harness that runs nodes, clients and nemeses and writes histories comes next; today
//! `jepsen check HISTORY` checks a history written by anything that follows the format.

pub mod checker;
pub mod history;
