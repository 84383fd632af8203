//! A streaming tar reader that keeps every raw byte it consumes.
//!
//! Formats: V7, POSIX ustar (with `prefix`), GNU (`L`/`K` long names and links, old `S`
//! sparse files with extension blocks), PAX (`x` records for path, linkpath, size, uid, gid,
//! mtime/atime with sub-seconds and `SCHILY.xattr.*`; `g` global headers are skipped, as Go
//! does).
//!
//! Why our own reader instead of the `tar` crate: we need (1) every byte that is not file
//! content, in order, for the tar-split record that lets a layer reproduce its exact tar;
//! (2) bounds on extended headers (CVE-2022-2879: the `tar` crate reads PAX and GNU long
//! names into memory without a cap); (3) the sparse map, to write holes instead of zeros.
//!
//! Hostile-input rules enforced here: header checksums (signed or unsigned sum, as Go),
//! numeric fields (octal or base-256, never negative), PAX record syntax, the PAX `size`
//! driving the stream position (CVE-2025-62518, "TARmageddon"), extended header sizes.

use std::io::{self, BufRead, Read};
use std::ops::Range;

use super::field::{self, get_str, BLOCK};
use super::tarsplit::TarSplitWriter;
use crate::error::{Error, Result};
use crate::strconv::go_quote;

/// The kind of a tar member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file (`0`, `\0`, `7`).
    File,
    /// Hard link (`1`).
    Hardlink,
    /// Symbolic link (`2`).
    Symlink,
    /// Character device (`3`).
    Char,
    /// Block device (`4`).
    Block,
    /// Directory (`5`, GNU `D`, or a V7 file whose name ends in `/`).
    Dir,
    /// FIFO (`6`).
    Fifo,
}

/// One tar member, its extension headers resolved.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The member's name as the archive gives it (PAX `path` > GNU `L` > ustar prefix/name).
    pub name: Vec<u8>,
    /// Link target for hard and symbolic links.
    pub link: Vec<u8>,
    /// What the member is.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner, as in the archive (before any ID mapping).
    pub uid: u64,
    /// Group, as in the archive.
    pub gid: u64,
    /// Logical size of the content (for sparse files, the size with holes).
    pub size: u64,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Access time when the archive has one (PAX `atime`, GNU header field).
    pub atime: Option<(i64, u32)>,
    /// Device numbers for `Char` and `Block`.
    pub dev: (u32, u32),
    /// Extended attributes from `SCHILY.xattr.*` records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For sparse files: the data chunks as (offset, length) in the logical file.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// Limits on what a header may make us hold in memory.
#[derive(Clone, Copy, Debug)]
pub struct HeaderLimits {
    /// Largest PAX extended header or GNU long name/link accepted.
    pub max_header_size: u64,
}

/// Streaming reader over a tar archive.
pub struct TarReader<R: BufRead> {
    src: R,
    limits: HeaderLimits,
    split: Option<TarSplitWriter>,
    /// Bytes consumed so far.
    offset: u64,
    /// Physical content bytes of the current member still to read.
    remaining: u64,
    /// Padding after the current member's content.
    padding: u64,
    /// The current member's content goes to tar-split as a file record (CRC) rather than
    /// raw bytes.
    content_is_file: bool,
    /// Name of the current member, for messages and tar-split.
    current: Option<Vec<u8>>,
    current_size: u64,
    crc: crc_fast::Digest,
    done: bool,
}

/// CRC-64/ISO as tar-split uses it (Go `crc64.ISO`), SIMD-accelerated (crc-fast: about
/// ten times the slice-by-16 table of the `crc` crate here, measured on the corpus base layer).
fn crc64_iso() -> crc_fast::Digest {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso)
}

/// Outcome of a raw read, with EOF seen as data.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<R: BufRead> TarReader<R> {
    /// Reads `src`, recording raw bytes into `split` when given.
    pub fn new(src: R, limits: HeaderLimits, split: Option<TarSplitWriter>) -> Self {
        TarReader {
            src,
            limits,
            split,
            offset: 0,
            remaining: 0,
            padding: 0,
            content_is_file: false,
            current: None,
            current_size: 0,
            crc: crc64_iso(),
            done: false,
        }
    }

    /// The tar-split writer and the source, once the archive has been read.
    pub fn into_parts(self) -> (Option<TarSplitWriter>, R) {
        (self.split, self.src)
    }

    /// Bytes of the uncompressed stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn member_name(&self) -> Option<Vec<u8>> {
        self.current.clone()
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::InvalidArchive {
            member: self.member_name(),
            offset: self.offset,
            reason: reason.into(),
        }
    }

    fn io_err(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.err("unexpected EOF")
        } else {
            match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
                // An error from our own pipeline (decompression, limits) passed through io.
                Some(_) => match e.into_inner().map(|b| b.downcast::<Error>()) {
                    Some(Ok(inner)) => *inner,
                    _ => self.err("read error"),
                },
                None => self.err(format!("reading archive: {e}")),
            }
        }
    }

    /// Reads exactly `buf.len()` raw bytes into `buf`, recording them as a segment.
    fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = read_full(&mut self.src, buf).map_err(|e| self.io_err(e))?;
        self.offset += n as u64;
        if let Some(split) = self.split.as_mut() {
            split.segment_bytes(&buf[..n]);
        }
        Ok(n)
    }

    fn read_raw_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.read_raw(buf)? != buf.len() {
            return Err(self.err("unexpected EOF"));
        }
        Ok(())
    }

    /// Skips `n` raw bytes (recorded as segment bytes).
    fn skip_raw(&mut self, mut n: u64) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            self.read_raw_exact(&mut buf[..want])?;
            n -= want as u64;
        }
        Ok(())
    }

    /// Reads the current member's content into `buf`; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = loop {
            match self.src.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        };
        if n == 0 {
            return Err(self.err("unexpected EOF"));
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        if self.content_is_file {
            self.crc.update(&buf[..n]);
        } else if let Some(split) = self.split.as_mut() {
            split.segment_bytes(&buf[..n]);
        }
        Ok(n)
    }

    /// The next run of the current member's content, borrowed from the reader's buffer
    /// (no copy); empty at its end. Pass the bytes used to [`consume_data`](Self::consume_data).
    pub fn data_chunk(&mut self) -> Result<&[u8]> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let remaining = self.remaining;
        let available = loop {
            match self.src.fill_buf() {
                Ok(b) => break b.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        };
        if available == 0 {
            return Err(self.err("unexpected EOF"));
        }
        let n = (available as u64).min(remaining) as usize;
        let (member, offset) = (self.member_name(), self.offset);
        // The data is buffered now: this fill_buf only hands it out again.
        match self.src.fill_buf() {
            Ok(b) => Ok(&b[..n]),
            Err(e) => Err(Error::InvalidArchive {
                member,
                offset,
                reason: format!("reading archive: {e}"),
            }),
        }
    }

    /// Marks `n` bytes returned by [`data_chunk`](Self::data_chunk) as used.
    pub fn consume_data(&mut self, n: usize) {
        let n = (n as u64).min(self.remaining) as usize;
        if let Ok(b) = self.src.fill_buf() {
            let chunk = &b[..n.min(b.len())];
            if self.content_is_file {
                self.crc.update(chunk);
            } else if let Some(split) = self.split.as_mut() {
                split.segment_bytes(chunk);
            }
        }
        self.src.consume(n);
        self.offset += n as u64;
        self.remaining -= n as u64;
    }

    /// Finishes the current member: skips unread content and padding, and records the
    /// member's file entry in tar-split.
    fn finish_member(&mut self) -> Result<()> {
        let mut buf = [0u8; 8192];
        while self.remaining > 0 {
            let want = (buf.len() as u64).min(self.remaining) as usize;
            self.read_data(&mut buf[..want])?;
        }
        if let Some(name) = self.current.take() {
            if let Some(split) = self.split.as_mut() {
                let crc = std::mem::replace(&mut self.crc, crc64_iso()).finalize();
                let payload = (self.content_is_file && self.current_size > 0).then_some(crc);
                split.file(&name, self.current_size, payload);
            } else {
                self.crc = crc64_iso();
            }
            self.current = Some(name);
        }
        let pad = self.padding;
        self.padding = 0;
        self.skip_raw(pad)?;
        self.current = None;
        Ok(())
    }

    /// Reads a member's extension payload (PAX or GNU long name), bounded.
    fn read_extension(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > self.limits.max_header_size {
            return Err(self.err(format!(
                "{what} of {size} bytes exceeds the limit of {} bytes",
                self.limits.max_header_size
            )));
        }
        let mut data = vec![0u8; size as usize];
        self.read_raw_exact(&mut data)?;
        self.skip_raw(field::padding(size))?;
        Ok(data)
    }

    /// The next member, or `None` at the end of the archive (which is then read to its end).
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        self.finish_member()?;
        let mut pax = Pax::default();
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut gnu_link: Option<Vec<u8>> = None;
        let mut block = [0u8; BLOCK];
        loop {
            let n = self.read_raw(&mut block)?;
            if n == 0 {
                // A clean end at a block boundary without end-of-archive blocks: Go accepts it.
                if pax.any || gnu_name.is_some() || gnu_link.is_some() {
                    return Err(self.err("unexpected EOF"));
                }
                return self.end_of_archive();
            }
            if n < BLOCK {
                return Err(self.err("unexpected EOF"));
            }
            if block.iter().all(|&b| b == 0) {
                if pax.any || gnu_name.is_some() || gnu_link.is_some() {
                    return Err(self.err("invalid tar header: extension header without member"));
                }
                // Go: a zero block must be followed by another zero block (or EOF).
                let mut second = [0u8; BLOCK];
                let m = self.read_raw(&mut second)?;
                if m != 0 && (m < BLOCK || second.iter().any(|&b| b != 0)) {
                    return Err(self.err("invalid tar header"));
                }
                return self.end_of_archive();
            }
            let header = Header(&block);
            if !header.checksum_ok() {
                return Err(self.err("invalid tar header: bad checksum"));
            }
            let typeflag = block[field::TYPEFLAG];
            let size = header
                .numeric(field::SIZE)
                .ok_or_else(|| self.err("invalid tar header"))?;
            match typeflag {
                b'x' => {
                    let data = self.read_extension(size, "PAX extended header")?;
                    pax.parse(&data).map_err(|r| self.err(r))?;
                    continue;
                }
                b'g' => {
                    // Global PAX header: ignored for extraction, as Go's applier does.
                    self.read_extension(size, "PAX global header")?;
                    continue;
                }
                b'L' => {
                    let data = self.read_extension(size, "GNU long name")?;
                    gnu_name = Some(get_str(&data).to_vec());
                    continue;
                }
                b'K' => {
                    let data = self.read_extension(size, "GNU long link")?;
                    gnu_link = Some(get_str(&data).to_vec());
                    continue;
                }
                _ => {}
            }
            return self
                .member(&header, typeflag, size, pax, gnu_name, gnu_link)
                .map(Some);
        }
    }

    fn end_of_archive(&mut self) -> Result<Option<Entry>> {
        // Everything after the end-of-archive blocks (record padding, trailing bytes) belongs
        // to the stream and to its digest; keep it in tar-split so reproduction is exact.
        let mut buf = [0u8; 8192];
        while self.read_raw(&mut buf)? > 0 {}
        self.done = true;
        if let Some(split) = self.split.as_mut() {
            split.flush_segment();
        }
        Ok(None)
    }

    fn member(
        &mut self,
        header: &Header<'_>,
        typeflag: u8,
        header_size: u64,
        pax: Pax,
        gnu_name: Option<Vec<u8>>,
        gnu_link: Option<Vec<u8>>,
    ) -> Result<Entry> {
        let bad = |me: &Self| me.err("invalid tar header");
        let mut name = header.name();
        let mut pax = pax;
        if let Some(n) = gnu_name {
            name = n;
        }
        if let Some(n) = pax.path {
            name = n;
        }
        self.current = Some(name.clone());
        let mut link = get_str(&header.0[field::LINKNAME]).to_vec();
        if let Some(l) = gnu_link {
            link = l;
        }
        if let Some(l) = pax.linkpath {
            link = l;
        }
        let mode = header.numeric(field::MODE).ok_or_else(|| bad(self))? as u32 & 0o7777;
        let uid = match pax.uid {
            Some(u) => u,
            None => header.numeric(field::UID).ok_or_else(|| bad(self))?,
        };
        let gid = match pax.gid {
            Some(g) => g,
            None => header.numeric(field::GID).ok_or_else(|| bad(self))?,
        };
        let mtime = match pax.mtime {
            Some(t) => t,
            None => (
                header.numeric(field::MTIME).ok_or_else(|| bad(self))? as i64,
                0,
            ),
        };
        let gnu = header.is_gnu();
        let atime = pax.atime.or_else(|| {
            if gnu {
                header
                    .numeric(345..357)
                    .filter(|&a| a > 0)
                    .map(|a| (a as i64, 0))
            } else {
                None
            }
        });
        let is_ustar = header.is_ustar() || gnu;
        let dev = if is_ustar && matches!(typeflag, b'3' | b'4') {
            (
                header.numeric(field::DEVMAJOR).ok_or_else(|| bad(self))? as u32,
                header.numeric(field::DEVMINOR).ok_or_else(|| bad(self))? as u32,
            )
        } else {
            (0, 0)
        };
        // PAX size overrides the header's: it is what the stream really holds.
        let physical = pax.size.unwrap_or(header_size);
        let kind = match typeflag {
            // `7` (contiguous file) is no layer's: Go's pkg/archive refuses it below.
            b'0' | 0 => {
                if name.ends_with(b"/") && !header.is_ustar() && !gnu {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            b'S' => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'V' => {
                // A GNU volume label: metadata, not a file. Skip it as a raw member.
                self.remaining = physical;
                self.padding = field::padding(physical);
                self.content_is_file = false;
                self.current_size = 0;
                return self.next_entry()?.ok_or_else(|| self.err("unexpected EOF"));
            }
            other => {
                // Go's pkg/archive (createTarFile) in the same words.
                return Err(self.err(format!("unhandled tar header type {other}")));
            }
        };
        // Sparse files: old GNU `S` members, or PAX members with GNU.sparse.* records
        // (formats 0.0, 0.1 and 1.0, as Go's archive/tar reads them).
        self.remaining = physical;
        self.padding = field::padding(physical);
        self.content_is_file = false;
        let mut sparse = None;
        let mut size = physical;
        let map = if typeflag == b'S' {
            Some(self.read_old_gnu_sparse(header)?)
        } else if pax.sparse.any && kind == Kind::File {
            if let Some(n) = pax.sparse.name.take() {
                name = n;
                self.current = Some(name.clone());
            }
            let real = pax
                .sparse
                .realsize
                .or(pax.sparse.size)
                .ok_or_else(|| self.err("invalid tar header: sparse file without its size"))?;
            let map = if pax.sparse.major == Some(1) && pax.sparse.minor == Some(0) {
                self.read_sparse_map_1_0()?
            } else if let Some(text) = pax.sparse.map.take() {
                pairs(&parse_decimal_list(&text, b',').ok_or_else(|| bad(self))?)
                    .ok_or_else(|| bad(self))?
            } else {
                pairs(&pax.sparse.pairs).ok_or_else(|| bad(self))?
            };
            Some((map, real))
        } else {
            None
        };
        if let Some((map, real)) = map {
            let mut end = 0u64;
            for &(off, len) in &map {
                if off < end || off.checked_add(len).is_none_or(|e| e > real) {
                    return Err(self.err("invalid tar header: bad sparse map"));
                }
                end = off + len;
            }
            let data: u64 = map.iter().map(|&(_, l)| l).sum();
            if data != self.remaining {
                return Err(self.err("invalid tar header: sparse map does not match size"));
            }
            sparse = Some(map);
            size = real;
        }
        // Only regular, non-sparse content is file content for tar-split; anything else
        // (sparse data, bytes in a link's or device's member) is kept raw so reproduction is
        // exact.
        self.content_is_file = kind == Kind::File && sparse.is_none();
        self.current_size = if self.content_is_file { physical } else { 0 };
        if let Some(split) = self.split.as_mut() {
            split.flush_segment();
        }
        if kind != Kind::File {
            size = 0;
        }
        Ok(Entry {
            name,
            link,
            kind,
            mode,
            uid,
            gid,
            size,
            mtime,
            atime,
            dev,
            xattrs: pax.xattrs,
            sparse,
        })
    }

    /// Reads the PAX 1.0 sparse map at the start of the member's data: decimal numbers, one
    /// per line (count, then offset and length pairs), padded to a block.
    fn read_sparse_map_1_0(&mut self) -> Result<Vec<(u64, u64)>> {
        let mut text = Vec::new();
        let mut block = [0u8; BLOCK];
        loop {
            let mut got = 0;
            while got < BLOCK {
                let n = self.read_data(&mut block[got..])?;
                if n == 0 {
                    return Err(self.err("unexpected EOF"));
                }
                got += n;
            }
            text.extend_from_slice(&block);
            if text.len() as u64 > self.limits.max_header_size {
                return Err(self.err("sparse map exceeds the header size limit"));
            }
            let lines = text.iter().filter(|&&b| b == b'\n').count();
            let count = text
                .split(|&b| b == b'\n')
                .next()
                .filter(|_| lines > 0)
                .and_then(|l| std::str::from_utf8(l).ok()?.parse::<usize>().ok());
            if let Some(count) = count {
                if lines > count.saturating_mul(2) {
                    let numbers: Option<Vec<u64>> = text
                        .split(|&b| b == b'\n')
                        .skip(1)
                        .take(count.saturating_mul(2))
                        .map(|l| std::str::from_utf8(l).ok()?.parse::<u64>().ok())
                        .collect();
                    let numbers =
                        numbers.ok_or_else(|| self.err("invalid tar header: bad sparse map"))?;
                    return pairs(&numbers)
                        .ok_or_else(|| self.err("invalid tar header: bad sparse map"));
                }
            } else if lines > 0 {
                return Err(self.err("invalid tar header: bad sparse map"));
            }
        }
    }

    /// Reads the old GNU sparse map: four slots in the header, then extension blocks.
    fn read_old_gnu_sparse(&mut self, header: &Header<'_>) -> Result<(Vec<(u64, u64)>, u64)> {
        let bad = |me: &Self| me.err("invalid tar header: bad sparse map");
        let real = header.numeric(483..495).ok_or_else(|| bad(self))?;
        let mut map = Vec::new();
        let mut push = |me: &Self, block: &[u8], at: usize| -> Result<bool> {
            let h = Header(block);
            if block[at] == 0 {
                return Ok(false);
            }
            let off = h.numeric(at..at + 12).ok_or_else(|| bad(me))?;
            let len = h.numeric(at + 12..at + 24).ok_or_else(|| bad(me))?;
            map.push((off, len));
            Ok(true)
        };
        for i in 0..4 {
            if !push(self, header.0, 386 + i * 24)? {
                break;
            }
        }
        let mut extended = header.0[482] != 0;
        let mut blocks = 0u64;
        while extended {
            blocks += 1;
            if blocks * BLOCK as u64 > self.limits.max_header_size {
                return Err(self.err("GNU sparse map exceeds the header size limit"));
            }
            let mut block = [0u8; BLOCK];
            self.read_raw_exact(&mut block)?;
            for i in 0..21 {
                if !push(self, &block, i * 24)? {
                    break;
                }
            }
            extended = block[504] != 0;
        }
        Ok((map, real))
    }
}

/// `[a, b, c, d]` -> `[(a, b), (c, d)]`; `None` for an odd count.
fn pairs(numbers: &[u64]) -> Option<Vec<(u64, u64)>> {
    if numbers.len() % 2 != 0 {
        return None;
    }
    Some(numbers.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// `"1,2,3"` -> `[1, 2, 3]`.
fn parse_decimal_list(text: &[u8], sep: u8) -> Option<Vec<u64>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(|&b| b == sep)
        .map(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
        .collect()
}

/// A 512-byte header block.
struct Header<'a>(&'a [u8]);

impl Header<'_> {
    fn is_ustar(&self) -> bool {
        &self.0[field::MAGIC] == field::USTAR_MAGIC
    }

    fn is_gnu(&self) -> bool {
        &self.0[field::MAGIC.start..field::VERSION.end] == field::GNU_MAGIC_VERSION
    }

    fn name(&self) -> Vec<u8> {
        let name = get_str(&self.0[field::NAME]);
        let prefix = get_str(&self.0[field::PREFIX]);
        if self.is_ustar() && !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(name);
            full
        } else {
            name.to_vec()
        }
    }

    /// Go accepts either the unsigned or the signed sum of the header bytes, with the
    /// checksum field counted as spaces.
    fn checksum_ok(&self) -> bool {
        let Some(stored) = self.numeric(field::CHKSUM) else {
            return false;
        };
        stored == u64::from(field::checksum(self.0))
            || stored as i64 == i64::from(field::checksum_signed(self.0))
    }

    /// The numeric field at `at` ([`field::get_numeric`]).
    fn numeric(&self, at: Range<usize>) -> Option<u64> {
        field::get_numeric(&self.0[at])
    }
}

/// PAX records that matter for extraction.
#[derive(Default)]
struct Pax {
    any: bool,
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    atime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: PaxSparse,
}

/// GNU.sparse.* records (PAX sparse formats 0.0, 0.1, 1.0).
#[derive(Default)]
struct PaxSparse {
    any: bool,
    major: Option<u64>,
    minor: Option<u64>,
    name: Option<Vec<u8>>,
    realsize: Option<u64>,
    size: Option<u64>,
    map: Option<Vec<u8>>,
    /// Format 0.0: `offset` and `numbytes` records, in order.
    pairs: Vec<u64>,
}

impl Pax {
    /// Parses `"%d %s=%s\n"` records; later headers override earlier ones.
    fn parse(&mut self, mut data: &[u8]) -> std::result::Result<(), String> {
        self.any = true;
        let bad = || "invalid tar header: malformed PAX record".to_string();
        while !data.is_empty() {
            let sp = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            let len: usize = std::str::from_utf8(&data[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err(bad());
            }
            let record = &data[sp + 1..len - 1];
            data = &data[len..];
            let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let num = |v: &[u8]| -> std::result::Result<u64, String> {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("invalid tar header: bad PAX number {}", go_quote(v)))
            };
            if value.is_empty() && !key.starts_with(b"GNU.sparse.") {
                // Go's reader keeps the header's own value for an empty record, and sets no
                // xattr for an empty `SCHILY.xattr.*` one; a later record overrides an
                // earlier one of the same key, so an empty one also drops it.
                match key {
                    b"path" => self.path = None,
                    b"linkpath" => self.linkpath = None,
                    b"size" => self.size = None,
                    b"uid" => self.uid = None,
                    b"gid" => self.gid = None,
                    b"mtime" => self.mtime = None,
                    b"atime" => self.atime = None,
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.".as_slice()) {
                            self.xattrs.retain(|(n, _)| n != name);
                        }
                    }
                }
                continue;
            }
            match key {
                b"path" | b"linkpath" => {
                    // Go rejects NUL in PAX path and linkpath.
                    if value.contains(&0) {
                        return Err(bad());
                    }
                    if key == b"path" {
                        self.path = Some(value.to_vec());
                    } else {
                        self.linkpath = Some(value.to_vec());
                    }
                }
                b"size" => self.size = Some(num(value)?),
                b"uid" => self.uid = Some(num(value)?),
                b"gid" => self.gid = Some(num(value)?),
                b"mtime" => self.mtime = Some(parse_pax_time(value).ok_or_else(bad)?),
                b"atime" => self.atime = Some(parse_pax_time(value).ok_or_else(bad)?),
                _ if key.starts_with(b"SCHILY.xattr.") => {
                    let name = key[b"SCHILY.xattr.".len()..].to_vec();
                    self.xattrs.retain(|(n, _)| *n != name);
                    self.xattrs.push((name, value.to_vec()));
                }
                _ if key.starts_with(b"GNU.sparse.") => {
                    let sp = &mut self.sparse;
                    sp.any = true;
                    match &key[b"GNU.sparse.".len()..] {
                        b"major" => sp.major = Some(num(value)?),
                        b"minor" => sp.minor = Some(num(value)?),
                        b"name" => sp.name = Some(value.to_vec()),
                        b"realsize" => sp.realsize = Some(num(value)?),
                        b"size" => sp.size = Some(num(value)?),
                        b"map" => sp.map = Some(value.to_vec()),
                        b"offset" | b"numbytes" => {
                            if sp.pairs.len() as u64 >= (1 << 20) {
                                return Err("invalid tar header: sparse map too long".into());
                            }
                            sp.pairs.push(num(value)?);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `"1700000000.123456789"` (or negative) -> (seconds, nanoseconds).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let negative = int.starts_with('-');
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    if negative && nanos > 0 {
        // -1.5 means 1.5 s before the epoch: -2 s + 0.5 s.
        return Some((secs.checked_sub(1)?, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_time() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"1.x"), None);
    }

    #[test]
    fn pax_records() {
        let mut pax = Pax::default();
        pax.parse(b"16 path=foo/bar\n25 SCHILY.xattr.user.a=b\n")
            .expect("parse");
        assert_eq!(pax.path.as_deref(), Some(&b"foo/bar"[..]));
        assert_eq!(pax.xattrs, vec![(b"user.a".to_vec(), b"b".to_vec())]);
        assert!(Pax::default().parse(b"99 path=x\n").is_err());
        assert!(Pax::default().parse(b"8 path=x\n").is_err());
        assert!(Pax::default().parse(b"9 path=x\n").is_ok());
    }

    #[test]
    fn empty_pax_records_set_nothing() {
        // Go keeps the header's value for an empty record and sets no empty xattr; a later
        // empty record drops an earlier one.
        let mut pax = Pax::default();
        pax.parse(b"25 SCHILY.xattr.user.a=b\n25 SCHILY.xattr.user.c=d\n24 SCHILY.xattr.user.a=\n")
            .expect("parse");
        pax.parse(b"7 uid=\n9 mtime=\n8 path=\n").expect("parse");
        assert_eq!(pax.xattrs, vec![(b"user.c".to_vec(), b"d".to_vec())]);
        assert_eq!((pax.uid, pax.mtime, pax.path), (None, None, None));
    }
}
