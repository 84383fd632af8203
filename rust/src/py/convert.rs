//! Python arguments the binding's functions share, turned into the core's types.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;

use crate::archive::idmap::IdRange;
use crate::archive::IdMap;

/// ID ranges as Python passes them, `(container, host, size)`; `None` is the identity.
pub(super) type Ranges = Option<Vec<(u64, u64, u64)>>;

/// An [`IdMap`] from `(container, host, size)` ranges.
pub(super) fn idmap(ranges: Ranges) -> IdMap {
    IdMap(
        ranges
            .unwrap_or_default()
            .into_iter()
            .map(|(container, host, size)| IdRange {
                container,
                host,
                size,
            })
            .collect(),
    )
}

/// Takes ownership of `fd`, a descriptor the Python wrapper duplicated for us (`os.dup`) and
/// never uses again: it is closed when the returned `File` drops.
pub(super) fn owned_file(fd: RawFd) -> PyResult<File> {
    if fd < 0 {
        return Err(PyValueError::new_err(
            "fd must be a non-negative file descriptor",
        ));
    }
    // SAFETY: the caller hands the descriptor over (see above); nothing else closes it.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(File::from(owned))
}
