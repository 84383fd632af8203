//! fd-relative file system helpers shared by the archive code.
//!
//! Everything that resolves a path inside a layer goes through [`open_in_root`]: the layer
//! directory acts as the root for `..` and absolute symlinks (`RESOLVE_IN_ROOT`), and magic
//! links (`/proc/self/fd/...`) are refused, so no name in a hostile archive or tar-split can
//! reach outside it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Opens `rel` (relative, `""` for the root itself) under `root`, confined to it; `flags`
/// get `O_CLOEXEC` added. Retries when the kernel asks to (a rename raced the lookup).
pub fn open_in_root(root: impl AsFd, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    loop {
        match rfs::openat2(
            root.as_fd(),
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// The path of `name` inside the directory `dir` through `/proc/self/fd`: the directory is
/// reached through its fd (a magic link), and `l*xattr` calls on it do not follow `name`.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", std::os::fd::AsRawFd::as_raw_fd(&dir)).into_bytes();
    p.extend_from_slice(name);
    p
}
