//! `blksnap verify`: whether a backup file holds what an image holds.
//!
//! [`compare`] reads two sources side by side in pieces and finds the
//! 512-byte sectors where they differ, merged into ranges; it keeps the
//! first few ranges to report and counts all of them. Sources of different
//! sizes are compared over the shorter one and are never equal. The
//! sources are any `Read`, so the host tests compare regular files and
//! buffers. [`check_checksum`] checks a backup file against the
//! `FILE.sha256` that `blksnap backup` wrote.
//!
//! ```
//! use blksnap::cancel::Cancel;
//! use blksnap::plan::ByteRange;
//! use blksnap::verify::compare;
//!
//! let a = vec![0u8; 4096];
//! let mut b = a.clone();
//! b[1000] = 1;
//! let c = compare(&mut &a[..], &mut &b[..], 10, &Cancel::new(), &mut |_| {}).unwrap();
//! assert!(!c.equal());
//! assert_eq!(c.first, [ByteRange::new(512, 1024)]);
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use crate::backup::{checksum_path, parse_checksum_line, sha256_reader};
use crate::cancel::{Cancel, CancelRead};
use crate::plan::ByteRange;
use crate::sectors::SECTOR_SIZE;
use crate::{Error, Result};

/// Bytes read from each source at once.
const PIECE: usize = 1 << 20;

/// The result of [`compare`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Bytes in the first source (the backup file).
    pub size_a: u64,
    /// Bytes in the second source (the image).
    pub size_b: u64,
    /// The first differing ranges, at most as many as asked for; whole
    /// 512-byte sectors, the last cut at the shorter size.
    pub first: Vec<ByteRange>,
    /// Number of differing ranges.
    pub ranges: u64,
    /// Bytes in differing ranges.
    pub bytes: u64,
}

impl Comparison {
    /// Returns whether the sources are equal: same size, no difference.
    pub fn equal(&self) -> bool {
        self.size_a == self.size_b && self.ranges == 0
    }

    /// Records that `range` differs, merging it with the last range, which
    /// ended at `last_end`, if they touch; keeps the first `keep`.
    fn add(&mut self, range: ByteRange, keep: usize, last_end: &mut Option<u64>) {
        self.bytes += range.len();
        if *last_end == Some(range.start) {
            // The run goes on; it is the last kept one if all are kept.
            if self.ranges as usize <= keep {
                if let Some(r) = self.first.last_mut() {
                    r.end = range.end;
                }
            }
        } else {
            self.ranges += 1;
            if self.first.len() < keep {
                self.first.push(range);
            }
        }
        *last_end = Some(range.end);
    }
}

/// Fills as much of `buf` as `src` gives; fewer bytes only at its end.
fn read_some(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && e.raw_os_error().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Which source a [`CompareError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The first source.
    A,
    /// The second source.
    B,
}

/// Why [`compare`] stopped.
#[derive(Debug)]
pub struct CompareError {
    /// The source that failed, or `None` when the cancel flag was set.
    pub side: Option<Side>,
    /// The error.
    pub source: io::Error,
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)
    }
}

impl std::error::Error for CompareError {}

/// Compares `a` with `b`, keeping the first `keep` differing ranges;
/// `progress` is told the bytes of each piece compared.
pub fn compare(
    a: &mut impl Read,
    b: &mut impl Read,
    keep: usize,
    cancel: &Cancel,
    progress: &mut dyn FnMut(u64),
) -> std::result::Result<Comparison, CompareError> {
    let mut buf_a = vec![0u8; PIECE];
    let mut buf_b = vec![0u8; PIECE];
    let mut out = Comparison::default();
    let mut offset = 0u64;
    let mut last_end = None;
    loop {
        cancel
            .check()
            .map_err(|source| CompareError { side: None, source })?;
        let na = read_some(a, &mut buf_a).map_err(|source| CompareError {
            side: Some(Side::A),
            source,
        })?;
        let nb = read_some(b, &mut buf_b).map_err(|source| CompareError {
            side: Some(Side::B),
            source,
        })?;
        let n = na.min(nb);
        let sector = SECTOR_SIZE as usize;
        for (i, (x, y)) in buf_a[..n]
            .chunks(sector)
            .zip(buf_b[..n].chunks(sector))
            .enumerate()
        {
            if x != y {
                let start = offset + (i * sector) as u64;
                out.add(
                    ByteRange::new(start, start + x.len() as u64),
                    keep,
                    &mut last_end,
                );
            }
        }
        out.size_a += na as u64;
        out.size_b += nb as u64;
        offset += n as u64;
        progress(n as u64);
        if na < PIECE || nb < PIECE {
            // One side ended: count what is left of the other.
            let rest_a = count_rest(a, &mut buf_a).map_err(|source| CompareError {
                side: Some(Side::A),
                source,
            })?;
            let rest_b = count_rest(b, &mut buf_b).map_err(|source| CompareError {
                side: Some(Side::B),
                source,
            })?;
            out.size_a += if na < PIECE { 0 } else { rest_a };
            out.size_b += if nb < PIECE { 0 } else { rest_b };
            return Ok(out);
        }
    }
}

/// Reads `src` to its end and returns how many bytes that was.
fn count_rest(src: &mut impl Read, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = read_some(src, buf)?;
        total += n as u64;
        if n < buf.len() {
            return Ok(total);
        }
    }
}

/// The outcome of [`check_checksum`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksumCheck {
    /// The digest the checksum file records.
    pub expected: String,
    /// The digest of the file.
    pub actual: String,
}

impl ChecksumCheck {
    /// Returns whether the digests agree.
    pub fn ok(&self) -> bool {
        self.expected == self.actual
    }
}

/// Formats the outcome of `blksnap verify`: for a comparison, the first
/// differing ranges as `differ offset=BYTES length=BYTES`, `size file=N
/// image=M` if the sizes differ, then `different ranges=N bytes=N` or
/// `equal size=N`; for a checksum check, `checksum ok sha256=HEX` or
/// `checksum mismatch expected=HEX actual=HEX`.
pub fn format_verify(comparison: Option<&Comparison>, checksum: Option<&ChecksumCheck>) -> String {
    let mut out = String::new();
    if let Some(c) = comparison {
        for r in &c.first {
            out += &format!("differ offset={} length={}\n", r.start, r.len());
        }
        if c.size_a != c.size_b {
            out += &format!("size file={} image={}\n", c.size_a, c.size_b);
        }
        if c.equal() {
            out += &format!("equal size={}\n", c.size_a);
        } else {
            out += &format!("different ranges={} bytes={}\n", c.ranges, c.bytes);
        }
    }
    if let Some(s) = checksum {
        if s.ok() {
            out += &format!("checksum ok sha256={}\n", s.actual);
        } else {
            out += &format!(
                "checksum mismatch expected={} actual={}\n",
                s.expected, s.actual
            );
        }
    }
    out
}

/// Checks `file` against the digest in `FILE.sha256`; `progress` is told
/// the bytes of each piece read.
pub fn check_checksum(
    file: &Path,
    cancel: &Cancel,
    progress: &mut dyn FnMut(u64),
) -> Result<ChecksumCheck> {
    let sums = checksum_path(file);
    let text = fs::read_to_string(&sums)
        .map_err(|e| Error::new(format!("cannot read {}", sums.display()), e))?;
    let expected = parse_checksum_line(&text).ok_or_else(|| {
        Error::new(
            format!("cannot read {}", sums.display()),
            io::Error::new(
                io::ErrorKind::InvalidData,
                "it does not start with a SHA-256 digest",
            ),
        )
    })?;
    let reading = |e| Error::new(format!("cannot read {}", file.display()), e);
    let f = File::open(file).map_err(reading)?;
    let mut checked = CancelRead::new(f, cancel);
    let actual = sha256_reader(&mut checked, progress).map_err(reading)?;
    Ok(ChecksumCheck { expected, actual })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmp(a: &[u8], b: &[u8], keep: usize) -> Comparison {
        let mut seen = 0;
        let c = compare(&mut &a[..], &mut &b[..], keep, &Cancel::new(), &mut |n| {
            seen += n
        })
        .unwrap();
        assert_eq!(seen, a.len().min(b.len()) as u64);
        c
    }

    #[test]
    fn equal_sources() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let c = cmp(&data, &data, 10);
        assert!(c.equal());
        assert_eq!(c.size_a, data.len() as u64);
        assert!(cmp(&[], &[], 10).equal());
    }

    #[test]
    fn differences_are_whole_sectors_merged() {
        let a = vec![0u8; 4 << 20];
        let mut b = a.clone();
        b[10] = 1; // sector 0
        b[600] = 1; // sector 1, merged with 0
        b[5000] = 1; // sector 9
        b[(1 << 20) - 1] = 1; // last sector of the first piece...
        b[1 << 20] = 1; // ...merged with the first of the second
        b[(4 << 20) - 1] = 1;
        let c = cmp(&a, &b, 10);
        assert!(!c.equal());
        assert_eq!(
            c.first,
            [
                ByteRange::new(0, 1024),
                ByteRange::new(9 * 512, 10 * 512),
                ByteRange::new((1 << 20) - 512, (1 << 20) + 512),
                ByteRange::new((4 << 20) - 512, 4 << 20),
            ]
        );
        assert_eq!(c.ranges, 4);
        assert_eq!(c.bytes, 1024 + 512 + 1024 + 512);
        // Only the first two kept, all counted; a merge into an unkept
        // range changes no kept one.
        let c = cmp(&a, &b, 2);
        assert_eq!(c.first.len(), 2);
        assert_eq!(c.first[1], ByteRange::new(9 * 512, 10 * 512));
        assert_eq!(c.ranges, 4);
        assert_eq!(c.bytes, 3072);
    }

    #[test]
    fn different_sizes_are_not_equal() {
        let a = vec![7u8; 3 << 20];
        let b = vec![7u8; (3 << 20) + 100];
        let c = cmp(&a, &b, 10);
        assert!(!c.equal());
        assert_eq!(c.ranges, 0);
        assert_eq!((c.size_a, c.size_b), (3 << 20, (3 << 20) + 100));
        let c = cmp(&b[..1000], &a, 10);
        assert_eq!((c.size_a, c.size_b), (1000, 3 << 20));
        // A partial last sector.
        let mut d = a[..1000].to_vec();
        d[999] = 0;
        let c = cmp(&a[..1000], &d, 10);
        assert_eq!(c.first, [ByteRange::new(512, 1000)]);
        assert!(!c.equal());
    }

    #[test]
    fn a_set_flag_stops_the_comparison() {
        let cancel = Cancel::new();
        cancel.set(libc::SIGTERM);
        let err = compare(
            &mut &[0u8; 10][..],
            &mut &[0u8; 10][..],
            1,
            &cancel,
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(err.side, None);
        assert!(crate::cancel::is_interrupted(&err.source));
    }

    #[test]
    fn verify_text() {
        let equal = Comparison {
            size_a: 1 << 20,
            size_b: 1 << 20,
            ..Comparison::default()
        };
        assert_eq!(format_verify(Some(&equal), None), "equal size=1048576\n");
        let mut c = cmp(&[0u8; 4096], &[1u8; 2048], 1);
        assert_eq!(
            format_verify(Some(&c), None),
            "differ offset=0 length=2048\nsize file=4096 image=2048\ndifferent ranges=1 bytes=2048\n"
        );
        c.first.clear();
        c.ranges = 0;
        c.bytes = 0;
        assert_eq!(
            format_verify(Some(&c), None),
            "size file=4096 image=2048\ndifferent ranges=0 bytes=0\n"
        );
        let ok = ChecksumCheck {
            expected: "ab".repeat(32),
            actual: "ab".repeat(32),
        };
        assert_eq!(
            format_verify(Some(&equal), Some(&ok)),
            format!(
                "equal size=1048576\nchecksum ok sha256={}\n",
                "ab".repeat(32)
            )
        );
        let bad = ChecksumCheck {
            expected: "ab".repeat(32),
            actual: "cd".repeat(32),
        };
        assert!(!bad.ok());
        assert_eq!(
            format_verify(None, Some(&bad)),
            format!(
                "checksum mismatch expected={} actual={}\n",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
    }

    #[test]
    fn checksum_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.img");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        fs::write(&file, &data).unwrap();
        let err = check_checksum(&file, &Cancel::new(), &mut |_| {}).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
        let hex = sha256_reader(&mut &data[..], &mut |_| {}).unwrap();
        fs::write(checksum_path(&file), format!("{hex}  a.img\n")).unwrap();
        let mut seen = 0;
        let c = check_checksum(&file, &Cancel::new(), &mut |n| seen += n).unwrap();
        assert!(c.ok(), "{c:?}");
        assert_eq!(seen, data.len() as u64);
        fs::write(&file, &data[1..]).unwrap();
        let c = check_checksum(&file, &Cancel::new(), &mut |_| {}).unwrap();
        assert!(!c.ok());
        assert_eq!(c.expected, hex);
        fs::write(checksum_path(&file), "not a digest\n").unwrap();
        let err = check_checksum(&file, &Cancel::new(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }

    /// The reference: the differing sectors of `a` and `b`, merged.
    fn model(a: &[u8], b: &[u8]) -> Vec<ByteRange> {
        let n = a.len().min(b.len());
        let mut out: Vec<ByteRange> = Vec::new();
        for s in (0..n).step_by(512) {
            let e = (s + 512).min(n);
            if a[s..e] != b[s..e] {
                match out.last_mut() {
                    Some(r) if r.end == s as u64 => r.end = e as u64,
                    _ => out.push(ByteRange::new(s as u64, e as u64)),
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn matches_a_sector_model(
            len in 0usize..20_000,
            extra in 0usize..3,
            flips in proptest::collection::vec(0usize..20_000, 0..12),
            keep in 0usize..5,
        ) {
            let a: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
            let mut b = a.clone();
            b.extend(std::iter::repeat_n(1u8, extra));
            for f in flips {
                if f < len {
                    b[f] ^= 0x40;
                }
            }
            let c = cmp(&a, &b, keep);
            let want = model(&a, &b);
            prop_assert_eq!(c.ranges, want.len() as u64);
            prop_assert_eq!(&c.first[..], &want[..want.len().min(keep)]);
            prop_assert_eq!(c.bytes, crate::plan::total_len(&want));
            prop_assert_eq!(c.equal(), want.is_empty() && extra == 0);
        }
    }
}
