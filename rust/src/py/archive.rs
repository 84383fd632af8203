//! `_native.apply_layer`: the archive pipeline for Python, with the GIL released.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::errors::to_pyerr;
use crate::archive::idmap::IdRange;
use crate::archive::{self, ApplyOptions, IdMap, Limits, WhiteoutFormat};
use crate::Error;

pub(super) fn idmap(ranges: Option<Vec<(u64, u64, u64)>>) -> IdMap {
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

fn parse_limits(d: Option<&Bound<'_, PyDict>>) -> PyResult<Limits> {
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

/// A `Write` into shared memory, so the NDJSON can be handed back after the apply.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The tar-split file (`<id>.tar-split.gz`): buffered, synced when the record is complete.
struct SyncedFile(BufWriter<File>);

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // Called once, by the tar-split writer's finish: make the record durable.
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

/// Applies a layer tarball from `fd` (owned: closed when done) onto `target`.
#[pyfunction]
#[pyo3(signature = (fd, target, *, whiteouts = "vfs", uid_map = None, gid_map = None,
                    ignore_chown_errors = false, limits = None, tar_split_path = None,
                    keep_tar_split = true, progress = None, workers = None))]
#[allow(clippy::too_many_arguments)]
pub fn apply_layer<'py>(
    py: Python<'py>,
    fd: RawFd,
    target: PathBuf,
    whiteouts: &str,
    uid_map: Option<Vec<(u64, u64, u64)>>,
    gid_map: Option<Vec<(u64, u64, u64)>>,
    ignore_chown_errors: bool,
    limits: Option<&Bound<'py, PyDict>>,
    tar_split_path: Option<PathBuf>,
    keep_tar_split: bool,
    progress: Option<Bound<'py, PyAny>>,
    workers: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    if fd < 0 {
        return Err(PyValueError::new_err(
            "fd must be a non-negative file descriptor",
        ));
    }
    // SAFETY: the Python wrapper passes a descriptor it duplicated for us (os.dup) and never
    // uses again; we own it from here and close it when the File drops.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let source = File::from(owned);
    let opts = ApplyOptions {
        whiteouts: match whiteouts {
            "vfs" => WhiteoutFormat::Vfs,
            "overlay" => WhiteoutFormat::Overlay,
            "aufs" => WhiteoutFormat::Aufs,
            other => {
                return Err(PyValueError::new_err(format!(
                    "whiteouts must be \"vfs\", \"overlay\" or \"aufs\", not {other:?}"
                )))
            }
        },
        uid_map: idmap(uid_map),
        gid_map: idmap(gid_map),
        ignore_chown_errors,
        limits: parse_limits(limits)?,
        workers,
    };
    if let Some(p) = progress.as_ref() {
        if !p.is_callable() {
            return Err(PyTypeError::new_err("progress must be callable"));
        }
    }
    let total = source
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let shared = SharedBuf::default();
    let sink = match &tar_split_path {
        Some(path) => {
            let f = File::create(path)
                .map_err(|e| to_pyerr(Error::io("creating tar-split file", path, e)))?;
            Some(archive::TarSplitSink {
                sink: Box::new(SyncedFile(BufWriter::new(f))),
                gzip: true,
            })
        }
        None if keep_tar_split => Some(archive::TarSplitSink {
            sink: Box::new(shared.clone()),
            gzip: false,
        }),
        None => None,
    };
    let progress = progress.map(|p| p.unbind());
    let mut callback_error: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut report = |done: u64, total: Option<u64>| -> bool {
            let Some(cb) = progress.as_ref() else {
                return true;
            };
            Python::attach(|py| match cb.bind(py).call1((done, total)) {
                Ok(_) => true,
                Err(e) => {
                    callback_error = Some(e);
                    false
                }
            })
        };
        archive::apply(
            Box::new(source),
            total,
            &target,
            &opts,
            sink,
            Some(&mut report),
        )
    });
    if let Some(e) = callback_error {
        return Err(e);
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
    if tar_split_path.is_none() && keep_tar_split {
        let data = shared.0.lock().map(|v| v.clone()).unwrap_or_default();
        out.set_item("tar_split", PyBytes::new(py, &data))?;
    } else {
        out.set_item("tar_split", py.None())?;
    }
    Ok(out)
}

/// A sink that compresses (or not) into a file, finished explicitly so errors surface.
enum Sink {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

impl Sink {
    fn new(file: File, compression: &str) -> PyResult<Sink> {
        let out = BufWriter::with_capacity(256 * 1024, file);
        Ok(match compression {
            "none" | "" => Sink::Plain(out),
            "gzip" => Sink::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            "zstd" => Sink::Zstd(
                zstd::Encoder::new(out, 3)
                    .map_err(|e| to_pyerr(Error::io("starting zstd", "", e)))?,
            ),
            // Go: archive.CompressStream refuses the formats it can only read.
            "bzip2" | "xz" => return Err(crate::py::errors::unsupported_compression(compression)),
            other => {
                return Err(PyValueError::new_err(format!(
                    "compression must be \"none\", \"gzip\" or \"zstd\", not {other:?}"
                )))
            }
        })
    }

    fn finish(self) -> std::io::Result<()> {
        let mut out = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
            Sink::Zstd(w) => w.finish()?,
        };
        out.flush()
    }
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
    if fd < 0 {
        return Err(PyValueError::new_err(
            "fd must be a non-negative file descriptor",
        ));
    }
    // SAFETY: the Python wrapper passes a descriptor it duplicated for us and never uses again.
    #[allow(unsafe_code)]
    let out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut sink = Sink::new(out, compression)?;
    let source: Box<dyn std::io::BufRead + Send> = if let Ok(bytes) = tar_split.cast::<PyBytes>() {
        Box::new(std::io::Cursor::new(bytes.as_bytes().to_vec()))
    } else {
        let path: PathBuf = tar_split.extract()?;
        let mut f =
            File::open(&path).map_err(|e| to_pyerr(Error::io("opening tar-split", &path, e)))?;
        let mut magic = [0u8; 2];
        let gz = std::io::Read::read(&mut f, &mut magic).unwrap_or(0) == 2 && magic == [0x1f, 0x8b];
        std::io::Seek::rewind(&mut f)
            .map_err(|e| to_pyerr(Error::io("reading tar-split", &path, e)))?;
        if gz {
            Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
                f,
            )))
        } else {
            Box::new(std::io::BufReader::new(f))
        }
    };
    let stats = py
        .detach(move || {
            let mut source = source;
            let stats = archive::reassemble::reassemble(&mut source, &layer_dir, &mut sink)?;
            sink.finish()
                .map_err(|e| Error::io("writing the reassembled tar", "", e))?;
            Ok::<_, Error>(stats)
        })
        .map_err(to_pyerr)?;
    Ok((stats.bytes, stats.files))
}

/// Reads the layer and parent trees (container IDs) with the GIL released.
fn trees(
    layer_dir: &std::path::Path,
    parent_dir: Option<&std::path::Path>,
    maps: (&IdMap, &IdMap),
    parent_maps: (&IdMap, &IdMap),
) -> crate::Result<(archive::changes::Node, Option<archive::changes::Node>)> {
    let new = archive::changes::read_tree(layer_dir, maps.0, maps.1)?;
    let old = match parent_dir {
        Some(p) => Some(archive::changes::read_tree(
            p,
            parent_maps.0,
            parent_maps.1,
        )?),
        None => None,
    };
    Ok((new, old))
}

/// `(path, kind)` pairs, kinds as Go's `ChangeKind` numbers.
type ChangeList = Vec<(Vec<u8>, u8)>;

/// Go's `Changes`: `[(path, kind)]` of `layer_dir` against `parent_dir` (naive), or of an
/// overlay upper directory against its `lowers` (overlay).
#[pyfunction]
#[pyo3(signature = (layer_dir, parent_dir = None, *, lowers = None, uid_map = None,
                    gid_map = None, parent_uid_map = None, parent_gid_map = None))]
#[allow(clippy::too_many_arguments)]
pub fn layer_changes(
    py: Python<'_>,
    layer_dir: PathBuf,
    parent_dir: Option<PathBuf>,
    lowers: Option<Vec<PathBuf>>,
    uid_map: Option<Vec<(u64, u64, u64)>>,
    gid_map: Option<Vec<(u64, u64, u64)>>,
    parent_uid_map: Option<Vec<(u64, u64, u64)>>,
    parent_gid_map: Option<Vec<(u64, u64, u64)>>,
) -> PyResult<(ChangeList, u64)> {
    let (um, gm) = (idmap(uid_map), idmap(gid_map));
    let (pum, pgm) = (idmap(parent_uid_map), idmap(parent_gid_map));
    let res = py.detach(|| -> crate::Result<(Vec<archive::changes::Change>, u64)> {
        match &lowers {
            Some(lowers) => {
                let refs: Vec<&std::path::Path> = lowers.iter().map(|p| p.as_path()).collect();
                let changes = archive::changes::overlay_changes(&refs, &layer_dir)?;
                let tree = archive::changes::read_tree(&layer_dir, &um, &gm)?;
                Ok((changes, archive::changes::tree_size(&tree)))
            }
            None => {
                let (new, old) =
                    trees(&layer_dir, parent_dir.as_deref(), (&um, &gm), (&pum, &pgm))?;
                let changes = archive::changes::changes_dirs(&new, old.as_ref());
                let size = archive::changes::changes_size(&new, &changes);
                Ok((changes, size))
            }
        }
    });
    let (changes, size) = res.map_err(to_pyerr)?;
    Ok((
        changes
            .into_iter()
            .map(|c| (c.path, c.kind as u8))
            .collect(),
        size,
    ))
}

/// Writes the diff of `layer_dir` (against `parent_dir`, naive; or an overlay upper dir when
/// `overlay`) as a tar to `fd` (owned). Returns the uncompressed content bytes.
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
    uid_map: Option<Vec<(u64, u64, u64)>>,
    gid_map: Option<Vec<(u64, u64, u64)>>,
    parent_uid_map: Option<Vec<(u64, u64, u64)>>,
    parent_gid_map: Option<Vec<(u64, u64, u64)>>,
    lowers: Option<Vec<PathBuf>>,
) -> PyResult<()> {
    if fd < 0 {
        return Err(PyValueError::new_err(
            "fd must be a non-negative file descriptor",
        ));
    }
    // SAFETY: the Python wrapper passes a descriptor it duplicated for us and never uses again.
    #[allow(unsafe_code)]
    let out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let sink = Sink::new(out, compression)?;
    let (um, gm) = (idmap(uid_map), idmap(gid_map));
    let (pum, pgm) = (idmap(parent_uid_map), idmap(parent_gid_map));
    py.detach(move || -> crate::Result<()> {
        let sink = if overlay {
            let tree = archive::changes::read_tree(&layer_dir, &um, &gm)?;
            let lowers = lowers.unwrap_or_default();
            let refs: Vec<&std::path::Path> = lowers.iter().map(|p| p.as_path()).collect();
            archive::diff::export_overlay(sink, &layer_dir, &tree, &refs)?
        } else {
            let (new, old) = trees(&layer_dir, parent_dir.as_deref(), (&um, &gm), (&pum, &pgm))?;
            let changes = archive::changes::changes_dirs(&new, old.as_ref());
            archive::diff::export_changes(sink, &layer_dir, &new, &changes)?
        };
        sink.finish()
            .map_err(|e| Error::io("writing the diff", "", e))
    })
    .map_err(to_pyerr)
}
