//! `_native.LockFile`: the Rust [`LockFile`] for Python.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::to_pyerr;
use crate::lock::{LockFile, LockKind};
use crate::Error;

/// A containers/storage lock file (fcntl record lock + in-process reader/writer lock).
#[pyclass(name = "LockFile", module = "containers_storage._native", frozen)]
pub struct PyLockFile {
    inner: LockFile,
}

impl PyLockFile {
    /// Takes the lock with the GIL released; a signal delivered while waiting (Ctrl-C) ends
    /// the wait with the exception its Python handler raised.
    fn acquire(&self, py: Python<'_>, kind: LockKind) -> PyResult<()> {
        let mut pending: Option<PyErr> = None;
        let res = py.detach(|| {
            self.inner.lock_with(kind, &mut || {
                Python::attach(|py| match py.check_signals() {
                    Ok(()) => false,
                    Err(e) => {
                        pending = Some(e);
                        true
                    }
                })
            })
        });
        match res {
            Ok(()) => Ok(()),
            Err(Error::Interrupted { .. }) if pending.is_some() => {
                Err(pending.take().unwrap_or_else(|| {
                    to_pyerr(Error::Interrupted {
                        path: self.inner.path().to_path_buf(),
                    })
                }))
            }
            Err(e) => Err(to_pyerr(e)),
        }
    }
}

#[pymethods]
impl PyLockFile {
    #[new]
    #[pyo3(signature = (path, read_only = false))]
    fn new(py: Python<'_>, path: PathBuf, read_only: bool) -> PyResult<Self> {
        let inner = py
            .detach(|| LockFile::new(path, read_only))
            .map_err(to_pyerr)?;
        Ok(PyLockFile { inner })
    }

    /// The lock file's path.
    #[getter]
    fn path(&self) -> OsString {
        self.inner.path().as_os_str().to_os_string()
    }

    /// Takes the write lock, waiting with the GIL released.
    fn lock(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire(py, LockKind::Write)
    }

    /// Takes the read lock, waiting with the GIL released.
    fn rlock(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire(py, LockKind::Read)
    }

    /// Releases one take of the lock by this thread.
    fn unlock(&self) -> PyResult<()> {
        self.inner.unlock().map_err(to_pyerr)
    }

    /// Writes a fresh last-writer token; returns it.
    fn touch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let token = py.detach(|| self.inner.touch()).map_err(to_pyerr)?;
        Ok(PyBytes::new(py, &token.0))
    }

    /// True when the token differs from the one this object saw last.
    fn modified(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.inner.modified()).map_err(to_pyerr)
    }

    /// The token now in the file, read through the locked descriptor.
    fn token<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let token = py.detach(|| self.inner.token()).map_err(to_pyerr)?;
        Ok(PyBytes::new(py, &token))
    }

    /// True when the file's mtime is after `when` (seconds since the epoch).
    fn touched_since(&self, py: Python<'_>, when: f64) -> bool {
        let when = if when.is_finite() && when > 0.0 {
            UNIX_EPOCH + Duration::from_secs_f64(when)
        } else {
            UNIX_EPOCH
        };
        py.detach(|| self.inner.touched_since(when))
    }

    /// True while some thread of this process holds the write lock.
    fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// "read", "write" or None: what the calling thread holds.
    fn held(&self) -> Option<&'static str> {
        self.inner.held_by_current_thread().map(|k| match k {
            LockKind::Read => "read",
            LockKind::Write => "write",
        })
    }

    /// False for a read-only lock.
    fn is_read_write(&self) -> bool {
        self.inner.is_read_write()
    }

    fn __repr__(&self) -> String {
        format!(
            "LockFile({:?}, read_only={})",
            self.inner.path(),
            if self.inner.is_read_write() {
                "False"
            } else {
                "True"
            }
        )
    }
}
