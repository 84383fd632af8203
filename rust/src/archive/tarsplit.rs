//! tar-split records: the NDJSON stream (vbatts/tar-split `storage.NewJSONPacker`) that lets
//! a layer give back the exact tar it was applied from.
//!
//! Two kinds of line, `position` counting from 0:
//! `{"type":2,"payload":"<base64 raw bytes>","position":N}` for bytes that are not file
//! content (headers, padding, end-of-archive blocks), and
//! `{"type":1,"name":"etc/hostname","size":6,"payload":"<base64 CRC-64/ISO BE>","position":N}`
//! for a member whose content lives in the layer's files (`size` omitted when 0, `payload`
//! null without content, `name_raw` in base64 instead of `name` for non-UTF-8 names).

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// A record for the formatting thread.
enum Record {
    Segment(Vec<u8>),
    File {
        name: Vec<u8>,
        size: u64,
        crc: Option<u64>,
    },
}

/// Largest segment record: long runs of raw bytes are split (bounds memory with [`DEPTH`]).
const SEGMENT_MAX: usize = 64 * 1024;

/// Records in flight to the formatting thread: at most `DEPTH * SEGMENT_MAX` bytes queued.
const DEPTH: usize = 256;

/// Records tar-split as the tar stream is read. Formatting (base64, JSON) and writing to the
/// sink (usually gzip) run on a thread of their own: on a layer of small files they cost as
/// much as the extraction itself.
pub struct TarSplitWriter {
    tx: Option<SyncSender<Record>>,
    handle: Option<JoinHandle<io::Result<Box<dyn Write + Send>>>>,
    pending: Vec<u8>,
}

impl TarSplitWriter {
    /// Writes lines into `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        let (tx, rx) = sync_channel::<Record>(DEPTH);
        let handle = thread::Builder::new()
            .name("cs-tarsplit".into())
            .spawn(move || format_lines(rx, sink))
            .ok();
        TarSplitWriter {
            tx: handle.as_ref().map(|_| tx),
            handle,
            pending: Vec::with_capacity(4096),
        }
    }

    fn send(&mut self, record: Record) {
        if let Some(tx) = self.tx.as_ref() {
            if tx.send(record).is_err() {
                // The formatter stopped on a write error; finish() reports it.
                self.tx = None;
            }
        }
    }

    /// Adds raw stream bytes to the current segment.
    pub fn segment_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        // Keep memory bounded on long runs of raw bytes (sparse data, trailing junk).
        if self.pending.len() >= SEGMENT_MAX {
            self.flush_segment();
        }
    }

    /// Emits the pending raw bytes as a segment line, if there are any.
    pub fn flush_segment(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let segment = std::mem::replace(&mut self.pending, Vec::with_capacity(4096));
        self.send(Record::Segment(segment));
    }

    /// Emits a file entry (after flushing the segment that precedes it).
    pub fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) {
        self.flush_segment();
        self.send(Record::File {
            name: name.to_vec(),
            size,
            crc,
        });
    }

    /// Flushes everything and returns the sink, or the first write error.
    pub fn finish(mut self) -> io::Result<Box<dyn Write + Send>> {
        self.flush_segment();
        drop(self.tx.take());
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("tar-split thread panicked"))?,
            None => Err(io::Error::other("could not start the tar-split thread")),
        }
    }
}

/// The formatting thread: one NDJSON line per record.
fn format_lines(
    rx: Receiver<Record>,
    mut sink: Box<dyn Write + Send>,
) -> io::Result<Box<dyn Write + Send>> {
    let mut line = Vec::with_capacity(4096);
    for (position, record) in (0u64..).zip(rx) {
        line.clear();
        match record {
            Record::Segment(bytes) => {
                line.extend_from_slice(b"{\"type\":2,\"payload\":\"");
                line.extend_from_slice(B64.encode(&bytes).as_bytes());
                line.extend_from_slice(b"\",\"position\":");
            }
            Record::File { name, size, crc } => {
                line.extend_from_slice(b"{\"type\":1,");
                match std::str::from_utf8(&name) {
                    Ok(s) => {
                        line.extend_from_slice(b"\"name\":");
                        let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
                        line.extend_from_slice(quoted.as_bytes());
                    }
                    Err(_) => {
                        line.extend_from_slice(b"\"name_raw\":\"");
                        line.extend_from_slice(B64.encode(&name).as_bytes());
                        line.push(b'"');
                    }
                }
                if size > 0 {
                    line.extend_from_slice(format!(",\"size\":{size}").as_bytes());
                }
                match crc {
                    Some(c) => {
                        line.extend_from_slice(b",\"payload\":\"");
                        line.extend_from_slice(B64.encode(c.to_be_bytes()).as_bytes());
                        line.push(b'"');
                    }
                    None => line.extend_from_slice(b",\"payload\":null"),
                }
                line.extend_from_slice(b",\"position\":");
            }
        }
        line.extend_from_slice(format!("{position}}}\n").as_bytes());
        sink.write_all(&line)?;
    }
    sink.flush()?;
    Ok(sink)
}
