//! `_native` overlay mounts: mount, unmount, private home, bind.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::errors::to_pyerr;
use crate::overlay::{self, OverlayMount};

/// Mounts an overlay on `target`; returns True when the new mount API was needed.
#[pyfunction]
#[pyo3(signature = (target, lowers, *, upper=None, work=None, options=Vec::new()))]
pub fn overlay_mount(
    py: Python<'_>,
    target: PathBuf,
    lowers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    options: Vec<String>,
) -> PyResult<bool> {
    let m = OverlayMount {
        lowers,
        upper,
        work,
        options,
    };
    py.detach(|| overlay::mount(&target, &m)).map_err(to_pyerr)
}

/// Detaches the mount on `target` (once, `MNT_DETACH`); not mounted is not an error.
#[pyfunction]
pub fn unmount(py: Python<'_>, target: PathBuf) -> PyResult<()> {
    py.detach(|| overlay::unmount(&target)).map_err(to_pyerr)
}

/// Makes `path` a private mount (bind-mounting it on itself unless already a mount point).
#[pyfunction]
pub fn make_private(py: Python<'_>, path: PathBuf, is_mountpoint: bool) -> PyResult<()> {
    py.detach(|| overlay::make_private(&path, is_mountpoint))
        .map_err(to_pyerr)
}

/// Bind-mounts `source` on `target`, optionally read-only.
#[pyfunction]
#[pyo3(signature = (source, target, read_only=false))]
pub fn bind_mount(
    py: Python<'_>,
    source: PathBuf,
    target: PathBuf,
    read_only: bool,
) -> PyResult<()> {
    py.detach(|| overlay::bind(&source, &target, read_only))
        .map_err(to_pyerr)
}

/// An ID-mapped clone of the mount at `source` on `target`, mapped by the user namespace
/// open at `userns_fd`.
#[pyfunction]
pub fn idmapped_mount(
    py: Python<'_>,
    source: PathBuf,
    target: PathBuf,
    userns_fd: i32,
) -> PyResult<()> {
    py.detach(|| overlay::idmapped_mount(&source, &target, userns_fd))
        .map_err(to_pyerr)
}
