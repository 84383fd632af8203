//! User and group names for tar headers, as Go's `tar.FileInfoHeader` fills `Uname` and
//! `Gname`: the names of the file's owner and group on this host (the IDs as `lstat` gives
//! them, before any mapping to container IDs), looked up through the C library
//! (`getpwuid_r`, `getgrgid_r`: /etc/passwd, /etc/group and whatever nsswitch.conf adds), as
//! the cgo build of Go's `os/user` does. An ID without an entry has no name.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::mem::MaybeUninit;

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
            .or_insert_with(|| lookup(libc::getpwuid_r, |pw: &libc::passwd| pw.pw_name, uid))
    }

    /// The name of group `gid` (empty when there is none).
    pub fn group(&mut self, gid: u32) -> &[u8] {
        self.groups
            .entry(gid)
            .or_insert_with(|| lookup(libc::getgrgid_r, |gr: &libc::group| gr.gr_name, gid))
    }
}

/// The shape shared by `getpwuid_r` and `getgrgid_r`: ID, entry to fill, string buffer and
/// its size, where to store the pointer to the entry (null when there is none).
type ReentrantGet<T> = unsafe extern "C" fn(u32, *mut T, *mut c_char, usize, *mut *mut T) -> c_int;

/// One reentrant NSS lookup of `id` through `get`, `name` picking the entry's name; the
/// buffer grows on `ERANGE` (bounded).
fn lookup<T>(get: ReentrantGet<T>, name: fn(&T) -> *mut c_char, id: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    while buf.len() <= 1 << 20 {
        let mut entry = MaybeUninit::<T>::uninit();
        let mut out: *mut T = std::ptr::null_mut();
        // SAFETY: `entry`, `buf` and `out` live across the call and `buf.len()` is the
        // buffer's size; on success `out` is null or points at `entry`, filled in by the call,
        // whose name points into `buf` as a NUL-terminated string, read before `buf` changes.
        #[allow(unsafe_code)]
        let (rc, found) = unsafe {
            let rc = get(
                id,
                entry.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            );
            let mut found = None;
            if rc == 0 && !out.is_null() {
                let p = name(&*out);
                if !p.is_null() {
                    found = Some(CStr::from_ptr(p).to_bytes().to_vec());
                }
            }
            (rc, found)
        };
        if rc == libc::ERANGE {
            let bigger = buf.len() * 4;
            buf.resize(bigger, 0);
            continue;
        }
        return found.unwrap_or_default();
    }
    Vec::new()
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
