//! The identity file of a data directory: which cluster and node it belongs to, and its format.
//!
//! A node refuses to start on a data directory of another cluster or node, or of an unknown
//! format version, with a message that names both sides (ecosystem.md §4 lesson 6).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::codec::FORMAT_VERSION;
use crate::error::StorageError;

const FILE_NAME: &str = "IDENTITY";

/// Who a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: u64,
}

impl Identity {
    /// Checks the identity file in `dir` against `expected`, creating it on a fresh directory.
    /// Returns `true` when the directory was fresh.
    pub fn check_or_create(dir: &Path, expected: &Identity) -> Result<bool, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let path = dir.join(FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found = parse(&path, &text)?;
                if &found != expected {
                    return Err(StorageError::WrongIdentity {
                        path: dir.to_path_buf(),
                        found_cluster: found.cluster_id,
                        found_node: found.node_id,
                        expected_cluster: expected.cluster_id.clone(),
                        expected_node: expected.node_id,
                    });
                }
                Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let has_data = ["wal", "state", "snapshots", "messages"].iter().any(|d| dir.join(d).exists());
                if has_data {
                    return Err(StorageError::Corrupt {
                        path: path.clone(),
                        reason: "the identity file is missing but the directory holds data".into(),
                    });
                }
                write_atomically(dir, &path, expected)?;
                Ok(true)
            }
            Err(e) => Err(StorageError::io(&path, e)),
        }
    }
}

fn parse(path: &Path, text: &str) -> Result<Identity, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { path: path.to_path_buf(), reason };
    let mut version = None;
    let mut cluster = None;
    let mut node = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').ok_or_else(|| corrupt(format!("bad line {line:?}")))?;
        match k.trim() {
            "format_version" => version = Some(v.trim().parse::<u8>().map_err(|e| corrupt(e.to_string()))?),
            "cluster_id" => cluster = Some(v.trim().to_string()),
            "node_id" => node = Some(v.trim().parse::<u64>().map_err(|e| corrupt(e.to_string()))?),
            other => return Err(corrupt(format!("unknown key {other:?}"))),
        }
    }
    let version = version.ok_or_else(|| corrupt("no format_version".into()))?;
    if version == 1 {
        return Err(corrupt(format!(
            "this data directory has format 1, written by an older raftchat; this build reads format \
             {FORMAT_VERSION} (messages moved out of sled). Take a backup with the old build \
             (`raftchat admin backup`), start a new cluster with this one on empty data directories and \
             the same --data-groups, and `raftchat admin restore` the backup: see docs/OPERATIONS.md, \
             \"Upgrading from format 1\""
        )));
    }
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("unknown format version {version}; this build reads {FORMAT_VERSION}")));
    }
    Ok(Identity {
        cluster_id: cluster.ok_or_else(|| corrupt("no cluster_id".into()))?,
        node_id: node.ok_or_else(|| corrupt("no node_id".into()))?,
    })
}

fn write_atomically(dir: &Path, path: &Path, id: &Identity) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let text = format!(
        "# raftchat data directory identity; do not edit\nformat_version={FORMAT_VERSION}\ncluster_id={}\nnode_id={}\n",
        id.cluster_id, id.node_id
    );
    let mut f = fs::File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so that a created or renamed file in it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: &str, n: u64) -> Identity {
        Identity { cluster_id: c.into(), node_id: n }
    }

    #[test]
    fn fresh_then_same_then_wrong() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::check_or_create(dir.path(), &id("c1", 1)).unwrap());
        assert!(!Identity::check_or_create(dir.path(), &id("c1", 1)).unwrap());
        let err = Identity::check_or_create(dir.path(), &id("c2", 1)).unwrap_err().to_string();
        assert!(err.contains("c1") && err.contains("c2"), "{err}");
        let err = Identity::check_or_create(dir.path(), &id("c1", 3)).unwrap_err().to_string();
        assert!(err.contains("node 1") && err.contains("node 3"), "{err}");
    }

    #[test]
    fn unknown_version_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "format_version=9\ncluster_id=c\nnode_id=1\n").unwrap();
        assert!(Identity::check_or_create(dir.path(), &id("c", 1)).is_err());
        fs::write(dir.path().join(FILE_NAME), "\u{0}\u{1}garbage").unwrap();
        assert!(Identity::check_or_create(dir.path(), &id("c", 1)).is_err());
    }

    #[test]
    fn data_without_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("wal")).unwrap();
        assert!(Identity::check_or_create(dir.path(), &id("c", 1)).is_err());
    }
}
