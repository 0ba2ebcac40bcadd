//! Errors of the raft crate.

use raftchat_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("raft group {group} failed: {reason}")]
    Group { group: u32, reason: String },
}
