//! [`crate::Error`] -> Python exceptions of `containers_storage.errors`.

use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

use crate::Error;

pyo3::import_exception!(containers_storage.errors, LockReadOnlyError);
pyo3::import_exception!(containers_storage.errors, LockNotHeldError);
pyo3::import_exception!(containers_storage.errors, LockUpgradeError);
pyo3::import_exception!(containers_storage.errors, StorageError);
pyo3::import_exception!(containers_storage.errors, ArchiveError);
pyo3::import_exception!(containers_storage.errors, UnsafePathError);

/// Converts a core error. `Io` becomes the `OSError` subclass of its errno with the path as
/// `filename`, so `FileNotFoundError` and friends work as Python users expect.
pub(crate) fn to_pyerr(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Io { op, path, source } => match source.raw_os_error() {
            Some(errno) => {
                let desc = strerror(errno);
                PyOSError::new_err((errno, format!("{op}: {desc}"), path.into_os_string()))
            }
            None => PyOSError::new_err(msg),
        },
        Error::LockReadOnly { .. } => LockReadOnlyError::new_err(msg),
        Error::NotLocked { .. } => LockNotHeldError::new_err(msg),
        Error::LockUpgrade { .. } => LockUpgradeError::new_err(msg),
        Error::InvalidArchive { .. } | Error::UnsupportedCompression { .. } => {
            ArchiveError::new_err(msg)
        }
        Error::UnsafePath { .. } => UnsafePathError::new_err(msg),
        _ => StorageError::new_err(msg),
    }
}

/// The C library's text for `errno` (`strerror`, the words Python's own `OSError`s and Go's
/// `syscall.Errno` use): the standard library's message without its ` (os error N)` tail.
fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.strip_suffix(&format!(" (os error {errno})")) {
        Some(desc) => desc.to_owned(),
        None => text,
    }
}
