//! A small pool of threads that create small regular files while the main thread reads on.
//!
//! Creating a file (`openat(O_CREAT)`, `write`, `futimens`, `close`) is most of the cost of
//! applying a layer of small files, and the kernel can do it for different directories at
//! once. The extractor hands a file to a worker only when nothing else in the archive can
//! depend on it yet: its directory was created by this apply, its path was not written
//! before, and any later member that touches the path, or removes anything, first waits for
//! the pool to drain ([`Pool::barrier`]). Files of one directory go to one worker, in order.

use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use rustix::fs::{self as rfs, Mode, OFlags, Timestamps};

use crate::error::{Error, Result};

/// Jobs queued per worker (each at most [`MAX_JOB_BYTES`] of content).
const QUEUE: usize = 64;
/// Largest file handed to a worker; larger ones are written by the main thread.
pub const MAX_JOB_BYTES: u64 = 64 * 1024;

/// One file to create.
pub struct Job {
    /// The directory to create it in.
    pub dir: Arc<OwnedFd>,
    /// Its name in that directory.
    pub name: Vec<u8>,
    /// The member's name, for messages.
    pub member: Vec<u8>,
    /// Its content.
    pub data: Vec<u8>,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    /// Host owner to set, when mapped.
    pub owner: Option<(u32, u32)>,
    /// atime and mtime.
    pub times: Timestamps,
    /// Extended attributes (already checked against the forbidden list).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How owner failures are treated.
#[derive(Clone, Copy)]
pub struct Policy {
    /// Ignore failed chowns.
    pub ignore_chown_errors: bool,
}

#[derive(Default)]
struct State {
    outstanding: usize,
    error: Option<Error>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// The worker threads.
pub struct Pool {
    senders: Vec<SyncSender<Job>>,
    handles: Vec<JoinHandle<()>>,
    shared: Shared,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// Starts `n` workers; `None` when none could be started (the caller writes itself).
    pub fn start(n: usize, policy: Policy) -> Option<Pool> {
        let shared: Shared = Arc::default();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..n {
            let (tx, rx) = sync_channel::<Job>(QUEUE);
            let state = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("cs-write-{i}"))
                .spawn(move || {
                    for job in rx {
                        // A panic must not leave the barrier waiting for this job forever.
                        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            create(&job, policy)
                        }))
                        .unwrap_or_else(|_| {
                            Err(job_err(&job, "creating file", rustix::io::Errno::IO))
                        });
                        let mut st = lock(&state);
                        st.outstanding -= 1;
                        if let Err(e) = res {
                            st.error.get_or_insert(e);
                        }
                        state.1.notify_all();
                    }
                });
            if let Ok(h) = spawned {
                senders.push(tx);
                handles.push(h);
            }
        }
        if senders.is_empty() {
            return None;
        }
        Some(Pool {
            senders,
            handles,
            shared,
        })
    }

    /// Queues a job; files with the same `key` (their directory) go to the same worker.
    pub fn submit(&self, key: &[u8], job: Job) -> Result<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let worker = (h.finish() % self.senders.len() as u64) as usize;
        lock(&self.shared).outstanding += 1;
        if self.senders[worker].send(job).is_err() {
            lock(&self.shared).outstanding -= 1;
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Waits until every queued job is done; the first failure, if any.
    pub fn barrier(&self) -> Result<()> {
        let mut st = lock(&self.shared);
        while st.outstanding > 0 {
            st = self
                .shared
                .1
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.senders.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn job_err(job: &Job, op: &str, e: rustix::io::Errno) -> Error {
    Error::InvalidArchive {
        member: Some(String::from_utf8_lossy(&job.member).into_owned()),
        offset: 0,
        reason: format!("{op}: {}", std::io::Error::from(e)),
    }
}

/// Creates the file, as the main thread would (see `Extractor::file`).
fn create(job: &Job, policy: Policy) -> Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(
        job.dir.as_fd(),
        job.name.as_slice(),
        flags,
        Mode::from_raw_mode(job.mode & 0o777),
    )
    .map_err(|e| job_err(job, "creating file", e))?;
    let mut written = 0;
    while written < job.data.len() {
        match rustix::io::write(&fd, &job.data[written..]) {
            Ok(n) => written += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(job_err(job, "writing file", e)),
        }
    }
    let st = rfs::fstat(&fd).map_err(|e| job_err(job, "examining file", e))?;
    if let Some((u, g)) = job.owner {
        if st.st_uid != u || st.st_gid != g {
            let res = rfs::fchown(
                &fd,
                Some(rfs::Uid::from_raw(u)),
                Some(rfs::Gid::from_raw(g)),
            );
            match res {
                Ok(()) => {}
                Err(_) if policy.ignore_chown_errors => {}
                Err(e) => return Err(job_err(job, "changing owner", e)),
            }
        }
    }
    if st.st_mode & 0o7777 != job.mode & 0o7777 {
        rfs::fchmod(&fd, Mode::from_raw_mode(job.mode))
            .map_err(|e| job_err(job, "changing mode", e))?;
    }
    for (name, value) in &job.xattrs {
        match rfs::fsetxattr(&fd, name.as_slice(), value, rfs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(job_err(job, "setting xattr", e)),
        }
    }
    rfs::futimens(&fd, &job.times).map_err(|e| job_err(job, "setting times", e))?;
    Ok(())
}
