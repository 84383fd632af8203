//! Kernel overlay mounts for the overlay driver.
//!
//! A mount is done with one `mount(2)` when its option string fits in a page, as Go's driver
//! does. When it would not (many lower layers, long paths), it is built with the new mount
//! API instead: `fsopen("overlay")`, one `fsconfig("lowerdir+", dir)` per lower layer (Linux
//! 6.8+), then `fsmount` and `move_mount`, so the page limit never applies and there is no
//! need to `chdir` (which a threaded process cannot do safely) for relative paths.

use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags,
    MoveMountFlags, UnmountFlags,
};

use crate::error::{Error, Result};

/// What to mount.
#[derive(Clone, Debug, Default)]
pub struct OverlayMount {
    /// Lower directories, topmost first.
    pub lowers: Vec<PathBuf>,
    /// The upper directory (None: a read-only mount of the lowers).
    pub upper: Option<PathBuf>,
    /// The work directory (with an upper).
    pub work: Option<PathBuf>,
    /// Other options: mount flags (`ro`, `nodev`, `nosuid`, `noexec`, ...) and overlay
    /// options (`volatile`, `metacopy=on`, `context="..."`, ...).
    pub options: Vec<String>,
}

fn err(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(op, path, e.into())
}

fn invalid(path: &Path, why: &str) -> Error {
    Error::io(
        "mounting overlay on",
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string()),
    )
}

/// Refuses paths that would change the meaning of an overlay option string.
fn check_path(p: &Path, target: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| invalid(target, "a layer path is not valid UTF-8"))?;
    if s.is_empty() || s.contains([',', ':', '=', '\\', '\n']) {
        return Err(invalid(
            target,
            &format!(
                "layer path {} contains a character overlay options cannot carry",
                crate::strconv::go_quote(s.as_bytes())
            ),
        ));
    }
    Ok(s.to_string())
}

fn page_size() -> usize {
    rustix::param::page_size()
}

/// Splits options into mount flags and filesystem data, as Go's `mount.ParseOptions` does.
fn split_options(options: &[String]) -> (MountFlags, MountAttrFlags, Vec<String>) {
    let mut flags = MountFlags::empty();
    let mut attrs = MountAttrFlags::empty();
    let mut data = Vec::new();
    for o in options.iter().filter(|o| !o.is_empty()) {
        match o.as_str() {
            "ro" => {
                flags |= MountFlags::RDONLY;
                attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
            }
            "rw" | "defaults" | "dev" | "suid" | "exec" | "atime" => {}
            "nodev" => {
                flags |= MountFlags::NODEV;
                attrs |= MountAttrFlags::MOUNT_ATTR_NODEV;
            }
            "nosuid" => {
                flags |= MountFlags::NOSUID;
                attrs |= MountAttrFlags::MOUNT_ATTR_NOSUID;
            }
            "noexec" => {
                flags |= MountFlags::NOEXEC;
                attrs |= MountAttrFlags::MOUNT_ATTR_NOEXEC;
            }
            "noatime" => {
                flags |= MountFlags::NOATIME;
                attrs |= MountAttrFlags::MOUNT_ATTR_NOATIME;
            }
            "relatime" => {
                flags |= MountFlags::RELATIME;
                attrs |= MountAttrFlags::MOUNT_ATTR_RELATIME;
            }
            "nodiratime" => {
                flags |= MountFlags::NODIRATIME;
                attrs |= MountAttrFlags::MOUNT_ATTR_NODIRATIME;
            }
            other => data.push(other.to_string()),
        }
    }
    (flags, attrs, data)
}

/// Mounts an overlay on `target`. Returns true when the new mount API was used (the option
/// string would not fit in a page).
pub fn mount(target: &Path, m: &OverlayMount) -> Result<bool> {
    if m.lowers.is_empty() {
        return Err(invalid(
            target,
            "an overlay needs at least one lower directory",
        ));
    }
    let lowers: Vec<String> = m
        .lowers
        .iter()
        .map(|p| check_path(p, target))
        .collect::<Result<_>>()?;
    let upper = m
        .upper
        .as_deref()
        .map(|p| check_path(p, target))
        .transpose()?;
    let work = m
        .work
        .as_deref()
        .map(|p| check_path(p, target))
        .transpose()?;
    let (flags, attrs, extra) = split_options(&m.options);
    let mut data = format!("lowerdir={}", lowers.join(":"));
    if let (Some(u), Some(w)) = (&upper, &work) {
        data.push_str(&format!(",upperdir={u},workdir={w}"));
    }
    for o in &extra {
        data.push(',');
        data.push_str(o);
    }
    if data.len() < page_size() {
        let cdata = std::ffi::CString::new(data)
            .map_err(|_| invalid(target, "an overlay option contains a NUL byte"))?;
        rmount::mount("overlay", target, "overlay", flags, cdata.as_c_str())
            .map_err(|e| err("mounting overlay on", target, e))?;
        return Ok(false);
    }
    let fs = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| err("opening an overlay context for", target, e))?;
    for l in &lowers {
        rmount::fsconfig_set_string(&fs, "lowerdir+", l.as_str())
            .map_err(|e| err("adding a lower layer (lowerdir+) for", target, e))?;
    }
    if let (Some(u), Some(w)) = (&upper, &work) {
        rmount::fsconfig_set_string(&fs, "upperdir", u.as_str())
            .map_err(|e| err("setting upperdir for", target, e))?;
        rmount::fsconfig_set_string(&fs, "workdir", w.as_str())
            .map_err(|e| err("setting workdir for", target, e))?;
    }
    for o in &extra {
        let res = match o.split_once('=') {
            Some((k, v)) => rmount::fsconfig_set_string(&fs, k, v),
            None => rmount::fsconfig_set_flag(&fs, o.as_str()),
        };
        res.map_err(|e| err("setting an overlay option for", target, e))?;
    }
    rmount::fsconfig_create(&fs).map_err(|e| err("creating the overlay for", target, e))?;
    let mnt = rmount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| err("making the overlay mount for", target, e))?;
    rmount::move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err("attaching the overlay on", target, e))?;
    Ok(true)
}

/// Detaches the mount on `target` (`umount2(MNT_DETACH)`), once, as Go's overlay `Put`
/// does: the mount leaves the tree at once even while a process works inside it, and the
/// kernel drops it when its last user goes. Nothing is lost by not waiting: an overlay's
/// writes are already in its upper directory. A path that is not mounted (or missing) is
/// not an error.
pub fn unmount(target: &Path) -> Result<()> {
    match rmount::unmount(target, UnmountFlags::DETACH) {
        Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(err("unmounting", target, e)),
    }
}

/// Makes `path` a private mount point (bind-mounting it on itself first when it is not a
/// mount point), as Go's `mount.MakePrivate` does for the overlay home.
pub fn make_private(path: &Path, is_mountpoint: bool) -> Result<()> {
    if !is_mountpoint {
        rmount::mount_bind_recursive(path, path).map_err(|e| err("bind-mounting", path, e))?;
    }
    rmount::mount_change(path, MountPropagationFlags::PRIVATE)
        .map_err(|e| err("making private", path, e))
}

/// Bind-mounts `source` on `target` (both directories), optionally read-only.
pub fn bind(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    rmount::mount_bind(source, target).map_err(|e| err("bind-mounting", target, e))?;
    if read_only {
        rmount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(|e| err("remounting read-only", target, e))?;
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Makes an ID-mapped copy of the mount at `source` on `target` (an existing empty
/// directory): files owned by host ID `h` appear owned as the user namespace `userns_fd`
/// maps them (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)` + `move_mount`).
pub fn idmapped_mount(source: &Path, target: &Path, userns_fd: std::os::fd::RawFd) -> Result<()> {
    use std::os::fd::AsRawFd;
    let tree = rmount::open_tree(
        CWD,
        source,
        rmount::OpenTreeFlags::OPEN_TREE_CLONE
            | rmount::OpenTreeFlags::OPEN_TREE_CLOEXEC
            | rmount::OpenTreeFlags::AT_RECURSIVE,
    )
    .map_err(|e| err("cloning the mount of", source, e))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns_fd).map_err(|_| invalid(target, "bad namespace fd"))?,
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) reads `size` bytes of `attr`, a live repr(C) struct laid out
    // as the kernel's `struct mount_attr`; `empty` is a NUL-terminated string; the fd is open.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "ID-mapping the mount of",
            source,
            std::io::Error::last_os_error(),
        ));
    }
    rmount::move_mount(
        &tree,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err("attaching the ID-mapped mount on", target, e))
}
