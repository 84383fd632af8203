//! One block of a parallel gzip stream, the scheme of pigz and of Go's klauspost/pgzip (which
//! containers/image pushes layers with): a block is raw deflate of its bytes, primed with the
//! 32 KiB of input before it and ended with a sync flush, so that blocks compressed on
//! different threads concatenate into one ordinary deflate stream. The caller adds the gzip
//! header, the final empty block and the CRC-32/size trailer.

use std::io;

use flate2::{Compress, Compression, FlushCompress};

use crate::error::{Error, Result};

/// Deflate's window: the most a block can refer back into the one before it.
pub const WINDOW: usize = 32 * 1024;

/// Room added to the output whenever the encoder fills it.
const GROW: usize = 256 * 1024;

/// `data` as one sync-flushed block of raw deflate at `level` (0-9), with `dictionary` (at
/// most its last [`WINDOW`] bytes are used) as the history it may refer to.
pub fn deflate_block(data: &[u8], dictionary: &[u8], level: u32) -> Result<Vec<u8>> {
    let fail =
        |e: flate2::CompressError| Error::io("compressing a gzip block", "", io::Error::other(e));
    let mut c = Compress::new(Compression::new(level.min(9)), false);
    if !dictionary.is_empty() {
        let start = dictionary.len().saturating_sub(WINDOW);
        c.set_dictionary(&dictionary[start..]).map_err(fail)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + GROW);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < GROW / 4 {
            out.reserve(GROW);
        }
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(fail)?;
        let consumed = usize::try_from(c.total_in() - before).unwrap_or(input.len());
        input = &input[consumed.min(input.len())..];
        // The flush is complete once all input is in and the encoder left room unused.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn blocks_concatenate_into_one_stream() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7000) as u8)
            .collect();
        let mut stream = Vec::new();
        let mut prev: &[u8] = &[];
        for block in data.chunks(1 << 20) {
            stream.extend(deflate_block(block, prev, 6).expect("deflate"));
            prev = block;
        }
        stream.extend([0x03, 0x00]);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&stream[..])
            .read_to_end(&mut back)
            .expect("inflate");
        assert_eq!(back, data);
    }

    #[test]
    fn empty_block() {
        let mut stream = deflate_block(b"", b"", 6).expect("deflate");
        stream.extend([0x03, 0x00]);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&stream[..])
            .read_to_end(&mut back)
            .expect("inflate");
        assert!(back.is_empty());
    }
}
