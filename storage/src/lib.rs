//! # raftchat-storage
//!
//! Durable storage of one raftchat node. No sockets, no consensus logic: the `raft` crate
//! drives it.
//!
//! - [`codec`]: the one place values become bytes (bincode 2) and back, with a format version.
//! - [`identity`]: the data directory's owner (cluster id, node id, format); mismatches refuse.
//! - [`wal`]: the node's write-ahead log for every Raft group: segment files, group commit with
//!   one `fdatasync` for all groups' pending appends, purge that frees disk.
//! - [`log_store`]: openraft's `RaftLogStorage` for one group on top of [`wal`].
//! - [`message`]: a message as the gateway encodes it once ([`message::MessageBytes`]).
//! - [`messages`]: each group's message store: append-only segment files written in apply,
//!   indexed by (chat, seq) and by idempotency key, checkpointed with the applied state.
//! - [`chat_store`]: the replicated chat state of one group: chat heads, members, small records
//!   and the applied state on sled, messages in the message store.
//! - [`records`]: the typed records of that state.
//! - [`pending`]: write-back of applied state: applies land in memory, reach sled in batches;
//!   readers see both.
//! - [`apply_journal`]: how a set of writes reaches sled atomically: a journal record per group
//!   that completes a torn write at start-up, or one sled batch for large sets.
//! - [`snapshot`]: snapshots of a group: a state file plus the store's segment files; streamed.
//! - [`restore`]: writing a backed-up group's records into a fresh group.
//! - [`compact`]: offline compaction of the state database (`--compact-state`).
//! - [`retention`]: finding and trimming a chat's oldest messages (history retention).
//! - [`blobs`]: media blobs, content-addressed by SHA-256, in checksummed 1 MiB chunk files.
//! - [`unsafe_knobs`]: deliberate bugs for the Jepsen negative controls (feature `unsafe-knobs`).
//! - [`error`]: the crate's error type.
//!
//! Layout of a data directory:
//!
//! ```text
//! IDENTITY             cluster id, node id, format version
//! wal/<id>.wal         Raft log segments of every group
//! state/               sled database: one tree per group generation + the `current` tree
//! messages/g<group>.<gen>/<id>.seg|.idx   message store segments and their index files
//! snapshots/g<group>/  the current snapshot of each group (CURRENT names its directory)
//! media/blobs/<aa>/<sha256>/  MANIFEST + chunk files of each media blob this node holds
//! media/incoming/      uploads and copies in progress (cleared at start-up)
//! ```

// openraft's error types are large by design; boxing them at every call site buys nothing.
#![allow(clippy::result_large_err)]

pub mod apply_journal;
pub mod blobs;
pub mod chat_store;
pub mod codec;
pub mod compact;
pub mod error;
pub mod identity;
pub mod log_store;
pub mod message;
pub mod messages;
pub mod pending;
pub mod records;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod unsafe_knobs;
pub mod wal;

#[cfg(test)]
mod fuzz_tests;

pub use error::StorageError;
