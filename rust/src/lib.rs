//! Rust core of `containers-storage` for Python.
//!
//! This crate owns the syscall-heavy work of the project: the lock files shared with the Go
//! containers/storage tools, podman, buildah and skopeo ([`lock`]); layer archives, that is
//! apply, changes, diffs, tar-split and reassembly ([`archive`]); whole-tree copies, chowns
//! and removals for the drivers ([`tree`]); and overlay mounts ([`overlay`]). It holds none of
//! the store's JSON, naming or policy: those live in the Python package `containers_storage`.
//!
//! The crate builds and tests without Python (`cargo test`). The PyO3 binding that becomes
//! `containers_storage._native` sits behind the `python` feature and only converts: Python
//! arguments into the core's types, the core's errors into Python exceptions, with the GIL
//! released around the work.

pub mod archive;
pub mod error;
pub mod fsutil;
pub mod lock;
pub mod overlay;
pub mod strconv;
pub mod tree;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
pub use lock::{LastWrite, LockFile, LockKind};

/// The version of this crate, reported by the Python package and the CLI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
