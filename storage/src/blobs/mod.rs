//! Media blobs on one node: content-addressed by SHA-256, stored as checksummed chunk files.
//!
//! ```text
//! media/blobs/<aa>/<sha256 hex>/MANIFEST      versioned record: size, chunk size, every chunk's SHA-256
//! media/blobs/<aa>/<sha256 hex>/chunk-<i>     chunk i (CHUNK_BYTES, the last one shorter)
//! media/incoming/<transfer>/                  an upload or a copy in progress
//! ```
//!
//! A blob appears whole or not at all: its chunks and manifest are written and fsynced in an
//! `incoming/` directory that is then renamed into place (and the parent directory fsynced).
//! Readers check every chunk against the manifest; a missing or damaged chunk is reported, never
//! served. Nothing here talks to other nodes: the server copies blobs between nodes.
//!
//! - [`writer`]: streaming a new blob in, chunk by chunk ([`BlobWriter`]).
//! - [`receive`]: a copy pushed by another node, chunk by chunk, then committed.

mod receive;
mod writer;

use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use sha2::Sha256;

pub use self::writer::BlobWriter;
use crate::codec;
use crate::identity::sync_dir;
use crate::StorageError;

/// Size of every chunk but a blob's last.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// A blob's name: the SHA-256 of its content.
pub type Sha = [u8; 32];

/// What a blob is made of; the versioned `MANIFEST` record of its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobManifest {
    pub sha256: Sha,
    pub size: u64,
    pub chunk_bytes: u32,
    /// SHA-256 of each chunk, in order.
    pub chunks: Vec<Sha>,
}

impl BlobManifest {
    /// The byte range `[start, end)` of chunk `i`.
    pub fn chunk_range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * u64::from(self.chunk_bytes);
        (start, (start + u64::from(self.chunk_bytes)).min(self.size))
    }

    /// Whether the shape adds up: chunk count and size agree with the chunk size.
    pub fn is_consistent(&self) -> bool {
        let cb = u64::from(self.chunk_bytes);
        cb > 0 && self.chunks.len() as u64 == self.size.div_ceil(cb).max(1)
    }
}

/// One blob this node holds, as listed.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    pub sha256: Sha,
    pub size: u64,
    /// When the blob was last stored or uploaded again (the manifest's mtime).
    pub touched: SystemTime,
}

pub fn sha256(bytes: &[u8]) -> Sha {
    Sha256::digest(bytes).into()
}

pub fn to_hex(sha: &Sha) -> String {
    sha.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 lowercase or uppercase hex digits.
pub fn parse_hex(s: &str) -> Option<Sha> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The media blobs of one node's data directory.
#[derive(Debug)]
pub struct BlobStore {
    blobs: PathBuf,
    incoming: PathBuf,
}

impl BlobStore {
    /// Opens (creating) `data_dir/media`; uploads and copies a crash interrupted are removed.
    pub fn open(data_dir: &Path) -> Result<BlobStore, StorageError> {
        let root = data_dir.join("media");
        let blobs = root.join("blobs");
        let incoming = root.join("incoming");
        if incoming.exists() {
            fs::remove_dir_all(&incoming).map_err(|e| StorageError::io(&incoming, e))?;
        }
        for d in [&blobs, &incoming] {
            fs::create_dir_all(d).map_err(|e| StorageError::io(d, e))?;
        }
        sync_dir(&root)?;
        Ok(BlobStore { blobs, incoming })
    }

    fn dir(&self, sha: &Sha) -> PathBuf {
        let hex = to_hex(sha);
        self.blobs.join(&hex[..2]).join(hex)
    }

    fn incoming_dir(&self, name: &str) -> PathBuf {
        self.incoming.join(name)
    }

    /// Transfers in progress (their directories), for the disk check of tests and operators.
    pub fn incoming_count(&self) -> usize {
        fs::read_dir(&self.incoming).map(|d| d.count()).unwrap_or(0)
    }

    pub fn contains(&self, sha: &Sha) -> bool {
        self.dir(sha).join("MANIFEST").is_file()
    }

    /// The manifest of a blob held here, `None` if it is not.
    pub fn manifest(&self, sha: &Sha) -> Result<Option<BlobManifest>, StorageError> {
        let path = self.dir(sha).join("MANIFEST");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let m: BlobManifest = codec::decode_versioned(&bytes)
            .map_err(|e| StorageError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        if m.sha256 != *sha || !m.is_consistent() {
            return Err(StorageError::Corrupt { path, reason: "manifest does not describe this blob".into() });
        }
        Ok(Some(m))
    }

    /// Chunk `i` of a blob, checked against its manifest. `Ok(None)`: the blob or the chunk is
    /// not here; `Err(Corrupt)`: it is here but damaged.
    pub fn read_chunk(&self, m: &BlobManifest, i: usize) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(expected) = m.chunks.get(i) else { return Ok(None) };
        let path = self.dir(&m.sha256).join(chunk_name(i));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let (start, end) = m.chunk_range(i);
        if bytes.len() as u64 != end - start || sha256(&bytes) != *expected {
            return Err(StorageError::Corrupt { path, reason: format!("chunk {i} does not match its checksum") });
        }
        Ok(Some(bytes))
    }

    /// Puts a good copy of chunk `i` in place of a missing or damaged one.
    pub fn replace_chunk(&self, m: &BlobManifest, i: usize, bytes: &[u8]) -> Result<(), StorageError> {
        let dir = self.dir(&m.sha256);
        if m.chunks.get(i) != Some(&sha256(bytes)) {
            return Err(StorageError::Corrupt { path: dir, reason: format!("replacement for chunk {i} is wrong") });
        }
        let tmp = dir.join(format!("{}.tmp", chunk_name(i)));
        write_synced(&tmp, bytes)?;
        let path = dir.join(chunk_name(i));
        fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
        sync_dir(&dir)
    }

    /// Every blob held here (directories without a readable manifest are skipped and logged).
    pub fn list(&self) -> Result<Vec<BlobEntry>, StorageError> {
        let mut out = Vec::new();
        let shards = fs::read_dir(&self.blobs).map_err(|e| StorageError::io(&self.blobs, e))?;
        for shard in shards.flatten() {
            let Ok(entries) = fs::read_dir(shard.path()) else { continue };
            for entry in entries.flatten() {
                let Some(sha) = entry.file_name().to_str().and_then(parse_hex) else { continue };
                let manifest_path = entry.path().join("MANIFEST");
                let touched = fs::metadata(&manifest_path).and_then(|m| m.modified());
                match (self.manifest(&sha), touched) {
                    (Ok(Some(m)), Ok(touched)) => out.push(BlobEntry { sha256: sha, size: m.size, touched }),
                    (Ok(None), _) => {}
                    (Err(e), _) => tracing::warn!(blob = %to_hex(&sha), cause = %e, "unreadable blob skipped"),
                    (_, Err(e)) => tracing::warn!(blob = %to_hex(&sha), cause = %e, "unreadable blob skipped"),
                }
            }
        }
        Ok(out)
    }

    /// Deletes a blob: renamed out of `blobs/` first, so a half-deleted blob never looks whole.
    pub fn remove(&self, sha: &Sha) -> Result<bool, StorageError> {
        let dir = self.dir(sha);
        if !dir.exists() {
            return Ok(false);
        }
        let doomed = self.incoming_dir(&format!("del-{}", uuid::Uuid::new_v4()));
        fs::rename(&dir, &doomed).map_err(|e| StorageError::io(&dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        fs::remove_dir_all(&doomed).map_err(|e| StorageError::io(&doomed, e))?;
        Ok(true)
    }

    /// Moves a complete directory (chunks + MANIFEST, all fsynced) into place. If the blob is
    /// already here, the new copy is dropped and the old one marked as stored again.
    fn install(&self, from: &Path, sha: &Sha) -> Result<(), StorageError> {
        let to = self.dir(sha);
        let shard = to.parent().map(Path::to_path_buf).unwrap_or_else(|| self.blobs.clone());
        if !shard.exists() {
            fs::create_dir_all(&shard).map_err(|e| StorageError::io(&shard, e))?;
            sync_dir(&self.blobs)?;
        }
        if !self.contains(sha) {
            match fs::rename(from, &to) {
                Ok(()) => return sync_dir(&shard),
                // Another transfer of the same content won the race: keep its copy.
                Err(_) if self.contains(sha) => {}
                Err(e) => return Err(StorageError::io(&to, e)),
            }
        }
        let _ = fs::remove_dir_all(from);
        self.touch(sha)
    }

    /// Marks a held blob as just stored (an upload of content that is already here), so that
    /// the collection of unreferenced uploads counts its grace period from now.
    pub fn touch(&self, sha: &Sha) -> Result<(), StorageError> {
        let path = self.dir(sha).join("MANIFEST");
        let f = fs::File::options().write(true).open(&path).map_err(|e| StorageError::io(&path, e))?;
        f.set_modified(SystemTime::now()).map_err(|e| StorageError::io(&path, e))
    }
}

pub(crate) fn chunk_name(i: usize) -> String {
    format!("chunk-{i:08}")
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| StorageError::io(path, e))?;
    f.write_all(bytes).map_err(|e| StorageError::io(path, e))?;
    f.sync_data().map_err(|e| StorageError::io(path, e))
}

pub(crate) fn write_manifest(dir: &Path, m: &BlobManifest) -> Result<(), StorageError> {
    let bytes = codec::encode_versioned(m).map_err(|e| StorageError::codec("blob manifest", e))?;
    write_synced(&dir.join("MANIFEST"), &bytes)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests;
