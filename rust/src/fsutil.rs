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

/// Whether this process runs in a user namespace other than the initial one (Go's
/// `RunningInUserNS`: `/proc/self/uid_map` is not the full `0 0 4294967295` map).
pub fn running_in_userns() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(text) => {
            let fields: Vec<&str> = text.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    })
}

/// Go's `unshare.IsRootless()`, memoised as Go does: the rootless UID
/// (`_CONTAINERS_ROOTLESS_UID`, else the real UID) is not 0, or
/// `_CONTAINERS_USERNS_CONFIGURED` is set, or CAP_SYS_ADMIN is missing from the effective
/// set, or the user namespace does not map every ID. Decides the overlay xattr prefix.
pub fn rootless() -> bool {
    static ROOTLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOTLESS.get_or_init(|| {
        let uid = match std::env::var("_CONTAINERS_ROOTLESS_UID") {
            Ok(v) if !v.is_empty() => v.parse::<i64>().unwrap_or(0),
            _ => i64::from(rustix::process::getuid().as_raw()),
        };
        if uid != 0
            || std::env::var_os("_CONTAINERS_USERNS_CONFIGURED").is_some_and(|v| !v.is_empty())
        {
            return true;
        }
        let cap_sys_admin = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .map(|caps| caps & (1 << 21) != 0);
        if cap_sys_admin == Some(false) {
            return true;
        }
        match std::fs::read_to_string("/proc/self/uid_map") {
            Ok(text) => !text.contains("4294967295"),
            Err(_) => false,
        }
    })
}
