//! tar-split records: the NDJSON stream (vbatts/tar-split `storage.NewJSONPacker`) that lets
//! a layer give back the exact tar it was applied from.
//!
//! Two kinds of line, `position` counting from 0:
//! `{"type":2,"payload":"<base64 raw bytes>","position":N}` for bytes that are not file
//! content (headers, padding, end-of-archive blocks), and
//! `{"type":1,"name":"etc/hostname","size":6,"payload":"<base64 CRC-64/ISO BE>","position":N}`
//! for a member whose content lives in the layer's files (`size` omitted when 0, `payload`
//! null without content, `name_raw` in base64 instead of `name` for non-UTF-8 names).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use crate::error::{Error, Result};

/// Largest segment record: long runs of raw bytes are split.
const SEGMENT_MAX: usize = 64 * 1024;

/// Encoded records are handed to the formatting thread in batches of about this size, so
/// that a layer of 100,000 files costs a few thousand channel hand-offs, not 200,000
/// hand-offs and allocations.
const BATCH: usize = 64 * 1024;

/// Batches in flight to the formatting thread (each at most `BATCH + SEGMENT_MAX` plus one
/// read's bytes).
const DEPTH: usize = 8;

/// Tags of the batch encoding: `S`, u32 length, bytes (a segment); `F`, u32 name length,
/// name, u64 size, u8 has-CRC, u64 CRC (a file entry). Integers little-endian.
const TAG_SEGMENT: u8 = b'S';
const TAG_FILE: u8 = b'F';

/// Where the tar-split record goes, and whether to gzip it (the store's `.tar-split.gz`).
pub struct TarSplitSink {
    /// The writer.
    pub sink: Box<dyn Write + Send>,
    /// Compress as gzip.
    pub gzip: bool,
}

impl TarSplitSink {
    /// The store's `<id>.tar-split.gz` at `path`: created (or truncated), gzip'd, buffered,
    /// and synced to disk when the record is complete.
    pub fn gzip_file(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io("creating tar-split file", path, e))?;
        Ok(TarSplitSink {
            sink: Box::new(SyncedFile(BufWriter::new(file))),
            gzip: true,
        })
    }

    /// The plain NDJSON, kept in memory: take it from the returned buffer once the record is
    /// finished.
    pub fn memory() -> (Self, TarSplitBuffer) {
        let buffer = TarSplitBuffer::default();
        let sink = TarSplitSink {
            sink: Box::new(buffer.clone()),
            gzip: false,
        };
        (sink, buffer)
    }
}

/// A tar-split file: buffered, synced when the record is complete.
struct SyncedFile(BufWriter<File>);

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Called once, by the record's finish: make the record durable.
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

/// The in-memory record of [`TarSplitSink::memory`], shared with the thread that writes it.
#[derive(Clone, Default)]
pub struct TarSplitBuffer(Arc<Mutex<Vec<u8>>>);

impl TarSplitBuffer {
    /// Takes the bytes written so far out of the buffer.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Write for TarSplitBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Records tar-split as the tar stream is read. Formatting (base64, JSON) and writing to the
/// sink (usually gzip) run on a thread of their own: on a layer of small files they cost as
/// much as the extraction itself.
pub struct TarSplitWriter {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<JoinHandle<io::Result<Box<dyn Write + Send>>>>,
    /// Encoded records not yet sent.
    batch: Vec<u8>,
    /// Where the open segment's length field is in `batch`.
    open_segment: Option<usize>,
}

impl TarSplitWriter {
    /// Writes lines into `sink`, gzip-compressed when `gzip` (the `.tar-split.gz` form).
    pub fn new(sink: Box<dyn Write + Send>, gzip: bool) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let handle = thread::Builder::new()
            .name("cs-tarsplit".into())
            .spawn(move || format_lines(rx, sink, gzip))
            .ok();
        TarSplitWriter {
            tx: handle.as_ref().map(|_| tx),
            handle,
            batch: Vec::with_capacity(BATCH + SEGMENT_MAX),
            open_segment: None,
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH + SEGMENT_MAX));
        if let Some(tx) = self.tx.as_ref() {
            if tx.send(batch).is_err() {
                // The formatter stopped on a write error; finish() reports it.
                self.tx = None;
            }
        }
    }

    /// A record ended: hand the batch over once it is big enough.
    fn record_done(&mut self) {
        if self.batch.len() >= BATCH {
            self.send_batch();
        }
    }

    /// Adds raw stream bytes to the current segment.
    pub fn segment_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let at = match self.open_segment {
            Some(at) => at,
            None => {
                self.batch.push(TAG_SEGMENT);
                let at = self.batch.len();
                self.batch.extend_from_slice(&0u32.to_le_bytes());
                self.open_segment = Some(at);
                at
            }
        };
        self.batch.extend_from_slice(bytes);
        // Keep memory bounded on long runs of raw bytes (sparse data, trailing junk).
        if self.batch.len() - at - 4 >= SEGMENT_MAX {
            self.flush_segment();
        }
    }

    /// Ends the open segment (a line of its own), if there is one.
    pub fn flush_segment(&mut self) {
        let Some(at) = self.open_segment.take() else {
            return;
        };
        let len = self.batch.len() - at - 4;
        // Segments end by SEGMENT_MAX plus one read (at most a few MiB): u32 holds them.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.batch[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.record_done();
    }

    /// Emits a file entry (after flushing the segment that precedes it).
    pub fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) {
        self.flush_segment();
        let name_len = u32::try_from(name.len()).unwrap_or(u32::MAX);
        self.batch.push(TAG_FILE);
        self.batch.extend_from_slice(&name_len.to_le_bytes());
        self.batch.extend_from_slice(&name[..name_len as usize]);
        self.batch.extend_from_slice(&size.to_le_bytes());
        self.batch.push(u8::from(crc.is_some()));
        self.batch
            .extend_from_slice(&crc.unwrap_or(0).to_le_bytes());
        self.record_done();
    }

    /// Flushes everything and returns the sink, or the first write error.
    pub fn finish(mut self) -> io::Result<Box<dyn Write + Send>> {
        self.flush_segment();
        self.send_batch();
        drop(self.tx.take());
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("tar-split thread panicked"))?,
            None => Err(io::Error::other("could not start the tar-split thread")),
        }
    }
}

impl Drop for TarSplitWriter {
    /// An abandoned record (a failed apply) still waits for its thread, so nothing writes to
    /// the sink after the caller has moved on.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Lines gathered before they are handed to the compressor.
const GZIP_BLOCK: usize = 256 * 1024;

/// Compression level of a gzip record. zlib-rs's level 2 is its first level with lazy-free
/// hash chains: on the record of a layer of 100,000 small files (262 MB of NDJSON, mostly
/// base64 of zero-padded headers) it writes 10.9 MB in 0.5 s, where libdeflate's level 1
/// took 1.0 s for 10.5 MB and zlib-rs's level 1 (`deflate_quick`) 0.45 s for 14.6 MB.
/// Go writes the record with pgzip's BestSpeed.
const GZIP_LEVEL: u32 = 2;

type Sink = Box<dyn Write + Send>;

/// Header of the gzip record: no name or time, unknown OS (what Go's gzip writer and
/// flate2 write too).
const GZIP_HEADER: [u8; 10] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF];

/// Where formatted lines go: straight to the sink, or through one gzip member (raw deflate
/// from zlib-rs, with the CRC-32 from crc-fast: zlib-rs's own, portable CRC took a sixth of
/// this thread's time).
enum LineSink {
    Plain(Sink),
    Gzip {
        encoder: Box<flate2::write::DeflateEncoder<Sink>>,
        crc: Box<crc_fast::Digest>,
        size: u64,
        block: Vec<u8>,
    },
}

impl LineSink {
    fn new(mut sink: Sink, gzip: bool) -> io::Result<Self> {
        if !gzip {
            return Ok(LineSink::Plain(sink));
        }
        sink.write_all(&GZIP_HEADER)?;
        Ok(LineSink::Gzip {
            encoder: Box::new(flate2::write::DeflateEncoder::new(
                sink,
                flate2::Compression::new(GZIP_LEVEL),
            )),
            crc: Box::new(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc)),
            size: 0,
            block: Vec::with_capacity(GZIP_BLOCK + 8192),
        })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            LineSink::Plain(sink) => sink.write_all(line),
            LineSink::Gzip {
                encoder,
                crc,
                size,
                block,
            } => {
                block.extend_from_slice(line);
                if block.len() >= GZIP_BLOCK {
                    crc.update(block);
                    *size += block.len() as u64;
                    encoder.write_all(block)?;
                    block.clear();
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> io::Result<Sink> {
        let mut sink = match self {
            LineSink::Plain(sink) => sink,
            LineSink::Gzip {
                mut encoder,
                mut crc,
                size,
                block,
            } => {
                crc.update(&block);
                encoder.write_all(&block)?;
                let mut sink = encoder.finish()?;
                let total = size + block.len() as u64;
                // The trailer: CRC-32 and the size modulo 2^32, little-endian.
                let crc32 = (crc.finalize() & 0xFFFF_FFFF) as u32;
                sink.write_all(&crc32.to_le_bytes())?;
                sink.write_all(&((total & 0xFFFF_FFFF) as u32).to_le_bytes())?;
                sink
            }
        };
        sink.flush()?;
        Ok(sink)
    }
}

/// The `len` bytes at `*at`; advances past them.
fn take_slice<'b>(batch: &'b [u8], at: &mut usize, len: usize) -> io::Result<&'b [u8]> {
    let bytes = batch
        .get(*at..*at + len)
        .ok_or_else(|| io::Error::other("tar-split batch cut short"))?;
    *at += len;
    Ok(bytes)
}

/// The `N` bytes at `*at` (a little-endian integer); advances past them.
fn take<const N: usize>(batch: &[u8], at: &mut usize) -> io::Result<[u8; N]> {
    let bytes = take_slice(batch, at, N)?;
    // take_slice returned exactly N bytes.
    Ok(<[u8; N]>::try_from(bytes).unwrap_or([0; N]))
}

/// The formatting thread: one NDJSON line per record.
fn format_lines(
    rx: Receiver<Vec<u8>>,
    sink: Box<dyn Write + Send>,
    gzip: bool,
) -> io::Result<Box<dyn Write + Send>> {
    let mut out = LineSink::new(sink, gzip)?;
    let b64 = base64_simd::STANDARD;
    let mut line = Vec::with_capacity(4096);
    let mut position: u64 = 0;
    let mut digits = itoa::Buffer::new();
    for batch in rx {
        let mut at = 0;
        while at < batch.len() {
            let tag = batch[at];
            at += 1;
            line.clear();
            if tag == TAG_SEGMENT {
                let len = u32::from_le_bytes(take::<4>(&batch, &mut at)?) as usize;
                let bytes = take_slice(&batch, &mut at, len)?;
                line.extend_from_slice(b"{\"type\":2,\"payload\":\"");
                b64.encode_append(bytes, &mut line);
                line.extend_from_slice(b"\",\"position\":");
            } else {
                let len = u32::from_le_bytes(take::<4>(&batch, &mut at)?) as usize;
                let name = take_slice(&batch, &mut at, len)?;
                let size = u64::from_le_bytes(take::<8>(&batch, &mut at)?);
                let has_crc = take::<1>(&batch, &mut at)?[0] != 0;
                let crc = u64::from_le_bytes(take::<8>(&batch, &mut at)?);
                line.extend_from_slice(b"{\"type\":1,");
                match std::str::from_utf8(name) {
                    Ok(s) => {
                        line.extend_from_slice(b"\"name\":");
                        // serde_json writes straight into the line (a Vec is io::Write).
                        if serde_json::to_writer(&mut line, s).is_err() {
                            line.extend_from_slice(b"\"\"");
                        }
                    }
                    Err(_) => {
                        line.extend_from_slice(b"\"name_raw\":\"");
                        b64.encode_append(name, &mut line);
                        line.push(b'"');
                    }
                }
                if size > 0 {
                    line.extend_from_slice(b",\"size\":");
                    line.extend_from_slice(digits.format(size).as_bytes());
                }
                if has_crc {
                    line.extend_from_slice(b",\"payload\":\"");
                    b64.encode_append(crc.to_be_bytes(), &mut line);
                    line.push(b'"');
                } else {
                    line.extend_from_slice(b",\"payload\":null");
                }
                line.extend_from_slice(b",\"position\":");
            }
            line.extend_from_slice(digits.format(position).as_bytes());
            line.extend_from_slice(b"}\n");
            position += 1;
            out.write(&line)?;
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sink_keeps_the_plain_lines() {
        let (sink, buffer) = TarSplitSink::memory();
        assert!(!sink.gzip);
        let mut w = TarSplitWriter::new(sink.sink, sink.gzip);
        w.segment_bytes(b"header");
        w.file(b"etc/hostname", 6, Some(0x1234));
        w.finish().expect("finish");
        let text = String::from_utf8(buffer.take()).expect("utf-8");
        assert_eq!(
            text,
            "{\"type\":2,\"payload\":\"aGVhZGVy\",\"position\":0}\n\
             {\"type\":1,\"name\":\"etc/hostname\",\"size\":6,\
             \"payload\":\"AAAAAAAAEjQ=\",\"position\":1}\n"
        );
        assert!(buffer.take().is_empty());
    }
}
