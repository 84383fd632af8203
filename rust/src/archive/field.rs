//! The tar header block and its fields, for our reader ([`super::tar`]) and for the writer
//! that lays headers out as Go's does ([`super::gotar`]): where the USTAR fields sit, numbers
//! (octal; base-256 too when read), NUL-terminated strings, the checksum and the padding that
//! ends a member's content.

use std::ops::Range;

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// Member name (the part after `prefix` in USTAR).
pub const NAME: Range<usize> = 0..100;
/// Permission and file-type bits.
pub const MODE: Range<usize> = 100..108;
/// Owner ID.
pub const UID: Range<usize> = 108..116;
/// Group ID.
pub const GID: Range<usize> = 116..124;
/// Content size.
pub const SIZE: Range<usize> = 124..136;
/// Modification time, seconds.
pub const MTIME: Range<usize> = 136..148;
/// Header checksum.
pub const CHKSUM: Range<usize> = 148..156;
/// Type flag (one byte).
pub const TYPEFLAG: usize = 156;
/// Link target.
pub const LINKNAME: Range<usize> = 157..257;
/// Magic: `ustar\0` (USTAR, PAX) or `ustar ` (GNU, with [`VERSION`] ` \0`).
pub const MAGIC: Range<usize> = 257..263;
/// Version: `00` (USTAR, PAX).
pub const VERSION: Range<usize> = 263..265;
/// Owner's name.
pub const UNAME: Range<usize> = 265..297;
/// Group's name.
pub const GNAME: Range<usize> = 297..329;
/// Device major number.
pub const DEVMAJOR: Range<usize> = 329..337;
/// Device minor number.
pub const DEVMINOR: Range<usize> = 337..345;
/// USTAR name prefix.
pub const PREFIX: Range<usize> = 345..500;

/// USTAR's (and PAX's) magic.
pub const USTAR_MAGIC: &[u8; 6] = b"ustar\0";
/// GNU's magic and version together.
pub const GNU_MAGIC_VERSION: &[u8; 8] = b"ustar  \0";

/// Zero bytes that pad `len` bytes of content to a whole block.
pub fn padding(len: u64) -> u64 {
    (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64
}

/// A string field up to its first NUL.
pub fn get_str(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// Go's `formatString`: `s` cut to the field, NUL-terminated when shorter.
pub fn put_str(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
    if s.len() < field.len() {
        field[s.len()] = 0;
    }
    // A cut name must not end in '/' (readers would take a file for a directory).
    if s.len() > field.len() && field[field.len() - 1] == b'/' {
        let kept = s[..field.len()]
            .iter()
            .rposition(|&b| b != b'/')
            .map_or(0, |p| p + 1);
        field[kept] = 0;
    }
}

/// A numeric field: octal ASCII (NUL/space padded) or base-256 (high bit set). `None` when
/// malformed or negative.
pub fn get_numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative base-256
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(get_str(field))
        .ok()?
        .trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Whether `x` fits a `width`-byte octal field (digits and a NUL), as Go's `fitsInOctal`.
pub fn fits_octal(width: usize, x: i128) -> bool {
    let bits = (width - 1) * 3;
    x >= 0 && (width >= 22 || x < (1i128 << bits))
}

/// Go's `formatOctal`: zero-padded, NUL-terminated; a number that does not fit becomes 0.
pub fn put_octal(field: &mut [u8], x: i128) {
    let x = if fits_octal(field.len(), x) { x } else { 0 };
    let digits = format!("{x:o}");
    let pad = (field.len() - 1).saturating_sub(digits.len());
    let mut s = vec![b'0'; pad];
    s.extend_from_slice(digits.as_bytes());
    put_str(field, &s);
}

/// The sum of a header block's bytes with the checksum field counted as eight spaces (the
/// unsigned sum POSIX and Go write). The whole block is summed narrow and the field then
/// corrected: 512 bytes sum to at most 130,560, and this form vectorises (it runs for every
/// header read; a per-byte branch in i64 was 8% of a check's time).
pub fn checksum(blk: &[u8]) -> u32 {
    let all: u32 = blk.iter().map(|&b| u32::from(b)).sum();
    let field: u32 = blk[CHKSUM].iter().map(|&b| u32::from(b)).sum();
    all - field + 8 * u32::from(b' ')
}

/// [`checksum`] with the bytes taken as signed, as some old writers summed them (Go accepts
/// either).
pub fn checksum_signed(blk: &[u8]) -> i32 {
    let all: i32 = blk.iter().map(|&b| i32::from(b as i8)).sum();
    let field: i32 = blk[CHKSUM].iter().map(|&b| i32::from(b as i8)).sum();
    all - field + 8 * i32::from(b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_fills_the_last_block() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }

    #[test]
    fn octal_round_trips_and_overflows_to_zero() {
        let mut field = [0xffu8; 8];
        put_octal(&mut field, 0o644);
        assert_eq!(&field, b"0000644\0");
        assert_eq!(get_numeric(&field), Some(0o644));
        put_octal(&mut field, 1 << 21);
        assert_eq!(&field, b"0000000\0");
        assert_eq!(get_numeric(b"\x80\0\0\0\0\0\x01\0"), Some(256));
        assert_eq!(get_numeric(b"\xc0\0\0\0\0\0\x01\0"), None);
    }

    #[test]
    fn cut_names_do_not_end_in_a_slash() {
        let mut field = [0u8; 4];
        put_str(&mut field, b"abc/def");
        assert_eq!(&field, b"abc\0");
        assert_eq!(get_str(&field), b"abc");
    }
}
