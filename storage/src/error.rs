//! Errors of the storage crate.

use std::path::PathBuf;

use crate::codec::CodecError;

/// Everything that can go wrong in storage. Each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sled error: {0}")]
    Sled(#[from] sled::Error),
    #[error("codec error in {what}: {source}")]
    Codec { what: &'static str, source: CodecError },
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "data directory {path} belongs to cluster {found_cluster:?} node {found_node}, \
         but this node was started as cluster {expected_cluster:?} node {expected_node}"
    )]
    WrongIdentity {
        path: PathBuf,
        found_cluster: String,
        found_node: u64,
        expected_cluster: String,
        expected_node: u64,
    },
    #[error("log for group {group} is not contiguous: expected index {expected}, got {got}")]
    LogGap { group: u32, expected: u64, got: u64 },
    #[error("log engine is closed")]
    Closed,
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), source }
    }

    pub fn codec(what: &'static str, source: CodecError) -> Self {
        StorageError::Codec { what, source }
    }
}

/// Converts a storage error into openraft's error type, keeping the message.
pub fn to_raft_io(
    e: StorageError,
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
) -> openraft::StorageError<u64> {
    openraft::StorageError::IO { source: openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&e)) }
}
