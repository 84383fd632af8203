//! What changed in a layer: comparing its tree with its parent's (Go `ChangesDirs`, used by
//! the naive diff driver, vfs), or reading an overlay upper directory (Go `OverlayChanges`).
//!
//! Go's rules, kept exactly because `changes` and `diffsize` must answer as the Go CLI does:
//! a path is *modified* when its mode, owner (compared as container IDs), device number or,
//! for non-directories, its size or mtime (seconds; nanoseconds too unless either side has
//! none) differ, or its `security.capability` xattr; a directory holding a change is
//! reported modified before its contents (never `/`); a deleted directory is one change, not
//! one per file. Entries are visited in name order, so the output is stable (Go's comes from
//! map iteration and varies).

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::idmap::IdMap;
use super::whiteout::overlay_opaque_xattr;
use crate::error::{Error, Result};
use crate::fsutil::proc_path;

/// Go's `ChangeKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChangeKind {
    /// The path exists on both sides and differs.
    Modify = 0,
    /// The path exists only in the layer.
    Add = 1,
    /// The path exists only in the parent.
    Delete = 2,
}

/// One change: an absolute path in the layer (`/etc/passwd`) and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `/`-rooted path.
    pub path: Vec<u8>,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// What `ChangesDirs` compares of an entry.
#[derive(Clone, Debug)]
pub struct Meta {
    /// `st_mode` (type and permissions).
    pub mode: u32,
    /// Owner and group, already mapped to container IDs.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Owner and group as `lstat` gave them (host IDs: a diff names them).
    pub host_ids: (u32, u32),
    /// Device number.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// mtime seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// `security.capability`, `security.ima` and `user.*` xattrs, sorted (what Go exports;
    /// it compares all but `security.ima`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Inode, for hard-link detection.
    pub ino: u64,
    /// Link count.
    pub nlink: u64,
}

impl Meta {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.mode) == FileType::Directory
    }
}

/// A directory tree in memory: entry metadata and, for directories, children by name.
#[derive(Debug)]
pub struct Node {
    /// This entry's metadata.
    pub meta: Meta,
    /// Children, sorted by name.
    pub children: BTreeMap<Vec<u8>, Node>,
}

fn io_err(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(op, path, e.into())
}

/// The xattrs Go 1.43 exports: `security.capability`, `security.ima` and `user.*`, sorted.
pub(super) fn read_xattrs(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let path = proc_path(dir, name);
    let mut names = vec![0u8; 4096];
    let n = match rfs::llistxattr(path.as_slice(), &mut names) {
        Ok(n) => n,
        Err(Errno::RANGE) => {
            names.resize(64 * 1024, 0);
            match rfs::llistxattr(path.as_slice(), &mut names) {
                Ok(n) => n,
                Err(_) => return Vec::new(),
            }
        }
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for key in names[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        if key != b"security.capability" && key != IMA && !key.starts_with(b"user.") {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rfs::lgetxattr(path.as_slice(), key, &mut value) {
            value.truncate(len);
            out.push((key.to_vec(), value));
        }
    }
    out.sort();
    out
}

/// Exported in diffs, not compared by `changes`.
const IMA: &[u8] = b"security.ima";

fn stat_meta(
    dir: BorrowedFd<'_>,
    name: &CStr,
    map: (&IdMap, &IdMap),
) -> std::result::Result<Meta, Errno> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let uid = u64::from(st.st_uid);
    let gid = u64::from(st.st_gid);
    let ft = FileType::from_raw_mode(st.st_mode);
    // Symlinks cannot carry user.* xattrs; devices rarely matter. Go reads them for every
    // entry; reading regular files and directories covers what layers carry.
    let xattrs = if matches!(ft, FileType::RegularFile | FileType::Directory) {
        read_xattrs(dir, name.to_bytes())
    } else {
        Vec::new()
    };
    Ok(Meta {
        mode: st.st_mode,
        // Go compares owners as container IDs; unmappable IDs stay as they are.
        uid: map.0.to_container(uid).unwrap_or(uid),
        gid: map.1.to_container(gid).unwrap_or(gid),
        host_ids: (st.st_uid, st.st_gid),
        rdev: st.st_rdev,
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        xattrs,
        ino: st.st_ino,
        nlink: st.st_nlink,
    })
}

/// Reads the tree under `root` (the root's own metadata included).
pub fn read_tree(root: &Path, uid_map: &IdMap, gid_map: &IdMap) -> Result<Node> {
    let fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("opening directory", root, e))?;
    let meta = stat_meta(fd.as_fd(), c".", (uid_map, gid_map))
        .map_err(|e| io_err("examining", root, e))?;
    let mut node = Node {
        meta,
        children: BTreeMap::new(),
    };
    fill(&fd, &mut node, root, (uid_map, gid_map))?;
    Ok(node)
}

fn fill(dir: &OwnedFd, node: &mut Node, root: &Path, map: (&IdMap, &IdMap)) -> Result<()> {
    let mut it = rfs::Dir::read_from(dir).map_err(|e| io_err("reading directory", root, e))?;
    let mut names = Vec::new();
    while let Some(entry) = it.read() {
        let entry = entry.map_err(|e| io_err("reading directory", root, e))?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let meta = match stat_meta(dir.as_fd(), &name, map) {
            Ok(m) => m,
            Err(Errno::NOENT) => continue, // removed while we looked
            Err(e) => return Err(io_err("examining", root, e)),
        };
        let mut child = Node {
            meta,
            children: BTreeMap::new(),
        };
        if child.meta.is_dir() {
            let sub = rfs::openat(
                dir,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("opening directory", root, e))?;
            fill(&sub, &mut child, root, map)?;
        }
        node.children.insert(name.into_bytes(), child);
    }
    Ok(())
}

/// Go's `sameFsTimeSpec`: equal seconds, and equal nanoseconds unless either is zero.
fn same_time(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 == b.0 && (a.1 == b.1 || a.1 == 0 || b.1 == 0)
}

/// Go's `statDifferent` plus its capability and `user.*` xattr comparisons.
fn differs(old: &Meta, new: &Meta) -> bool {
    old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.rdev != new.rdev
        || (!old.is_dir() && (!same_time(old.mtime, new.mtime) || old.size != new.size))
        || !old
            .xattrs
            .iter()
            .filter(|x| x.0 != IMA)
            .eq(new.xattrs.iter().filter(|x| x.0 != IMA))
}

fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if !parent.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Go's `(*FileInfo).addChanges`.
fn add_changes(new: &Node, old: Option<&Node>, path: &[u8], added: bool, out: &mut Vec<Change>) {
    let at_entry = out.len();
    let mut added = added;
    if old.is_none() && path != b"/" {
        out.push(Change {
            path: path.to_vec(),
            kind: ChangeKind::Add,
        });
        added = true;
    }
    // Only recurse into the old directory when the new entry is a directory too.
    let old_children = match old {
        Some(o) if new.meta.is_dir() => Some(&o.children),
        _ => None,
    };
    for (name, new_child) in &new.children {
        let cpath = child_path(path, name);
        let old_child = old_children.and_then(|c| c.get(name));
        let mut child_added = false;
        if let Some(oc) = old_child {
            if differs(&oc.meta, &new_child.meta) {
                out.push(Change {
                    path: cpath.clone(),
                    kind: ChangeKind::Modify,
                });
                child_added = true;
            }
        }
        add_changes(new_child, old_child, &cpath, child_added, out);
    }
    if let Some(oc) = old_children {
        for name in oc.keys() {
            if !new.children.contains_key(name) {
                out.push(Change {
                    path: child_path(path, name),
                    kind: ChangeKind::Delete,
                });
            }
        }
    }
    // A directory holding changes is itself reported, before them (not "/").
    if out.len() > at_entry && new.meta.is_dir() && !added && path != b"/" {
        out.insert(
            at_entry,
            Change {
                path: path.to_vec(),
                kind: ChangeKind::Modify,
            },
        );
    }
}

/// What a layer's directory is compared with.
#[derive(Clone, Copy, Debug)]
pub enum Base<'a> {
    /// The parent layer's directory (Go's naive diff, as vfs has it), `None` for a layer
    /// without a parent; the parent's files are owned through `uid_map` and `gid_map`.
    Parent {
        /// The parent's directory.
        dir: Option<&'a Path>,
        /// The parent's UID map.
        uid_map: &'a IdMap,
        /// The parent's GID map.
        gid_map: &'a IdMap,
    },
    /// The layer's directory is an overlay upper directory over these lower directories
    /// (nearest first).
    Overlay(&'a [&'a Path]),
}

/// The trees of a layer and of its parent directory (if any), in container IDs.
pub(super) fn layer_and_parent(
    layer_dir: &Path,
    uid_map: &IdMap,
    gid_map: &IdMap,
    parent: Option<&Path>,
    parent_maps: (&IdMap, &IdMap),
) -> Result<(Node, Option<Node>)> {
    let new = read_tree(layer_dir, uid_map, gid_map)?;
    let old = match parent {
        Some(p) => Some(read_tree(p, parent_maps.0, parent_maps.1)?),
        None => None,
    };
    Ok((new, old))
}

/// Go's `Changes` and `DiffSize` of the layer in `layer_dir`, whose files are owned through
/// `uid_map` and `gid_map`, against `base`: the changes, and the bytes they add (the changed
/// files' sizes against a parent; the whole upper directory's for overlay, as Go counts it).
pub fn layer_changes(
    layer_dir: &Path,
    uid_map: &IdMap,
    gid_map: &IdMap,
    base: Base<'_>,
) -> Result<(Vec<Change>, u64)> {
    match base {
        Base::Overlay(lowers) => {
            let changes = overlay_changes(lowers, layer_dir)?;
            let tree = read_tree(layer_dir, uid_map, gid_map)?;
            Ok((changes, tree_size(&tree)))
        }
        Base::Parent {
            dir,
            uid_map: parent_uids,
            gid_map: parent_gids,
        } => {
            let (new, old) =
                layer_and_parent(layer_dir, uid_map, gid_map, dir, (parent_uids, parent_gids))?;
            let changes = changes_dirs(&new, old.as_ref());
            let size = changes_size(&new, &changes);
            Ok((changes, size))
        }
    }
}

/// Changes of the tree `new` against `old` (Go `ChangesDirs`; `old` absent: everything is
/// added).
pub fn changes_dirs(new: &Node, old: Option<&Node>) -> Vec<Change> {
    let mut out = Vec::new();
    add_changes(new, old, b"/", false, &mut out);
    out
}

/// Opens lower directories (nearest first); missing ones are skipped.
pub(super) fn open_lowers(lowers: &[&Path]) -> Vec<OwnedFd> {
    lowers
        .iter()
        .filter_map(|l| {
            rfs::open(
                *l,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        })
        .collect()
}

/// Changes recorded in an overlay upper directory (Go `OverlayChanges`): 0:0 character
/// devices are deletions, an opaque directory that hides a lower one is a deletion of the
/// directory followed by its contents as additions, anything a lower layer has (and did not
/// white out) is a modification, unchanged directories are left out unless they hold
/// changes, in which case they and their ancestors are reported modified first.
pub fn overlay_changes(lowers: &[&Path], upper: &Path) -> Result<Vec<Change>> {
    let tree = read_tree(upper, &IdMap::default(), &IdMap::default())?;
    let upper_fd = rfs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("opening directory", upper, e))?;
    let lower_fds = open_lowers(lowers);
    let mut out = Vec::new();
    let mut changed_dirs = std::collections::HashSet::new();
    walk_overlay(
        &tree,
        b"",
        &upper_fd,
        &lower_fds,
        &mut changed_dirs,
        &mut out,
    );
    Ok(out)
}

/// Go's scan of the lower layers (nearest first) for `rel`: the first lower that has the
/// entry decides (its stat, or `None` when it is a whiteout, a 0:0 character device); a lower
/// that whites out one of `rel`'s parent directories hides every older layer (`None`), as
/// containers/storage's `overlayLowerContainsWhiteout` scan of the parents does.
pub(super) fn lower_entry(lowers: &[OwnedFd], rel: &[u8]) -> Option<rfs::Stat> {
    let is_whiteout = |st: &rfs::Stat| {
        FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
    };
    for l in lowers {
        match rfs::statat(l, rel, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                if is_whiteout(&st) {
                    return None;
                }
                if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                    // Go uses os.Stat here, which follows the link.
                    return rfs::statat(l, rel, AtFlags::empty()).ok().or(Some(st));
                }
                return Some(st);
            }
            Err(_) => {
                let mut dir = rel;
                while let Some(pos) = dir.iter().rposition(|&b| b == b'/') {
                    dir = &dir[..pos];
                    if dir.is_empty() {
                        break;
                    }
                    if let Ok(st) = rfs::statat(l, dir, AtFlags::SYMLINK_NOFOLLOW) {
                        if is_whiteout(&st) {
                            return None;
                        }
                    }
                }
            }
        }
    }
    None
}

/// Whether the directory at `rel` under `root` has `trusted.overlay.opaque=y`
/// (`user.overlay.opaque` when rootless).
pub(super) fn is_opaque(root: &OwnedFd, rel: &[u8]) -> bool {
    let path = proc_path(root.as_fd(), rel);
    let mut buf = [0u8; 4];
    matches!(rfs::lgetxattr(path.as_slice(), overlay_opaque_xattr(), &mut buf), Ok(1) if buf[0] == b'y')
}

fn walk_overlay(
    node: &Node,
    rel: &[u8],
    upper: &OwnedFd,
    lowers: &[OwnedFd],
    changed_dirs: &mut std::collections::HashSet<Vec<u8>>,
    out: &mut Vec<Change>,
) {
    for (name, child) in &node.children {
        let crel = if rel.is_empty() {
            name.clone()
        } else {
            child_path(rel, name)
        };
        let path = child_path(b"/", &crel);
        let ft = FileType::from_raw_mode(child.meta.mode);
        let lower = lower_entry(lowers, &crel);
        let deleted = (ft == FileType::CharacterDevice && child.meta.rdev == 0)
            || (ft == FileType::Directory && lower.is_some() && is_opaque(upper, &crel));
        let kind = if deleted {
            Some(ChangeKind::Delete)
        } else {
            match lower {
                None => Some(ChangeKind::Add),
                Some(st) => {
                    let lower_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                    if lower_dir
                        && child.meta.is_dir()
                        && st.st_size as u64 == child.meta.size
                        && st.st_mode == child.meta.mode
                        && same_time((st.st_mtime, st.st_mtime_nsec as i64), child.meta.mtime)
                    {
                        None // the same directory: reported only if it holds changes
                    } else {
                        Some(ChangeKind::Modify)
                    }
                }
            }
        };
        if let Some(kind) = kind {
            if child.meta.is_dir() {
                changed_dirs.insert(path.clone());
            }
            if kind != ChangeKind::Modify {
                // Every ancestor not yet reported comes first, outermost first.
                let mut tail = Vec::new();
                let mut parent = parent_of(&path);
                while parent != b"/" {
                    if changed_dirs.insert(parent.clone()) {
                        tail.push(Change {
                            path: parent.clone(),
                            kind: ChangeKind::Modify,
                        });
                    }
                    parent = parent_of(&parent);
                }
                tail.reverse();
                out.extend(tail);
            }
            out.push(Change { path, kind });
        }
        if child.meta.is_dir() {
            walk_overlay(child, &crel, upper, lowers, changed_dirs, out);
        }
    }
}

fn parent_of(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/".to_vec(),
        Some(i) => path[..i].to_vec(),
    }
}

/// Go's `ChangesSize`: the sizes of added and modified non-directories in `new`, each
/// hard-linked inode counted once.
pub fn changes_size(new: &Node, changes: &[Change]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut size = 0u64;
    for c in changes {
        if c.kind == ChangeKind::Delete {
            continue;
        }
        let Some(node) = lookup(new, &c.path) else {
            continue;
        };
        if node.meta.is_dir() {
            continue;
        }
        if node.meta.nlink > 1 && !seen.insert(node.meta.ino) {
            continue;
        }
        size += node.meta.size;
    }
    size
}

/// The node at a `/`-rooted path.
pub fn lookup<'a>(root: &'a Node, path: &[u8]) -> Option<&'a Node> {
    let mut node = root;
    for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        node = node.children.get(comp)?;
    }
    Some(node)
}

/// Go's `directory.Size`: the sizes of all non-directories under `root`, each inode once.
pub fn tree_size(root: &Node) -> u64 {
    fn walk(n: &Node, seen: &mut std::collections::HashSet<u64>, total: &mut u64) {
        for c in n.children.values() {
            if c.meta.is_dir() {
                walk(c, seen, total);
            } else if c.meta.nlink <= 1 || seen.insert(c.meta.ino) {
                *total += c.meta.size;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    walk(root, &mut seen, &mut total);
    total
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::fs;

    /// A parent with `a`, `c` and `d/`, and its child: `a` rewritten, `b` added, `c` gone.
    pub(crate) fn parent_and_child() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let (parent, child) = (dir.path().join("parent"), dir.path().join("child"));
        for d in [&parent, &child] {
            fs::create_dir_all(d.join("d")).expect("mkdir");
        }
        fs::write(parent.join("a"), "old").expect("write");
        fs::write(parent.join("c"), "gone").expect("write");
        fs::write(child.join("a"), "newer").expect("write");
        fs::write(child.join("b"), "added!").expect("write");
        (dir, parent, child)
    }

    fn kinds(changes: &[Change]) -> Vec<(&str, ChangeKind)> {
        changes
            .iter()
            .map(|c| (std::str::from_utf8(&c.path).expect("utf-8"), c.kind))
            .collect()
    }

    #[test]
    fn layer_changes_against_a_parent() {
        let (_dir, parent, child) = parent_and_child();
        let id = IdMap::default();
        let base = Base::Parent {
            dir: Some(&parent),
            uid_map: &id,
            gid_map: &id,
        };
        let (changes, size) = layer_changes(&child, &id, &id, base).expect("changes");
        assert_eq!(
            kinds(&changes),
            [
                ("/a", ChangeKind::Modify),
                ("/b", ChangeKind::Add),
                ("/c", ChangeKind::Delete)
            ]
        );
        assert_eq!(size, 11); // "newer" and "added!"

        let orphan = Base::Parent {
            dir: None,
            uid_map: &id,
            gid_map: &id,
        };
        let (changes, size) = layer_changes(&child, &id, &id, orphan).expect("changes");
        assert_eq!(
            kinds(&changes),
            [
                ("/a", ChangeKind::Add),
                ("/b", ChangeKind::Add),
                ("/d", ChangeKind::Add)
            ]
        );
        assert_eq!(size, 11);
    }

    #[test]
    fn layer_changes_of_an_upper_directory() {
        let (_dir, lower, upper) = parent_and_child();
        fs::remove_dir(upper.join("d")).expect("rmdir");
        let id = IdMap::default();
        let (changes, size) =
            layer_changes(&upper, &id, &id, Base::Overlay(&[lower.as_path()])).expect("changes");
        assert_eq!(
            kinds(&changes),
            [("/a", ChangeKind::Modify), ("/b", ChangeKind::Add)]
        );
        assert_eq!(size, 11);
    }
}
