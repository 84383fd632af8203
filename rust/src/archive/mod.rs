//! Layer archives: applying a layer tarball onto a directory (and, later, diffs).
//!
//! [`apply`] is the one-pass pipeline of DESIGN §2: a decoding thread detects the
//! compression, hashes the input and the tar and decompresses; the calling thread parses the
//! tar, records tar-split and writes entries through directory fds confined to the target.

mod apply;
pub mod changes;
pub mod compress;
pub mod diff;
pub mod idmap;
pub mod reassemble;
pub mod tar;
pub mod tarsplit;
pub mod whiteout;
mod workers;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use compress::Compression;
pub use idmap::IdMap;

use crate::error::{Error, Result};

/// How whiteouts in the layer are written to the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// The target holds a copy of the parent layer: whiteouts delete (vfs driver).
    #[default]
    Vfs,
    /// overlayfs: `.wh.NAME` becomes a 0:0 character device, `.wh..wh..opq` the
    /// `trusted.overlay.opaque=y` xattr.
    Overlay,
    /// Keep `.wh.` entries as the files they are.
    Aufs,
}

/// Bounds on what a layer may make us do. The defaults suit any real image.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest PAX extended header, GNU long name or sparse map (bytes).
    pub max_header_size: u64,
    /// Longest member name (bytes).
    pub max_path_length: usize,
    /// Most path components in a member name.
    pub max_depth: usize,
    /// Most members.
    pub max_entries: u64,
    /// Most content bytes written (the sum of the members' sizes).
    pub max_total_bytes: u64,
    /// Largest uncompressed stream.
    pub max_uncompressed_bytes: u64,
    /// Largest zstd window, as a power of two.
    pub zstd_window_log_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_size: 1 << 20,
            max_path_length: 4096,
            max_depth: 512,
            max_entries: 10_000_000,
            max_total_bytes: 1 << 40,
            max_uncompressed_bytes: 2 << 40,
            zstd_window_log_max: 27,
        }
    }
}

/// Options of [`apply`].
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// How whiteouts are written.
    pub whiteouts: WhiteoutFormat,
    /// Container-to-host UID map (empty: identity).
    pub uid_map: IdMap,
    /// Container-to-host GID map (empty: identity).
    pub gid_map: IdMap,
    /// Leave owners as they fall when chown fails or an ID has no mapping.
    pub ignore_chown_errors: bool,
    /// Bounds.
    pub limits: Limits,
    /// Threads creating small files beside the reader: `None` picks one per core (up to
    /// four), `Some(0)` writes everything from the calling thread.
    pub workers: Option<usize>,
}

/// What [`apply`] measured, all from one pass over the input.
#[derive(Clone, Debug)]
pub struct ApplyResult {
    /// The compression found.
    pub compression: Compression,
    /// sha256 of the input as given.
    pub compressed_digest: [u8; 32],
    /// Size of the input as given.
    pub compressed_size: u64,
    /// sha256 of the tar (the DiffID).
    pub uncompressed_digest: [u8; 32],
    /// Size of the tar.
    pub uncompressed_size: u64,
    /// Sorted, unique owners in the archive before mapping (whiteouts excluded).
    pub uid_set: Vec<u64>,
    /// Sorted, unique groups in the archive before mapping (whiteouts excluded).
    pub gid_set: Vec<u64>,
    /// Number of members.
    pub entries: u64,
    /// Sum of the regular files' sizes (what Go's ApplyDiff returns as the layer size).
    pub size: u64,
}

/// Where the tar-split record goes, and whether to gzip it (the store's `.tar-split.gz`).
pub struct TarSplitSink {
    /// The writer.
    pub sink: Box<dyn Write + Send>,
    /// Compress as gzip.
    pub gzip: bool,
}

/// Progress reports: `(input bytes read, total input bytes when known)`. Return false to
/// abandon the apply.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>) -> bool;

/// Applies the layer tarball read from `source` onto `target` (an existing directory).
///
/// `total` is the input's size when known (for progress). `tar_split` receives the tar-split
/// NDJSON lines. On error, `target` may hold part of the layer, but nothing outside it was
/// touched; callers remove the layer.
pub fn apply(
    source: Box<dyn Read + Send>,
    total: Option<u64>,
    target: &Path,
    opts: &ApplyOptions,
    tar_split: Option<TarSplitSink>,
    progress: Option<Progress<'_>>,
) -> Result<ApplyResult> {
    let counter = Arc::new(AtomicU64::new(0));
    let decode_opts = compress::DecodeOptions {
        zstd_window_log_max: opts.limits.zstd_window_log_max,
        max_uncompressed: opts.limits.max_uncompressed_bytes,
    };
    let (reader, decoder) = compress::spawn_decoder(source, decode_opts, counter.clone())?;
    let applied = apply::extract(reader, target, opts, tar_split, progress, total, &counter);
    // The extractor dropped its reader: the decoder thread ends, by EOF or a failed send.
    let stats = decoder.join().map_err(|_| Error::InvalidArchive {
        member: None,
        offset: 0,
        reason: "decoder thread panicked".into(),
    });
    let (summary, split, tar_digest) = match applied {
        Ok(ok) => ok,
        Err(Error::Cancelled) => return Err(stats?.err().unwrap_or(Error::Cancelled)),
        Err(e) => {
            // A decoding error explains an extraction failure better ("gzip stream: invalid
            // checksum" rather than "unexpected EOF").
            return Err(match stats {
                Ok(Err(d)) if !matches!(d, Error::Cancelled) => d,
                _ => e,
            });
        }
    };
    let stats = stats??;
    if let Some(split) = split {
        split
            .finish()
            .map_err(|e| Error::io("writing tar-split", "", e))?;
    }
    Ok(ApplyResult {
        compression: stats.compression,
        compressed_digest: stats.compressed_digest,
        compressed_size: stats.compressed_size,
        uncompressed_digest: tar_digest.unwrap_or(stats.uncompressed_digest),
        uncompressed_size: stats.uncompressed_size,
        uid_set: summary.uids.into_iter().collect(),
        gid_set: summary.gids.into_iter().collect(),
        entries: summary.entries,
        size: summary.size,
    })
}
