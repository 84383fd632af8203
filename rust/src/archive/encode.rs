//! Compressing the tars we write (diffs, reassembled layers) as Go's
//! `archive.CompressStream` does: none, gzip (default level) or zstd (level 3). bzip2 and xz
//! are formats Go only reads; asking to write them is [`Error::UnsupportedCompression`], in
//! Go's words.

use std::io::{self, BufWriter, Write};

use super::compress::Compression;
use crate::error::{Error, Result};

/// Output buffer between the encoder and the destination.
const BUFFER: usize = 256 * 1024;

/// zstd level of Go's `archive.CompressStream` (the library default).
const ZSTD_LEVEL: i32 = 3;

/// A writer that compresses into `W`. Call [`finish`](Self::finish): dropping it loses the
/// compressed stream's tail and any error writing it.
pub struct Encoder<W: Write>(Inner<W>);

enum Inner<W: Write> {
    Plain(BufWriter<W>),
    Gzip(flate2::write::GzEncoder<BufWriter<W>>),
    Zstd(zstd::Encoder<'static, BufWriter<W>>),
}

impl<W: Write> Encoder<W> {
    /// Starts a stream into `out` in `compression`.
    pub fn new(out: W, compression: Compression) -> Result<Self> {
        let out = BufWriter::with_capacity(BUFFER, out);
        Ok(Encoder(match compression {
            Compression::None => Inner::Plain(out),
            Compression::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Inner::Zstd(
                zstd::Encoder::new(out, ZSTD_LEVEL)
                    .map_err(|e| Error::io("starting zstd", "", e))?,
            ),
            Compression::Bzip2 | Compression::Xz => {
                return Err(Error::UnsupportedCompression {
                    extension: compression.extension(),
                })
            }
        }))
    }

    /// Ends the compressed stream, flushes it into the destination and returns that.
    pub fn finish(self) -> io::Result<W> {
        let mut out = match self.0 {
            Inner::Plain(w) => w,
            Inner::Gzip(w) => w.finish()?,
            Inner::Zstd(w) => w.finish()?,
        };
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::Plain(w) => w.write(buf),
            Inner::Gzip(w) => w.write(buf),
            Inner::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::Plain(w) => w.flush(),
            Inner::Gzip(w) => w.flush(),
            Inner::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn encode(compression: Compression, data: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(Vec::new(), compression).expect("new");
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn bzip2_and_xz_are_read_only_in_gos_words() {
        for (c, text) in [
            (Compression::Bzip2, "unsupported compression format tar.bz2"),
            (Compression::Xz, "unsupported compression format tar.xz"),
        ] {
            let err = Encoder::new(Vec::new(), c).err().expect("refused");
            assert!(
                matches!(err, Error::UnsupportedCompression { .. }),
                "{err:?}"
            );
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn writes_what_apply_reads() {
        let data = b"a tar, or near enough ".repeat(5000);
        assert_eq!(encode(Compression::None, &data), data);

        let gz = encode(Compression::Gzip, &data);
        assert_eq!(Compression::detect(&gz), Compression::Gzip);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, data);

        let zst = encode(Compression::Zstd, &data);
        assert_eq!(Compression::detect(&zst), Compression::Zstd);
        assert_eq!(zstd::decode_all(zst.as_slice()).expect("unzstd"), data);
    }
}
