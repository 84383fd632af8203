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
    /// A layer tarball is malformed, unsupported or over a limit.
    #[error("{}{reason}", member_prefix(member.as_deref(), *offset))]
    InvalidArchive {
        /// The member being read, when there is one (its name as in the archive).
        member: Option<Vec<u8>>,
        /// Offset in the uncompressed stream.
        offset: u64,
        /// What is wrong, in Go's words where it has them (`invalid tar header`,
        /// `unexpected EOF`).
        reason: String,
    },
    /// An archive member would land, or act, outside the target directory.
    #[error("{}: {reason}", quote(name))]
    UnsafePath {
        /// The member's name as in the archive.
        name: Vec<u8>,
        /// Why it is refused.
        reason: String,
    },
    /// A tar was to be written in a compression that is only ever read (Go's
    /// `archive.CompressStream` refuses bzip2 and xz in the same words).
    #[error("unsupported compression format {extension}")]
    UnsupportedCompression {
        /// The tar's file name extension in that compression (`tar.bz2`, `tar.xz`).
        extension: &'static str,
    },
    /// The work was abandoned because another part of it failed or the caller asked.
    #[error("operation cancelled")]
    Cancelled,
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

fn member_prefix(member: Option<&[u8]>, offset: u64) -> String {
    match member {
        Some(m) => format!("member {}: ", quote(m)),
        None if offset > 0 => format!("at byte {offset}: "),
        None => String::new(),
    }
}

fn quote(s: &[u8]) -> String {
    crate::strconv::go_quote(s)
}

impl Error {
    /// A copy of this error, for reporting it in two places (`io::Error` is not `Clone`).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::LockReadOnly { path } => Error::LockReadOnly { path: path.clone() },
            Error::NotLocked { path, op, mode } => Error::NotLocked {
                path: path.clone(),
                op,
                mode,
            },
            Error::LockUpgrade { path } => Error::LockUpgrade { path: path.clone() },
            Error::InvalidArchive {
                member,
                offset,
                reason,
            } => Error::InvalidArchive {
                member: member.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::UnsafePath { name, reason } => Error::UnsafePath {
                name: name.clone(),
                reason: reason.clone(),
            },
            Error::UnsupportedCompression { extension } => {
                Error::UnsupportedCompression { extension }
            }
            Error::Cancelled => Error::Cancelled,
            Error::Interrupted { path } => Error::Interrupted { path: path.clone() },
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
