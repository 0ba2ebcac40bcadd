//! Streaming a new blob in: bytes arrive in any sizes, full chunks are written and fsynced as
//! they fill, and `finish` names the blob by its SHA-256 and moves it into place.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::Digest;
use sha2::Sha256;

use super::chunk_name;
use super::sha256;
use super::write_manifest;
use super::write_synced;
use super::BlobManifest;
use super::BlobStore;
use super::CHUNK_BYTES;
use crate::StorageError;

/// A blob being written. Dropped before [`BlobWriter::finish`], it leaves nothing behind.
pub struct BlobWriter {
    store: Arc<BlobStore>,
    dir: PathBuf,
    whole: Sha256,
    pending: Vec<u8>,
    chunks: Vec<super::Sha>,
    size: u64,
    finished: bool,
}

impl BlobWriter {
    pub fn new(store: Arc<BlobStore>) -> Result<BlobWriter, StorageError> {
        let dir = store.incoming_dir(&format!("up-{}", uuid::Uuid::new_v4()));
        fs::create_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(BlobWriter {
            store,
            dir,
            whole: Sha256::new(),
            pending: Vec::with_capacity(CHUNK_BYTES),
            chunks: Vec::new(),
            size: 0,
            finished: false,
        })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes; every chunk that fills is written and fsynced (blocking I/O).
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        self.whole.update(data);
        while !data.is_empty() {
            let take = (CHUNK_BYTES - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == CHUNK_BYTES {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), StorageError> {
        let path = self.dir.join(chunk_name(self.chunks.len()));
        write_synced(&path, &self.pending)?;
        self.chunks.push(sha256(&self.pending));
        self.pending.clear();
        Ok(())
    }

    /// Writes the last chunk and the manifest, then moves the blob into place (or, if the same
    /// content is already held, drops this copy). The blob is durable when this returns.
    pub fn finish(mut self) -> Result<BlobManifest, StorageError> {
        if !self.pending.is_empty() || self.chunks.is_empty() {
            self.flush_chunk()?;
        }
        let manifest = BlobManifest {
            sha256: std::mem::take(&mut self.whole).finalize().into(),
            size: self.size,
            chunk_bytes: CHUNK_BYTES as u32,
            chunks: std::mem::take(&mut self.chunks),
        };
        write_manifest(&self.dir, &manifest)?;
        self.store.install(&self.dir, &manifest.sha256)?;
        self.finished = true;
        Ok(manifest)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), cause = %e, "could not remove an abandoned upload");
            }
        }
    }
}
