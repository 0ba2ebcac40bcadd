//! A FUSE passthrough that loses what was not fsynced, like Jepsen's LazyFS (which Debian does
//! not package and CI cannot build).
//!
//! The node's data directory is a mount of this filesystem over a backing directory. Data
//! writes and truncations stay in memory ([`overlay`]) until the file is fsynced (fsync or
//! fdatasync), which writes them to the backing file and fsyncs it. [`LazyFs::clear`] drops
//! every pending write: call it while the node is SIGKILLed, and its restart sees the disk as a
//! power loss would have left it. `sync_file_range` sends no FUSE request, so sled's own flushes
//! count as unsynced, as on real power loss. Metadata (create, mkdir, rename, unlink) goes to
//! the backing directory at once: the fault modelled is lost data, not lost directory entries.
//! Reads bypass the kernel page cache (direct I/O, no attribute caching) so nothing the
//! overlay dropped survives in the kernel.

pub mod overlay;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use fuser::Errno;
use fuser::FileAttr;
use fuser::FileHandle;
use fuser::FileType;
use fuser::Filesystem;
use fuser::FopenFlags;
use fuser::Generation;
use fuser::INodeNo;
use fuser::OpenFlags;
use fuser::Request;

use overlay::Overlay;

const TTL: Duration = Duration::ZERO;

#[derive(Default)]
struct State {
    /// Inode -> path relative to the backing root ("" is the root, inode 1).
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    overlays: HashMap<u64, Overlay>,
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_fh: u64,
}

/// The shared state of one mount: the filesystem and the harness both hold it.
#[derive(Clone)]
pub struct LazyFs {
    backing: PathBuf,
    state: Arc<Mutex<State>>,
}

/// A mounted [`LazyFs`]; unmounts when dropped.
pub struct Mount {
    pub fs: LazyFs,
    _session: fuser::BackgroundSession,
}

fn io_err(e: std::io::Error) -> Errno {
    Errno::from(e)
}

impl LazyFs {
    pub fn new(backing: &Path) -> LazyFs {
        let mut st = State { next_ino: 2, next_fh: 1, ..Default::default() };
        st.paths.insert(1, PathBuf::new());
        st.inos.insert(PathBuf::new(), 1);
        LazyFs { backing: backing.to_path_buf(), state: Arc::new(Mutex::new(st)) }
    }

    /// Mounts a new filesystem over `backing` at `at`.
    pub fn mount(backing: &Path, at: &Path) -> std::io::Result<Mount> {
        std::fs::create_dir_all(backing)?;
        std::fs::create_dir_all(at)?;
        let fs = LazyFs::new(backing);
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("jepsen-lazyfs".into())];
        let session = fuser::spawn_mount(fs.clone(), at, &config)?;
        Ok(Mount { fs, _session: session })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every write not yet fsynced; returns how many bytes were lost.
    pub fn clear(&self) -> u64 {
        let mut st = self.lock();
        let lost = st.overlays.values().map(Overlay::bytes).sum();
        st.overlays.clear();
        lost
    }

    /// Bytes written but not fsynced.
    pub fn pending(&self) -> u64 {
        self.lock().overlays.values().map(Overlay::bytes).sum()
    }

    fn real(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn path_of(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.lock().paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn ino_for(&self, rel: &Path) -> u64 {
        let mut st = self.lock();
        if let Some(i) = st.inos.get(rel) {
            return *i;
        }
        let i = st.next_ino;
        st.next_ino += 1;
        st.paths.insert(i, rel.to_path_buf());
        st.inos.insert(rel.to_path_buf(), i);
        i
    }

    fn forget_path(&self, rel: &Path) {
        let mut st = self.lock();
        if let Some(i) = st.inos.remove(rel) {
            st.paths.remove(&i);
            st.overlays.remove(&i);
        }
    }

    fn attr(&self, ino: u64, rel: &Path) -> Result<FileAttr, Errno> {
        let m = std::fs::symlink_metadata(self.real(rel)).map_err(io_err)?;
        let size = self.lock().overlays.get(&ino).map_or(m.len(), |o| o.size);
        let t = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        let kind = if m.is_dir() { FileType::Directory } else { FileType::RegularFile };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t(m.atime()),
            mtime: t(m.mtime()),
            ctime: t(m.ctime()),
            crtime: t(m.ctime()),
            kind,
            perm: (m.permissions().mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path_of(parent)?.join(name))
    }

    fn entry(&self, rel: &Path) -> Result<FileAttr, Errno> {
        let ino = self.ino_for(rel);
        self.attr(ino, rel)
    }

    fn open_handle(&self, ino: u64, file: File) -> u64 {
        let mut st = self.lock();
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, (ino, Arc::new(file)));
        fh
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.lock().handles.get(&fh.0).map(|(_, f)| f.clone()).ok_or(Errno::EBADF)
    }

    /// Writes the overlay of `ino` to its backing file and fsyncs it. The handle fsync came
    /// through may be read-only (fsync on any descriptor syncs the file), so the overlay goes
    /// through a writable one.
    fn sync(&self, ino: u64, file: &File) -> Result<(), Errno> {
        let overlay = self.lock().overlays.remove(&ino);
        if let Some(o) = overlay {
            let rel = self.path_of(INodeNo(ino))?;
            let file = std::fs::OpenOptions::new().write(true).open(self.real(&rel)).map_err(io_err)?;
            if let Some(t) = o.truncated_to {
                file.set_len(t).map_err(io_err)?;
            }
            if file.metadata().map_err(io_err)?.len() != o.size {
                file.set_len(o.size).map_err(io_err)?;
            }
            for (off, data) in o.extents() {
                file.write_all_at(data, *off).map_err(io_err)?;
            }
            file.sync_all().map_err(io_err)?;
        }
        file.sync_all().map_err(io_err)
    }
}

fn reply_attr(r: Result<FileAttr, Errno>, reply: fuser::ReplyAttr) {
    match r {
        Ok(a) => reply.attr(&TTL, &a),
        Err(e) => reply.error(e),
    }
}

fn reply_entry(r: Result<FileAttr, Errno>, reply: fuser::ReplyEntry) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(r: Result<(), Errno>, reply: fuser::ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn open_options(flags: OpenFlags) -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    match flags.acc_mode() {
        fuser::OpenAccMode::O_RDONLY => o.read(true),
        _ => o.read(true).write(true),
    };
    o
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: fuser::ReplyEntry) {
        reply_entry(self.child(parent, name).and_then(|p| self.entry(&p)), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: fuser::ReplyAttr) {
        reply_attr(self.path_of(ino).and_then(|p| self.attr(ino.0, &p)), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: fuser::ReplyAttr,
    ) {
        let r = (|| {
            let rel = self.path_of(ino)?;
            if let Some(m) = mode {
                std::fs::set_permissions(self.real(&rel), std::fs::Permissions::from_mode(m)).map_err(io_err)?;
            }
            if let Some(size) = size {
                let base = std::fs::metadata(self.real(&rel)).map_err(io_err)?.len();
                self.lock().overlays.entry(ino.0).or_insert_with(|| Overlay::new(base)).truncate(size);
            }
            self.attr(ino.0, &rel)
        })();
        reply_attr(r, reply);
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: fuser::ReplyEntry) {
        let r = (|| {
            let rel = self.child(parent, name)?;
            std::fs::create_dir(self.real(&rel)).map_err(io_err)?;
            std::fs::set_permissions(self.real(&rel), std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
            self.entry(&rel)
        })();
        reply_entry(r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: fuser::ReplyEmpty) {
        let r = (|| {
            let rel = self.child(parent, name)?;
            std::fs::remove_file(self.real(&rel)).map_err(io_err)?;
            self.forget_path(&rel);
            Ok(())
        })();
        reply_empty(r, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: fuser::ReplyEmpty) {
        let r = (|| {
            let rel = self.child(parent, name)?;
            std::fs::remove_dir(self.real(&rel)).map_err(io_err)?;
            self.forget_path(&rel);
            Ok(())
        })();
        reply_empty(r, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: fuser::ReplyEmpty,
    ) {
        let r = (|| {
            let from = self.child(parent, name)?;
            let to = self.child(newparent, newname)?;
            std::fs::rename(self.real(&from), self.real(&to)).map_err(io_err)?;
            // The replaced file is gone; the moved inode (and, for a directory, everything
            // under it) keeps its number under the new path.
            self.forget_path(&to);
            let mut st = self.lock();
            let moved: Vec<(PathBuf, u64)> =
                st.inos.iter().filter(|(p, _)| p.starts_with(&from)).map(|(p, i)| (p.clone(), *i)).collect();
            for (p, i) in moved {
                let rest = p.strip_prefix(&from).map(Path::to_path_buf).unwrap_or_default();
                let np = if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) };
                st.inos.remove(&p);
                st.inos.insert(np.clone(), i);
                st.paths.insert(i, np);
            }
            Ok(())
        })();
        reply_empty(r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: fuser::ReplyOpen) {
        let r = (|| {
            let rel = self.path_of(ino)?;
            let file = open_options(flags).open(self.real(&rel)).map_err(io_err)?;
            Ok(self.open_handle(ino.0, file))
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        let r = (|| {
            let rel = self.child(parent, name)?;
            let file = open_options(OpenFlags(flags)).create(true).open(self.real(&rel)).map_err(io_err)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
            let attr = self.entry(&rel)?;
            Ok((attr, self.open_handle(attr.ino.0, file)))
        })();
        match r {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: fuser::ReplyData,
    ) {
        let r = (|| {
            let file = self.handle(fh)?;
            let backing_len = file.metadata().map_err(io_err)?.len();
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                match file.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            let n = match self.lock().overlays.get(&ino.0) {
                Some(o) => o.read(offset, &mut buf, backing_len),
                None => got,
            };
            buf.truncate(n);
            Ok(buf)
        })();
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        let r = (|| {
            let file = self.handle(fh)?;
            let mut st = self.lock();
            let overlay = match st.overlays.entry(ino.0) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Overlay::new(file.metadata().map_err(io_err)?.len()))
                }
            };
            overlay.write(offset, data);
            Ok(data.len() as u32)
        })();
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lo: fuser::LockOwner, reply: fuser::ReplyEmpty) {
        // close() does not make data durable; only fsync does.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: fuser::ReplyEmpty) {
        reply_empty(self.handle(fh).and_then(|f| self.sync(ino.0, &f)), reply);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: fuser::ReplyDirectory) {
        let r = (|| {
            let rel = self.path_of(ino)?;
            let mut entries: Vec<(u64, FileType, std::ffi::OsString)> =
                vec![(ino.0, FileType::Directory, ".".into()), (1, FileType::Directory, "..".into())];
            for e in std::fs::read_dir(self.real(&rel)).map_err(io_err)? {
                let e = e.map_err(io_err)?;
                let kind =
                    if e.file_type().map_err(io_err)?.is_dir() { FileType::Directory } else { FileType::RegularFile };
                entries.push((self.ino_for(&rel.join(e.file_name())), kind, e.file_name()));
            }
            Ok(entries)
        })();
        match r {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(ino), i as u64 + 1, kind, &name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: fuser::ReplyEmpty) {
        let r =
            self.path_of(ino).and_then(|rel| File::open(self.real(&rel)).and_then(|d| d.sync_all()).map_err(io_err));
        reply_empty(r, reply);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: fuser::ReplyEmpty) {
        reply.ok();
    }
}

#[cfg(test)]
mod tests;
