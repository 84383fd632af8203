//! Tar headers laid out exactly as Go's `archive/tar` writer (Go 1.19, what podman, buildah
//! and the Go `containers-storage` 1.43 are built with) lays them out, so that a diff we write
//! has the same bytes, and so the same DiffID, as theirs.
//!
//! Go's rules, for a header whose format is left unspecified (as containers/storage leaves
//! it): USTAR when every field fits (a long name may be split into prefix and name at a
//! `/`), else PAX: one `x` member named `DIR/PaxHeaders.0/BASE` (mode, owner and time 0)
//! whose records, sorted by key, carry what USTAR cannot (`path`, `linkpath`, `uname`,
//! `gname`, `uid`, `gid`, `size`, `mtime`, `SCHILY.xattr.*`), then the main header with the
//! fields cut down to what fits (non-ASCII bytes dropped, numbers that do not fit written as
//! 0). Numbers are zero-padded octal ending in NUL, device numbers included for every type;
//! the checksum is six octal digits, NUL, space. GNU headers are never chosen for the
//! headers a diff holds (only an 8-byte-overflowing mode or device number would need them).
//! An archive ends with two zero blocks, no padding to a record size.

use std::collections::BTreeMap;

use super::field::{self, fits_octal, put_octal, put_str, BLOCK};

const NAME: usize = 100;
const PREFIX: usize = 155;
const OWNER_NAME: usize = 32;

/// Type flags Go writes.
pub mod typeflag {
    /// Regular file (also what Go turns the zero flag of a bare header into).
    pub const REG: u8 = b'0';
    /// Hard link.
    pub const LINK: u8 = b'1';
    /// Symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// Character device.
    pub const CHAR: u8 = b'3';
    /// Block device.
    pub const BLOCK: u8 = b'4';
    /// Directory.
    pub const DIR: u8 = b'5';
    /// FIFO.
    pub const FIFO: u8 = b'6';
}

/// The fields of Go's `tar.Header` that a layer diff sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoHeader {
    /// Member name (directories end in `/`).
    pub name: Vec<u8>,
    /// Link target (hard and symbolic links; Go keeps it on a whiteout converted from a
    /// hard-linked device).
    pub linkname: Vec<u8>,
    /// One of [`typeflag`].
    pub typeflag: u8,
    /// Permission bits with the file-type bits (`0o100644`), as containers/storage sets them.
    pub mode: u64,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Owner's name (empty: none).
    pub uname: Vec<u8>,
    /// Group's name.
    pub gname: Vec<u8>,
    /// Content size (0 for everything but regular files).
    pub size: u64,
    /// Modification time, whole seconds.
    pub mtime: i64,
    /// Device major number.
    pub devmajor: u64,
    /// Device minor number.
    pub devminor: u64,
    /// Extended attributes (`name`, `value`), written as `SCHILY.xattr.name` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why Go's writer refuses a header (containers/storage then leaves the member out).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

fn is_ascii(s: &[u8]) -> bool {
    s.iter().all(|&b| b != 0 && b < 0x80)
}

/// Go's `toASCII`: every byte of a multi-byte or invalid UTF-8 sequence is >= 0x80.
fn to_ascii(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|&b| b != 0 && b < 0x80).collect()
}

/// Go's `splitUSTARPath`: (prefix, name) of a long ASCII name cut at a `/`.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length = name.len();
    if length <= NAME || !is_ascii(name) {
        return None;
    }
    if length > PREFIX + 1 {
        length = PREFIX + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&b| b == b'/')?;
    let suffix = name.len() - i - 1;
    if i == 0 || suffix > NAME || suffix == 0 || i > PREFIX {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Go's `formatPAXRecord`.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut size = body + body.to_string().len();
    if (size.to_string().len() + body) != size {
        size = size.to_string().len() + body;
    }
    let mut rec = size.to_string().into_bytes();
    rec.push(b' ');
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// Fills the magic and version (`ustar\0`, `00`: USTAR and PAX alike) and the checksum.
fn seal(blk: &mut [u8; BLOCK]) {
    blk[field::MAGIC].copy_from_slice(field::USTAR_MAGIC);
    blk[field::VERSION].copy_from_slice(b"00");
    let sum = field::checksum(blk);
    let (digits, space) = (field::CHKSUM.start, field::CHKSUM.end - 1);
    put_octal(&mut blk[digits..space], i128::from(sum));
    blk[space] = b' ';
}

/// Go's `templateV7Plus`.
fn template(h: &GoHeader, name: &[u8], text: &dyn Fn(&[u8]) -> Vec<u8>) -> [u8; BLOCK] {
    let mut blk = [0u8; BLOCK];
    blk[field::TYPEFLAG] = h.typeflag;
    put_str(&mut blk[field::NAME], &text(name));
    put_str(&mut blk[field::LINKNAME], &text(&h.linkname));
    put_octal(&mut blk[field::MODE], i128::from(h.mode));
    put_octal(&mut blk[field::UID], i128::from(h.uid));
    put_octal(&mut blk[field::GID], i128::from(h.gid));
    put_octal(&mut blk[field::SIZE], i128::from(h.size));
    put_octal(&mut blk[field::MTIME], i128::from(h.mtime));
    put_str(&mut blk[field::UNAME], &text(&h.uname));
    put_str(&mut blk[field::GNAME], &text(&h.gname));
    put_octal(&mut blk[field::DEVMAJOR], i128::from(h.devmajor));
    put_octal(&mut blk[field::DEVMINOR], i128::from(h.devminor));
    blk
}

/// Go's `path.Join(dir, "PaxHeaders.0", file)` of `path.Split(name)`, for clean names.
fn pax_name(name: &[u8]) -> Vec<u8> {
    let cut = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (dir, file) = name.split_at(cut);
    let mut out = dir.to_vec();
    out.extend_from_slice(b"PaxHeaders.0");
    if !file.is_empty() {
        out.push(b'/');
        out.extend_from_slice(file);
    }
    out
}

/// The header block(s) Go's `tar.Writer.WriteHeader` writes for `h` (a PAX member and its
/// padded records first when it needs one); the member's content follows, padded with
/// [`field::padding`].
pub fn encode(h: &GoHeader) -> Result<Vec<u8>, Refused> {
    let mut ustar = true;
    let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let strings: [(&[u8], usize, &[u8]); 4] = [
        (&h.name, NAME, b"path"),
        (&h.linkname, NAME, b"linkpath"),
        (&h.uname, OWNER_NAME, b"uname"),
        (&h.gname, OWNER_NAME, b"gname"),
    ];
    for (s, width, key) in strings {
        if s.contains(&0) {
            return Err(Refused("a name holds a NUL byte"));
        }
        if !is_ascii(s) || s.len() > width {
            if key != b"path" || split_ustar(s).is_none() {
                ustar = false;
            }
            pax.insert(key.to_vec(), s.to_vec());
        }
    }
    let numbers: [(u64, usize, &[u8]); 3] = [
        (h.uid, 8, b"uid"),
        (h.gid, 8, b"gid"),
        (h.size, 12, b"size"),
    ];
    for (n, width, key) in numbers {
        if !fits_octal(width, i128::from(n)) {
            ustar = false;
            pax.insert(key.to_vec(), n.to_string().into_bytes());
        }
    }
    for (n, width) in [(h.mode, 8), (h.devmajor, 8), (h.devminor, 8)] {
        if !fits_octal(width, i128::from(n)) {
            return Err(Refused("a number only GNU headers can hold"));
        }
    }
    if !fits_octal(12, i128::from(h.mtime)) {
        ustar = false;
        pax.insert(b"mtime".to_vec(), h.mtime.to_string().into_bytes());
    }
    if !h.xattrs.is_empty() {
        ustar = false;
        for (k, v) in &h.xattrs {
            let key = [b"SCHILY.xattr.".as_slice(), k].concat();
            if key.contains(&b'=') || key.contains(&0) {
                return Err(Refused("an xattr name PAX cannot hold"));
            }
            pax.insert(key, v.clone());
        }
    }
    if matches!(
        h.typeflag,
        typeflag::REG | typeflag::CHAR | typeflag::BLOCK | typeflag::FIFO
    ) && h.name.ends_with(b"/")
    {
        return Err(Refused("filename may not have trailing slash"));
    }

    if ustar {
        let (prefix, name) = split_ustar(&h.name).unwrap_or((b"", &h.name));
        let mut blk = template(h, name, &|s| s.to_vec());
        put_str(&mut blk[field::PREFIX], prefix);
        seal(&mut blk);
        return Ok(blk.to_vec());
    }

    let mut data = Vec::new();
    for (k, v) in &pax {
        data.extend_from_slice(&pax_record(k, v));
    }
    if data.len() > 1 << 20 {
        return Err(Refused("PAX records over 1 MiB"));
    }
    let mut xname = to_ascii(&pax_name(&h.name));
    xname.truncate(NAME);
    while xname.last() == Some(&b'/') {
        xname.pop();
    }
    let mut x = [0u8; BLOCK];
    x[field::TYPEFLAG] = b'x';
    put_str(&mut x[field::NAME], &xname);
    put_octal(&mut x[field::MODE], 0);
    put_octal(&mut x[field::UID], 0);
    put_octal(&mut x[field::GID], 0);
    put_octal(&mut x[field::SIZE], data.len() as i128);
    put_octal(&mut x[field::MTIME], 0);
    seal(&mut x);
    let mut out = x.to_vec();
    let pad = field::padding(data.len() as u64) as usize;
    out.extend_from_slice(&data);
    out.resize(out.len() + pad, 0);
    let mut blk = template(h, &h.name, &to_ascii);
    seal(&mut blk);
    out.extend_from_slice(&blk);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(blk: &[u8], at: usize, len: usize) -> &[u8] {
        &blk[at..at + len]
    }

    #[test]
    fn a_plain_file_is_ustar_with_octal_fields() {
        let h = GoHeader {
            name: b"d/f".to_vec(),
            typeflag: typeflag::REG,
            mode: 0o100644,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            size: 3,
            mtime: 1_700_000_000,
            ..Default::default()
        };
        let blk = encode(&h).expect("encode");
        assert_eq!(blk.len(), BLOCK);
        assert_eq!(field(&blk, 100, 8), b"0100644\0");
        assert_eq!(field(&blk, 124, 12), b"00000000003\0");
        assert_eq!(field(&blk, 329, 8), b"0000000\0");
        assert_eq!(field(&blk, 337, 8), b"0000000\0");
        assert_eq!(field(&blk, 257, 8), b"ustar\x0000");
        let sum: u32 = blk.iter().map(|&b| u32::from(b)).sum::<u32>()
            - field(&blk, 148, 8)
                .iter()
                .map(|&b| u32::from(b))
                .sum::<u32>()
            + 8 * 32;
        assert_eq!(field(&blk, 148, 8), format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn a_long_name_is_split_when_it_can_be() {
        let name = [vec![b'a'; 60], b"/".to_vec(), vec![b'b'; 60]].concat();
        let h = GoHeader {
            name: name.clone(),
            typeflag: typeflag::REG,
            ..Default::default()
        };
        let blk = encode(&h).expect("encode");
        assert_eq!(blk.len(), BLOCK);
        assert_eq!(&blk[0..60], &name[61..]);
        assert_eq!(&blk[345..405], &name[..60]);
    }

    #[test]
    fn what_ustar_cannot_hold_goes_to_sorted_pax_records() {
        let name = [vec![b'a'; 10], b"/".to_vec(), vec![b'c'; 120]].concat();
        let h = GoHeader {
            name: name.clone(),
            typeflag: typeflag::REG,
            uid: 1 << 21,
            xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
            ..Default::default()
        };
        let out = encode(&h).expect("encode");
        assert_eq!(out.len(), 3 * BLOCK);
        let xname = [b"aaaaaaaaaa/PaxHeaders.0/".as_slice(), &name[11..]].concat();
        assert_eq!(&out[..100], &xname[..100]);
        assert_eq!(out[156], b'x');
        let records = [
            b"25 SCHILY.xattr.user.a=b\n".to_vec(),
            pax_record(b"path", &name),
            b"15 uid=2097152\n".to_vec(),
        ]
        .concat();
        assert_eq!(&out[BLOCK..BLOCK + records.len()], records.as_slice());
        let main = &out[2 * BLOCK..];
        assert_eq!(&main[..100], &name[..100]);
        assert_eq!(field(main, 108, 8), b"0000000\0"); // too big: 0, the record has it
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record(b"k", b"v"), b"6 k=v\n");
        let v = vec![b'x'; 93]; // 1 + 93 + 3 = 97, + 2 digits = 99
        assert_eq!(pax_record(b"k", &v).len(), 99);
        let v = vec![b'x'; 94]; // 98 + 2 = 100: three digits, 101
        let rec = pax_record(b"k", &v);
        assert_eq!(rec.len(), 101);
        assert!(rec.starts_with(b"101 "));
    }
}
