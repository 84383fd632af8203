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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustix::fs::{self as rfs, Mode, OFlags, Timestamps};

use crate::error::{Error, Result};

/// Batches queued per worker.
const QUEUE: usize = 4;
/// A worker's batch is sent once it holds this many files...
const BATCH_FILES: usize = 32;
/// ...or this many bytes of content.
const BATCH_BYTES: usize = 256 * 1024;
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

/// What the workers and the main thread share. Counting is lock-free: on a layer of
/// 100,000 small files a mutex and condition variable touched per file cost four futex
/// calls a file (436,000 in all), more than the files' own system calls.
#[derive(Default)]
struct Shared {
    /// Files handed over and not finished.
    outstanding: AtomicUsize,
    /// A barrier is waiting for `outstanding` to reach 0.
    waiting: AtomicBool,
    /// The first failure.
    error: Mutex<Option<Error>>,
    done: Condvar,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Option<Error>> {
    shared.error.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The worker threads.
pub struct Pool {
    senders: Vec<SyncSender<Vec<Job>>>,
    handles: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Files gathered for each worker, and their bytes.
    batches: Vec<(Vec<Job>, usize)>,
}

impl Pool {
    /// Starts `n` workers; `None` when none could be started (the caller writes itself).
    pub fn start(n: usize, policy: Policy) -> Option<Pool> {
        let shared: Arc<Shared> = Arc::default();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..n {
            let (tx, rx) = sync_channel::<Vec<Job>>(QUEUE);
            let state = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("cs-write-{i}"))
                .spawn(move || {
                    for batch in rx {
                        let count = batch.len();
                        for job in batch {
                            // A panic must not leave the barrier waiting for this job forever.
                            let res =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    create(&job, policy)
                                }))
                                .unwrap_or_else(|_| {
                                    Err(job_err(&job, "creating file", rustix::io::Errno::IO))
                                });
                            if let Err(e) = res {
                                lock(&state).get_or_insert(e);
                            }
                        }
                        if state.outstanding.fetch_sub(count, Ordering::SeqCst) == count
                            && state.waiting.load(Ordering::SeqCst)
                        {
                            let _guard = lock(&state);
                            state.done.notify_all();
                        }
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
        let batches = senders.iter().map(|_| (Vec::new(), 0)).collect();
        Some(Pool {
            senders,
            handles,
            shared,
            batches,
        })
    }

    /// Queues a job; files with the same `key` (their directory) go to the same worker, in
    /// order. Jobs travel in batches: [`Pool::barrier`] sends what is gathered.
    pub fn submit(&mut self, key: &[u8], job: Job) -> Result<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let worker = (h.finish() % self.senders.len() as u64) as usize;
        let (jobs, bytes) = &mut self.batches[worker];
        *bytes += job.data.len();
        jobs.push(job);
        if jobs.len() >= BATCH_FILES || *bytes >= BATCH_BYTES {
            self.send(worker)?;
        }
        Ok(())
    }

    fn send(&mut self, worker: usize) -> Result<()> {
        let (jobs, bytes) = &mut self.batches[worker];
        if jobs.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(jobs);
        *bytes = 0;
        let count = batch.len();
        self.shared.outstanding.fetch_add(count, Ordering::SeqCst);
        if self.senders[worker].send(batch).is_err() {
            self.shared.outstanding.fetch_sub(count, Ordering::SeqCst);
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Sends what is gathered and waits until every job is done; the first failure, if any.
    pub fn barrier(&mut self) -> Result<()> {
        for worker in 0..self.batches.len() {
            self.send(worker)?;
        }
        let shared = &self.shared;
        let mut error = lock(shared);
        shared.waiting.store(true, Ordering::SeqCst);
        while shared.outstanding.load(Ordering::SeqCst) > 0 {
            // The timeout only bounds a wake-up lost to a worker that died.
            error = shared
                .done
                .wait_timeout(error, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        shared.waiting.store(false, Ordering::SeqCst);
        match error.take() {
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
        member: Some(job.member.clone()),
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
