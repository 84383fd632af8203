//! The PyO3 binding: `containers_storage._native`.
//!
//! Thin wrappers only: copy arguments out of Python objects, release the GIL for anything
//! that touches the disk or may block, and map [`crate::Error`] onto the exception hierarchy
//! of `containers_storage.errors`. Policy stays in the Python package, logic in the core
//! modules: nothing here that `cargo test` could not reach but a conversion.

use pyo3::prelude::*;

mod archive;
mod convert;
mod errors;
mod lock;
mod overlay;
mod tree;

/// The native core of containers_storage.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("LAST_WRITE_SIZE", crate::lock::LAST_WRITE_SIZE)?;
    m.add_class::<lock::PyLockFile>()?;
    m.add_function(wrap_pyfunction!(archive::apply_layer, m)?)?;
    m.add_function(wrap_pyfunction!(archive::reassemble_layer, m)?)?;
    m.add_function(wrap_pyfunction!(archive::layer_changes, m)?)?;
    m.add_function(wrap_pyfunction!(archive::layer_diff, m)?)?;
    m.add_function(wrap_pyfunction!(archive::deflate_block, m)?)?;
    m.add_function(wrap_pyfunction!(archive::verify_layer, m)?)?;
    m.add_function(wrap_pyfunction!(overlay::overlay_mount, m)?)?;
    m.add_function(wrap_pyfunction!(overlay::unmount, m)?)?;
    m.add_function(wrap_pyfunction!(overlay::make_private, m)?)?;
    m.add_function(wrap_pyfunction!(overlay::bind_mount, m)?)?;
    m.add_function(wrap_pyfunction!(overlay::idmapped_mount, m)?)?;
    m.add_function(wrap_pyfunction!(tree::copy_tree, m)?)?;
    m.add_function(wrap_pyfunction!(tree::chown_tree, m)?)?;
    m.add_function(wrap_pyfunction!(tree::remove_tree, m)?)?;
    m.add_function(wrap_pyfunction!(tree::sync_fs, m)?)?;
    m.add_function(wrap_pyfunction!(tree::dir_size, m)?)?;
    m.add_function(wrap_pyfunction!(tree::fs_magic, m)?)?;
    m.add_function(wrap_pyfunction!(tree::is_rootless, m)?)?;
    Ok(())
}
