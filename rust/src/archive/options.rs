//! What [`apply`](super::apply()) may do: its options, the bounds on a hostile layer, and the
//! progress callback.

use super::idmap::IdMap;
use super::whiteout::WhiteoutFormat;

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

/// Options of [`apply`](super::apply()).
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

/// Progress reports: `(input bytes read, total input bytes when known)`. Return false to
/// abandon the apply.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>) -> bool;
