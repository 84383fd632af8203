//! User and group names for tar headers, as Go's `tar.FileInfoHeader` fills `Uname` and
//! `Gname`: the names of the file's owner and group on this host (the IDs as `lstat` gives
//! them, before any mapping to container IDs), looked up through the C library
//! (`getpwuid_r`, `getgrgid_r`: /etc/passwd, /etc/group and whatever nsswitch.conf adds), as
//! the cgo build of Go's `os/user` does. An ID without an entry has no name.

use std::collections::HashMap;
use std::ffi::CStr;

/// Looked-up names, cached per ID (Go caches them for the life of the process).
#[derive(Default)]
pub struct OwnerNames {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl OwnerNames {
    /// The name of user `uid` (empty when there is none).
    pub fn user(&mut self, uid: u32) -> &[u8] {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup(Kind::User, uid))
    }

    /// The name of group `gid` (empty when there is none).
    pub fn group(&mut self, gid: u32) -> &[u8] {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup(Kind::Group, gid))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

/// One reentrant NSS lookup, growing the buffer on `ERANGE` (bounded).
fn lookup(kind: Kind, id: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    while buf.len() <= 1 << 20 {
        let mut name: Option<Vec<u8>> = None;
        let rc = match kind {
            Kind::User => {
                let mut pw: libc::passwd = zeroed_passwd();
                let mut out: *mut libc::passwd = std::ptr::null_mut();
                // SAFETY: `pw`, `buf` and `out` live across the call, `buf.len()` is the
                // buffer's size; on success `out` points at `pw`, whose `pw_name` points into
                // `buf` as a NUL-terminated string, read before `buf` changes.
                #[allow(unsafe_code)]
                let rc = unsafe {
                    let rc =
                        libc::getpwuid_r(id, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out);
                    if rc == 0 && !out.is_null() && !pw.pw_name.is_null() {
                        name = Some(CStr::from_ptr(pw.pw_name).to_bytes().to_vec());
                    }
                    rc
                };
                rc
            }
            Kind::Group => {
                let mut gr: libc::group = zeroed_group();
                let mut out: *mut libc::group = std::ptr::null_mut();
                // SAFETY: as for getpwuid_r above, with `gr_name`.
                #[allow(unsafe_code)]
                let rc = unsafe {
                    let rc =
                        libc::getgrgid_r(id, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out);
                    if rc == 0 && !out.is_null() && !gr.gr_name.is_null() {
                        name = Some(CStr::from_ptr(gr.gr_name).to_bytes().to_vec());
                    }
                    rc
                };
                rc
            }
        };
        if rc == libc::ERANGE {
            let bigger = buf.len() * 4;
            buf.resize(bigger, 0);
            continue;
        }
        return name.unwrap_or_default();
    }
    Vec::new()
}

fn zeroed_passwd() -> libc::passwd {
    libc::passwd {
        pw_name: std::ptr::null_mut(),
        pw_passwd: std::ptr::null_mut(),
        pw_uid: 0,
        pw_gid: 0,
        pw_gecos: std::ptr::null_mut(),
        pw_dir: std::ptr::null_mut(),
        pw_shell: std::ptr::null_mut(),
    }
}

fn zeroed_group() -> libc::group {
    libc::group {
        gr_name: std::ptr::null_mut(),
        gr_passwd: std::ptr::null_mut(),
        gr_gid: 0,
        gr_mem: std::ptr::null_mut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_an_unused_id_has_none() {
        let mut names = OwnerNames::default();
        assert_eq!(names.user(0), b"root");
        assert_eq!(names.group(0), b"root");
        assert_eq!(names.user(3_999_999_999), b"");
        assert_eq!(names.group(3_999_999_999), b"");
    }
}
