//! `_native` layer archives: apply, reassemble, changes and diff, with the GIL released.

use std::fs::File;
use std::io::{BufRead, Cursor, Read};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::convert::{idmap, owned_file, Ranges};
use super::errors::to_pyerr;
use crate::archive::changes::{self, Base};
use crate::archive::{
    self, diff, reassemble, verify, ApplyOptions, Compression, Encoder, IdMap, Interrupt, Limits,
    PollingReader, TarSplitSink, WhiteoutFormat,
};
use crate::Error;

fn limits(d: Option<&Bound<'_, PyDict>>) -> PyResult<Limits> {
    let mut l = Limits::default();
    let Some(d) = d else { return Ok(l) };
    for (k, v) in d.iter() {
        let key: String = k.extract()?;
        if v.is_none() {
            continue;
        }
        match key.as_str() {
            "max_header_size" => l.max_header_size = v.extract()?,
            "max_path_length" => l.max_path_length = v.extract()?,
            "max_depth" => l.max_depth = v.extract()?,
            "max_entries" => l.max_entries = v.extract()?,
            "max_total_bytes" => l.max_total_bytes = v.extract()?,
            "max_uncompressed_bytes" => l.max_uncompressed_bytes = v.extract()?,
            "zstd_window_log_max" => l.zstd_window_log_max = v.extract()?,
            other => return Err(PyValueError::new_err(format!("unknown limit {other:?}"))),
        }
    }
    Ok(l)
}

fn whiteouts(name: &str) -> PyResult<WhiteoutFormat> {
    match name {
        "vfs" => Ok(WhiteoutFormat::Vfs),
        "overlay" => Ok(WhiteoutFormat::Overlay),
        "aufs" => Ok(WhiteoutFormat::Aufs),
        other => Err(PyValueError::new_err(format!(
            "whiteouts must be \"vfs\", \"overlay\" or \"aufs\", not {other:?}"
        ))),
    }
}

/// The compression of an output tar, by its recorded name (`""` is `none`); the core refuses
/// the read-only ones (bzip2, xz) with Go's error.
fn compression(name: &str) -> PyResult<Compression> {
    match name {
        "" => Ok(Compression::None),
        name => Compression::from_name(name).ok_or_else(|| {
            PyValueError::new_err(format!(
                "compression must be \"none\", \"gzip\" or \"zstd\", not {name:?}"
            ))
        }),
    }
}

/// An output tar into the owned `fd`, compressed as asked.
fn encoder(fd: RawFd, name: &str) -> PyResult<Encoder<File>> {
    let out = owned_file(fd)?;
    Encoder::new(out, compression(name)?).map_err(to_pyerr)
}

/// Applies a layer tarball from `fd` (owned: closed when done) onto `target`.
#[pyfunction]
#[pyo3(signature = (fd, target, *, whiteouts = "vfs", uid_map = None, gid_map = None,
                    ignore_chown_errors = false, limits = None, tar_split_path = None,
                    keep_tar_split = false, progress = None, workers = None))]
#[allow(clippy::too_many_arguments)]
pub fn apply_layer<'py>(
    py: Python<'py>,
    fd: RawFd,
    target: PathBuf,
    whiteouts: &str,
    uid_map: Ranges,
    gid_map: Ranges,
    ignore_chown_errors: bool,
    limits: Option<&Bound<'py, PyDict>>,
    tar_split_path: Option<PathBuf>,
    keep_tar_split: bool,
    progress: Option<Bound<'py, PyAny>>,
    workers: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let source = owned_file(fd)?;
    // A pending signal (Ctrl-C) is seen even while the input stalls: the wait for input
    // checks for one every 100 ms, keeping the exception it raises for the caller.
    let signalled: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let slot = signalled.clone();
    let interrupt = Interrupt {
        check: Arc::new(move || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    true
                }
            })
        }),
        cancelled: Arc::default(),
    };
    let opts = ApplyOptions {
        whiteouts: self::whiteouts(whiteouts)?,
        uid_map: idmap(uid_map),
        gid_map: idmap(gid_map),
        ignore_chown_errors,
        limits: self::limits(limits)?,
        workers,
        interrupt: Some(interrupt.clone()),
    };
    if let Some(p) = progress.as_ref() {
        if !p.is_callable() {
            return Err(PyTypeError::new_err("progress must be callable"));
        }
    }
    let total = archive::input_size(&source);
    let source: Box<dyn Read + Send> = match total {
        Some(_) => Box::new(source),
        // A pipe or socket: the decoder's wait ends when the apply is abandoned.
        None => Box::new(PollingReader::new(source, interrupt.cancelled.clone())),
    };
    let (sink, kept) = match &tar_split_path {
        Some(path) => (Some(TarSplitSink::gzip_file(path).map_err(to_pyerr)?), None),
        None if keep_tar_split => {
            let (sink, buffer) = TarSplitSink::memory();
            (Some(sink), Some(buffer))
        }
        None => (None, None),
    };
    let progress = progress.map(|p| p.unbind());
    let mut callback_error: Option<PyErr> = None;
    let result = py.detach(|| {
        // Called about ten times a second: a pending signal (Ctrl-C: KeyboardInterrupt)
        // or an exception from the callback stops the apply there.
        let mut report = |done: u64, total: Option<u64>| -> bool {
            Python::attach(|py| {
                let res = py.check_signals().and_then(|()| match progress.as_ref() {
                    Some(cb) => cb.bind(py).call1((done, total)).map(drop),
                    None => Ok(()),
                });
                match res {
                    Ok(()) => true,
                    Err(e) => {
                        callback_error = Some(e);
                        false
                    }
                }
            })
        };
        archive::apply(source, total, &target, &opts, sink, Some(&mut report))
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    if let Some(e) = signalled.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if result.is_err() {
        // A signal may have cut a system call short (EINTR): it is the cause to report.
        py.check_signals()?;
    }
    let res = result.map_err(to_pyerr)?;
    let out = PyDict::new(py);
    out.set_item("compression", res.compression.name())?;
    out.set_item(
        "compressed_digest",
        format!("sha256:{}", hex::encode(res.compressed_digest)),
    )?;
    out.set_item("compressed_size", res.compressed_size)?;
    out.set_item(
        "uncompressed_digest",
        format!("sha256:{}", hex::encode(res.uncompressed_digest)),
    )?;
    out.set_item("uncompressed_size", res.uncompressed_size)?;
    out.set_item("uid_set", res.uid_set)?;
    out.set_item("gid_set", res.gid_set)?;
    out.set_item("entries", res.entries)?;
    out.set_item("size", res.size)?;
    match kept {
        Some(buffer) => out.set_item("tar_split", PyBytes::new(py, &buffer.take()))?,
        None => out.set_item("tar_split", py.None())?,
    }
    Ok(out)
}

/// Rebuilds a layer's original tar from its tar-split and its files, writing it to `fd`
/// (owned: closed when done). `tar_split` is the record: a path (gzip'd or not) or bytes.
#[pyfunction]
#[pyo3(signature = (tar_split, layer_dir, fd, *, compression = "none"))]
pub fn reassemble_layer(
    py: Python<'_>,
    tar_split: &Bound<'_, PyAny>,
    layer_dir: PathBuf,
    fd: RawFd,
    compression: &str,
) -> PyResult<(u64, u64)> {
    let mut out = encoder(fd, compression)?;
    let source: Box<dyn BufRead + Send> = if let Ok(bytes) = tar_split.cast::<PyBytes>() {
        Box::new(Cursor::new(bytes.as_bytes().to_vec()))
    } else {
        let path: PathBuf = tar_split.extract()?;
        reassemble::open_record(&path).map_err(to_pyerr)?
    };
    let stats = py
        .detach(move || {
            let mut source = source;
            let stats = reassemble::reassemble(&mut source, &layer_dir, &mut out)?;
            out.finish()
                .map_err(|e| Error::io("writing the reassembled tar", "", e))?;
            Ok::<_, Error>(stats)
        })
        .map_err(to_pyerr)?;
    Ok((stats.bytes, stats.files))
}

/// What the layer is compared with: the overlay lower directories when there are some,
/// else the parent directory (if any) with its ID maps.
fn base<'a>(
    lowers: Option<&'a [&'a Path]>,
    parent_dir: Option<&'a Path>,
    parent_maps: &'a (IdMap, IdMap),
) -> Base<'a> {
    match lowers {
        Some(lowers) => Base::Overlay(lowers),
        None => Base::Parent {
            dir: parent_dir,
            uid_map: &parent_maps.0,
            gid_map: &parent_maps.1,
        },
    }
}

/// `(path, kind)` pairs, kinds as Go's `ChangeKind` numbers.
type ChangeList = Vec<(Vec<u8>, u8)>;

/// Go's `Changes`: `[(path, kind)]` of `layer_dir` against `parent_dir` (naive), or of an
/// overlay upper directory against its `lowers` (overlay); and Go's `DiffSize`.
#[pyfunction]
#[pyo3(signature = (layer_dir, parent_dir = None, *, lowers = None, uid_map = None,
                    gid_map = None, parent_uid_map = None, parent_gid_map = None))]
#[allow(clippy::too_many_arguments)]
pub fn layer_changes(
    py: Python<'_>,
    layer_dir: PathBuf,
    parent_dir: Option<PathBuf>,
    lowers: Option<Vec<PathBuf>>,
    uid_map: Ranges,
    gid_map: Ranges,
    parent_uid_map: Ranges,
    parent_gid_map: Ranges,
) -> PyResult<(ChangeList, u64)> {
    let (um, gm) = (idmap(uid_map), idmap(gid_map));
    let parent_maps = (idmap(parent_uid_map), idmap(parent_gid_map));
    let lowers: Option<Vec<&Path>> = lowers
        .as_ref()
        .map(|l| l.iter().map(PathBuf::as_path).collect());
    let base = base(lowers.as_deref(), parent_dir.as_deref(), &parent_maps);
    let (changes, size) = py
        .detach(|| changes::layer_changes(&layer_dir, &um, &gm, base))
        .map_err(to_pyerr)?;
    Ok((
        changes
            .into_iter()
            .map(|c| (c.path, c.kind as u8))
            .collect(),
        size,
    ))
}

/// Writes the diff of `layer_dir` (against `parent_dir`, naive; or an overlay upper dir when
/// `overlay`) as a tar to `fd` (owned).
#[pyfunction]
#[pyo3(signature = (layer_dir, fd, parent_dir = None, *, overlay = false, compression = "none",
                    uid_map = None, gid_map = None, parent_uid_map = None, parent_gid_map = None,
                    lowers = None))]
#[allow(clippy::too_many_arguments)]
pub fn layer_diff(
    py: Python<'_>,
    layer_dir: PathBuf,
    fd: RawFd,
    parent_dir: Option<PathBuf>,
    overlay: bool,
    compression: &str,
    uid_map: Ranges,
    gid_map: Ranges,
    parent_uid_map: Ranges,
    parent_gid_map: Ranges,
    lowers: Option<Vec<PathBuf>>,
) -> PyResult<()> {
    let out = encoder(fd, compression)?;
    let (um, gm) = (idmap(uid_map), idmap(gid_map));
    let parent_maps = (idmap(parent_uid_map), idmap(parent_gid_map));
    let lowers: Vec<&Path> = lowers.iter().flatten().map(PathBuf::as_path).collect();
    let base = base(
        overlay.then_some(lowers.as_slice()),
        parent_dir.as_deref(),
        &parent_maps,
    );
    py.detach(|| {
        let out = diff::layer_diff(out, &layer_dir, &um, &gm, base)?;
        out.finish()
            .map_err(|e| Error::io("writing the diff", "", e))
    })
    .map(drop)
    .map_err(to_pyerr)
}

/// One block of a parallel gzip stream (see `archive::pgzip`), compressed with the GIL
/// released: raw deflate of `data` primed with `dictionary`, ended with a sync flush.
#[pyfunction]
#[pyo3(signature = (data, dictionary, level = 6))]
pub fn deflate_block<'py>(
    py: Python<'py>,
    data: &[u8],
    dictionary: &[u8],
    level: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    let out = py
        .detach(|| crate::archive::pgzip::deflate_block(data, dictionary, level))
        .map_err(to_pyerr)?;
    Ok(PyBytes::new(py, &out))
}

/// Compares a layer's directory with its tar-split records (`chain`: the layer's own for
/// overlay, base first up to the layer for vfs); returns `(kind, path, detail)` for each
/// missing, extra or modified path. `quick` skips reading file content.
#[pyfunction]
#[pyo3(signature = (chain, layer_dir, *, overlay, quick = false))]
pub fn verify_layer(
    py: Python<'_>,
    chain: Vec<PathBuf>,
    layer_dir: PathBuf,
    overlay: bool,
    quick: bool,
) -> PyResult<Vec<(&'static str, String, String)>> {
    let opts = verify::VerifyOptions { overlay, quick };
    let problems = py
        .detach(move || verify::verify(&chain, &layer_dir, opts))
        .map_err(to_pyerr)?;
    Ok(problems
        .into_iter()
        .map(|p| (p.kind.as_str(), p.path, p.detail))
        .collect())
}
