//! `_native` tree operations for the drivers: copy, chown by maps, remove, sync, size.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::convert::{idmap, Ranges};
use super::errors::to_pyerr;
use crate::tree::{self, Remap};

fn remap(uid_from: Ranges, gid_from: Ranges, uid_to: Ranges, gid_to: Ranges) -> Remap {
    Remap {
        uid_from: idmap(uid_from),
        gid_from: idmap(gid_from),
        uid_to: idmap(uid_to),
        gid_to: idmap(gid_to),
    }
}

/// Copies the tree `src` into the existing empty directory `dst`, re-owning all but its root
/// from the `*_from` maps to the `*_to` maps (unmapped IDs become the overflow IDs, as Go's
/// `ChownPathByMaps`); returns `(entries, bytes, cloned)`.
#[pyfunction]
#[pyo3(signature = (src, dst, *, uid_from=None, gid_from=None, uid_to=None, gid_to=None))]
pub fn copy_tree(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    uid_from: Ranges,
    gid_from: Ranges,
    uid_to: Ranges,
    gid_to: Ranges,
) -> PyResult<(u64, u64, u64)> {
    let r = remap(uid_from, gid_from, uid_to, gid_to);
    let s = py
        .detach(|| tree::copy_tree(&src, &dst, &r))
        .map_err(to_pyerr)?;
    Ok((s.entries, s.bytes, s.cloned))
}

/// Re-owns everything under `root` (not `root` itself) from one ID mapping to another, as
/// Go's `ChownPathByMaps`; returns the count.
#[pyfunction]
#[pyo3(signature = (root, *, uid_from=None, gid_from=None, uid_to=None, gid_to=None))]
pub fn chown_tree(
    py: Python<'_>,
    root: PathBuf,
    uid_from: Ranges,
    gid_from: Ranges,
    uid_to: Ranges,
    gid_to: Ranges,
) -> PyResult<u64> {
    let r = remap(uid_from, gid_from, uid_to, gid_to);
    py.detach(|| tree::chown_tree(&root, &r)).map_err(to_pyerr)
}

/// `rm -rf path`, never following symlinks.
#[pyfunction]
pub fn remove_tree(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(|| tree::remove_tree(&path)).map_err(to_pyerr)
}

/// `syncfs(2)` on the file system holding `path`.
#[pyfunction]
pub fn sync_fs(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(|| tree::sync_fs(&path)).map_err(to_pyerr)
}

/// Bytes of the regular files under `path`, hard links once (Go `directory.Size`).
#[pyfunction]
pub fn dir_size(py: Python<'_>, path: PathBuf) -> PyResult<u64> {
    py.detach(|| tree::dir_size(&path)).map_err(to_pyerr)
}

/// `statfs(2)` `f_type` of the file system holding `path` (the backing-fs magic).
#[pyfunction]
pub fn fs_magic(py: Python<'_>, path: PathBuf) -> PyResult<u64> {
    py.detach(|| tree::fs_magic(&path)).map_err(to_pyerr)
}

/// Go's memoised `unshare.IsRootless()`: the value that also picks the overlay xattr prefix
/// (`user.overlay.` or `trusted.overlay.`) when layers are applied and diffed.
#[pyfunction]
pub fn is_rootless() -> bool {
    crate::fsutil::rootless()
}
