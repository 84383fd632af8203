//! Whole-tree operations for the drivers: copy a layer (vfs create, ID-mapped copies), change
//! owners through ID maps, remove a layer, measure it, and flush or identify a file system.
//!
//! Everything walks directory file descriptors (`openat` with `O_NOFOLLOW`), never joined
//! path strings, so a symlink planted in a layer cannot redirect the walk. A copy keeps what
//! apply keeps: file types, modes (setuid/setgid/sticky), owners, times with nanoseconds, all
//! xattrs, hard links (within the tree) and sparse-free content, cloned with `FICLONE` when
//! the file system shares extents, else `copy_file_range`, else read/write.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::archive::IdMap;
use crate::error::{Error, Result};
use crate::fsutil::proc_path;

/// How owners change on the way: host IDs of the source are read back to container IDs
/// through `from`, then to host IDs of the destination through `to`. Identity maps on both
/// sides copy owners as they are.
#[derive(Clone, Debug, Default)]
pub struct Remap {
    /// UID map of the source tree.
    pub uid_from: IdMap,
    /// GID map of the source tree.
    pub gid_from: IdMap,
    /// UID map of the destination tree.
    pub uid_to: IdMap,
    /// GID map of the destination tree.
    pub gid_to: IdMap,
}

impl Remap {
    fn is_identity(&self) -> bool {
        self.uid_from == self.uid_to && self.gid_from == self.gid_to
    }

    /// The owner an entry owned by `uid:gid` gets, as Go's `platformChowner.LChown` works
    /// it out: host IDs back to container IDs through the source maps (an unmappable pair
    /// is an error unless it is `0:0`, kept as it is), then to host IDs through the
    /// destination maps, where a container ID the maps do not hold becomes the overflow ID
    /// (Go's `IDMappings.ToHostOverflow`).
    fn ids(&self, uid: u32, gid: u32, path: &Path) -> Result<(u32, u32)> {
        if self.is_identity() {
            return Ok((uid, gid));
        }
        let (uid, gid) = (u64::from(uid), u64::from(gid));
        let (cuid, cgid) = match (
            self.uid_from.to_container(uid),
            self.gid_from.to_container(gid),
        ) {
            (Some(u), Some(g)) => (u, g),
            _ if uid == 0 && gid == 0 => (0, 0),
            (u, _) => {
                let id = if u.is_none() { uid } else { gid };
                return Err(unmapped(
                    path,
                    format!(
                        "mapping host ID pair idtools.IDPair{{UID:{uid}, GID:{gid}}} for {} \
                         to container: host ID {id} cannot be mapped to a container ID",
                        crate::strconv::go_quote(path.as_os_str().as_bytes())
                    ),
                ));
            }
        };
        let (huid, hgid) = to_host_overflow(&self.uid_to, &self.gid_to, cuid, cgid);
        let fit = |id: u64| {
            u32::try_from(id)
                .map_err(|_| unmapped(path, format!("host ID {id} is out of range for an owner")))
        };
        Ok((fit(huid)?, fit(hgid)?))
    }
}

fn unmapped(path: &Path, message: String) -> Error {
    Error::io(
        "mapping owner of",
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
    )
}

/// Go's overflow UID and GID (`getOverflowUID`/`getOverflowGID`): the value in
/// `/proc/sys/kernel/overflowuid` (`overflowgid`) when the whole file parses as a number,
/// else 65534. Go parses the file's bytes as they are, trailing newline included, so with
/// the kernel's `65534\n` it always falls back to 65534; so do we.
fn overflow_ids() -> (u64, u64) {
    static IDS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        let read = |file: &str| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .unwrap_or(65534)
        };
        (
            read("/proc/sys/kernel/overflowuid"),
            read("/proc/sys/kernel/overflowgid"),
        )
    })
}

/// Go's `IDMappings.RootPair` (`GetRootUIDGID`): the host IDs of container root, a
/// single one-ID range standing for root whatever its container ID; `None` when either
/// map lacks root.
fn root_pair(uid_map: &IdMap, gid_map: &IdMap) -> Option<(u64, u64)> {
    let root = |map: &IdMap| match map.0.as_slice() {
        [only] if only.size == 1 => Some(only.host),
        _ => map.to_host(0),
    };
    Some((root(uid_map)?, root(gid_map)?))
}

/// Go's `IDMappings.ToHostOverflow`: container IDs to host IDs, the overflow ID for one
/// the maps do not hold; an ID equal to the maps' root host ID is kept as it is.
fn to_host_overflow(uid_map: &IdMap, gid_map: &IdMap, uid: u64, gid: u64) -> (u64, u64) {
    let root = root_pair(uid_map, gid_map);
    let (overflow_uid, overflow_gid) = overflow_ids();
    let map = |id: u64, root: Option<u64>, map: &IdMap, overflow: u64| {
        if root == Some(id) {
            id
        } else {
            map.to_host(id).unwrap_or(overflow)
        }
    };
    (
        map(uid, root.map(|r| r.0), uid_map, overflow_uid),
        map(gid, root.map(|r| r.1), gid_map, overflow_gid),
    )
}

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries created (the root not counted).
    pub entries: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
    /// Files whose content was cloned (`FICLONE`) rather than copied.
    pub cloned: u64,
}

fn err(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(op, path, e.into())
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("opening directory", path, e))
}

fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8], path: &Path) -> Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("opening directory", path, e))
}

fn list(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let d = Dir::read_from(dir).map_err(|e| err("reading directory", path, e))?;
    for ent in d {
        let ent = ent.map_err(|e| err("reading directory", path, e))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

fn child(path: &Path, name: &[u8]) -> PathBuf {
    path.join(std::ffi::OsStr::from_bytes(name))
}

fn xattr_list(path: &[u8]) -> std::result::Result<Vec<Vec<u8>>, Errno> {
    let mut buf = vec![0u8; 4096];
    let n = loop {
        match rfs::llistxattr(path, &mut buf) {
            Ok(n) => break n,
            Err(Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Copies every xattr of `name` in `src_dir` onto `name` in `dst_dir` (the entries
/// themselves, not what a symlink points to).
fn copy_xattrs(
    src_dir: BorrowedFd<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    path: &Path,
) -> Result<()> {
    let src = proc_path(src_dir, name);
    let dst = proc_path(dst_dir, name);
    let keys = xattr_list(&src).map_err(|e| err("listing xattrs of", path, e))?;
    for key in keys {
        let mut value = vec![0u8; 4096];
        let len = loop {
            match rfs::lgetxattr(src.as_slice(), key.as_slice(), &mut value) {
                Ok(n) => break n,
                Err(Errno::RANGE) if value.len() < (1 << 20) => value.resize(value.len() * 4, 0),
                Err(Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(err("reading xattr of", path, e)),
            }
        };
        if len == usize::MAX {
            continue;
        }
        match rfs::lsetxattr(
            dst.as_slice(),
            key.as_slice(),
            &value[..len],
            rfs::XattrFlags::empty(),
        ) {
            Ok(()) => {}
            // Symlinks cannot carry user.* xattrs on Linux; the source could not either.
            Err(Errno::PERM) | Err(Errno::NOTSUP) if key.starts_with(b"user.") => {}
            Err(e) => return Err(err("setting xattr on", path, e)),
        }
    }
    Ok(())
}

fn timestamps(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn copy_content(src: &OwnedFd, dst: &OwnedFd, size: u64, path: &Path) -> Result<bool> {
    if size == 0 {
        return Ok(false);
    }
    if rfs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(true);
    }
    let mut left = size;
    let mut use_cfr = true;
    let mut buf = Vec::new();
    while left > 0 {
        if use_cfr {
            match rfs::copy_file_range(src, None, dst, None, left.min(1 << 30) as usize) {
                Ok(0) => break,
                Ok(n) => {
                    left -= n as u64;
                    continue;
                }
                Err(Errno::XDEV)
                | Err(Errno::NOSYS)
                | Err(Errno::INVAL)
                | Err(Errno::OPNOTSUPP) => {
                    use_cfr = false;
                    buf.resize(1 << 20, 0);
                    continue;
                }
                Err(e) => return Err(err("copying", path, e)),
            }
        }
        let n = rustix::io::read(src, &mut buf[..left.min(1 << 20) as usize])
            .map_err(|e| err("reading", path, e))?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            off += rustix::io::write(dst, &buf[off..n]).map_err(|e| err("writing", path, e))?;
        }
        left -= n as u64;
    }
    Ok(false)
}

struct Copier<'a> {
    remap: &'a Remap,
    /// (dev, ino) of a multiply linked source file -> its first copy, relative to the root.
    links: HashMap<(u64, u64), PathBuf>,
    dst_root: OwnedFd,
    stats: CopyStats,
}

impl Copier<'_> {
    fn meta(
        &self,
        dst_dir: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        path: &Path,
        src_dir: BorrowedFd<'_>,
        is_link: bool,
    ) -> Result<()> {
        let (uid, gid) = self.remap.ids(st.st_uid, st.st_gid, path)?;
        rfs::chownat(
            dst_dir,
            name,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err("changing owner of", path, e))?;
        copy_xattrs(src_dir, dst_dir, name, path)?;
        if !is_link {
            // After chown, which clears setuid/setgid.
            rfs::chmodat(
                dst_dir,
                name,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| err("changing mode of", path, e))?;
        }
        rfs::utimensat(dst_dir, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| err("setting times of", path, e))?;
        Ok(())
    }

    fn copy_dir(
        &mut self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        rel: &Path,
        src_root: &Path,
    ) -> Result<()> {
        let here = src_root.join(rel);
        for name in list(src_dir, &here)? {
            let path = child(&here, &name);
            let st = rfs::statat(src_dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| err("stat", &path, e))?;
            let ft = FileType::from_raw_mode(st.st_mode);
            let rel_child = child(rel, &name);
            self.stats.entries += 1;
            match ft {
                FileType::Directory => {
                    rfs::mkdirat(dst_dir, name.as_slice(), Mode::from_raw_mode(0o700))
                        .map_err(|e| err("creating directory", &path, e))?;
                    let s = open_child_dir(src_dir, &name, &path)?;
                    let d = open_child_dir(dst_dir, &name, &path)?;
                    self.copy_dir(s.as_fd(), d.as_fd(), &rel_child, src_root)?;
                    self.meta(dst_dir, &name, &st, &path, src_dir, false)?;
                }
                FileType::RegularFile => {
                    if st.st_nlink > 1 {
                        let key = (st.st_dev as u64, st.st_ino as u64);
                        if let Some(first) = self.links.get(&key) {
                            rfs::linkat(
                                self.dst_root.as_fd(),
                                first.as_path(),
                                dst_dir,
                                name.as_slice(),
                                AtFlags::empty(),
                            )
                            .map_err(|e| err("linking", &path, e))?;
                            continue;
                        }
                        self.links.insert(key, rel_child.clone());
                    }
                    let s = rfs::openat(
                        src_dir,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| err("opening", &path, e))?;
                    let d = rfs::openat(
                        dst_dir,
                        name.as_slice(),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| err("creating", &path, e))?;
                    if copy_content(&s, &d, st.st_size as u64, &path)? {
                        self.stats.cloned += 1;
                    }
                    self.stats.bytes += st.st_size as u64;
                    drop(d);
                    self.meta(dst_dir, &name, &st, &path, src_dir, false)?;
                }
                FileType::Symlink => {
                    let target = rfs::readlinkat(src_dir, name.as_slice(), Vec::new())
                        .map_err(|e| err("reading link", &path, e))?;
                    rfs::symlinkat(target.as_c_str(), dst_dir, name.as_slice())
                        .map_err(|e| err("creating symlink", &path, e))?;
                    self.meta(dst_dir, &name, &st, &path, src_dir, true)?;
                }
                _ => {
                    rfs::mknodat(
                        dst_dir,
                        name.as_slice(),
                        ft,
                        Mode::from_raw_mode(st.st_mode & 0o7777),
                        st.st_rdev,
                    )
                    .map_err(|e| err("creating node", &path, e))?;
                    self.meta(dst_dir, &name, &st, &path, src_dir, false)?;
                }
            }
        }
        Ok(())
    }
}

/// Copies the tree under `src` into the existing directory `dst` (which should be empty),
/// then gives `dst` itself the mode, owner, xattrs and times of `src`.
pub fn copy_tree(src: &Path, dst: &Path, remap: &Remap) -> Result<CopyStats> {
    let s = open_dir(src)?;
    let d = open_dir(dst)?;
    let mut c = Copier {
        remap,
        links: HashMap::new(),
        dst_root: open_dir(dst)?,
        stats: CopyStats::default(),
    };
    c.copy_dir(s.as_fd(), d.as_fd(), Path::new(""), src)?;
    let st = rfs::fstat(&s).map_err(|e| err("stat", src, e))?;
    // The root keeps the source's owner: Go copies the tree as it is and then re-owns all
    // but its root (`ChownPathByMaps`).
    rfs::fchown(
        &d,
        Some(rfs::Uid::from_raw(st.st_uid)),
        Some(rfs::Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| err("changing owner of", dst, e))?;
    copy_xattrs(s.as_fd(), d.as_fd(), b".", dst)?;
    rfs::fchmod(&d, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(|e| err("changing mode of", dst, e))?;
    rfs::futimens(&d, &timestamps(&st)).map_err(|e| err("setting times of", dst, e))?;
    Ok(c.stats)
}

fn chown_dir(dir: BorrowedFd<'_>, path: &Path, remap: &Remap) -> Result<u64> {
    let mut n = 0;
    for name in list(dir, path)? {
        let p = child(path, &name);
        let st = rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| err("stat", &p, e))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Directory {
            let d = open_child_dir(dir, &name, &p)?;
            n += chown_dir(d.as_fd(), &p, remap)?;
        }
        n += chown_one(dir, &name, &st, ft, &p, remap)?;
    }
    Ok(n)
}

fn chown_one(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &Stat,
    ft: FileType,
    path: &Path,
    remap: &Remap,
) -> Result<u64> {
    let (uid, gid) = remap.ids(st.st_uid, st.st_gid, path)?;
    if (uid, gid) == (st.st_uid, st.st_gid) {
        return Ok(0);
    }
    // chown clears setuid/setgid and file capabilities: put them back as they were.
    let caps = if ft == FileType::RegularFile {
        let p = proc_path(dir, name);
        let mut v = vec![0u8; 1024];
        rfs::lgetxattr(p.as_slice(), "security.capability", &mut v)
            .ok()
            .map(|len| {
                v.truncate(len);
                v
            })
    } else {
        None
    };
    rfs::chownat(
        dir,
        name,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err("changing owner of", path, e))?;
    if ft != FileType::Symlink {
        rfs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| err("changing mode of", path, e))?;
    }
    if let Some(v) = caps {
        let p = proc_path(dir, name);
        rfs::lsetxattr(
            p.as_slice(),
            "security.capability",
            &v,
            rfs::XattrFlags::empty(),
        )
        .map_err(|e| err("setting xattr on", path, e))?;
    }
    Ok(1)
}

/// Changes the owner of everything under `root` (not `root` itself, as Go's
/// `ChownPathByMaps`) from the IDs of one mapping to the other; returns how many entries
/// changed.
pub fn chown_tree(root: &Path, remap: &Remap) -> Result<u64> {
    if remap.is_identity() {
        return Ok(0);
    }
    let d = open_dir(root)?;
    chown_dir(d.as_fd(), root, remap)
}

fn remove_children(dir: BorrowedFd<'_>, path: &Path) -> Result<()> {
    // A read-only directory (vfs roots are 0555) must be writable to unlink in it.
    for name in list(dir, path)? {
        let p = child(path, &name);
        match rfs::unlinkat(dir, name.as_slice(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => continue,
            Err(Errno::ISDIR) => {}
            Err(Errno::ACCESS) | Err(Errno::PERM) => {
                let _ = rfs::fchmod(dir, Mode::from_raw_mode(0o700));
                match rfs::unlinkat(dir, name.as_slice(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => continue,
                    Err(Errno::ISDIR) => {}
                    Err(e) => return Err(err("removing", &p, e)),
                }
            }
            Err(e) => return Err(err("removing", &p, e)),
        }
        let sub = match open_child_dir(dir, &name, &p) {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        let _ = rfs::fchmod(&sub, Mode::from_raw_mode(0o700));
        remove_children(sub.as_fd(), &p)?;
        drop(sub);
        match rfs::unlinkat(dir, name.as_slice(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ACCESS) | Err(Errno::PERM) => {
                let _ = rfs::fchmod(dir, Mode::from_raw_mode(0o700));
                rfs::unlinkat(dir, name.as_slice(), AtFlags::REMOVEDIR)
                    .map_err(|e| err("removing directory", &p, e))?;
            }
            Err(e) => return Err(err("removing directory", &p, e)),
        }
    }
    Ok(())
}

/// Removes `path` and everything under it, like `rm -rf` (a missing path is not an error).
/// Symlinks are removed, never followed; mount points below are not crossed into (their
/// removal fails with EBUSY).
pub fn remove_tree(path: &Path) -> Result<()> {
    let st = match rfs::lstat(path) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err("stat", path, e)),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return match rfs::unlink(path) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(err("removing", path, e)),
        };
    }
    let d = open_dir(path)?;
    let _ = rfs::fchmod(&d, Mode::from_raw_mode(0o700));
    remove_children(d.as_fd(), path)?;
    drop(d);
    match rfs::rmdir(path) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(err("removing directory", path, e)),
    }
}

/// `syncfs(2)` on the file system holding `path`: one flush for a whole layer instead of
/// an fsync per file.
pub fn sync_fs(path: &Path) -> Result<()> {
    let fd = rfs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .map_err(|e| err("opening", path, e))?;
    rfs::syncfs(&fd).map_err(|e| err("syncing file system of", path, e))
}

/// `statfs(2)` `f_type` of the file system holding `path`: the backing file system's magic
/// number, which the overlay driver names and refuses some of.
pub fn fs_magic(path: &Path) -> Result<u64> {
    let st = rfs::statfs(path).map_err(|e| err("statfs", path, e))?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    Ok(st.f_type as u64)
}

/// Total size of everything but directories under `path` (symlinks count their target
/// length), hard links counted once (Go's
/// `directory.Size`); a missing path is 0.
pub fn dir_size(path: &Path) -> Result<u64> {
    fn walk(
        dir: BorrowedFd<'_>,
        path: &Path,
        seen: &mut std::collections::HashSet<(u64, u64)>,
    ) -> Result<u64> {
        let mut total = 0;
        for name in list(dir, path)? {
            let p = child(path, &name);
            let st = match rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(err("stat", &p, e)),
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let d = open_child_dir(dir, &name, &p)?;
                    total += walk(d.as_fd(), &p, seen)?;
                }
                _ => {
                    if st.st_nlink > 1 && !seen.insert((st.st_dev as u64, st.st_ino as u64)) {
                        continue;
                    }
                    total += st.st_size as u64;
                }
            }
        }
        Ok(total)
    }
    let d = match open_dir(path) {
        Ok(d) => d,
        Err(Error::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(0)
        }
        Err(e) => return Err(e),
    };
    walk(d.as_fd(), path, &mut std::collections::HashSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(container: u64, host: u64, size: u64) -> IdMap {
        IdMap(vec![crate::archive::idmap::IdRange {
            container,
            host,
            size,
        }])
    }

    #[test]
    fn owners_outside_the_maps_become_the_overflow_ids() -> Result<()> {
        let m = one(0, 300_000, 65536);
        let r = Remap {
            uid_to: m.clone(),
            gid_to: m,
            ..Remap::default()
        };
        let p = Path::new("x");
        assert_eq!(r.ids(0, 0, p)?, (300_000, 300_000));
        assert_eq!(r.ids(1000, 5, p)?, (301_000, 300_005));
        assert_eq!(r.ids(4_000_000, 70_000, p)?, (65534, 65534));
        assert_eq!(r.ids(1000, 4_000_000, p)?, (301_000, 65534));
        // Go keeps an ID equal to the maps' root host ID as it is.
        assert_eq!(r.ids(300_000, 300_001, p)?, (300_000, 65534));
        Ok(())
    }

    #[test]
    fn source_owners_outside_the_source_maps() -> Result<()> {
        let r = Remap {
            uid_from: one(0, 100_000, 10),
            gid_from: one(0, 100_000, 10),
            uid_to: one(0, 200_000, 10),
            gid_to: one(0, 200_000, 10),
        };
        let p = Path::new("x");
        assert_eq!(r.ids(100_001, 100_002, p)?, (200_001, 200_002));
        // 0:0 that the source maps cannot express is taken as container root.
        assert_eq!(r.ids(0, 0, p)?, (200_000, 200_000));
        let e = r.ids(5, 100_000, p).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "mapping owner of x: mapping host ID pair idtools.IDPair{UID:5, GID:100000} \
                 for \"x\" to container: host ID 5 cannot be mapped to a container ID"
            )
        );
        Ok(())
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copies_and_removes() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("a/b"))?;
        std::fs::write(src.join("a/b/f"), b"hello")?;
        std::fs::hard_link(src.join("a/b/f"), src.join("a/g"))?;
        std::os::unix::fs::symlink("/etc/passwd", src.join("abs"))?;
        std::fs::set_permissions(src.join("a/b/f"), std::fs::Permissions::from_mode(0o4755))?;
        let dst = t.path().join("dst");
        std::fs::create_dir(&dst)?;
        let stats = copy_tree(&src, &dst, &Remap::default())?;
        assert_eq!(stats.entries, 5);
        assert_eq!(std::fs::read(dst.join("a/g"))?, b"hello");
        assert_eq!(
            std::fs::read_link(dst.join("abs"))?,
            Path::new("/etc/passwd")
        );
        let m = std::fs::metadata(dst.join("a/b/f"))?;
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!(m.nlink(), 2);
        assert_eq!(dir_size(&dst)?, 5 + "/etc/passwd".len() as u64);
        remove_tree(&dst)?;
        assert!(!dst.exists());
        remove_tree(&dst)?;
        Ok(())
    }

    #[test]
    fn fs_magic_of_proc() -> std::result::Result<(), Box<dyn std::error::Error>> {
        const PROC_SUPER_MAGIC: u64 = 0x9fa0;
        assert_eq!(fs_magic(Path::new("/proc"))?, PROC_SUPER_MAGIC);
        let missing = fs_magic(Path::new("/nonexistent/path"));
        assert!(matches!(missing, Err(Error::Io { op: "statfs", .. })));
        Ok(())
    }
}
