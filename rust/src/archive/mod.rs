//! Layer archives: applying a layer tarball onto a directory, reading a layer's changes,
//! writing them as a tar, and rebuilding a layer's exact tar from its tar-split record.
//!
//! [`apply()`] is the one-pass pipeline of DESIGN §2: a decoding thread detects the
//! compression, hashes the input and the tar and decompresses ([`compress`]); the calling
//! thread parses the tar ([`tar`]), records tar-split ([`tarsplit`]) and writes entries through
//! directory fds confined to the target. [`changes`] compares a layer with its parent (or
//! reads an overlay upper directory), [`diff`] writes those changes as a tar and
//! [`reassemble`] gives back the tar a layer was applied from, both through [`encode`] (the
//! output compressions, Go's rules).
//!
//! This file only lists the modules and re-exports their main types.

mod apply;
pub mod changes;
pub mod compress;
pub mod diff;
pub mod encode;
mod field;
mod gotar;
pub mod idmap;
mod options;
mod owners;
pub mod pgzip;
pub mod reassemble;
pub mod tar;
pub mod tarsplit;
pub mod verify;
pub mod whiteout;
mod workers;

pub use apply::{apply, input_size, ApplyResult};
pub use compress::{Compression, PollingReader};
pub use encode::Encoder;
pub use idmap::IdMap;
pub use options::{ApplyOptions, Interrupt, Limits, Progress};
pub use tarsplit::TarSplitSink;
pub use whiteout::WhiteoutFormat;
