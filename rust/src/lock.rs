//! Lock files shared with containers/storage 1.43 (`pkg/lockfile`).
//!
//! A store is shared between processes (podman, buildah, skopeo and us) through lock files
//! beside the JSON they guard (`layers.lock`, `images.lock`, `containers.lock`,
//! `mountpoints.lock`, `storage.lock`). To exclude the Go tools we must use exactly their
//! mechanism:
//!
//! * POSIX record locks, `fcntl(F_SETLKW)` on the whole file (`l_start = 0, l_len = 0`),
//!   `F_RDLCK` for readers and `F_WRLCK` for writers. Never `flock(2)`: on Linux flock locks
//!   and fcntl locks do not see each other, so a flock would not exclude Go.
//! * The file is opened on the first acquisition and closed on the last release: closing the
//!   descriptor is what releases the record lock, also when the process dies (kill -9).
//! * After every save, the writer stores a fresh 64-byte "last writer" token at offset 0
//!   (`Touch`): LE u64 `UnixNano`, LE u64 per-process counter, LE u32 PID, 44 random bytes.
//!   Readers compare it with the token they saw last (`Modified`) to know whether to reload.
//!
//! Record locks belong to the *process*, so threads of one process do not exclude each other
//! through them. Go adds an in-process `sync.RWMutex`; we add the equivalent reader/writer
//! state below, keyed by thread so that a thread may take the lock again while it holds it
//! (Go's `RecursiveLock`), and may read while it writes.
//!
//! Caveat inherited from POSIX: closing *any* descriptor of the lock file in this process
//! drops the process's record lock. That is why callers keep one [`LockFile`] per path
//! (Go's `GetLockfile` cache; the Python package does the same) and never open the lock file
//! themselves while it is held.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{fcntl_lock, FlockOperation};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Size of the last-writer token (Go: `lastWriterIDSize`).
pub const LAST_WRITE_SIZE: usize = 64;

/// Mode of the lock files we create, before the umask (Go: `openLock`).
const LOCK_FILE_MODE: u32 = 0o644;

/// Mode of the parent directories we create for a lock file (Go: `os.MkdirAll(.., 0700)`).
const LOCK_DIR_MODE: u32 = 0o700;

/// How long a thread waits in-process before it asks the caller whether to give up.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How long to wait before retrying `F_SETLKW` after a transient failure (Go: 10 ms).
const RETRY_DELAY: Duration = Duration::from_millis(10);

/// Per-process token counter (Go: `lastWriterIDCounter`), shared by every lock file.
static LAST_WRITE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether a lock is taken for reading (shared) or writing (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Shared: `F_RDLCK`.
    Read,
    /// Exclusive: `F_WRLCK`.
    Write,
}

impl LockKind {
    /// The blocking whole-file record lock of this kind: rustix's `fcntl_lock` issues
    /// `F_SETLKW` with `l_whence = SEEK_SET, l_start = 0, l_len = 0` (not an OFD lock, not
    /// `flock`), the lock Go takes.
    fn operation(self) -> FlockOperation {
        match self {
            LockKind::Read => FlockOperation::LockShared,
            LockKind::Write => FlockOperation::LockExclusive,
        }
    }
}

/// A 64-byte last-writer token in Go 1.43's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastWrite(pub [u8; LAST_WRITE_SIZE]);

impl LastWrite {
    /// Generates a fresh token: time, counter, PID, random (Go: `newLastWriterID`).
    pub fn generate() -> Self {
        let mut token = [0u8; LAST_WRITE_SIZE];
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let counter = LAST_WRITE_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        token[0..8].copy_from_slice(&nanos.to_le_bytes());
        token[8..16].copy_from_slice(&counter.to_le_bytes());
        token[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        if getrandom::fill(&mut token[20..]).is_err() {
            // No entropy source: the time, counter and PID still make the token unique to
            // this write, which is all readers rely on.
            token[20..28].copy_from_slice(&nanos.rotate_left(17).to_le_bytes());
        }
        LastWrite(token)
    }
}

/// Bookkeeping shared by the threads of this process, behind [`LockFile::state`].
#[derive(Default)]
struct State {
    /// The open lock file while the process holds the record lock.
    file: Option<File>,
    /// The thread holding the write lock, and how many times it took it.
    writer: Option<(ThreadId, u32)>,
    /// Threads holding the read lock, and how many times each took it.
    readers: HashMap<ThreadId, u32>,
    /// A thread is blocked in `fcntl` taking the record lock for this process.
    acquiring: bool,
    /// Threads waiting for the write lock (new readers queue behind them, as Go's RWMutex).
    writers_waiting: u32,
    /// Threads asleep on the condition variable: with none, releasing wakes nobody and
    /// costs no `futex` call.
    sleepers: u32,
    /// The token seen by the last `touch()` or `modified()`; `None` before either.
    last_write: Option<Vec<u8>>,
}

/// A lock file shared with the containers/storage Go tools.
///
/// One `LockFile` should exist per path per process (see the module notes).
pub struct LockFile {
    path: PathBuf,
    read_only: bool,
    state: Mutex<State>,
    cond: Condvar,
}

impl std::fmt::Debug for LockFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockFile")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl LockFile {
    /// Opens (creating it, and its parent directories, when `read_only` is false) the lock
    /// file at `path`. A read-only lock file must exist.
    pub fn new(path: impl Into<PathBuf>, read_only: bool) -> Result<Self> {
        let path = path.into();
        // Go: createLockerForPath opens once to check (and create), then closes.
        drop(open_lock_file(&path, read_only)?);
        Ok(LockFile {
            path,
            read_only,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True unless the lock was opened read-only (Go: `IsReadWrite`).
    pub fn is_read_write(&self) -> bool {
        !self.read_only
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the state mutex cannot leave it half-updated in a way that
        // matters more than refusing every later call would; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock, waiting as long as it takes.
    pub fn lock(&self, kind: LockKind) -> Result<()> {
        self.lock_with(kind, &mut || false)
    }

    /// Takes the lock. While waiting, `interrupted` is called now and then (at least every
    /// 100 ms, and whenever a signal interrupts the wait); when it returns true, the wait
    /// ends with [`Error::Interrupted`] and nothing is held.
    ///
    /// A thread that holds the write lock may take it again, or take the read lock, any
    /// number of times (Go: `RecursiveLock`); each take needs its own [`unlock`](Self::unlock).
    /// A thread that holds only the read lock may not take the write lock
    /// ([`Error::LockUpgrade`]): waiting for the other readers to leave would deadlock.
    pub fn lock_with(&self, kind: LockKind, interrupted: &mut dyn FnMut() -> bool) -> Result<()> {
        if kind == LockKind::Write && self.read_only {
            return Err(Error::LockReadOnly {
                path: self.path.clone(),
            });
        }
        let me = thread::current().id();
        let mut st = self.state();
        loop {
            if let Some((owner, depth)) = st.writer.as_mut() {
                if *owner == me {
                    *depth += 1;
                    return Ok(());
                }
            }
            let free = st.writer.is_none() && !st.acquiring;
            match kind {
                LockKind::Write => {
                    if st.readers.contains_key(&me) {
                        return Err(Error::LockUpgrade {
                            path: self.path.clone(),
                        });
                    }
                    if free && st.readers.is_empty() {
                        break;
                    }
                }
                LockKind::Read => {
                    if let Some(count) = st.readers.get_mut(&me) {
                        *count += 1;
                        return Ok(());
                    }
                    if free && st.writers_waiting == 0 {
                        if !st.readers.is_empty() {
                            // The process already holds the shared record lock.
                            st.readers.insert(me, 1);
                            return Ok(());
                        }
                        break;
                    }
                }
            }
            if kind == LockKind::Write {
                st.writers_waiting += 1;
            }
            st.sleepers += 1;
            let (guard, _) = self
                .cond
                .wait_timeout(st, WAIT_SLICE)
                .unwrap_or_else(PoisonError::into_inner);
            st = guard;
            st.sleepers -= 1;
            if kind == LockKind::Write {
                st.writers_waiting -= 1;
            }
            // Never call back into the caller holding the state mutex: the callback may wait
            // for the GIL, held by a thread that needs this mutex to unlock.
            drop(st);
            if interrupted() {
                // Readers may have been queued behind our waiting-writer count.
                self.wake(&self.state());
                return Err(Error::Interrupted {
                    path: self.path.clone(),
                });
            }
            st = self.state();
        }
        // Nobody in this process holds the lock: take the record lock for the process. Other
        // threads wait on `acquiring` meanwhile, so we can block in fcntl without the mutex.
        st.acquiring = true;
        drop(st);
        let taken = self.take_record_lock(kind, interrupted);
        let mut st = self.state();
        st.acquiring = false;
        let result = match taken {
            Ok(file) => {
                st.file = Some(file);
                match kind {
                    LockKind::Write => st.writer = Some((me, 1)),
                    LockKind::Read => {
                        st.readers.insert(me, 1);
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.wake(&st);
        result
    }

    /// Wakes the threads waiting in [`lock_with`](Self::lock_with), if there are any.
    fn wake(&self, st: &State) {
        if st.sleepers > 0 {
            self.cond.notify_all();
        }
    }

    /// Opens the file and blocks in `fcntl(F_SETLKW)` until the record lock is ours.
    fn take_record_lock(
        &self,
        kind: LockKind,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<File> {
        let file = open_lock_file(&self.path, self.read_only)?;
        loop {
            match fcntl_lock(&file, kind.operation()) {
                Ok(()) => return Ok(file),
                Err(Errno::INTR) => {}
                // EDEADLK: the kernel saw a cycle with another process's locks; Go retries
                // after 10 ms, as the other side may give way. ENOLCK: out of lock records.
                Err(Errno::DEADLK | Errno::NOLCK) => thread::sleep(RETRY_DELAY),
                Err(e) => return Err(Error::io("locking", &self.path, e.into())),
            }
            if interrupted() {
                return Err(Error::Interrupted {
                    path: self.path.clone(),
                });
            }
        }
    }

    /// Releases one take of the lock by this thread. The record lock, and the file, are
    /// released when the last holder in this process lets go.
    pub fn unlock(&self) -> Result<()> {
        let me = thread::current().id();
        let mut st = self.state();
        if let Some((owner, depth)) = st.writer.as_mut() {
            if *owner == me {
                *depth -= 1;
                if *depth == 0 {
                    st.writer = None;
                    // Closing the descriptor releases the record lock (Go: Unlock).
                    st.file = None;
                    self.wake(&st);
                }
                return Ok(());
            }
        }
        match st.readers.get_mut(&me) {
            Some(count) => {
                *count -= 1;
                if *count == 0 {
                    st.readers.remove(&me);
                    if st.readers.is_empty() {
                        st.file = None;
                    }
                    self.wake(&st);
                }
                Ok(())
            }
            None => Err(Error::NotLocked {
                path: self.path.clone(),
                op: "unlock",
                mode: "read or write",
            }),
        }
    }

    /// True while some thread of this process holds the write lock (Go: `Locked`).
    pub fn locked(&self) -> bool {
        self.state().writer.is_some()
    }

    /// The kind of lock the calling thread holds, if any.
    pub fn held_by_current_thread(&self) -> Option<LockKind> {
        let me = thread::current().id();
        let st = self.state();
        match st.writer {
            Some((owner, _)) if owner == me => Some(LockKind::Write),
            _ if st.readers.contains_key(&me) => Some(LockKind::Read),
            _ => None,
        }
    }

    /// Writes a fresh last-writer token at offset 0 (Go: `Touch`). Needs the write lock.
    pub fn touch(&self) -> Result<LastWrite> {
        if self.read_only {
            return Err(Error::LockReadOnly {
                path: self.path.clone(),
            });
        }
        let me = thread::current().id();
        let mut st = self.state();
        let file = match (&st.writer, &st.file) {
            (Some((owner, _)), Some(file)) if *owner == me => file,
            _ => {
                return Err(Error::NotLocked {
                    path: self.path.clone(),
                    op: "touch",
                    mode: "write",
                })
            }
        };
        let token = LastWrite::generate();
        file.write_all_at(&token.0, 0)
            .map_err(|e| Error::io("writing last-writer token to", &self.path, e))?;
        st.last_write = Some(token.0.to_vec());
        Ok(token)
    }

    /// Reads the token at offset 0 and says whether it differs from the one this object saw
    /// last, remembering the new one (Go: `Modified`). A short token (a file never touched)
    /// counts as modified and is not remembered, as in Go. Needs the lock, read or write.
    pub fn modified(&self) -> Result<bool> {
        let me = thread::current().id();
        let mut st = self.state();
        let holds =
            matches!(st.writer, Some((owner, _)) if owner == me) || st.readers.contains_key(&me);
        let file = match (&st.file, holds) {
            (Some(file), true) => file,
            _ => {
                return Err(Error::NotLocked {
                    path: self.path.clone(),
                    op: "checking last writer",
                    mode: "read or write",
                })
            }
        };
        let current = read_token(file)
            .map_err(|e| Error::io("reading last-writer token from", &self.path, e))?;
        if current.len() != LAST_WRITE_SIZE {
            return Ok(true);
        }
        let modified = st.last_write.as_deref() != Some(current.as_slice());
        st.last_write = Some(current);
        Ok(modified)
    }

    /// The last-writer token as it is in the file now (empty or short for a file never
    /// touched), read through the descriptor that holds the lock: opening and closing
    /// another descriptor of the file would drop this process's fcntl locks on it. Needs
    /// the lock, read or write.
    pub fn token(&self) -> Result<Vec<u8>> {
        let me = thread::current().id();
        let st = self.state();
        let holds =
            matches!(st.writer, Some((owner, _)) if owner == me) || st.readers.contains_key(&me);
        match (&st.file, holds) {
            (Some(file), true) => read_token(file)
                .map_err(|e| Error::io("reading last-writer token from", &self.path, e)),
            _ => Err(Error::NotLocked {
                path: self.path.clone(),
                op: "reading the last writer",
                mode: "read or write",
            }),
        }
    }

    /// True when the lock file's mtime is after `when` (Go: `TouchedSince`); true as well
    /// when the file cannot be examined.
    pub fn touched_since(&self, when: SystemTime) -> bool {
        let meta = {
            let st = self.state();
            match &st.file {
                Some(file) => file.metadata(),
                None => fs::metadata(&self.path),
            }
        };
        match meta {
            Ok(meta) => {
                let mtime = UNIX_EPOCH
                    + Duration::new(meta.mtime().max(0) as u64, meta.mtime_nsec() as u32);
                mtime > when
            }
            Err(_) => true,
        }
    }
}

/// Reads up to [`LAST_WRITE_SIZE`] bytes at offset 0.
fn read_token(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; LAST_WRITE_SIZE];
    let mut filled = 0;
    while filled < LAST_WRITE_SIZE {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Opens a lock file as Go's `openLock` does: read-write ones are created (with their parent
/// directories); read-only ones must exist.
fn open_lock_file(path: &Path, read_only: bool) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).mode(LOCK_FILE_MODE);
    if !read_only {
        opts.write(true).create(true);
    }
    match opts.open(path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !read_only => {
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(LOCK_DIR_MODE)
                    .create(parent)
                    .map_err(|e| Error::io("creating directory for lock file", parent, e))?;
            }
            opts.open(path)
                .map_err(|e| Error::io("opening lock file", path, e))
        }
        Err(e) if read_only && e.kind() == io::ErrorKind::NotFound => Err(Error::io(
            "opening read-only lock file (it must exist)",
            path,
            e,
        )),
        Err(e) => Err(Error::io("opening lock file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn temp_lock() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dir/layers.lock");
        (dir, path)
    }

    #[test]
    fn creates_file_and_parents() {
        let (_dir, path) = temp_lock();
        let lock = LockFile::new(&path, false).expect("new");
        assert!(path.exists());
        assert!(lock.is_read_write());
        assert_eq!(fs::metadata(&path).expect("stat").len(), 0);
    }

    /// The lock other processes see in `/proc/locks` for `path`, held by this process:
    /// `(class, kind, start, end)`, e.g. `("POSIX", "WRITE", "0", "EOF")`.
    fn proc_lock(path: &Path) -> Option<(String, String, String, String)> {
        let ino = fs::metadata(path).expect("stat").ino();
        let pid = std::process::id().to_string();
        let locks = fs::read_to_string("/proc/locks").expect("/proc/locks");
        locks.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
            let ours =
                f.len() == 8 && f[4] == pid && f[5].rsplit(':').next() == Some(&ino.to_string());
            ours.then(|| (f[1].into(), f[3].into(), f[6].into(), f[7].into()))
        })
    }

    #[test]
    fn takes_whole_file_posix_record_locks() {
        // Go's lockfile: fcntl(F_SETLKW) on the whole file, F_WRLCK or F_RDLCK; an OFD lock
        // ("OFDLCK") or a flock ("FLOCK") would not exclude it.
        let (_dir, path) = temp_lock();
        let lock = LockFile::new(&path, false).expect("new");
        assert_eq!(proc_lock(&path), None);
        lock.lock(LockKind::Write).expect("w");
        let want = |kind: &str| Some(("POSIX".into(), kind.into(), "0".into(), "EOF".into()));
        assert_eq!(proc_lock(&path), want("WRITE"));
        lock.unlock().expect("unlock");
        assert_eq!(proc_lock(&path), None);
        lock.lock(LockKind::Read).expect("r");
        assert_eq!(proc_lock(&path), want("READ"));
        lock.unlock().expect("unlock");
    }

    #[test]
    fn read_only_missing_file_is_an_error() {
        let (_dir, path) = temp_lock();
        let err = LockFile::new(&path, true).expect_err("must fail");
        assert!(err.to_string().contains("must exist"), "{err}");
    }

    #[test]
    fn read_only_refuses_write() {
        let (_dir, path) = temp_lock();
        LockFile::new(&path, false).expect("create");
        let lock = LockFile::new(&path, true).expect("ro");
        assert!(matches!(
            lock.lock(LockKind::Write),
            Err(Error::LockReadOnly { .. })
        ));
        lock.lock(LockKind::Read).expect("read");
        assert!(matches!(lock.touch(), Err(Error::LockReadOnly { .. })));
        lock.unlock().expect("unlock");
    }

    #[test]
    fn touch_writes_go_layout_and_modified_sees_it_once() {
        let (_dir, path) = temp_lock();
        let a = LockFile::new(&path, false).expect("a");
        let b = LockFile::new(&path, false).expect("b");
        a.lock(LockKind::Write).expect("lock");
        let t1 = a.touch().expect("touch");
        let t2 = a.touch().expect("touch");
        assert_ne!(t1, t2);
        let c1 = u64::from_le_bytes(t1.0[8..16].try_into().expect("8"));
        let c2 = u64::from_le_bytes(t2.0[8..16].try_into().expect("8"));
        assert!(c2 > c1);
        let pid = u32::from_le_bytes(t2.0[16..20].try_into().expect("4"));
        assert_eq!(pid, std::process::id());
        assert_eq!(fs::read(&path).expect("read"), t2.0.to_vec());
        assert!(!a.modified().expect("modified"));
        a.unlock().expect("unlock");
        b.lock(LockKind::Read).expect("read");
        assert!(b.modified().expect("first"));
        assert!(!b.modified().expect("second"));
        b.unlock().expect("unlock");
    }

    #[test]
    fn touch_and_modified_need_the_lock() {
        let (_dir, path) = temp_lock();
        let lock = LockFile::new(&path, false).expect("new");
        assert!(matches!(lock.touch(), Err(Error::NotLocked { .. })));
        assert!(matches!(lock.modified(), Err(Error::NotLocked { .. })));
        lock.lock(LockKind::Read).expect("read");
        assert!(matches!(lock.touch(), Err(Error::NotLocked { .. })));
        lock.unlock().expect("unlock");
        assert!(matches!(lock.unlock(), Err(Error::NotLocked { .. })));
    }

    #[test]
    fn recursion_and_upgrade() {
        let (_dir, path) = temp_lock();
        let lock = LockFile::new(&path, false).expect("new");
        lock.lock(LockKind::Write).expect("w");
        lock.lock(LockKind::Write).expect("w again");
        lock.lock(LockKind::Read).expect("r inside w");
        assert!(lock.locked());
        lock.unlock().expect("1");
        lock.unlock().expect("2");
        assert!(lock.locked());
        lock.unlock().expect("3");
        assert!(!lock.locked());
        lock.lock(LockKind::Read).expect("r");
        assert!(matches!(
            lock.lock(LockKind::Write),
            Err(Error::LockUpgrade { .. })
        ));
        lock.unlock().expect("r");
    }

    #[test]
    fn threads_exclude_each_other() {
        let (_dir, path) = temp_lock();
        let lock = Arc::new(LockFile::new(&path, false).expect("new"));
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside, max_inside) = (lock.clone(), inside.clone(), max_inside.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        lock.lock(LockKind::Write).expect("lock");
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max_inside.fetch_max(n, Ordering::SeqCst);
                        thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        lock.unlock().expect("unlock");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("join");
        }
        assert_eq!(max_inside.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn readers_share() {
        let (_dir, path) = temp_lock();
        let lock = Arc::new(LockFile::new(&path, false).expect("new"));
        lock.lock(LockKind::Read).expect("r");
        let other = lock.clone();
        thread::spawn(move || {
            other.lock(LockKind::Read).expect("second reader");
            other.unlock().expect("unlock");
        })
        .join()
        .expect("join");
        lock.unlock().expect("unlock");
    }

    #[test]
    fn interrupted_wait_leaves_nothing_held() {
        let (_dir, path) = temp_lock();
        let lock = Arc::new(LockFile::new(&path, false).expect("new"));
        lock.lock(LockKind::Write).expect("w");
        let other = lock.clone();
        let res = thread::spawn(move || {
            let mut calls = 0;
            other.lock_with(LockKind::Write, &mut || {
                calls += 1;
                calls > 2
            })
        })
        .join()
        .expect("join");
        assert!(matches!(res, Err(Error::Interrupted { .. })));
        lock.unlock().expect("unlock");
        assert!(!lock.locked());
    }
}
