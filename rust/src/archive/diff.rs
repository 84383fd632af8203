//! Writing a layer's changes as a tar, byte for byte as containers/storage 1.43 does (Go's
//! naive `Diff`: `ExportChanges` of the changes against a parent, `TarWithOptions` of a layer
//! without one; the overlay native diff: `TarWithOptions` of the upper directory with the
//! overlay whiteout converter), so that a layer committed through us has the DiffID podman
//! or buildah would give it.
//!
//! Each member is Go's `FileInfoHeader` of the entry, read through directory fds confined to
//! the layer: the mode with its file-type bits, owners mapped back to container IDs and named
//! after the host IDs (see [`owners`](super::owners)), whole-second mtimes (truncated),
//! `security.capability`, `security.ima` and `user.*` xattrs as PAX records; a non-directory
//! with several links becomes a link to the first path written for its inode. Headers are
//! laid out by [`gotar`](super::gotar). Deletions (naive) become `.wh.NAME` members with mode,
//! owner and names empty and the time of the diff, as Go writes them.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

use super::changes::{
    changes_dirs, layer_and_parent, read_tree, Base, Change, ChangeKind, Meta, Node,
};
use super::field::{self, BLOCK};
use super::gotar::{self, typeflag, GoHeader};
use super::idmap::IdMap;
use super::owners::OwnerNames;
use super::whiteout::{WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX};
use crate::error::{Error, Result};
use crate::fsutil::open_in_root;

fn werr(e: std::io::Error) -> Error {
    Error::io("writing the diff", "", e)
}

/// containers/storage's `major`/`minor` of a device number (`setHeaderForSpecialDevice`:
/// the 12-bit major and 20-bit minor of the old encoding).
fn dev_numbers(rdev: u64) -> (u64, u64) {
    (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

/// `dir/` + `prefix` + the base name of a `/`-free-at-the-ends relative path.
fn with_base_prefix(rel: &[u8], prefix: &[u8]) -> Vec<u8> {
    let cut = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    [&rel[..cut], prefix, &rel[cut..]].concat()
}

/// Writes tar members for the layer's paths.
pub struct DiffWriter<W: Write> {
    out: W,
    root: OwnedFd,
    /// First path written for each inode with several links (Go's `SeenFiles`).
    links: HashMap<u64, Vec<u8>>,
    names: OwnerNames,
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
        Ok(DiffWriter {
            out,
            root,
            links: HashMap::new(),
            names: OwnerNames::default(),
            content_bytes: 0,
        })
    }

    /// Go's `FileInfoHeader` of the entry at `rel` (no leading `/`), after `addTarFile`'s
    /// hard-link and owner handling; `None` for sockets, which Go skips.
    fn header(&mut self, rel: &[u8], meta: &Meta) -> Result<Option<GoHeader>> {
        let ft = FileType::from_raw_mode(meta.mode);
        let (ty, size) = match ft {
            FileType::RegularFile => (typeflag::REG, meta.size),
            FileType::Directory => (typeflag::DIR, 0),
            FileType::Symlink => (typeflag::SYMLINK, 0),
            FileType::CharacterDevice => (typeflag::CHAR, 0),
            FileType::BlockDevice => (typeflag::BLOCK, 0),
            FileType::Fifo => (typeflag::FIFO, 0),
            _ => return Ok(None),
        };
        let mut name = rel.to_vec();
        if ft == FileType::Directory {
            name.push(b'/');
        }
        let linkname = if ft == FileType::Symlink {
            rfs::readlinkat(self.root.as_fd(), rel, Vec::new())
                .map_err(|e| Error::io("reading symlink", bytes_path(rel), e.into()))?
                .into_bytes()
        } else {
            Vec::new()
        };
        let (devmajor, devminor) = dev_numbers(meta.rdev);
        let mut h = GoHeader {
            name,
            linkname,
            typeflag: ty,
            mode: u64::from(meta.mode),
            uid: meta.uid,
            gid: meta.gid,
            uname: self.names.user(meta.host_ids.0).to_vec(),
            gname: self.names.group(meta.host_ids.1).to_vec(),
            size,
            mtime: meta.mtime.0,
            devmajor,
            devminor,
            xattrs: meta.xattrs.clone(),
        };
        if ft != FileType::Directory && meta.nlink > 1 {
            if let Some(first) = self.links.get(&meta.ino) {
                h.typeflag = typeflag::LINK;
                h.linkname = first.clone();
                h.size = 0;
            } else {
                self.links.insert(meta.ino, rel.to_vec());
            }
        }
        Ok(Some(h))
    }

    /// Writes `h`, then for a regular file with content, `size` bytes of the file at `rel`.
    /// A header Go's writer refuses is left out, as containers/storage leaves it out.
    fn write(&mut self, h: &GoHeader, rel: &[u8]) -> Result<()> {
        let Ok(bytes) = gotar::encode(h) else {
            return Ok(());
        };
        self.out.write_all(&bytes).map_err(werr)?;
        if h.typeflag != typeflag::REG || h.size == 0 {
            return Ok(());
        }
        let fd = open_in_root(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW,
        )
        .map_err(|e| Error::io("opening layer file", bytes_path(rel), e.into()))?;
        // A file that changes size while we read would corrupt the stream: read exactly the
        // size we announced, zeros for what went missing.
        let mut reader = PadTo {
            inner: std::io::Read::take(File::from(fd), h.size),
            left: h.size,
        };
        std::io::copy(&mut reader, &mut self.out).map_err(werr)?;
        self.content_bytes += h.size;
        let pad = field::padding(h.size) as usize;
        self.out.write_all(&[0u8; BLOCK][..pad]).map_err(werr)
    }

    /// A whiteout `.wh.NAME` for a deleted `/`-rooted path, as `ExportChanges` writes it:
    /// a bare header stamped with the time of the diff.
    pub fn whiteout(&mut self, path: &[u8]) -> Result<()> {
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| (d.as_nanos() + 500_000_000) / 1_000_000_000);
        let h = GoHeader {
            name: with_base_prefix(rel, WHITEOUT_PREFIX),
            typeflag: typeflag::REG,
            mtime: i64::try_from(now).unwrap_or(0),
            ..GoHeader::default()
        };
        self.write(&h, b"")
    }

    /// The member for the layer's entry at `rel` (no leading `/`), with its metadata.
    pub fn entry(&mut self, rel: &[u8], meta: &Meta) -> Result<()> {
        match self.header(rel, meta)? {
            Some(h) => self.write(&h, rel),
            None => Ok(()),
        }
    }

    /// Ends the archive (two zero blocks); returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(werr)?;
        Ok(self.out)
    }
}

fn bytes_path(rel: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(rel))
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
/// of its whole tree without one, the overlay native diff ([`export_overlay`]) of an upper
/// directory. Returns `out`.
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
        Base::Parent { dir: None, .. } => {
            let tree = read_tree(layer_dir, uid_map, gid_map)?;
            let mut w = DiffWriter::new(out, layer_dir)?;
            walk(&mut w, &tree, b"", None)?;
            w.finish()
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

/// The overlay native diff: every entry of the upper directory (Go `TarWithOptions` with the
/// overlay whiteout converter).
pub fn export_overlay<W: Write>(out: W, upper: &Path, tree: &Node, lowers: &[&Path]) -> Result<W> {
    let mut w = DiffWriter::new(out, upper)?;
    let lowers = super::changes::open_lowers(lowers);
    walk(&mut w, tree, b"", Some(&lowers))?;
    w.finish()
}

/// Go's `TarWithOptions` walk: every entry under `node` in name order, parents first.
/// With `overlay` (the lower layers, nearest first), Go's overlay whiteout converter: a 0:0
/// character device becomes `.wh.NAME` (mode 0, a regular file, its owner and time kept,
/// and the link name it got as a second link of a shared whiteout inode); an opaque
/// directory that a lower layer has is followed by `DIR/.wh..wh..opq` (its permissions,
/// owner and names, time 0).
fn walk<W: Write>(
    w: &mut DiffWriter<W>,
    node: &Node,
    rel: &[u8],
    overlay: Option<&[OwnedFd]>,
) -> Result<()> {
    for (name, child) in &node.children {
        let crel = if rel.is_empty() {
            name.clone()
        } else {
            [rel, b"/", name].concat()
        };
        let Some(mut h) = w.header(&crel, &child.meta)? else {
            continue;
        };
        let ft = FileType::from_raw_mode(child.meta.mode);
        if let Some(lowers) = overlay {
            if ft == FileType::CharacterDevice && (h.devmajor, h.devminor) == (0, 0) {
                h.name = with_base_prefix(&crel, WHITEOUT_PREFIX);
                h.mode = 0;
                h.typeflag = typeflag::REG;
                h.size = 0;
            }
            w.write(&h, &crel)?;
            // Go: no lower layers, no marker; else the first lower that has the path
            // decides (a whiteout there, or of a parent, means no marker).
            if ft == FileType::Directory
                && !lowers.is_empty()
                && super::changes::is_opaque(&w.root, &crel)
                && super::changes::lower_entry(lowers, &crel).is_some()
            {
                let marker = GoHeader {
                    name: [crel.as_slice(), b"/", WHITEOUT_OPAQUE_DIR].concat(),
                    typeflag: typeflag::REG,
                    mode: h.mode & 0o777,
                    uid: h.uid,
                    gid: h.gid,
                    uname: h.uname.clone(),
                    gname: h.gname.clone(),
                    ..GoHeader::default()
                };
                w.write(&marker, b"")?;
            }
        } else {
            w.write(&h, &crel)?;
        }
        if child.meta.is_dir() {
            walk(w, child, &crel, overlay)?;
        }
    }
    Ok(())
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
