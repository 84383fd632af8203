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

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Writes tar-split lines to a sink as the tar stream is read.
pub struct TarSplitWriter {
    sink: Box<dyn Write + Send>,
    pending: Vec<u8>,
    position: u64,
    line: Vec<u8>,
    error: Option<io::Error>,
}

impl TarSplitWriter {
    /// Writes lines into `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        TarSplitWriter {
            sink,
            pending: Vec::with_capacity(4096),
            position: 0,
            line: Vec::with_capacity(4096),
            error: None,
        }
    }

    /// Adds raw stream bytes to the current segment.
    pub fn segment_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        // Keep memory bounded on long runs of raw bytes (sparse data, trailing junk).
        if self.pending.len() >= 1 << 20 {
            self.flush_segment();
        }
    }

    /// Emits the pending raw bytes as a segment line, if there are any.
    pub fn flush_segment(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.line.clear();
        self.line.extend_from_slice(b"{\"type\":2,\"payload\":\"");
        self.line
            .extend_from_slice(B64.encode(&self.pending).as_bytes());
        self.line.extend_from_slice(b"\",\"position\":");
        self.finish_line();
        self.pending.clear();
    }

    /// Emits a file entry (after flushing the segment that precedes it).
    pub fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) {
        self.flush_segment();
        self.line.clear();
        self.line.extend_from_slice(b"{\"type\":1,");
        match std::str::from_utf8(name) {
            Ok(s) => {
                self.line.extend_from_slice(b"\"name\":");
                let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
                self.line.extend_from_slice(quoted.as_bytes());
            }
            Err(_) => {
                self.line.extend_from_slice(b"\"name_raw\":\"");
                self.line.extend_from_slice(B64.encode(name).as_bytes());
                self.line.push(b'"');
            }
        }
        if size > 0 {
            self.line
                .extend_from_slice(format!(",\"size\":{size}").as_bytes());
        }
        match crc {
            Some(c) => {
                self.line.extend_from_slice(b",\"payload\":\"");
                self.line
                    .extend_from_slice(B64.encode(c.to_be_bytes()).as_bytes());
                self.line.push(b'"');
            }
            None => self.line.extend_from_slice(b",\"payload\":null"),
        }
        self.line.extend_from_slice(b",\"position\":");
        self.finish_line();
    }

    fn finish_line(&mut self) {
        self.line
            .extend_from_slice(format!("{}}}\n", self.position).as_bytes());
        self.position += 1;
        if self.error.is_none() {
            if let Err(e) = self.sink.write_all(&self.line) {
                self.error = Some(e);
            }
        }
    }

    /// Flushes everything and returns the sink, or the first write error.
    pub fn finish(mut self) -> io::Result<Box<dyn Write + Send>> {
        self.flush_segment();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.sink.flush()?;
        Ok(self.sink)
    }
}
