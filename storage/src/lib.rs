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
//! - [`chat_store`]: the replicated chat state of one group on sled: chats, members, messages
//!   keyed (chat, seq), the idempotency table, and last-applied, written atomically.
//! - [`pending`]: write-back of applied state: applies land in memory, reach sled in batches;
//!   readers see both.
//! - `dedup_filter`: a Bloom filter over each group's idempotency keys, so that checking a new
//!   message for a duplicate costs no sled lookup.
//! - [`apply_journal`]: how a set of writes reaches sled atomically: a journal record per group
//!   that completes a torn write at start-up, or one sled batch for large sets.
//! - [`snapshot`]: snapshot files of a group's state, built and installed as streams.
//! - [`restore`]: writing a backed-up group's records into a fresh group.
//! - [`compact`]: offline compaction of the state database (`--compact-state`).
//! - [`retention`]: finding and deleting a chat's oldest messages (history retention).
//! - [`blobs`]: media blobs, content-addressed by SHA-256, in checksummed 1 MiB chunk files.
//! - [`unsafe_knobs`]: deliberate bugs for the Jepsen negative controls (feature `unsafe-knobs`).
//!
//! Layout of a data directory:
//!
//! ```text
//! IDENTITY             cluster id, node id, format version
//! wal/<id>.wal         Raft log segments of every group
//! state/               sled database: one tree per group generation + the `current` tree
//! snapshots/g<group>/  the current snapshot file of each group
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
pub(crate) mod dedup_filter;
pub mod error;
pub mod identity;
pub mod log_store;
pub mod pending;
pub mod records;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod unsafe_knobs;
pub mod wal;

pub use error::StorageError;
