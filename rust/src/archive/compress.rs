//! Compression detection and the decoding thread.
//!
//! One pass over the input: a second thread reads the source, hashes the bytes as given
//! (`compressed-diff-digest`), decompresses, hashes the tar (`diff-digest`, the DiffID) and
//! hands the tar to the extracting thread in chunks over a bounded channel, so that
//! decompression and hashing run beside extraction and memory stays bounded.
//!
//! Detection is by magic number, as Go's `archive.DetectCompression`: bzip2 `42 5A 68`,
//! gzip `1F 8B 08`, xz `FD 37 7A 58 5A 00`, zstd `28 B5 2F FD` (and zstd skippable frames
//! `5? 2A 4D 18`, which may start a zstd stream); anything else is an uncompressed tar.
//! gzip, bzip2 and xz decoders accept several concatenated members; zstd several frames.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use sha2::{Digest, Sha256};

use super::options::Interrupt;
use crate::error::{Error, Result};

/// How long a wait for input lasts before the caller's [`Interrupt`] is consulted.
const STALL_CHECK: Duration = Duration::from_millis(100);

/// A pipe or socket read after `poll`, so that a wait for data that never comes ends once
/// `cancelled` is set (checked every 100 ms) instead of blocking the decoder thread forever.
pub struct PollingReader {
    file: File,
    cancelled: Arc<AtomicBool>,
}

impl PollingReader {
    /// Reads `file`, giving up when `cancelled` is set while no data is ready.
    pub fn new(file: File, cancelled: Arc<AtomicBool>) -> Self {
        PollingReader { file, cancelled }
    }
}

impl Read for PollingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: STALL_CHECK.as_nanos() as _,
        };
        loop {
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(Errno::INTR) => {
                    if self.cancelled.load(Ordering::Relaxed) {
                        return Err(io::Error::other(Error::Cancelled));
                    }
                }
                Ok(_) => return self.file.read(buf),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Size of the chunks handed from the decoding thread to the extracting thread.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the threads (memory: `CHUNK * (DEPTH + 2)`).
const DEPTH: usize = 8;

/// A stream's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// A plain tar.
    None = 0,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// zstd, possibly several frames.
    Zstd,
}

impl Compression {
    /// The name containers/storage records in `compression` (`none`, `gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The compression recorded under `name` (the inverse of [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<Compression> {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }

    /// The file name extension of a tar in this compression (Go: `Compression.Extension`).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "tar.gz",
            Compression::Bzip2 => "tar.bz2",
            Compression::Xz => "tar.xz",
            Compression::Zstd => "tar.zst",
        }
    }

    /// Detects the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x42, 0x5A, 0x68]) {
            Compression::Bzip2
        } else if head.starts_with(&[0x1F, 0x8B, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
            || (head.len() >= 4 && head[0] & 0xF0 == 0x50 && head[1..4] == [0x2A, 0x4D, 0x18])
        {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What the decoding thread measured.
#[derive(Clone, Debug)]
pub struct StreamStats {
    /// The detected compression.
    pub compression: Compression,
    /// sha256 of the bytes as given.
    pub compressed_digest: [u8; 32],
    /// Number of bytes as given.
    pub compressed_size: u64,
    /// sha256 of the input; the decompressed tar's too when it is not compressed (for
    /// compressed input the reader computes that one: [`ChunkReader::digest`]).
    pub uncompressed_digest: [u8; 32],
    /// Size of the decompressed tar.
    pub uncompressed_size: u64,
}

/// Counts and hashes what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    progress: Arc<AtomicU64>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.progress.store(self.count, Ordering::Relaxed);
        Ok(n)
    }
}

type Source = BufReader<Hashing<Box<dyn Read + Send>>>;

enum Decoder {
    Plain(Source),
    Gzip(flate2::bufread::MultiGzDecoder<Source>),
    Bzip2(bzip2::bufread::MultiBzDecoder<Source>),
    Xz(liblzma::bufread::XzDecoder<Source>),
    Zstd(zstd::Decoder<'static, Source>),
}

impl Decoder {
    fn reader(&mut self) -> &mut dyn Read {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r,
            Decoder::Bzip2(r) => r,
            Decoder::Xz(r) => r,
            Decoder::Zstd(r) => r,
        }
    }

    fn into_source(self) -> Source {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Bzip2(r) => r.into_inner(),
            Decoder::Xz(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

/// The extracting side: reads the decoded tar from the channel. Used chunks go back to the
/// decoder for reuse, so steady state allocates (and page-faults) nothing.
pub struct ChunkReader {
    rx: Receiver<Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    /// The compression the decoder found (set before its first chunk is sent).
    compression: Arc<AtomicU8>,
    /// sha256 of the decompressed stream, hashed here, on the extracting thread, for
    /// compressed input: the decoding thread has the decompression to do. `None` for plain
    /// input, whose digest the decoder computes once for both.
    hasher: Option<Sha256>,
    started: bool,
    /// Consulted while the decoder sends nothing.
    interrupt: Option<Interrupt>,
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        // However the extraction ended, a decoder waiting on a stalled pipe may stop.
        if let Some(i) = &self.interrupt {
            i.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl ChunkReader {
    /// The decompressed stream's sha256 when this reader computed it (compressed input).
    pub fn digest(mut self) -> Option<[u8; 32]> {
        self.hasher.take().map(|h| h.finalize().into())
    }

    /// The next message from the decoder; `None` when it has finished.
    fn receive(&self) -> io::Result<Option<Result<Vec<u8>>>> {
        let Some(interrupt) = &self.interrupt else {
            return Ok(self.rx.recv().ok());
        };
        loop {
            match self.rx.recv_timeout(STALL_CHECK) {
                Ok(message) => return Ok(Some(message)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {
                    if (interrupt.check)() {
                        interrupt.cancelled.store(true, Ordering::Relaxed);
                        return Err(io::Error::other(Error::Cancelled));
                    }
                }
            }
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        while self.at == self.chunk.len() {
            match self.receive()? {
                Some(Ok(chunk)) => {
                    if !self.started {
                        self.started = true;
                        if self.compression.load(Ordering::Acquire) != 0 {
                            self.hasher = Some(Sha256::new());
                        }
                    }
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    self.at = 0;
                    if used.capacity() > 0 {
                        let _ = self.recycle.try_send(used);
                    }
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(false), // the decoder finished
            }
        }
        Ok(true)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.next_chunk()? {
            return Ok(0);
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if !self.next_chunk()? {
            return Ok(&[]);
        }
        Ok(&self.chunk[self.at..])
    }

    fn consume(&mut self, amt: usize) {
        self.at = (self.at + amt).min(self.chunk.len());
    }
}

/// Options of the decoding thread.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Largest zstd window accepted, as a power of two (a bound on decoder memory).
    pub zstd_window_log_max: u32,
    /// Stop with an error when the decompressed stream exceeds this many bytes.
    pub max_uncompressed: u64,
}

/// Starts the decoding thread on `src`. `progress` receives the count of input bytes read.
pub fn spawn_decoder(
    src: Box<dyn Read + Send>,
    opts: DecodeOptions,
    progress: Arc<AtomicU64>,
    interrupt: Option<Interrupt>,
) -> Result<(ChunkReader, JoinHandle<Result<StreamStats>>)> {
    let (tx, rx) = sync_channel::<Result<Vec<u8>>>(DEPTH);
    let (recycle, recycled) = sync_channel::<Vec<u8>>(DEPTH + 2);
    let compression = Arc::new(AtomicU8::new(0));
    let found = compression.clone();
    let handle = thread::Builder::new()
        .name("cs-decode".into())
        .spawn(move || {
            let res = decode(src, opts, progress, &tx, &recycled, &found);
            if let Err(e) = &res {
                // Tell the extractor why the stream ended; it may already be gone.
                let _ = tx.send(Err(e.duplicate()));
            }
            res
        })
        .map_err(|e| Error::io("starting the decoder thread", "", e))?;
    let reader = ChunkReader {
        rx,
        recycle,
        chunk: Vec::new(),
        at: 0,
        compression,
        hasher: None,
        started: false,
        interrupt,
    };
    Ok((reader, handle))
}

fn decode_err(what: Compression, e: io::Error) -> Error {
    // A stream cut short is Go's "unexpected EOF" whatever the decoder calls it.
    let text = e.to_string();
    let truncated = e.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("incomplete")
        || text.contains("unexpected end");
    Error::InvalidArchive {
        member: None,
        offset: 0,
        reason: if truncated {
            format!("{} stream: unexpected EOF ({text})", what.name())
        } else {
            format!("{} stream: {text}", what.name())
        },
    }
}

fn decode(
    src: Box<dyn Read + Send>,
    opts: DecodeOptions,
    progress: Arc<AtomicU64>,
    tx: &SyncSender<Result<Vec<u8>>>,
    recycled: &Receiver<Vec<u8>>,
    found: &AtomicU8,
) -> Result<StreamStats> {
    let hashing = Hashing {
        inner: src,
        hasher: Sha256::new(),
        count: 0,
        progress,
    };
    let mut source = BufReader::with_capacity(CHUNK, hashing);
    let head = source
        .fill_buf()
        .map_err(|e| Error::io("reading layer", "", e))?;
    let compression = Compression::detect(head);
    found.store(compression as u8, Ordering::Release);
    let mut decoder = match compression {
        Compression::None => Decoder::Plain(source),
        Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(source)),
        Compression::Bzip2 => Decoder::Bzip2(bzip2::bufread::MultiBzDecoder::new(source)),
        Compression::Xz => Decoder::Xz(liblzma::bufread::XzDecoder::new_multi_decoder(source)),
        Compression::Zstd => {
            let mut d =
                zstd::Decoder::with_buffer(source).map_err(|e| decode_err(compression, e))?;
            d.window_log_max(opts.zstd_window_log_max)
                .map_err(|e| decode_err(compression, e))?;
            Decoder::Zstd(d)
        }
    };
    let mut total: u64 = 0;
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match decoder.reader().read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(if compression == Compression::None {
                        Error::io("reading layer", "", e)
                    } else {
                        decode_err(compression, e)
                    })
                }
            }
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        total += filled as u64;
        if total > opts.max_uncompressed {
            return Err(Error::InvalidArchive {
                member: None,
                offset: total,
                reason: format!(
                    "the uncompressed stream exceeds the limit of {} bytes",
                    opts.max_uncompressed
                ),
            });
        }
        if tx.send(Ok(chunk)).is_err() {
            // The extractor stopped (it failed); it reports its own error.
            return Err(Error::Cancelled);
        }
    }
    // Whatever the decoder left unread (nothing, for well-formed input) still counts toward
    // the compressed digest.
    let mut source = decoder.into_source();
    io::copy(&mut source, &mut io::sink()).map_err(|e| Error::io("reading layer", "", e))?;
    let hashing = source.into_inner();
    let compressed_digest: [u8; 32] = hashing.hasher.finalize().into();
    // For compressed input the extracting side hashes the tar (ChunkReader::digest).
    let uncompressed_digest = compressed_digest;
    Ok(StreamStats {
        compression,
        compressed_digest,
        compressed_size: hashing.count,
        uncompressed_digest,
        uncompressed_size: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects() {
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x50, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/"), Compression::None);
    }

    #[test]
    fn names_round_trip() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
        assert_eq!(Compression::from_name("lz4"), None);
        assert_eq!(Compression::from_name(""), None);
        assert_eq!(Compression::Zstd.extension(), "tar.zst");
    }

    #[test]
    fn decodes_and_hashes_gzip() {
        use std::io::Write;
        let data = b"hello tar world".repeat(1000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).expect("write");
        let gz = enc.finish().expect("finish");
        let opts = DecodeOptions {
            zstd_window_log_max: 27,
            max_uncompressed: u64::MAX,
        };
        let (mut reader, handle) = spawn_decoder(
            Box::new(io::Cursor::new(gz.clone())),
            opts,
            Arc::default(),
            None,
        )
        .expect("spawn");
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("read");
        let stats = handle.join().expect("join").expect("decode");
        assert_eq!(out, data);
        assert_eq!(stats.compression, Compression::Gzip);
        assert_eq!(stats.compressed_size, gz.len() as u64);
        assert_eq!(stats.uncompressed_size, data.len() as u64);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(reader.digest(), Some(want));
    }
}
