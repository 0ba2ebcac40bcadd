//! The data of a snapshot as openraft moves it: a file being received, or a stream read from
//! several parts (an in-memory head and the snapshot directory's files) without copying them
//! into one file first.
//!
//! openraft 0.9 sends a snapshot by seeking and reading its data (`AsyncSeek + AsyncRead`) and
//! receives one by writing chunks into it (`AsyncWrite`). File parts are read with positioned
//! reads on the blocking pool, one bounded chunk at a time, so no runtime thread waits on disk.

use std::fs::File;
use std::future::Future;
use std::io;
use std::io::SeekFrom;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::io::AsyncSeek;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;
use tokio::task::JoinHandle;

/// Bytes read from a file part per blocking read at most.
const READ_CHUNK: u64 = 512 * 1024;

/// One part of a stream: bytes in memory, or the first `len` bytes of a file.
pub enum Part {
    Mem(Bytes),
    File(File, u64),
}

/// A snapshot's data (openraft's `SnapshotData`).
pub struct SnapshotData(Inner);

enum Inner {
    /// Received chunks go into this file; it is read back to install.
    File(tokio::fs::File),
    Parts(Parts),
}

enum Stored {
    Mem(Bytes),
    File(Arc<File>),
}

struct Parts {
    /// Each part with its start offset in the stream and its length.
    parts: Vec<(Stored, u64, u64)>,
    total: u64,
    pos: u64,
    /// Bytes read ahead at `pos`.
    ready: Bytes,
    reading: Option<(u64, JoinHandle<io::Result<Vec<u8>>>)>,
}

impl SnapshotData {
    /// A file to receive a snapshot into.
    pub fn receiving(f: tokio::fs::File) -> Self {
        SnapshotData(Inner::File(f))
    }

    /// A read-only stream of `parts`, in order.
    pub fn parts(parts: Vec<Part>) -> Self {
        let mut total = 0;
        let parts = parts
            .into_iter()
            .map(|p| {
                let (stored, len) = match p {
                    Part::Mem(b) => {
                        let n = b.len() as u64;
                        (Stored::Mem(b), n)
                    }
                    Part::File(f, len) => (Stored::File(Arc::new(f)), len),
                };
                let start = total;
                total += len;
                (stored, start, len)
            })
            .collect();
        SnapshotData(Inner::Parts(Parts { parts, total, pos: 0, ready: Bytes::new(), reading: None }))
    }

    /// The stream's length (0 for a file being received).
    pub fn len(&self) -> u64 {
        match &self.0 {
            Inner::File(_) => 0,
            Inner::Parts(p) => p.total,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The received file, for installing; a read-only stream comes back as it is.
    pub async fn into_received(self) -> Result<File, SnapshotData> {
        match self.0 {
            Inner::File(f) => Ok(f.into_std().await),
            parts @ Inner::Parts(_) => Err(SnapshotData(parts)),
        }
    }
}

impl Parts {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.ready.is_empty() {
                let n = self.ready.len().min(buf.remaining());
                buf.put_slice(&self.ready.split_to(n));
                self.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            if self.pos >= self.total || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some((at, handle)) = &mut self.reading {
                let res = match Pin::new(handle).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r.map_err(io::Error::other).and_then(|r| r),
                };
                let at = *at;
                self.reading = None;
                let data = res?;
                if at == self.pos {
                    if data.is_empty() {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "snapshot file shrank")));
                    }
                    self.ready = Bytes::from(data);
                }
                continue;
            }
            let pos = self.pos;
            let Some((stored, start, len)) = self.parts.iter().find(|(_, s, l)| pos >= *s && pos < s + l) else {
                return Poll::Ready(Ok(()));
            };
            let within = pos - start;
            let want = (len - within).min(READ_CHUNK);
            match stored {
                Stored::Mem(b) => self.ready = b.slice(within as usize..(within + want) as usize),
                Stored::File(f) => {
                    let f = f.clone();
                    let handle = tokio::task::spawn_blocking(move || {
                        let mut v = vec![0u8; want as usize];
                        let mut got = 0;
                        while got < v.len() {
                            match f.read_at(&mut v[got..], within + got as u64) {
                                Ok(0) => break,
                                Ok(n) => got += n,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(e) => return Err(e),
                            }
                        }
                        v.truncate(got);
                        Ok(v)
                    });
                    self.reading = Some((pos, handle));
                }
            }
        }
    }

    fn seek(&mut self, to: SeekFrom) -> io::Result<()> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the snapshot"))?;
        if target != self.pos {
            self.pos = target;
            self.ready = Bytes::new();
        }
        Ok(())
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::File(f) => Pin::new(f).poll_read(cx, buf),
            Inner::Parts(p) => p.poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match &mut self.get_mut().0 {
            Inner::File(f) => Pin::new(f).start_seek(position),
            Inner::Parts(p) => p.seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match &mut self.get_mut().0 {
            Inner::File(f) => Pin::new(f).poll_complete(cx),
            Inner::Parts(p) => Poll::Ready(Ok(p.pos)),
        }
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a snapshot being sent is read-only")
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::File(f) => Pin::new(f).poll_write(cx, buf),
            Inner::Parts(_) => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::File(f) => Pin::new(f).poll_flush(cx),
            Inner::Parts(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::File(f) => Pin::new(f).poll_shutdown(cx),
            Inner::Parts(_) => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncSeekExt;

    use super::*;

    #[tokio::test]
    async fn reads_parts_in_order_and_seeks_anywhere() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        let head = Bytes::from_static(b"HEAD");
        let mut want = head.to_vec();
        want.extend_from_slice(&body[..1_500_000]);
        want.extend_from_slice(b"tail");
        let mut s = SnapshotData::parts(vec![
            Part::Mem(head),
            Part::File(File::open(&path).unwrap(), 1_500_000),
            Part::Mem(Bytes::from_static(b"tail")),
        ]);
        assert_eq!(s.len(), want.len() as u64);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, want);
        for at in [0u64, 3, 4, 700_001, 1_500_003, 1_500_004, 1_500_006] {
            assert_eq!(s.seek(SeekFrom::Start(at)).await.unwrap(), at);
            let mut chunk = vec![0u8; 10];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            assert_eq!(&chunk[..n], &want[at as usize..at as usize + n]);
        }
        assert_eq!(s.seek(SeekFrom::End(0)).await.unwrap(), want.len() as u64);
        assert_eq!(s.read(&mut [0u8; 4]).await.unwrap(), 0);
        assert!(s.write_all_check().await);
    }

    impl SnapshotData {
        async fn write_all_check(&mut self) -> bool {
            tokio::io::AsyncWriteExt::write_all(self, b"x").await.is_err()
        }
    }
}
