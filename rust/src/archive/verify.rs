//! Checking a layer's files against its tar-split records (`containers-storage check`).
//!
//! The records say what the layer's directory must hold: every member of the tar the layer
//! was applied from, with its type, permission bits, link target, size and (for file content)
//! CRC-64/ISO. Their headers are parsed by running the record's raw segments through our tar
//! reader, with each file's content stood in for by zeros that are skipped, not read.
//!
//! - overlay: the directory (`diff/`) holds one layer's changes, `.wh.NAME` whiteouts as
//!   character devices `NAME`, opaque markers as an xattr;
//! - vfs: the directory holds the whole tree, so the expected tree is built by applying the
//!   records of the chain from the base layer up (whiteouts delete, opaque markers hide what
//!   lower layers put in the directory), as apply does.
//!
//! The directory is then walked through directory fds (`openat` with `O_NOFOLLOW`): a path
//! the records do not know is *extra* (directories implied by a deeper member are known), a
//! recorded path that is absent is *missing*, and one whose type, mode, link target, size or
//! (unless `quick`) content CRC differs is *modified*.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, BufRead, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use base64_simd::STANDARD as B64;
use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::Value;

use super::apply::clean;
use super::reassemble::open_record;
use super::tar::{HeaderLimits, Kind, TarReader};
use super::whiteout::{classify, Whiteout};
use crate::error::{Error, Result};

/// Largest extended header accepted in a record (as apply's default limit).
const MAX_HEADER: u64 = 1 << 20;

/// Zeros standing in for file content while a record's headers are parsed.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Read size when computing a file's CRC.
const READ_CHUNK: usize = 1 << 20;

/// How the layer's directory holds its content.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// overlay `diff/` (one layer, whiteouts as devices) rather than a vfs full tree.
    pub overlay: bool,
    /// Types, modes, links and sizes only: no file content is read.
    pub quick: bool,
}

/// What is wrong with one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Recorded, not in the directory.
    Missing,
    /// In the directory, not recorded.
    Extra,
    /// In both, different.
    Modified,
}

impl ProblemKind {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Extra => "extra",
            ProblemKind::Modified => "modified",
        }
    }
}

/// One difference between a layer's directory and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Missing, extra or modified.
    pub kind: ProblemKind,
    /// The path inside the layer (lossy UTF-8).
    pub path: String,
    /// What differs (`size 5, recorded 6`...); empty for missing and extra paths.
    pub detail: String,
}

/// What the records say one path must be.
#[derive(Clone, Debug)]
struct Want {
    kind: Kind,
    mode: u32,
    size: u64,
    crc: Option<u64>,
    link: Vec<u8>,
    /// Index of the record (in the chain) that put it there.
    layer: usize,
    seen: bool,
}

/// A record's NDJSON turned back into a tar stream of headers, with file content as zeros;
/// the file entries' sizes and CRCs are collected on the way.
struct HeaderStream {
    lines: Box<dyn BufRead + Send>,
    line: String,
    number: u64,
    segment: Vec<u8>,
    at: usize,
    zeros: u64,
    files: Vec<(u64, Option<u64>)>,
}

fn bad_record(number: u64, reason: impl Into<String>) -> io::Error {
    io::Error::other(Error::InvalidArchive {
        member: None,
        offset: 0,
        reason: format!("tar-split record {number}: {}", reason.into()),
    })
}

impl HeaderStream {
    fn new(lines: Box<dyn BufRead + Send>) -> Self {
        HeaderStream {
            lines,
            line: String::new(),
            number: 0,
            segment: Vec::new(),
            at: 0,
            zeros: 0,
            files: Vec::new(),
        }
    }

    /// Reads record lines until there is something to hand out; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        while self.at >= self.segment.len() && self.zeros == 0 {
            self.line.clear();
            if self.lines.read_line(&mut self.line)? == 0 {
                return Ok(false);
            }
            self.number += 1;
            if self.line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&self.line)
                .map_err(|e| bad_record(self.number, format!("not JSON: {e}")))?;
            let payload = v.get("payload").and_then(Value::as_str);
            match v.get("type").and_then(Value::as_u64) {
                Some(2) => {
                    self.segment = B64
                        .decode_to_vec(payload.unwrap_or(""))
                        .map_err(|e| bad_record(self.number, format!("bad base64: {e}")))?;
                    self.at = 0;
                }
                Some(1) => {
                    let size = v.get("size").and_then(Value::as_u64).unwrap_or(0);
                    let crc = match payload {
                        Some(p) => {
                            let raw = B64
                                .decode_to_vec(p)
                                .map_err(|e| bad_record(self.number, format!("bad base64: {e}")))?;
                            let raw: [u8; 8] = raw
                                .try_into()
                                .map_err(|_| bad_record(self.number, "CRC is not 8 bytes"))?;
                            Some(u64::from_be_bytes(raw))
                        }
                        None => None,
                    };
                    self.files.push((size, crc));
                    self.zeros = size;
                }
                _ => return Err(bad_record(self.number, "unknown entry type")),
            }
        }
        Ok(true)
    }
}

impl Read for HeaderStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for HeaderStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if !self.refill()? {
            return Ok(&[]);
        }
        if self.at < self.segment.len() {
            Ok(&self.segment[self.at..])
        } else {
            let n = self.zeros.min(ZEROS.len() as u64) as usize;
            Ok(&ZEROS[..n])
        }
    }

    fn consume(&mut self, n: usize) {
        if self.at < self.segment.len() {
            self.at = (self.at + n).min(self.segment.len());
        } else {
            self.zeros -= (n as u64).min(self.zeros);
        }
    }
}

/// The members of one record, in order, each with its size and CRC.
fn read_members(record: &Path) -> Result<Vec<(super::tar::Entry, Option<u64>)>> {
    let stream = HeaderStream::new(open_record(record)?);
    let mut tar = TarReader::new(
        stream,
        HeaderLimits {
            max_header_size: MAX_HEADER,
        },
        None,
    );
    let mut entries = Vec::new();
    while let Some(entry) = tar.next_entry()? {
        entries.push(entry);
    }
    let (_, stream) = tar.into_parts();
    if stream.files.len() != entries.len() {
        return Err(Error::InvalidArchive {
            member: None,
            offset: 0,
            reason: format!(
                "tar-split record {} has {} file entries for {} tar members",
                record.display(),
                stream.files.len(),
                entries.len()
            ),
        });
    }
    Ok(entries
        .into_iter()
        .zip(stream.files)
        .map(|(e, (_size, crc))| (e, crc))
        .collect())
}

/// The parent directory and base name of a cleaned path.
fn split_name(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// Removes `dir`'s descendants put there by a record before `layer` (all with `usize::MAX`).
fn remove_below(want: &mut BTreeMap<Vec<u8>, Want>, dir: &[u8], layer: usize) {
    let lo = if dir.is_empty() {
        Vec::new()
    } else {
        [dir, b"/"].concat()
    };
    let doomed: Vec<Vec<u8>> = want
        .range(lo.clone()..)
        .take_while(|(k, _)| k.starts_with(&lo))
        .filter(|(_, w)| w.layer < layer)
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        want.remove(&k);
    }
}

/// The tree the records of `chain` (base first) describe.
fn expected(chain: &[PathBuf], overlay: bool) -> Result<BTreeMap<Vec<u8>, Want>> {
    let mut want: BTreeMap<Vec<u8>, Want> = BTreeMap::new();
    for (layer, record) in chain.iter().enumerate() {
        for (entry, crc) in read_members(record)? {
            let Some(path) = clean(&entry.name) else {
                continue;
            };
            if path.is_empty() {
                continue;
            }
            let (dir, base) = split_name(&path);
            match classify(base) {
                Whiteout::None => {}
                Whiteout::Opaque => {
                    if !overlay {
                        remove_below(&mut want, dir, layer);
                    }
                    continue;
                }
                Whiteout::Meta | Whiteout::Invalid => continue,
                Whiteout::Delete(name) => {
                    let target = join(dir, name);
                    if overlay {
                        want.insert(
                            target,
                            Want {
                                kind: Kind::Char,
                                mode: 0,
                                size: 0,
                                crc: None,
                                link: Vec::new(),
                                layer,
                                seen: false,
                            },
                        );
                    } else {
                        remove_below(&mut want, &target, usize::MAX);
                        want.remove(&target);
                    }
                    continue;
                }
            }
            let w = if entry.kind == Kind::Hardlink {
                // A hard link is its target's file.
                let target = clean(&entry.link).unwrap_or_default();
                match want.get(&target) {
                    Some(t) => Want {
                        layer,
                        seen: false,
                        ..t.clone()
                    },
                    None => Want {
                        kind: Kind::File,
                        mode: entry.mode,
                        size: 0,
                        crc: None,
                        link: Vec::new(),
                        layer,
                        seen: false,
                    },
                }
            } else {
                Want {
                    kind: entry.kind,
                    mode: entry.mode,
                    size: if entry.kind == Kind::File {
                        entry.size
                    } else {
                        0
                    },
                    crc: if entry.size > 0 { crc } else { None },
                    link: entry.link.clone(),
                    layer,
                    seen: false,
                }
            };
            if w.kind != Kind::Dir {
                // A non-directory replaces a directory and everything in it.
                remove_below(&mut want, &path, usize::MAX);
            }
            want.insert(path, w);
        }
    }
    Ok(want)
}

fn kind_of(st: &rfs::Stat) -> Option<Kind> {
    Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::CharacterDevice => Kind::Char,
        FileType::BlockDevice => Kind::Block,
        FileType::Fifo => Kind::Fifo,
        _ => return None,
    })
}

fn kind_name(kind: Option<Kind>) -> &'static str {
    match kind {
        Some(Kind::File) | Some(Kind::Hardlink) => "regular file",
        Some(Kind::Dir) => "directory",
        Some(Kind::Symlink) => "symlink",
        Some(Kind::Char) => "character device",
        Some(Kind::Block) => "block device",
        Some(Kind::Fifo) => "FIFO",
        None => "socket",
    }
}

struct Walker<'a> {
    want: &'a mut BTreeMap<Vec<u8>, Want>,
    implied: HashSet<Vec<u8>>,
    opts: VerifyOptions,
    root: &'a Path,
    problems: Vec<Problem>,
    buf: Vec<u8>,
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Walker<'_> {
    fn io_err(&self, op: &'static str, rel: &[u8], e: Errno) -> Error {
        Error::io(op, self.root.join(OsStr::from_bytes(rel)), e.into())
    }

    fn report(&mut self, kind: ProblemKind, rel: &[u8], detail: String) {
        self.problems.push(Problem {
            kind,
            path: lossy(rel),
            detail,
        });
    }

    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        let mut names = Vec::new();
        let entries = Dir::read_from(dir).map_err(|e| self.io_err("reading directory", rel, e))?;
        for ent in entries {
            let ent = ent.map_err(|e| self.io_err("reading directory", rel, e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort_unstable();
        for name in names {
            let path = join(rel, &name);
            let st = match rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Gone since the listing: the walk reports what the records say of it.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.io_err("examining", &path, e)),
            };
            let have = kind_of(&st);
            let Some(w) = self.want.get_mut(&path) else {
                if have == Some(Kind::Dir) && self.implied.contains(&path) {
                    self.descend(dir, &name, &path)?;
                } else {
                    self.report(ProblemKind::Extra, &path, String::new());
                }
                continue;
            };
            w.seen = true;
            let w = w.clone();
            let want_kind = if w.kind == Kind::Hardlink {
                Kind::File
            } else {
                w.kind
            };
            if have != Some(want_kind) {
                self.report(
                    ProblemKind::Modified,
                    &path,
                    format!(
                        "{}, recorded {}",
                        kind_name(have),
                        kind_name(Some(want_kind))
                    ),
                );
                continue;
            }
            let mut details = Vec::new();
            if want_kind != Kind::Symlink && want_kind != Kind::Char || w.mode != 0 {
                let mode = st.st_mode & 0o7777;
                if want_kind != Kind::Symlink && mode != w.mode & 0o7777 {
                    details.push(format!("mode {mode:04o}, recorded {:04o}", w.mode & 0o7777));
                }
            }
            match want_kind {
                Kind::Dir => {
                    self.descend(dir, &name, &path)?;
                }
                Kind::Symlink => {
                    let target = rfs::readlinkat(dir, name.as_slice(), Vec::new())
                        .map_err(|e| self.io_err("reading symlink", &path, e))?;
                    if target.as_bytes() != w.link.as_slice() {
                        details.push(format!(
                            "symlink to {:?}, recorded {:?}",
                            lossy(target.as_bytes()),
                            lossy(&w.link)
                        ));
                    }
                }
                Kind::File => {
                    let size = st.st_size as u64;
                    if size != w.size {
                        details.push(format!("size {size}, recorded {}", w.size));
                    } else if let (false, Some(crc)) = (self.opts.quick, w.crc) {
                        if self.crc(dir, &name, &path)? != crc {
                            details.push("content differs from its recorded CRC-64".into());
                        }
                    }
                }
                _ => {}
            }
            if !details.is_empty() {
                self.report(ProblemKind::Modified, &path, details.join(", "));
            }
        }
        Ok(())
    }

    fn descend(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<()> {
        let sub = open_dir_at(dir, name).map_err(|e| self.io_err("opening directory", path, e))?;
        self.walk(sub.as_fd(), path)
    }

    fn crc(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<u64> {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io_err("opening", path, e))?;
        let mut file = std::fs::File::from(fd);
        let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso);
        if self.buf.len() < READ_CHUNK {
            self.buf.resize(READ_CHUNK, 0);
        }
        loop {
            match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => digest.update(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::io(
                        "reading",
                        self.root.join(OsStr::from_bytes(path)),
                        e,
                    ))
                }
            }
        }
        Ok(digest.finalize())
    }
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Compares the layer directory `root` with the records of `chain` (for overlay, the layer's
/// own record; for vfs, the records from the base layer up to this one). Problems come in
/// path order: first what the walk found, then what is missing.
pub fn verify(chain: &[PathBuf], root: &Path, opts: VerifyOptions) -> Result<Vec<Problem>> {
    let mut want = expected(chain, opts.overlay)?;
    let mut implied = HashSet::new();
    for path in want.keys() {
        let mut p: &[u8] = path;
        while let Some(i) = p.iter().rposition(|&b| b == b'/') {
            p = &p[..i];
            if !implied.insert(p.to_vec()) {
                break;
            }
        }
    }
    let dir = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening layer directory", root, e.into()))?;
    let mut walker = Walker {
        want: &mut want,
        implied,
        opts,
        root,
        problems: Vec::new(),
        buf: Vec::new(),
    };
    walker.walk(dir.as_fd(), b"")?;
    let mut problems = walker.problems;
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    for (path, w) in want.iter() {
        if !w.seen && !path_under_reported(&problems, path) {
            problems.push(Problem {
                kind: ProblemKind::Missing,
                path: lossy(path),
                detail: String::new(),
            });
        }
    }
    Ok(problems)
}

/// Whether a problem already reported covers `path` (a directory replaced by a file hides
/// what was recorded in it).
fn path_under_reported(problems: &[Problem], path: &[u8]) -> bool {
    let mut p: &[u8] = path;
    while let Some(i) = p.iter().rposition(|&b| b == b'/') {
        p = &p[..i];
        let s = lossy(p);
        if problems
            .binary_search_by(|q| q.path.as_str().cmp(s.as_str()))
            .is_ok()
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{apply, ApplyOptions, TarSplitSink, WhiteoutFormat};

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
            } else {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
            }
            h.set_mtime(1);
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn applied(dir: &Path, tar: &[u8], format: WhiteoutFormat) -> PathBuf {
        let record = dir.join("record.tar-split.gz");
        let opts = ApplyOptions {
            whiteouts: format,
            ..ApplyOptions::default()
        };
        let target = dir.join("layer");
        std::fs::create_dir(&target).expect("mkdir");
        let sink = TarSplitSink::gzip_file(&record).expect("sink");
        let source = Box::new(std::io::Cursor::new(tar.to_vec()));
        apply(source, None, &target, &opts, Some(sink), None).expect("apply");
        record
    }

    #[test]
    fn finds_missing_extra_and_modified_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = tar_of(&[
            ("etc/", b""),
            ("etc/a", b"hello"),
            ("etc/b", b"world"),
            ("etc/c", b"same size"),
        ]);
        let record = applied(dir.path(), &tar, WhiteoutFormat::Vfs);
        let layer = dir.path().join("layer");
        let opts = VerifyOptions::default();
        assert!(verify(&[record.clone()], &layer, opts)
            .expect("verify")
            .is_empty());
        std::fs::remove_file(layer.join("etc/a")).expect("rm");
        std::fs::write(layer.join("etc/b"), b"longer!").expect("write");
        std::fs::write(layer.join("etc/c"), b"SAME SIZE").expect("write");
        std::fs::write(layer.join("extra"), b"x").expect("write");
        let got = verify(&[record.clone()], &layer, opts).expect("verify");
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|p| (p.kind.as_str(), p.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("modified", "etc/b"),
                ("modified", "etc/c"),
                ("extra", "extra"),
                ("missing", "etc/a")
            ]
        );
        let quick = VerifyOptions {
            quick: true,
            ..opts
        };
        let got = verify(&[record], &layer, quick).expect("verify");
        assert_eq!(got.len(), 3, "{got:?}");
    }
}
