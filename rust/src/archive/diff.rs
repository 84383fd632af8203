//! Writing a layer's changes as a tar (Go `ExportChanges`, and the overlay native diff).
//!
//! Each change becomes a member read from the layer through directory fds confined to it;
//! deletions become `.wh.NAME` whiteouts (Go: mode 0, size 0, the current time), hard links
//! within the layer become link members after their first occurrence, owners are mapped back
//! to container IDs, and `security.capability` and `user.*` xattrs travel as PAX records.
//! Headers are written with the `tar` crate (GNU long names and links).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use tar::{EntryType, Header};

use super::changes::{
    changes_dirs, layer_and_parent, read_tree, Base, Change, ChangeKind, Meta, Node,
};
use super::idmap::IdMap;
use super::whiteout::{WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX};
use crate::error::{Error, Result};
use crate::fsutil::open_in_root;

fn werr(e: std::io::Error) -> Error {
    Error::io("writing the diff", "", e)
}

/// A PAX extended header member carrying `records`.
fn pax_member<W: Write>(b: &mut tar::Builder<W>, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + body_len.to_string().len();
        if len.to_string().len() != body_len.to_string().len() {
            len += 1;
        }
        data.extend_from_slice(len.to_string().as_bytes());
        data.push(b' ');
        data.extend_from_slice(key);
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_path("PaxHeaders/x").map_err(werr)?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data.as_slice()).map_err(werr)
}

/// Writes tar members for the layer's paths.
pub struct DiffWriter<W: Write> {
    builder: tar::Builder<W>,
    root: OwnedFd,
    /// First path seen for each hard-linked inode.
    links: HashMap<u64, Vec<u8>>,
    /// Uncompressed bytes of content written.
    pub content_bytes: u64,
}

impl<W: Write> DiffWriter<W> {
    /// Writes members read from `layer_dir` into `out`. Metadata passed to
    /// [`entry`](Self::entry) carries container IDs already (see `changes::read_tree`).
    pub fn new(out: W, layer_dir: &Path) -> Result<Self> {
        let root = rfs::open(
            layer_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("opening layer directory", layer_dir, e.into()))?;
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        Ok(DiffWriter {
            builder,
            root,
            links: HashMap::new(),
            content_bytes: 0,
        })
    }

    fn header(&self, meta: &Meta, ty: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime.0.max(0) as u64);
        h.set_size(0);
        h
    }

    /// A whiteout `.wh.NAME` for a deleted `/`-rooted path.
    pub fn whiteout(&mut self, path: &[u8]) -> Result<()> {
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        let (dir, base) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..=i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        let mut name = dir.to_vec();
        name.extend_from_slice(WHITEOUT_PREFIX);
        name.extend_from_slice(base);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.plain_member(&name, 0, (0, 0), now)
    }

    /// A zero-size regular member (whiteouts, opaque markers).
    fn plain_member(
        &mut self,
        name: &[u8],
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
    ) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(mtime);
        h.set_size(0);
        self.builder
            .append_data(&mut h, OsStr::from_bytes(name), std::io::empty())
            .map_err(werr)
    }

    /// The member for the layer's entry at `rel` (no leading `/`), with its metadata.
    pub fn entry(&mut self, rel: &[u8], meta: &Meta) -> Result<()> {
        let ft = FileType::from_raw_mode(meta.mode);
        // The tree read them (security.capability and user.*, as Go 1.43 exports).
        if !meta.xattrs.is_empty() {
            let records: Vec<(Vec<u8>, Vec<u8>)> = meta
                .xattrs
                .iter()
                .map(|(k, v)| ([b"SCHILY.xattr.".as_slice(), k].concat(), v.clone()))
                .collect();
            pax_member(&mut self.builder, &records)?;
        }
        let path = OsStr::from_bytes(rel);
        match ft {
            FileType::Directory => {
                let mut h = self.header(meta, EntryType::Directory);
                let mut name = rel.to_vec();
                name.push(b'/');
                self.builder
                    .append_data(&mut h, OsStr::from_bytes(&name), std::io::empty())
                    .map_err(werr)
            }
            FileType::RegularFile => {
                if meta.nlink > 1 {
                    if let Some(first) = self.links.get(&meta.ino).cloned() {
                        let mut h = self.header(meta, EntryType::Link);
                        return self
                            .builder
                            .append_link(&mut h, path, OsStr::from_bytes(&first))
                            .map_err(werr);
                    }
                    self.links.insert(meta.ino, rel.to_vec());
                }
                let fd = open_in_root(
                    &self.root,
                    rel,
                    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW,
                )
                .map_err(|e| Error::io("opening layer file", Path::new(path), e.into()))?;
                let file = File::from(fd);
                let mut h = self.header(meta, EntryType::Regular);
                h.set_size(meta.size);
                // A file that changes size while we read would corrupt the stream: read
                // exactly the size we announced.
                let reader = std::io::Read::take(file, meta.size);
                self.content_bytes += meta.size;
                self.builder
                    .append_data(
                        &mut h,
                        path,
                        PadTo {
                            inner: reader,
                            left: meta.size,
                        },
                    )
                    .map_err(werr)
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(self.root.as_fd(), rel, Vec::new())
                    .map_err(|e| Error::io("reading symlink", Path::new(path), e.into()))?;
                let mut h = self.header(meta, EntryType::Symlink);
                self.builder
                    .append_link(&mut h, path, OsStr::from_bytes(target.as_bytes()))
                    .map_err(werr)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let ty = match ft {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = self.header(meta, ty);
                let _ = h.set_device_major(rfs::major(meta.rdev));
                let _ = h.set_device_minor(rfs::minor(meta.rdev));
                self.builder
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(werr)
            }
            _ => Ok(()), // sockets and the like are not layer content
        }
    }

    /// Ends the archive; returns the writer.
    pub fn finish(self) -> Result<W> {
        self.builder.into_inner().map_err(werr)
    }
}

/// Pads a short read with zeros so a file that shrank mid-diff keeps the stream well formed.
struct PadTo<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for PadTo<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        let n = if n == 0 {
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Go's `Diff` of the layer in `layer_dir`, whose files are owned through `uid_map` and
/// `gid_map`, against `base`: the tar of its changes ([`export_changes`]) against a parent,
/// the overlay native diff ([`export_overlay`]) of an upper directory. Returns `out`.
pub fn layer_diff<W: Write>(
    out: W,
    layer_dir: &Path,
    uid_map: &IdMap,
    gid_map: &IdMap,
    base: Base<'_>,
) -> Result<W> {
    match base {
        Base::Overlay(lowers) => {
            let tree = read_tree(layer_dir, uid_map, gid_map)?;
            export_overlay(out, layer_dir, &tree, lowers)
        }
        Base::Parent {
            dir,
            uid_map: parent_uids,
            gid_map: parent_gids,
        } => {
            let (new, old) =
                layer_and_parent(layer_dir, uid_map, gid_map, dir, (parent_uids, parent_gids))?;
            let changes = changes_dirs(&new, old.as_ref());
            export_changes(out, layer_dir, &new, &changes)
        }
    }
}

/// Go `ExportChanges`: the tar of `changes` (sorted by path) read from `layer` (its tree).
pub fn export_changes<W: Write>(
    out: W,
    layer_dir: &Path,
    layer: &Node,
    changes: &[Change],
) -> Result<W> {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut w = DiffWriter::new(out, layer_dir)?;
    for c in sorted {
        if c.kind == ChangeKind::Delete {
            w.whiteout(&c.path)?;
        } else if let Some(node) = super::changes::lookup(layer, &c.path) {
            let rel = c.path.strip_prefix(b"/").unwrap_or(&c.path);
            w.entry(rel, &node.meta)?;
        }
    }
    w.finish()
}

/// The overlay native diff: every entry of the upper directory, 0:0 character devices as
/// `.wh.NAME` and opaque directories followed by `DIR/.wh..wh..opq`.
pub fn export_overlay<W: Write>(out: W, upper: &Path, tree: &Node, lowers: &[&Path]) -> Result<W> {
    let mut w = DiffWriter::new(out, upper)?;
    let lowers = super::changes::open_lowers(lowers);
    fn walk<W: Write>(
        w: &mut DiffWriter<W>,
        node: &Node,
        rel: &[u8],
        lowers: &[OwnedFd],
    ) -> Result<()> {
        for (name, child) in &node.children {
            let crel = if rel.is_empty() {
                name.clone()
            } else {
                [rel, b"/", name].concat()
            };
            let ft = FileType::from_raw_mode(child.meta.mode);
            if ft == FileType::CharacterDevice && child.meta.rdev == 0 {
                let mut wh = if rel.is_empty() {
                    Vec::new()
                } else {
                    [rel, b"/"].concat()
                };
                wh.extend_from_slice(WHITEOUT_PREFIX);
                wh.extend_from_slice(name);
                // Go (containers/storage 1.43): mode 0, the device's owner and time.
                let owner = (child.meta.uid, child.meta.gid);
                w.plain_member(&wh, 0, owner, child.meta.mtime.0.max(0) as u64)?;
                continue;
            }
            w.entry(&crel, &child.meta)?;
            if child.meta.is_dir() {
                // Go writes the marker only when a lower layer has the directory to hide.
                if super::changes::is_opaque(&w.root, &crel)
                    && (lowers.is_empty() || super::changes::lower_entry(lowers, &crel).is_some())
                {
                    let marker = [crel.as_slice(), b"/", WHITEOUT_OPAQUE_DIR].concat();
                    let owner = (child.meta.uid, child.meta.gid);
                    w.plain_member(&marker, child.meta.mode & 0o777, owner, 0)?;
                }
                walk(w, child, &crel, lowers)?;
            }
        }
        Ok(())
    }
    walk(&mut w, tree, b"", &lowers)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::changes::tests::parent_and_child;
    use std::io::Read;

    fn members(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            out.push((name, data));
        }
        out
    }

    #[test]
    fn layer_diff_writes_changes_and_whiteouts() {
        let (_dir, parent, child) = parent_and_child();
        let id = IdMap::default();
        let base = Base::Parent {
            dir: Some(&parent),
            uid_map: &id,
            gid_map: &id,
        };
        let tar = layer_diff(Vec::new(), &child, &id, &id, base).expect("diff");
        assert_eq!(
            members(&tar),
            [
                ("a".to_string(), b"newer".to_vec()),
                ("b".to_string(), b"added!".to_vec()),
                (".wh.c".to_string(), Vec::new()),
            ]
        );
    }

    #[test]
    fn layer_diff_of_an_upper_directory() {
        let (_dir, lower, upper) = parent_and_child();
        let id = IdMap::default();
        let tar = layer_diff(
            Vec::new(),
            &upper,
            &id,
            &id,
            Base::Overlay(&[lower.as_path()]),
        )
        .expect("diff");
        let names: Vec<String> = members(&tar).into_iter().map(|m| m.0).collect();
        assert_eq!(names, ["a", "b", "d/"]);
    }
}
