//! Rust core of `containers-storage` for Python.
//!
//! This crate owns the syscall-heavy loops of the project: lock files shared with the Go
//! containers/storage tools (podman, buildah, skopeo), and, as they land, layer archives
//! (apply, diff, tar-split), tree copies and overlay mounts. It holds no JSON, naming or
//! policy: those live in the Python package `containers_storage`.
//!
//! The crate builds and tests without Python (`cargo test`); the PyO3 binding that becomes
//! `containers_storage._native` sits behind the `python` feature.

pub mod archive;
pub mod error;
pub mod fsutil;
pub mod lock;
pub mod overlay;
pub mod tree;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
pub use lock::{LastWrite, LockFile, LockKind};

/// The version of this crate, reported by the Python package and the CLI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
