//! Applying a layer tarball: [`apply`] runs the pipeline (the decoding thread of
//! [`compress`], then the extractor here, recording tar-split on the way), and
//! the extractor writes the tar members into the layer directory, confined to it.
//!
//! Every file system operation is relative to a directory fd inside the target, obtained with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: the target acts as a chroot, as it
//! does for Go's `chrootarchive`, so a symlink in a parent component (`lib -> /usr/lib`,
//! `up -> ../../..`) resolves inside the layer and never on the host. The final component is
//! never followed: existing entries are unlinked before creating (RUSTSEC-2018-0002), files
//! are created `O_EXCL | O_NOFOLLOW`, metadata is set on the open fd or with
//! `AT_SYMLINK_NOFOLLOW` (CVE-2026-33056). Names whose `..` climbs above the root are refused
//! (Go: `breakoutError`), absolute names are taken relative to the root, hardlink targets and
//! whiteouts follow the same rules.
//!
//! Ownership is set before the mode, so setuid and setgid bits survive (chown clears them);
//! `security.capability` is set after chown for the same reason. Directory modes and times
//! are applied once at the end, deepest first, so that writing into a directory does not
//! change its mtime afterwards and a read-only directory can still be filled.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crate::strconv::go_quote;
use std::time::{Duration, Instant};

use rustix::fs::{
    self as rfs, AtFlags, Dev, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use super::compress::{self, ChunkReader, Compression};
use super::options::{ApplyOptions, Progress};
use super::tar::{Entry, HeaderLimits, Kind, TarReader};
use super::tarsplit::{TarSplitSink, TarSplitWriter};
use super::whiteout::{self, Whiteout, WhiteoutFormat};
use super::workers::{self, Pool};
use crate::error::{Error, Result};
use crate::fsutil::{open_in_root, proc_path};

/// Buffer for file content.
const COPY_BUF: usize = 256 * 1024;
/// Parent directory fds kept open.
const DIR_CACHE: usize = 128;
/// Least time between two progress reports.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

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

/// The size of a layer read from `file`, for progress reports: known for a regular file, not
/// for a pipe or a socket.
pub fn input_size(file: &File) -> Option<u64> {
    file.metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

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
    let (reader, decoder) =
        compress::spawn_decoder(source, decode_opts, counter.clone(), opts.interrupt.clone())?;
    let applied = extract(reader, target, opts, tar_split, progress, total, &counter);
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

/// xattrs a layer may not set: they steer overlayfs or containers/storage itself.
fn forbidden_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"user.containers.override_stat"
}

fn forbidden_xattr_error(entry: &Entry, name: &[u8]) -> Error {
    Error::InvalidArchive {
        member: Some(display(&entry.name)),
        offset: 0,
        reason: format!(
            "refusing to set xattr {}: it controls overlayfs or containers/storage",
            go_quote(name)
        ),
    }
}

/// The member's xattrs that may be set: the overlay and storage control namespaces are an
/// error, `security.selinux` is skipped as Go skips it (labels come from the runtime).
fn settable_xattrs(entry: &Entry) -> Result<Vec<&(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::with_capacity(entry.xattrs.len());
    for x in &entry.xattrs {
        if forbidden_xattr(&x.0) {
            return Err(forbidden_xattr_error(entry, &x.0));
        }
        if x.0 != b"security.selinux" {
            out.push(x);
        }
    }
    Ok(out)
}

/// What the extraction counted.
#[derive(Default)]
struct Summary {
    uids: BTreeSet<u64>,
    gids: BTreeSet<u64>,
    entries: u64,
    size: u64,
}

/// Directory metadata applied at the end.
struct DirMeta {
    path: Vec<u8>,
    mode: u32,
    atime: Timespec,
    mtime: Timespec,
}

/// How a directory the tar does not list (a missing parent) is made: as Go makes it.
#[derive(Clone, Copy)]
enum Implicit {
    /// Go's naive apply (`UnpackLayer`, vfs), which runs under umask 0: mode 0755 whatever
    /// the umask; a setgid parent passes on its setgid bit and group (the kernel's rule).
    UnpackLayer,
    /// Go's `Unpack` (the overlay driver, `CopyWithTar`): 0777 less the umask, setgid
    /// inherited, then owned by the layer's root (container 0:0 on the host) when mappable.
    Unpack {
        owner: Option<(u32, u32)>,
        ignore_chown_errors: bool,
    },
}

impl Implicit {
    fn new(opts: &ApplyOptions) -> Implicit {
        match opts.whiteouts {
            WhiteoutFormat::Vfs => Implicit::UnpackLayer,
            WhiteoutFormat::Overlay | WhiteoutFormat::Aufs => {
                let host =
                    |m: &super::idmap::IdMap| m.to_host(0).and_then(|id| u32::try_from(id).ok());
                Implicit::Unpack {
                    owner: host(&opts.uid_map).zip(host(&opts.gid_map)),
                    ignore_chown_errors: opts.ignore_chown_errors,
                }
            }
        }
    }

    /// The mode `mkdir` is given (the umask applies to it).
    fn mkdir_mode(self) -> Mode {
        match self {
            Implicit::UnpackLayer => Mode::from_raw_mode(0o755),
            Implicit::Unpack { .. } => Mode::from_raw_mode(0o777),
        }
    }

    /// Finishes the directory `fd` just made for member `name`.
    fn finish(self, fd: &OwnedFd, name: &[u8]) -> Result<()> {
        match self {
            Implicit::UnpackLayer => {
                let st = rfs::fstat(fd).map_err(|e| member_io(name, "examining directory", e))?;
                let want = 0o755 | (st.st_mode & SETGID);
                if st.st_mode & 0o7777 != want {
                    rfs::fchmod(fd, Mode::from_raw_mode(want))
                        .map_err(|e| member_io(name, "changing mode", e))?;
                }
            }
            Implicit::Unpack {
                owner: Some((u, g)),
                ignore_chown_errors,
            } => {
                let res = rfs::fchown(fd, Some(rfs::Uid::from_raw(u)), Some(rfs::Gid::from_raw(g)));
                match res {
                    Ok(()) => {}
                    Err(_) if ignore_chown_errors => {}
                    Err(e) => return Err(member_io(name, "changing owner", e)),
                }
            }
            Implicit::Unpack { owner: None, .. } => {}
        }
        Ok(())
    }
}

/// The setgid bit of a mode.
const SETGID: u32 = 0o2000;

/// The target directory and the open parent directories under it.
struct Root {
    fd: Arc<OwnedFd>,
    implicit: Implicit,
    cache: HashMap<Vec<u8>, Arc<OwnedFd>>,
    /// Directories this apply created (the root too when it started empty): nothing but this
    /// layer's members can be in them.
    fresh: HashSet<Vec<u8>>,
}

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// A member's path for messages (`/` for the layer's root).
fn display(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        b"/".to_vec()
    } else {
        path.to_vec()
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Cleans a member name lexically: drops `.`, empty components and leading `/`, resolves
/// `..`. `None` when `..` would climb above the root of a relative name; in an absolute name
/// `/..` is `/`, as Go's `filepath.Clean` has it.
pub(super) fn clean(name: &[u8]) -> Option<Vec<u8>> {
    let rooted = name.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && !rooted {
                    return None;
                }
            }
            c => parts.push(c),
        }
    }
    Some(parts.join(&b'/'))
}

impl Root {
    fn open(target: &Path, implicit: Implicit) -> Result<Root> {
        let fd = rfs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("opening target directory", target, errno_io(e)))?;
        let mut fresh = HashSet::new();
        let empty = rfs::Dir::read_from(&fd)
            .map(|mut d| {
                let mut n = 0;
                while let Some(Ok(e)) = d.read() {
                    let name = e.file_name().to_bytes();
                    if name != b"." && name != b".." {
                        n += 1;
                        break;
                    }
                }
                n == 0
            })
            .unwrap_or(false);
        if empty {
            fresh.insert(Vec::new());
        }
        Ok(Root {
            fd: Arc::new(fd),
            implicit,
            cache: HashMap::new(),
            fresh,
        })
    }

    /// Opens `path` (cleaned, relative) as a directory inside the root, following symlinks
    /// within the root; the final component too when `follow_last`.
    fn open_beneath(&self, path: &[u8], follow_last: bool) -> std::result::Result<OwnedFd, Errno> {
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY;
        if !follow_last {
            flags |= OFlags::NOFOLLOW;
        }
        open_in_root(&self.fd, path, flags)
    }

    fn forget(&mut self) {
        self.cache.clear();
    }

    /// The fd of directory `path`, creating missing directories (0755) when `create`.
    /// `Ok(None)` when it does not exist and `create` is false.
    fn dir(&mut self, path: &[u8], create: bool, name: &[u8]) -> Result<Option<BorrowedFd<'_>>> {
        if self.dir_arc(path, create, name)?.is_none() {
            return Ok(None);
        }
        Ok(if path.is_empty() {
            Some(self.fd.as_fd())
        } else {
            self.cache.get(path).map(|fd| fd.as_fd())
        })
    }

    /// As [`dir`](Self::dir), as a shared fd that outlives the cache entry.
    fn dir_arc(&mut self, path: &[u8], create: bool, name: &[u8]) -> Result<Option<Arc<OwnedFd>>> {
        if path.is_empty() {
            return Ok(Some(self.fd.clone()));
        }
        if !self.cache.contains_key(path) {
            let fd = match self.open_beneath(path, true) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    let (parent, base) = split_parent(path);
                    let parent = parent.to_vec();
                    let base = base.to_vec();
                    let implicit = self.implicit;
                    let pfd = match self.dir(&parent, true, name)? {
                        Some(fd) => fd,
                        None => return Ok(None),
                    };
                    let made = match rfs::mkdirat(pfd, base.as_slice(), implicit.mkdir_mode()) {
                        Ok(()) => {
                            self.fresh.insert(path.to_vec());
                            true
                        }
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(member_io(name, "creating parent directory", e)),
                    };
                    let fd = self
                        .open_beneath(path, true)
                        .map_err(|e| member_io(name, "opening parent directory", e))?;
                    if made {
                        self.implicit.finish(&fd, name)?;
                    }
                    fd
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::NOTDIR) => {
                    return Err(Error::InvalidArchive {
                        member: Some(display(name)),
                        offset: 0,
                        reason: format!("parent {} is not a directory", go_quote(&display(path))),
                    })
                }
                Err(e) => return Err(member_io(name, "opening parent directory", e)),
            };
            if self.cache.len() >= DIR_CACHE {
                self.cache.clear();
            }
            self.cache.insert(path.to_vec(), Arc::new(fd));
        }
        Ok(self.cache.get(path).cloned())
    }
}

fn member_io(name: &[u8], op: &str, e: Errno) -> Error {
    Error::InvalidArchive {
        member: Some(display(name)),
        offset: 0,
        reason: format!("{op}: {}", errno_io(e)),
    }
}

/// Removes `name` in `dir`, recursively when it is a directory. Never follows symlinks.
fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> std::result::Result<(), Errno> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let sub = match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    empty_dir(sub.as_fd(), &mut |_| false)?;
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes every entry of `dir` for which `keep(name)` is false.
fn empty_dir(
    dir: BorrowedFd<'_>,
    keep: &mut dyn FnMut(&[u8]) -> bool,
) -> std::result::Result<(), Errno> {
    let names: Vec<Vec<u8>> = {
        let mut it = rfs::Dir::read_from(dir)?;
        let mut names = Vec::new();
        while let Some(entry) = it.read() {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names
    };
    for n in names {
        if !keep(&n) {
            remove_all(dir, &n)?;
        }
    }
    Ok(())
}

fn timespec(t: (i64, u32)) -> Timespec {
    Timespec {
        tv_sec: t.0,
        tv_nsec: t.1.into(),
    }
}

/// Progress reports, which are also where the caller may cancel (a pending Ctrl-C): called
/// between members and between data chunks, at most once per [`PROGRESS_EVERY`].
struct Ticker<'p, 'c> {
    progress: Option<Progress<'p>>,
    total: Option<u64>,
    counter: &'c AtomicU64,
    last: Instant,
}

impl Ticker<'_, '_> {
    fn tick(&mut self) -> Result<()> {
        let Some(cb) = self.progress.as_mut() else {
            return Ok(());
        };
        if self.last.elapsed() < PROGRESS_EVERY {
            return Ok(());
        }
        self.last = Instant::now();
        if cb(self.counter.load(Ordering::Relaxed), self.total) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

/// The extraction state.
struct Extractor<'o, 'p, 'c> {
    root: Root,
    opts: &'o ApplyOptions,
    ticker: Ticker<'p, 'c>,
    dirs: Vec<DirMeta>,
    opaque: Vec<Vec<u8>>,
    /// Paths this layer wrote, and their ancestors (vfs opaque handling).
    written: HashSet<Vec<u8>>,
    summary: Summary,
    buf: Vec<u8>,
    /// Workers creating small files (started on first use; `None` once refused).
    pool: Option<Pool>,
    pool_tried: bool,
    /// Paths handed to the workers since the last barrier.
    pending: HashSet<Vec<u8>>,
    /// The current member's path was used by an earlier member.
    seen_before: bool,
}

/// Extracts the tar read from `reader` into `target`.
fn extract(
    reader: ChunkReader,
    target: &Path,
    opts: &ApplyOptions,
    tar_split: Option<TarSplitSink>,
    progress: Option<Progress<'_>>,
    total: Option<u64>,
    counter: &AtomicU64,
) -> Result<(Summary, Option<TarSplitWriter>, Option<[u8; 32]>)> {
    let split = tar_split.map(|t| TarSplitWriter::new(t.sink, t.gzip));
    let limits = HeaderLimits {
        max_header_size: opts.limits.max_header_size,
    };
    let mut tar = TarReader::new(reader, limits, split);
    let mut ex = Extractor {
        root: Root::open(target, Implicit::new(opts))?,
        opts,
        ticker: Ticker {
            progress,
            total,
            counter,
            last: Instant::now(),
        },
        dirs: Vec::new(),
        opaque: Vec::new(),
        written: HashSet::new(),
        summary: Summary::default(),
        buf: vec![0u8; COPY_BUF],
        pool: None,
        pool_tried: false,
        pending: HashSet::new(),
        seen_before: false,
    };
    while let Some(entry) = tar.next_entry()? {
        ex.summary.entries += 1;
        if ex.summary.entries > opts.limits.max_entries {
            return Err(Error::InvalidArchive {
                member: Some(display(&entry.name)),
                offset: tar.offset(),
                reason: format!(
                    "the archive has more than {} members",
                    opts.limits.max_entries
                ),
            });
        }
        ex.entry(&mut tar, entry)?;
        ex.ticker.tick()?;
    }
    ex.finish()?;
    let (split, reader) = tar.into_parts();
    Ok((ex.summary, split, reader.digest()))
}

impl Extractor<'_, '_, '_> {
    fn check_limits(&self, entry: &Entry, path: &[u8]) -> Result<()> {
        let limits = &self.opts.limits;
        let reason = if entry.name.len() > limits.max_path_length {
            format!("name longer than {} bytes", limits.max_path_length)
        } else if path.split(|&b| b == b'/').count() > limits.max_depth {
            format!("path deeper than {} components", limits.max_depth)
        } else if self.summary.size.saturating_add(entry.size) > limits.max_total_bytes {
            format!(
                "content exceeds the limit of {} bytes",
                limits.max_total_bytes
            )
        } else {
            return Ok(());
        };
        Err(Error::InvalidArchive {
            member: Some(display(&entry.name)),
            offset: 0,
            reason,
        })
    }

    fn unsafe_path(entry: &Entry, reason: &str) -> Error {
        Error::UnsafePath {
            name: display(&entry.name),
            reason: reason.into(),
        }
    }

    fn mark_written(&mut self, path: &[u8]) {
        let mut p = path;
        while !p.is_empty() && self.written.insert(p.to_vec()) {
            p = split_parent(p).0;
        }
    }

    /// Waits for the workers to finish what they were given; their first error, if any.
    fn settle(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.clear();
        match &mut self.pool {
            Some(pool) => pool.barrier(),
            None => Ok(()),
        }
    }

    /// Whether `path` or one of its ancestors was handed to a worker and may not exist yet.
    fn touches_pending(&self, path: &[u8]) -> bool {
        let mut p = path;
        loop {
            if self.pending.contains(p) {
                return true;
            }
            if p.is_empty() {
                return false;
            }
            p = split_parent(p).0;
        }
    }

    fn entry<R: std::io::BufRead>(&mut self, tar: &mut TarReader<R>, entry: Entry) -> Result<()> {
        let path = clean(&entry.name)
            .ok_or_else(|| Self::unsafe_path(&entry, "path escapes the layer directory"))?;
        if !self.pending.is_empty() {
            // Workers may still be creating files. Wait for them when this member could meet
            // one: a hard link (its target may resolve through symlinks), a member outside
            // the directories this apply made (its parent may be a symlink into one), or a
            // path at or under a pending file.
            let parent = split_parent(&path).0;
            if entry.kind == Kind::Hardlink
                || !self.root.fresh.contains(parent)
                || self.touches_pending(&path)
            {
                self.settle()?;
            }
        }
        self.check_limits(&entry, &path)?;
        let (parent, base) = split_parent(&path);
        let (parent, base) = (parent.to_vec(), base.to_vec());
        if self.opts.whiteouts != WhiteoutFormat::Aufs {
            match whiteout::classify(&base) {
                Whiteout::None => {}
                Whiteout::Meta => return Ok(()),
                Whiteout::Invalid => {
                    return Err(Error::InvalidArchive {
                        member: Some(display(&entry.name)),
                        offset: 0,
                        reason: "invalid whiteout name".into(),
                    })
                }
                Whiteout::Opaque => return self.opaque(&entry, &parent),
                Whiteout::Delete(name) => return self.whiteout(&entry, &parent, name),
            }
        }
        self.summary.uids.insert(entry.uid);
        self.summary.gids.insert(entry.gid);
        if path.is_empty() {
            // The root itself ("./"): only a directory can be it. Go's naive apply (vfs,
            // UnpackLayer) gives the root its metadata; its overlay apply (Unpack) skips a
            // "." entry whose directory exists, leaving the layer's diff/ as created.
            if entry.kind == Kind::Dir && self.opts.whiteouts != WhiteoutFormat::Overlay {
                self.set_owner_xattrs_dir(&entry, &path)?;
                self.defer_dir(&entry, path);
            }
            return Ok(());
        }
        self.seen_before = self.written.contains(&path);
        self.mark_written(&path);
        match entry.kind {
            Kind::File => self.file(tar, &entry, &parent, &base),
            Kind::Dir => self.directory(&entry, &parent, &base, path.clone()),
            Kind::Symlink => self.symlink(&entry, &parent, &base),
            Kind::Hardlink => self.hardlink(&entry, &parent, &base),
            Kind::Char | Kind::Block | Kind::Fifo => self.special(&entry, &parent, &base),
        }
    }

    fn host_ids(&self, entry: &Entry) -> Result<Option<(u32, u32)>> {
        let uid = self.opts.uid_map.to_host(entry.uid);
        let gid = self.opts.gid_map.to_host(entry.gid);
        match (uid, gid) {
            (Some(u), Some(g)) if u < u64::from(u32::MAX) && g < u64::from(u32::MAX) => {
                Ok(Some((u as u32, g as u32)))
            }
            _ if self.opts.ignore_chown_errors => Ok(None),
            _ => Err(Error::InvalidArchive {
                member: Some(display(&entry.name)),
                offset: 0,
                reason: format!(
                    "owner {}:{} cannot be mapped to the host (no range of the ID maps holds it)",
                    entry.uid, entry.gid
                ),
            }),
        }
    }

    fn chown_result(&self, entry: &Entry, res: std::result::Result<(), Errno>) -> Result<()> {
        match res {
            Ok(()) => Ok(()),
            // Go's ignore_chown_errors: owners stay as they fall (rootless without a userns).
            Err(_) if self.opts.ignore_chown_errors => Ok(()),
            Err(e) => Err(member_io(&entry.name, "changing owner", e)),
        }
    }

    fn set_xattrs(&self, entry: &Entry, fd: BorrowedFd<'_>) -> Result<()> {
        for (name, value) in settable_xattrs(entry)? {
            match rfs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) => {}
                // Go ignores EPERM in a user namespace (trusted.*, security.* xattrs).
                Err(Errno::PERM) if crate::fsutil::running_in_userns() => {}
                Err(e) => return Err(member_io(&entry.name, "setting xattr", e)),
            }
        }
        Ok(())
    }

    /// atime and mtime as Go sets them: the atime is never before the mtime.
    fn times(entry: &Entry) -> Timestamps {
        let atime = entry
            .atime
            .filter(|&a| a > entry.mtime)
            .unwrap_or(entry.mtime);
        Timestamps {
            last_access: timespec(atime),
            last_modification: timespec(entry.mtime),
        }
    }

    /// Removes whatever is at `base` in `parent` so that a new entry can be created there.
    fn clear(&mut self, entry: &Entry, parent: &[u8], base: &[u8]) -> Result<()> {
        // Removing may take a directory the workers are filling: let them finish first.
        self.settle()?;
        let pfd =
            self.root
                .dir(parent, true, &entry.name)?
                .ok_or_else(|| Error::InvalidArchive {
                    member: Some(display(&entry.name)),
                    offset: 0,
                    reason: "parent directory vanished".into(),
                })?;
        let res = remove_all(pfd, base);
        // A directory may have gone, and with it cached fds under it.
        self.root.forget();
        res.map_err(|e| member_io(&entry.name, "removing existing entry", e))
    }

    fn parent_fd(&mut self, entry: &Entry, parent: &[u8]) -> Result<BorrowedFd<'_>> {
        self.root
            .dir(parent, true, &entry.name)?
            .ok_or_else(|| Error::InvalidArchive {
                member: Some(display(&entry.name)),
                offset: 0,
                reason: "parent directory vanished".into(),
            })
    }

    fn file<R: std::io::BufRead>(
        &mut self,
        tar: &mut TarReader<R>,
        entry: &Entry,
        parent: &[u8],
        base: &[u8],
    ) -> Result<()> {
        self.summary.size = self.summary.size.saturating_add(entry.size);
        if self.try_dispatch(tar, entry, parent, base)? {
            return Ok(());
        }
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Created with its permission bits (the umask may narrow them); special bits come
        // with the chmod after any chown, which would clear them.
        let mode = Mode::from_raw_mode(entry.mode & 0o777);
        let fd = {
            let pfd = self.parent_fd(entry, parent)?;
            rfs::openat(pfd, base, flags, mode)
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.clear(entry, parent, base)?;
                let pfd = self.parent_fd(entry, parent)?;
                rfs::openat(pfd, base, flags, mode)
                    .map_err(|e| member_io(&entry.name, "creating file", e))?
            }
            Err(e) => return Err(member_io(&entry.name, "creating file", e)),
        };
        let file = File::from(fd);
        self.write_content(tar, entry, &file)?;
        // fstat costs less than an fchown or fchmod (neither dirties the inode when it is
        // skipped): most files are created with the owner and mode they need already.
        let st = rfs::fstat(&file).map_err(|e| member_io(&entry.name, "examining file", e))?;
        if let Some((u, g)) = self.host_ids(entry)? {
            if st.st_uid != u || st.st_gid != g {
                let res = rfs::fchown(
                    &file,
                    Some(rfs::Uid::from_raw(u)),
                    Some(rfs::Gid::from_raw(g)),
                );
                self.chown_result(entry, res)?;
            }
        }
        if st.st_mode & 0o7777 != entry.mode & 0o7777 {
            rfs::fchmod(&file, Mode::from_raw_mode(entry.mode))
                .map_err(|e| member_io(&entry.name, "changing mode", e))?;
        }
        self.set_xattrs(entry, file.as_fd())?;
        rfs::futimens(&file, &Self::times(entry))
            .map_err(|e| member_io(&entry.name, "setting times", e))?;
        Ok(())
    }

    /// Hands a small new file to a worker when nothing can depend on it yet (see the
    /// `workers` module); `false` when the caller must write it.
    fn try_dispatch<R: std::io::BufRead>(
        &mut self,
        tar: &mut TarReader<R>,
        entry: &Entry,
        parent: &[u8],
        base: &[u8],
    ) -> Result<bool> {
        if entry.sparse.is_some()
            || entry.size > workers::MAX_JOB_BYTES
            || !self.root.fresh.contains(parent)
        {
            return Ok(false);
        }
        let path = join(parent, base);
        // An earlier member (or a descendant of it) used this path: it may exist.
        if self.seen_before {
            return Ok(false);
        }
        if !self.pool_tried {
            self.pool_tried = true;
            let auto = thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 4);
            let n = self.opts.workers.unwrap_or(auto);
            self.pool = (n > 0)
                .then(|| {
                    workers::Pool::start(
                        n,
                        workers::Policy {
                            ignore_chown_errors: self.opts.ignore_chown_errors,
                        },
                    )
                })
                .flatten();
        }
        if self.pool.is_none() {
            return Ok(false);
        }
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> =
            settable_xattrs(entry)?.into_iter().cloned().collect();
        let owner = self.host_ids(entry)?;
        let dir = match self.root.dir_arc(parent, true, &entry.name)? {
            Some(d) => d,
            None => return Ok(false),
        };
        let mut data = Vec::with_capacity(entry.size as usize);
        loop {
            let chunk = tar.data_chunk()?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            data.extend_from_slice(chunk);
            tar.consume_data(n);
        }
        let job = workers::Job {
            dir,
            name: base.to_vec(),
            member: entry.name.clone(),
            data,
            mode: entry.mode,
            owner,
            times: Self::times(entry),
            xattrs,
        };
        if let Some(pool) = &mut self.pool {
            pool.submit(parent, job)?;
        }
        self.pending.insert(path);
        Ok(true)
    }

    fn write_content<R: std::io::BufRead>(
        &mut self,
        tar: &mut TarReader<R>,
        entry: &Entry,
        file: &File,
    ) -> Result<()> {
        let werr = |e: std::io::Error| Error::InvalidArchive {
            member: Some(display(&entry.name)),
            offset: 0,
            reason: format!("writing file: {e}"),
        };
        match &entry.sparse {
            None => {
                // Straight from the decoder's chunk to the file: no intermediate copy.
                let mut out = file;
                loop {
                    let chunk = tar.data_chunk()?;
                    if chunk.is_empty() {
                        break;
                    }
                    let n = chunk.len();
                    out.write_all(chunk).map_err(werr)?;
                    tar.consume_data(n);
                    self.ticker.tick()?;
                }
            }
            Some(map) => {
                // Data chunks at their offsets; the holes stay holes.
                for &(offset, len) in map {
                    let mut done = 0u64;
                    while done < len {
                        let want = ((len - done) as usize).min(self.buf.len());
                        let mut got = 0;
                        while got < want {
                            let n = tar.read_data(&mut self.buf[got..want])?;
                            if n == 0 {
                                return Err(Error::InvalidArchive {
                                    member: Some(display(&entry.name)),
                                    offset: tar.offset(),
                                    reason: "unexpected EOF".into(),
                                });
                            }
                            got += n;
                        }
                        file.write_all_at(&self.buf[..want], offset + done)
                            .map_err(werr)?;
                        done += want as u64;
                        self.ticker.tick()?;
                    }
                }
                file.set_len(entry.size).map_err(werr)?;
            }
        }
        Ok(())
    }

    fn set_owner_xattrs_dir(&mut self, entry: &Entry, path: &[u8]) -> Result<()> {
        let fd = self
            .root
            .open_beneath(path, false)
            .map_err(|e| member_io(&entry.name, "opening directory", e))?;
        if let Some((u, g)) = self.host_ids(entry)? {
            let res = rfs::fchown(
                &fd,
                Some(rfs::Uid::from_raw(u)),
                Some(rfs::Gid::from_raw(g)),
            );
            self.chown_result(entry, res)?;
        }
        // Go gives a directory its mode when it makes it, so directories made later under it
        // (a missing parent, by the kernel's rule) inherit its setgid bit and group: that
        // bit now, after the chown; the rest of the mode at the end.
        let st = rfs::fstat(&fd).map_err(|e| member_io(&entry.name, "examining directory", e))?;
        if st.st_mode & SETGID != entry.mode & SETGID {
            let mode = (st.st_mode & 0o7777 & !SETGID) | (entry.mode & SETGID);
            rfs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| member_io(&entry.name, "changing mode", e))?;
        }
        self.set_xattrs(entry, fd.as_fd())
    }

    fn defer_dir(&mut self, entry: &Entry, path: Vec<u8>) {
        let t = Self::times(entry);
        self.dirs.push(DirMeta {
            path,
            mode: entry.mode,
            atime: t.last_access,
            mtime: t.last_modification,
        });
    }

    fn directory(
        &mut self,
        entry: &Entry,
        parent: &[u8],
        base: &[u8],
        path: Vec<u8>,
    ) -> Result<()> {
        let res = {
            let pfd = self.parent_fd(entry, parent)?;
            rfs::mkdirat(pfd, base, Mode::from_raw_mode(0o700))
        };
        match res {
            Ok(()) => {
                self.root.fresh.insert(path.clone());
            }
            Err(Errno::EXIST) => {
                let is_dir = {
                    let pfd = self.parent_fd(entry, parent)?;
                    rfs::statat(pfd, base, AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                        .unwrap_or(false)
                };
                if !is_dir {
                    // A file or a symlink (perhaps pointing outside) is in the way: replace
                    // it, never follow it.
                    self.clear(entry, parent, base)?;
                    let pfd = self.parent_fd(entry, parent)?;
                    rfs::mkdirat(pfd, base, Mode::from_raw_mode(0o700))
                        .map_err(|e| member_io(&entry.name, "creating directory", e))?;
                }
            }
            Err(e) => return Err(member_io(&entry.name, "creating directory", e)),
        }
        self.set_owner_xattrs_dir(entry, &path)?;
        self.defer_dir(entry, path);
        Ok(())
    }

    fn symlink(&mut self, entry: &Entry, parent: &[u8], base: &[u8]) -> Result<()> {
        let res = {
            let pfd = self.parent_fd(entry, parent)?;
            rfs::symlinkat(entry.link.as_slice(), pfd, base)
        };
        match res {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(entry, parent, base)?;
                let pfd = self.parent_fd(entry, parent)?;
                rfs::symlinkat(entry.link.as_slice(), pfd, base)
                    .map_err(|e| member_io(&entry.name, "creating symlink", e))?;
            }
            Err(e) => return Err(member_io(&entry.name, "creating symlink", e)),
        }
        self.finish_nonfile(entry, parent, base, false)
    }

    /// Owner, xattrs and times of a symlink or special file, by name, never following.
    fn finish_nonfile(
        &mut self,
        entry: &Entry,
        parent: &[u8],
        base: &[u8],
        chmod: bool,
    ) -> Result<()> {
        let ids = self.host_ids(entry)?;
        let times = Self::times(entry);
        let pfd = self.parent_fd(entry, parent)?;
        let chown = ids.map(|(u, g)| {
            rfs::chownat(
                pfd,
                base,
                Some(rfs::Uid::from_raw(u)),
                Some(rfs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
        });
        let chmod_res = if chmod {
            // A device or fifo we just created: chmodat does not follow it (not a link).
            rfs::chmodat(pfd, base, Mode::from_raw_mode(entry.mode), AtFlags::empty())
        } else {
            Ok(())
        };
        let utimes = rfs::utimensat(pfd, base, &times, AtFlags::SYMLINK_NOFOLLOW);
        if let Some(res) = chown {
            self.chown_result(entry, res)?;
        }
        chmod_res.map_err(|e| member_io(&entry.name, "changing mode", e))?;
        if !entry.xattrs.is_empty() {
            // xattrs on a link or device: by name in its (confined) parent, not followed.
            let pfd = self.parent_fd(entry, parent)?;
            let path = proc_path(pfd, base);
            for (name, value) in settable_xattrs(entry)? {
                match rfs::lsetxattr(path.as_slice(), name.as_slice(), value, XattrFlags::empty()) {
                    // Symlinks take no user.* xattrs (EPERM); some filesystems none at all.
                    Ok(()) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
                    Err(e) => return Err(member_io(&entry.name, "setting xattr", e)),
                }
            }
        }
        utimes.map_err(|e| member_io(&entry.name, "setting times", e))
    }

    fn hardlink(&mut self, entry: &Entry, parent: &[u8], base: &[u8]) -> Result<()> {
        let target = clean(&entry.link)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Self::unsafe_path(entry, "hardlink target escapes the layer directory")
            })?;
        let (tparent, tbase) = split_parent(&target);
        let tdir = self
            .root
            .open_beneath(tparent, true)
            .map_err(|e| member_io(&entry.name, "resolving hardlink target", e))?;
        let link = |me: &mut Self| -> std::result::Result<(), Errno> {
            let pfd = me
                .root
                .dir(parent, true, &entry.name)
                .ok()
                .flatten()
                .ok_or(Errno::NOENT)?;
            // Flags 0: a target that is a symlink is linked itself, never followed.
            rfs::linkat(&tdir, tbase, pfd, base, AtFlags::empty())
        };
        match link(self) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                // Linking a name to itself: nothing to do.
                let same = {
                    let pfd = self.parent_fd(entry, parent)?;
                    let a = rfs::statat(pfd, base, AtFlags::SYMLINK_NOFOLLOW);
                    let b = rfs::statat(&tdir, tbase, AtFlags::SYMLINK_NOFOLLOW);
                    matches!((a, b), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev)
                };
                if !same {
                    self.clear(entry, parent, base)?;
                    link(self).map_err(|e| member_io(&entry.name, "creating hardlink", e))?;
                }
            }
            Err(e) => return Err(member_io(&entry.name, "creating hardlink", e)),
        }
        // Go applies the link header's owner, mode and times to the shared inode, unless the
        // target is a symlink.
        let is_symlink = rfs::statat(&tdir, tbase, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
            .unwrap_or(true);
        if is_symlink {
            return Ok(());
        }
        self.finish_nonfile(entry, parent, base, true)
    }

    fn special(&mut self, entry: &Entry, parent: &[u8], base: &[u8]) -> Result<()> {
        if matches!(entry.kind, Kind::Char | Kind::Block) && crate::fsutil::running_in_userns() {
            // Go: devices cannot be created in a user namespace; skipped silently.
            return Ok(());
        }
        let (ft, dev) = match entry.kind {
            Kind::Char => (
                FileType::CharacterDevice,
                rfs::makedev(entry.dev.0, entry.dev.1),
            ),
            Kind::Block => (
                FileType::BlockDevice,
                rfs::makedev(entry.dev.0, entry.dev.1),
            ),
            _ => (FileType::Fifo, 0 as Dev),
        };
        let mode = Mode::from_raw_mode(entry.mode & 0o777);
        let res = {
            let pfd = self.parent_fd(entry, parent)?;
            rfs::mknodat(pfd, base, ft, mode, dev)
        };
        match res {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(entry, parent, base)?;
                let pfd = self.parent_fd(entry, parent)?;
                rfs::mknodat(pfd, base, ft, mode, dev)
                    .map_err(|e| member_io(&entry.name, "creating special file", e))?;
            }
            Err(e) => return Err(member_io(&entry.name, "creating special file", e)),
        }
        self.finish_nonfile(entry, parent, base, true)
    }

    fn whiteout(&mut self, entry: &Entry, parent: &[u8], name: &[u8]) -> Result<()> {
        self.settle()?;
        match self.opts.whiteouts {
            WhiteoutFormat::Vfs => {
                // Delete NAME if its parent exists; never create anything for a whiteout.
                let pfd = match self.root.dir(parent, false, &entry.name)? {
                    Some(fd) => fd,
                    None => return Ok(()),
                };
                let res = remove_all(pfd, name);
                self.root.forget();
                res.map_err(|e| member_io(&entry.name, "applying whiteout", e))
            }
            WhiteoutFormat::Overlay => {
                // Go: mknod NAME c 0 0, owned as the whiteout entry says.
                self.clear(entry, parent, name)?;
                let pfd = self.parent_fd(entry, parent)?;
                rfs::mknodat(
                    pfd,
                    name,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(|e| member_io(&entry.name, "creating overlay whiteout", e))?;
                if let Some((u, g)) = self.host_ids(entry)? {
                    let pfd = self.parent_fd(entry, parent)?;
                    let res = rfs::chownat(
                        pfd,
                        name,
                        Some(rfs::Uid::from_raw(u)),
                        Some(rfs::Gid::from_raw(g)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                    self.chown_result(entry, res)?;
                }
                Ok(())
            }
            WhiteoutFormat::Aufs => Ok(()), // not reached: aufs keeps .wh. files as files
        }
    }

    fn opaque(&mut self, entry: &Entry, parent: &[u8]) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutFormat::Vfs => {
                self.mark_written(parent);
                self.opaque.push(parent.to_vec());
                Ok(())
            }
            WhiteoutFormat::Overlay => {
                let pfd = self.parent_fd(entry, parent)?;
                rfs::fsetxattr(
                    pfd,
                    whiteout::overlay_opaque_xattr(),
                    b"y",
                    XattrFlags::empty(),
                )
                .map_err(|e| member_io(&entry.name, "marking directory opaque", e))
            }
            WhiteoutFormat::Aufs => Ok(()),
        }
    }

    /// Removes, under `dir`, everything this layer did not write.
    fn prune_lower(&self, dir: &[u8]) -> std::result::Result<(), Errno> {
        let fd = match self.root.open_beneath(dir, false) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut recurse = Vec::new();
        empty_dir(fd.as_fd(), &mut |name| {
            let full = join(dir, name);
            if self.written.contains(&full) {
                recurse.push(full);
                true
            } else {
                false
            }
        })?;
        for sub in recurse {
            let is_dir = rfs::statat(&fd, split_parent(&sub).1, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                .unwrap_or(false);
            if is_dir {
                self.prune_lower(&sub)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.settle()?;
        self.root.forget();
        let opaque = std::mem::take(&mut self.opaque);
        for dir in &opaque {
            self.prune_lower(dir).map_err(|e| {
                member_io(
                    &join(dir, whiteout::WHITEOUT_OPAQUE_DIR),
                    "applying opaque whiteout",
                    e,
                )
            })?;
        }
        // Directory modes and times last, deepest (latest) first.
        let dirs = std::mem::take(&mut self.dirs);
        let mut done: HashSet<&[u8]> = HashSet::new();
        for d in dirs.iter().rev() {
            if !done.insert(&d.path) {
                continue; // a later member for the same directory already set it
            }
            let fd = match self.root.open_beneath(&d.path, false) {
                Ok(fd) => fd,
                // Removed or replaced by a later member: nothing to set.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(member_io(&d.path, "opening directory", e)),
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(d.mode))
                .map_err(|e| member_io(&d.path, "changing mode", e))?;
            let t = Timestamps {
                last_access: d.atime,
                last_modification: d.mtime,
            };
            rfs::futimens(&fd, &t).map_err(|e| member_io(&d.path, "setting times", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names() {
        assert_eq!(clean(b"./etc/passwd"), Some(b"etc/passwd".to_vec()));
        assert_eq!(clean(b"/etc//x/"), Some(b"etc/x".to_vec()));
        assert_eq!(clean(b"a/../b"), Some(b"b".to_vec()));
        assert_eq!(clean(b"./"), Some(Vec::new()));
        assert_eq!(clean(b"../x"), None);
        assert_eq!(clean(b"a/../../x"), None);
        assert_eq!(clean(b"/../x"), Some(b"x".to_vec()));
    }
}
