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
    line: Vec<u8>,
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
            line: Vec::new(),
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
            if self.lines.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(false);
            }
            self.number += 1;
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let parsed = self.take_line(&line);
            self.line = line;
            parsed?;
        }
        Ok(true)
    }

    /// Takes one record line: a segment's bytes, or a file entry's size and CRC.
    fn take_line(&mut self, line: &[u8]) -> io::Result<()> {
        let (kind, size, payload) = match fast_fields(line) {
            Some(fields) => fields,
            None => return self.take_json(line),
        };
        match kind {
            2 => {
                self.segment.clear();
                self.at = 0;
                if B64
                    .decode_append(payload.unwrap_or(b""), &mut self.segment)
                    .is_err()
                {
                    return self.take_json(line);
                }
            }
            1 => {
                let crc = match payload {
                    Some(p) => match B64.decode_to_vec(p) {
                        Ok(raw) => Some(raw),
                        Err(_) => return self.take_json(line),
                    },
                    None => None,
                };
                self.file(size, crc)?;
            }
            _ => return Err(bad_record(self.number, "unknown entry type")),
        }
        Ok(())
    }

    /// The general path: the line as JSON (any key order, escapes).
    fn take_json(&mut self, line: &[u8]) -> io::Result<()> {
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| bad_record(self.number, format!("not JSON: {e}")))?;
        let payload = v.get("payload").and_then(Value::as_str);
        let decode = |p: &str| {
            B64.decode_to_vec(p)
                .map_err(|e| bad_record(self.number, format!("bad base64: {e}")))
        };
        match v.get("type").and_then(Value::as_u64) {
            Some(2) => {
                self.segment = decode(payload.unwrap_or(""))?;
                self.at = 0;
            }
            Some(1) => {
                let size = v.get("size").and_then(Value::as_u64).unwrap_or(0);
                let crc = payload.map(decode).transpose()?;
                self.file(size, crc)?;
            }
            _ => return Err(bad_record(self.number, "unknown entry type")),
        }
        Ok(())
    }

    fn file(&mut self, size: u64, crc: Option<Vec<u8>>) -> io::Result<()> {
        let crc = match crc {
            Some(raw) => {
                let raw: [u8; 8] = raw
                    .try_into()
                    .map_err(|_| bad_record(self.number, "CRC is not 8 bytes"))?;
                Some(u64::from_be_bytes(raw))
            }
            None => None,
        };
        self.files.push((size, crc));
        self.zeros = size;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn number_at(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

/// `(type, size, payload)` of a record line laid out as tar-split writes it (`type` first,
/// `position` last, the payload's base64 unescaped); None for anything else, which is then
/// read as JSON. Keys are matched with their quotes and colon: in a name, a quote is
/// escaped, so a name cannot fake one.
fn fast_fields(line: &[u8]) -> Option<(u64, u64, Option<&[u8]>)> {
    const TYPE: &[u8] = b"{\"type\":";
    const PAYLOAD: &[u8] = b"\"payload\":";
    const POSITION: &[u8] = b"\",\"position\":";
    let kind = number_at(line.strip_prefix(TYPE)?)?;
    let at = find(line, PAYLOAD)? + PAYLOAD.len();
    let rest = &line[at..];
    let payload = if rest.starts_with(b"null") {
        None
    } else {
        rest.strip_prefix(b"\"")?;
        // The payload runs to the `","position":` that ends the line.
        let tail = line.len().saturating_sub(48);
        let end = tail + find(&line[tail..], POSITION)?;
        if end < at + 1 {
            return None;
        }
        Some(&line[at + 1..end])
    };
    let size = match find(&line[..at], b"\"size\":") {
        Some(i) => number_at(&line[i + 7..])?,
        None => 0,
    };
    Some((kind, size, payload))
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

/// What the walk found at one path.
struct Have {
    path: Vec<u8>,
    kind: Option<Kind>,
    mode: u32,
    size: u64,
    ino: u64,
    link: Vec<u8>,
    /// CRC-64 of a regular file's content (full checks only).
    crc: Option<u64>,
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Threads reading file contents for their CRCs: with a cold cache, reads of many small
/// files wait on the disk one by one, so several in flight finish sooner.
const CRC_THREADS: usize = 4;

/// Walks the layer directory: each directory's entries are examined in inode order (near
/// the order of the inode table on disk), then its subdirectories.
struct Scanner<'a> {
    root: &'a Path,
    out: Vec<Have>,
}

fn io_err(root: &Path, op: &'static str, rel: &[u8], e: Errno) -> Error {
    Error::io(op, root.join(OsStr::from_bytes(rel)), e.into())
}

impl Scanner<'_> {
    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        let root = self.root;
        let mut names = Vec::new();
        let entries = Dir::read_from(dir).map_err(|e| io_err(root, "reading directory", rel, e))?;
        for ent in entries {
            let ent = ent.map_err(|e| io_err(root, "reading directory", rel, e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push((ent.ino(), name.to_vec()));
            }
        }
        names.sort_unstable();
        let mut subdirs = Vec::new();
        for (_ino, name) in names {
            let path = join(rel, &name);
            let st = match rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Gone since the listing: what the records say of it is reported.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err(root, "examining", &path, e)),
            };
            let kind = kind_of(&st);
            let link = if kind == Some(Kind::Symlink) {
                rfs::readlinkat(dir, name.as_slice(), Vec::new())
                    .map_err(|e| io_err(root, "reading symlink", &path, e))?
                    .into_bytes()
            } else {
                Vec::new()
            };
            if kind == Some(Kind::Dir) {
                subdirs.push((name, path.clone()));
            }
            self.out.push(Have {
                path,
                kind,
                mode: st.st_mode & 0o7777,
                size: st.st_size as u64,
                ino: st.st_ino,
                link,
                crc: None,
            });
        }
        for (name, path) in subdirs {
            let fd =
                open_dir_at(dir, &name).map_err(|e| io_err(root, "opening directory", &path, e))?;
            self.walk(fd.as_fd(), &path)?;
        }
        Ok(())
    }
}

/// The CRC-64 of the regular file at `rel` under `root` (never following a symlink).
fn file_crc(root: BorrowedFd<'_>, root_path: &Path, rel: &[u8], buf: &mut [u8]) -> Result<u64> {
    let fd = crate::fsutil::open_in_root(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
    )
    .map_err(|e| io_err(root_path, "opening", rel, e))?;
    let mut file = std::fs::File::from(fd);
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso);
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => digest.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::io(
                    "reading",
                    root_path.join(OsStr::from_bytes(rel)),
                    e,
                ))
            }
        }
    }
    Ok(digest.finalize())
}

/// Fills in the CRCs of the regular files in `haves`, in inode order, on a few threads.
fn crcs(root: BorrowedFd<'_>, root_path: &Path, haves: &mut [Have]) -> Result<()> {
    let mut jobs: Vec<usize> = (0..haves.len())
        .filter(|&i| haves[i].kind == Some(Kind::File) && haves[i].size > 0)
        .collect();
    jobs.sort_unstable_by_key(|&i| haves[i].ino);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let paths: Vec<&[u8]> = jobs.iter().map(|&i| haves[i].path.as_slice()).collect();
    let results: Vec<Result<Vec<(usize, u64)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CRC_THREADS.min(jobs.len()).max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut buf = vec![0u8; READ_CHUNK];
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(k) else {
                            return Ok(done);
                        };
                        match file_crc(root, root_path, path, &mut buf) {
                            Ok(crc) => done.push((k, crc)),
                            // Removed since the walk: reported by the comparison.
                            Err(Error::Io { source, .. })
                                if source.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        "reading",
                        root_path,
                        io::Error::other("a CRC thread panicked"),
                    ))
                })
            })
            .collect()
    });
    for r in results {
        for (k, crc) in r? {
            haves[jobs[k]].crc = Some(crc);
        }
    }
    Ok(())
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Orders paths component by component (`a`, its subtree, then `a.b`): a directory's
/// subtree follows it.
fn tree_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// Everything under `root`, in [`tree_order`], with the regular files' CRCs unless `quick`.
fn scan(root: &Path, quick: bool) -> Result<Vec<Have>> {
    let dir = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening layer directory", root, e.into()))?;
    let mut scanner = Scanner {
        root,
        out: Vec::new(),
    };
    scanner.walk(dir.as_fd(), b"")?;
    let mut haves = scanner.out;
    if !quick {
        crcs(dir.as_fd(), root, &mut haves)?;
    }
    haves.sort_unstable_by(|a, b| tree_order(&a.path, &b.path));
    Ok(haves)
}

/// What differs between a recorded path and the one found.
fn differences(w: &Want, h: &Have, quick: bool) -> Vec<String> {
    let mut details = Vec::new();
    let want_kind = if w.kind == Kind::Hardlink {
        Kind::File
    } else {
        w.kind
    };
    if h.kind != Some(want_kind) {
        details.push(format!(
            "{}, recorded {}",
            kind_name(h.kind),
            kind_name(Some(want_kind))
        ));
        return details;
    }
    // Whiteout devices carry no mode of their own; symlinks' modes mean nothing.
    let whiteout = want_kind == Kind::Char && w.mode == 0;
    if want_kind != Kind::Symlink && !whiteout && h.mode != w.mode & 0o7777 {
        details.push(format!(
            "mode {:04o}, recorded {:04o}",
            h.mode,
            w.mode & 0o7777
        ));
    }
    match want_kind {
        Kind::Symlink if h.link != w.link => details.push(format!(
            "symlink to {:?}, recorded {:?}",
            lossy(&h.link),
            lossy(&w.link)
        )),
        Kind::File if h.size != w.size => {
            details.push(format!("size {}, recorded {}", h.size, w.size))
        }
        Kind::File if !quick && w.crc.is_some() && h.crc != w.crc => {
            details.push("content differs from its recorded CRC-64".into())
        }
        _ => {}
    }
    details
}

/// Compares a layer directory `root` with the records of `chain` (for overlay, the layer's
/// own record; for vfs, the records from the base layer up to this one). The records are
/// read on a thread of their own while the directory is walked. Problems come in path
/// order: first what the walk found, then what is missing.
pub fn verify(chain: &[PathBuf], root: &Path, opts: VerifyOptions) -> Result<Vec<Problem>> {
    let (want, haves) = std::thread::scope(|s| {
        let records = s.spawn(|| expected(chain, opts.overlay));
        let haves = scan(root, opts.quick);
        let want = records.join().unwrap_or_else(|_| {
            Err(Error::InvalidArchive {
                member: None,
                offset: 0,
                reason: "reading the tar-split records failed".into(),
            })
        });
        (want, haves)
    });
    let mut want = want?;
    let haves = haves?;
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
    let mut problems = Vec::new();
    // A path reported as extra or of the wrong type: what is below it is not looked at.
    let mut hidden: Option<Vec<u8>> = None;
    for h in &haves {
        if let Some(p) = &hidden {
            if h.path.len() > p.len() && h.path.starts_with(p) && h.path[p.len()] == b'/' {
                continue;
            }
            hidden = None;
        }
        let Some(w) = want.get_mut(&h.path) else {
            if h.kind == Some(Kind::Dir) && implied.contains(&h.path) {
                continue;
            }
            problems.push(Problem {
                kind: ProblemKind::Extra,
                path: lossy(&h.path),
                detail: String::new(),
            });
            hidden = Some(h.path.clone());
            continue;
        };
        w.seen = true;
        let details = differences(w, h, opts.quick);
        if !details.is_empty() {
            if h.kind == Some(Kind::Dir) {
                hidden = Some(h.path.clone());
            }
            problems.push(Problem {
                kind: ProblemKind::Modified,
                path: lossy(&h.path),
                detail: details.join(", "),
            });
        }
    }
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
        applied_as(dir, "record.tar-split.gz", tar, format)
    }

    /// Applies `tar` into `dir/layer` (which may hold a parent's tree already).
    fn applied_as(dir: &Path, name: &str, tar: &[u8], format: WhiteoutFormat) -> PathBuf {
        let record = dir.join(name);
        let opts = ApplyOptions {
            whiteouts: format,
            ..ApplyOptions::default()
        };
        let target = dir.join("layer");
        if !target.exists() {
            std::fs::create_dir(&target).expect("mkdir");
        }
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
        assert!(verify(std::slice::from_ref(&record), &layer, opts)
            .expect("verify")
            .is_empty());
        std::fs::remove_file(layer.join("etc/a")).expect("rm");
        std::fs::write(layer.join("etc/b"), b"longer!").expect("write");
        std::fs::write(layer.join("etc/c"), b"SAME SIZE").expect("write");
        std::fs::write(layer.join("extra"), b"x").expect("write");
        let got = verify(std::slice::from_ref(&record), &layer, opts).expect("verify");
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

    #[test]
    fn whiteouts_in_a_chain_and_in_overlay_form() {
        let base = tar_of(&[("a/", b""), ("a/x", b"x"), ("a/y", b"y"), ("b", b"bee")]);
        let upper = tar_of(&[
            ("a/", b""),
            ("a/.wh..wh..opq", b""),
            ("a/z", b"zed"),
            (".wh.b", b""),
        ]);
        // vfs: the chain's records against the full tree.
        let dir = tempfile::tempdir().expect("tempdir");
        let r1 = applied_as(dir.path(), "1.gz", &base, WhiteoutFormat::Vfs);
        let r2 = applied_as(dir.path(), "2.gz", &upper, WhiteoutFormat::Vfs);
        let layer = dir.path().join("layer");
        let chain = [r1.clone(), r2.clone()];
        let opts = VerifyOptions::default();
        assert_eq!(verify(&chain, &layer, opts).expect("verify"), []);
        // The base's record alone: the upper layer's work shows as damage.
        let got = verify(std::slice::from_ref(&r1), &layer, opts).expect("verify");
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|p| (p.kind.as_str(), p.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("extra", "a/z"),
                ("missing", "a/x"),
                ("missing", "a/y"),
                ("missing", "b")
            ]
        );

        // overlay: one layer's record against its diff directory, whiteouts as devices.
        let dir = tempfile::tempdir().expect("tempdir");
        let r = applied(dir.path(), &upper, WhiteoutFormat::Overlay);
        let layer = dir.path().join("layer");
        let overlay = VerifyOptions {
            overlay: true,
            quick: false,
        };
        assert_eq!(
            verify(std::slice::from_ref(&r), &layer, overlay).expect("verify"),
            []
        );
        std::fs::remove_file(layer.join("b")).expect("rm");
        std::fs::write(layer.join("b"), b"").expect("write");
        let got = verify(std::slice::from_ref(&r), &layer, overlay).expect("verify");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].kind, got[0].path.as_str()),
            (ProblemKind::Modified, "b")
        );
        assert_eq!(got[0].detail, "regular file, recorded character device");
    }

    #[test]
    fn record_lines_fast_and_as_json() {
        type Fields<'a> = Option<(u64, u64, Option<&'a [u8]>)>;
        let lines: [(&[u8], Fields); 5] = [
            (
                b"{\"type\":2,\"payload\":\"aGVhZGVy\",\"position\":0}\n",
                Some((2, 0, Some(b"aGVhZGVy"))),
            ),
            (
                b"{\"type\":1,\"name\":\"a\\\",\\\"size\\\":9\",\"size\":6,\"payload\":\"AAAAAAAAEjQ=\",\"position\":1}\n",
                Some((1, 6, Some(b"AAAAAAAAEjQ="))),
            ),
            (
                b"{\"type\":1,\"name\":\"etc/\",\"payload\":null,\"position\":2}\n",
                Some((1, 0, None)),
            ),
            // Another key order: read as JSON.
            (b"{\"position\":3,\"type\":2,\"payload\":\"eA==\"}\n", None),
            (b"{\"type\":2,\"payload\":\"eA\\u003d\\u003d\",\"position\":4}\n", Some((2, 0, Some(b"eA\\u003d\\u003d")))),
        ];
        for (line, want) in lines {
            assert_eq!(fast_fields(line), want, "{}", String::from_utf8_lossy(line));
        }
        // Every line decodes the same through the stream, whichever path it takes.
        let text: Vec<u8> = lines.iter().flat_map(|(l, _)| l.to_vec()).collect();
        let mut stream = HeaderStream::new(Box::new(std::io::Cursor::new(text)));
        let mut out = Vec::new();
        stream.read_to_end(&mut out).expect("read");
        let mut want = b"header".to_vec();
        want.extend_from_slice(&[0; 6]);
        want.extend_from_slice(b"xx");
        assert_eq!(out, want);
        assert_eq!(stream.files, [(6, Some(0x1234)), (0, None)]);
    }
}
