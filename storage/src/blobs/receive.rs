//! A copy of a blob pushed by another node: chunks arrive one request at a time into an
//! `incoming/` directory named by the transfer, each checked against the SHA-256 the sender
//! names; the commit checks the whole and moves it into place.

use std::fs;
use std::path::Path;
use std::time::Duration;
use std::time::SystemTime;

use sha2::Digest;
use sha2::Sha256;
use uuid::Uuid;

use super::chunk_name;
use super::sha256;
use super::write_manifest;
use super::write_synced;
use super::BlobManifest;
use super::BlobStore;
use crate::StorageError;

impl BlobStore {
    fn transfer_dir(&self, transfer: Uuid) -> std::path::PathBuf {
        self.incoming_dir(&format!("copy-{transfer}"))
    }

    /// Stores chunk `i` of a copy in progress after checking it against `expected`.
    pub fn receive_chunk(
        &self,
        transfer: Uuid,
        i: usize,
        expected: &super::Sha,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let dir = self.transfer_dir(transfer);
        if sha256(bytes) != *expected {
            return Err(StorageError::Corrupt { path: dir, reason: format!("chunk {i} does not match its checksum") });
        }
        fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        write_synced(&dir.join(chunk_name(i)), bytes)
    }

    /// Completes a copy: every chunk must be there and match, and together they must hash to
    /// the blob's name. Returns the blob's manifest; a blob already held is kept as it is.
    pub fn receive_commit(&self, transfer: Uuid, m: &BlobManifest) -> Result<(), StorageError> {
        let dir = self.transfer_dir(transfer);
        if !m.is_consistent() {
            return Err(StorageError::Corrupt { path: dir, reason: "inconsistent manifest".into() });
        }
        if self.contains(&m.sha256) {
            let _ = fs::remove_dir_all(&dir);
            return self.touch(&m.sha256);
        }
        let result =
            check_chunks(&dir, m).and_then(|()| write_manifest(&dir, m)).and_then(|()| self.install(&dir, &m.sha256));
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Removes copies and uploads that stopped half-way more than `older_than` ago (a sender
    /// that died mid-copy); returns how many.
    pub fn sweep_incoming(&self, older_than: Duration) -> usize {
        let Ok(entries) = fs::read_dir(&self.incoming) else { return 0 };
        let now = SystemTime::now();
        let mut removed = 0;
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > older_than);
            let name = e.file_name();
            let copy = name.to_str().is_some_and(|n| n.starts_with("copy-") || n.starts_with("del-"));
            if stale && copy && fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

fn check_chunks(dir: &Path, m: &BlobManifest) -> Result<(), StorageError> {
    let mut whole = Sha256::new();
    for (i, expected) in m.chunks.iter().enumerate() {
        let path = dir.join(chunk_name(i));
        let bytes = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let (start, end) = m.chunk_range(i);
        if bytes.len() as u64 != end - start || sha256(&bytes) != *expected {
            return Err(StorageError::Corrupt { path, reason: format!("chunk {i} does not match the manifest") });
        }
        whole.update(&bytes);
    }
    let got: super::Sha = whole.finalize().into();
    if got != m.sha256 {
        return Err(StorageError::Corrupt {
            path: dir.to_path_buf(),
            reason: "content does not hash to the blob's name".into(),
        });
    }
    Ok(())
}
