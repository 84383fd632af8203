//! Rebuilding a layer's exact tar from its tar-split record and its files.
//!
//! The tar-split NDJSON (see [`super::tarsplit`]) holds every byte of the original stream that
//! is not file content; file content is read back from the layer directory, checked against
//! the recorded size and CRC-64/ISO while streaming. The output's sha256 is then the layer's
//! `diff-digest`. Files are opened relative to the layer's directory fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` and `O_NOFOLLOW`: a hostile name in a
//! tar-split cannot read outside the layer (Go's FileGetter joins paths as strings).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::Path;

use base64_simd::STANDARD as B64;
use flate2::read::MultiGzDecoder;
use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;
use serde_json::Value;

use crate::error::{Error, Result};

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// Counts of what was rebuilt.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReassembleStats {
    /// Bytes written.
    pub bytes: u64,
    /// File entries read from the layer.
    pub files: u64,
}

fn bad(line: u64, reason: impl Into<String>) -> Error {
    Error::InvalidArchive {
        member: None,
        offset: 0,
        reason: format!("tar-split record {line}: {}", reason.into()),
    }
}

fn write_err(e: std::io::Error) -> Error {
    Error::io("writing the reassembled tar", "", e)
}

/// Opens a tar-split record file for [`reassemble`]: the store's gzip'd `.tar-split.gz`
/// (recognised by the gzip magic, whatever the file's name) or plain NDJSON.
pub fn open_record(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path).map_err(|e| Error::io("opening tar-split", path, e))?;
    let mut magic = [0u8; 2];
    // One read is enough for two bytes of a regular file; a record that cannot even give
    // those is taken as plain and fails, if it must, where it is parsed.
    let gzip = matches!(file.read(&mut magic), Ok(2)) && magic == GZIP_MAGIC;
    file.rewind()
        .map_err(|e| Error::io("reading tar-split", path, e))?;
    Ok(if gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Writes the tar described by `tar_split` (uncompressed NDJSON lines) to `out`, reading file
/// content from `layer_dir`.
pub fn reassemble(
    tar_split: &mut dyn BufRead,
    layer_dir: &Path,
    out: &mut dyn Write,
) -> Result<ReassembleStats> {
    let root = rfs::open(
        layer_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening layer directory", layer_dir, e.into()))?;
    let mut stats = ReassembleStats::default();
    let mut line = String::new();
    let mut number = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        line.clear();
        let n = tar_split
            .read_line(&mut line)
            .map_err(|e| bad(number, format!("reading: {e}")))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| bad(number, format!("not JSON: {e}")))?;
        let kind = v.get("type").and_then(Value::as_u64);
        let payload = v.get("payload").and_then(Value::as_str);
        match kind {
            Some(2) => {
                let bytes = B64
                    .decode_to_vec(payload.unwrap_or(""))
                    .map_err(|e| bad(number, format!("bad base64: {e}")))?;
                out.write_all(&bytes).map_err(write_err)?;
                stats.bytes += bytes.len() as u64;
            }
            Some(1) => {
                let size = v.get("size").and_then(Value::as_u64).unwrap_or(0);
                if size == 0 {
                    continue;
                }
                let name: Vec<u8> = match (v.get("name").and_then(Value::as_str), v.get("name_raw"))
                {
                    (Some(n), _) => n.as_bytes().to_vec(),
                    (None, Some(Value::String(raw))) => B64
                        .decode_to_vec(raw)
                        .map_err(|e| bad(number, format!("bad name_raw: {e}")))?,
                    _ => return Err(bad(number, "file entry without a name")),
                };
                let want = payload
                    .map(|p| B64.decode_to_vec(p))
                    .transpose()
                    .map_err(|e| bad(number, format!("bad base64: {e}")))?;
                let display = name.clone();
                let file = open_member(&root, &name).map_err(|e| Error::InvalidArchive {
                    member: Some(display.clone()),
                    offset: stats.bytes,
                    reason: if e == Errno::INVAL {
                        "not a regular file in the layer: the layer was modified".into()
                    } else {
                        format!("opening layer file: {}", std::io::Error::from(e))
                    },
                })?;
                let mut file = File::from(file);
                let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso);
                let mut left = size;
                while left > 0 {
                    let want_n = (left as usize).min(buf.len());
                    let got = file
                        .read(&mut buf[..want_n])
                        .map_err(|e| Error::InvalidArchive {
                            member: Some(display.clone()),
                            offset: stats.bytes,
                            reason: format!("reading layer file: {e}"),
                        })?;
                    if got == 0 {
                        return Err(Error::InvalidArchive {
                            member: Some(display),
                            offset: stats.bytes,
                            reason: format!(
                                "layer file is shorter than the {size} bytes recorded: the layer was modified"
                            ),
                        });
                    }
                    crc.update(&buf[..got]);
                    out.write_all(&buf[..got]).map_err(write_err)?;
                    left -= got as u64;
                    stats.bytes += got as u64;
                }
                if let Some(want) = want {
                    if want.as_slice() != crc.finalize().to_be_bytes() {
                        return Err(Error::InvalidArchive {
                            member: Some(display),
                            offset: stats.bytes,
                            reason: "layer file content does not match its recorded CRC-64: the layer was modified".into(),
                        });
                    }
                }
                stats.files += 1;
            }
            _ => return Err(bad(number, "unknown entry type")),
        }
    }
    out.flush().map_err(write_err)?;
    Ok(stats)
}

/// Opens a member's file inside the layer, never following its final component.
fn open_member(
    root: &std::os::fd::OwnedFd,
    name: &[u8],
) -> std::result::Result<std::os::fd::OwnedFd, Errno> {
    let cleaned = super::apply::clean(name).ok_or(Errno::ACCESS)?;
    if cleaned.is_empty() {
        return Err(Errno::ISDIR);
    }
    // O_NONBLOCK: a FIFO put in a file's place must not block the open forever; anything but
    // a regular file is refused below.
    let fd = crate::fsutil::open_in_root(
        root,
        &cleaned,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
    )?;
    let st = rfs::fstat(&fd)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    // Back to blocking reads for the content.
    rfs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tarsplit::{TarSplitSink, TarSplitWriter};

    fn record(sink: TarSplitSink) {
        let mut w = TarSplitWriter::new(sink.sink, sink.gzip);
        w.segment_bytes(b"raw header bytes");
        w.file(b"etc/hostname", 6, Some(7));
        w.finish().expect("finish");
    }

    fn read_all(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        open_record(path)
            .expect("open")
            .read_to_end(&mut out)
            .expect("read");
        out
    }

    #[test]
    fn open_record_sniffs_gzip_whatever_the_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sink, buffer) = TarSplitSink::memory();
        record(sink);
        let lines = buffer.take();
        assert!(lines.starts_with(b"{\"type\":2,"));

        // The store's file: gzip, under a name that says nothing.
        let gz = dir.path().join("layer-record");
        record(TarSplitSink::gzip_file(&gz).expect("create"));
        assert_eq!(std::fs::read(&gz).expect("read")[..2], GZIP_MAGIC);
        assert_eq!(read_all(&gz), lines);

        // Plain NDJSON, under a name that says gzip.
        let plain = dir.path().join("plain.tar-split.gz");
        std::fs::write(&plain, &lines).expect("write");
        assert_eq!(read_all(&plain), lines);

        // Too short to sniff: plain.
        let short = dir.path().join("short");
        std::fs::write(&short, [0x1F]).expect("write");
        assert_eq!(read_all(&short), [0x1F]);

        let missing = dir.path().join("missing");
        let err = open_record(&missing).err().expect("missing");
        assert!(
            matches!(
                &err,
                Error::Io {
                    op: "opening tar-split",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
