//! What [`apply`](super::apply()) may do: its options, the bounds on a hostile layer, and the
//! progress callback.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
    /// Checked while the input delivers nothing (a stalled pipe), where progress reports
    /// cannot run.
    pub interrupt: Option<Interrupt>,
}

/// Lets the caller stop an apply whose input has stalled. While the applying thread waits
/// for input, `check` runs on it every 100 ms; when it returns true the apply ends with
/// [`Cancelled`](crate::Error::Cancelled) and `cancelled` is set, which also ends the
/// decoder's wait on a [`PollingReader`](super::PollingReader).
#[derive(Clone)]
pub struct Interrupt {
    /// Whether to stop (a Python binding checks for a pending signal here).
    pub check: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Set once the apply is abandoned.
    pub cancelled: Arc<AtomicBool>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

/// Progress reports: `(input bytes read, total input bytes when known)`. Return false to
/// abandon the apply.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>) -> bool;
