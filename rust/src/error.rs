//! The one error type of the Rust core.
//!
//! Every variant carries the path and the operation that failed, so that a message read in a
//! log names the file to look at. The Python binding maps each variant onto the exception
//! hierarchy of `containers_storage.errors`.

use std::io;
use std::path::PathBuf;

/// Errors raised by the Rust core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What we were doing ("opening lock file", "locking", ...).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A write lock, or a write through the lock, was asked of a read-only lock file
    /// (Go: `ErrLockReadOnly`).
    #[error("lock {}: lock is not a read-write lock", path.display())]
    LockReadOnly {
        /// The lock file.
        path: PathBuf,
    },
    /// An operation needs the lock held (by this thread, in the mode named) and it is not.
    #[error("lock {}: {op} without holding the {mode} lock", path.display())]
    NotLocked {
        /// The lock file.
        path: PathBuf,
        /// The operation attempted.
        op: &'static str,
        /// "read" or "write".
        mode: &'static str,
    },
    /// A thread holding a read lock asked for the write lock: waiting would deadlock.
    #[error(
        "lock {}: cannot take the write lock while this thread holds the read lock",
        path.display()
    )]
    LockUpgrade {
        /// The lock file.
        path: PathBuf,
    },
    /// Waiting was interrupted by the caller's check (a signal delivered to Python, say).
    #[error("interrupted while waiting for lock {}", path.display())]
    Interrupted {
        /// The lock file.
        path: PathBuf,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
