//! The copy engine of `blksnap backup`: byte ranges from a source to the
//! same offsets of a destination.
//!
//! The source is any `Read + Seek` (a snapshot image in the tool, a regular
//! file in the tests), the destination any `Write + Seek`. [`copy_ranges`]
//! reads each range in pieces of [`CopyOptions::piece`] bytes, checks the
//! [`Cancel`] flag before each piece, can leave pieces of zeroes unwritten
//! when the destination is known to hold zeroes there (a new file of the
//! right size, which then stays sparse), skips reading the ranges the
//! caller knows to read as zeroes ([`CopyOptions::zeros`], the extents of
//! an in-volume difference storage, which a snapshot image reads as
//! zeroes) and treats them exactly as zeroes read, can feed what it reads
//! to a [`Sha256`] (meaningful when the ranges are the whole source, in
//! order), and reports progress after each piece.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use crate::cancel::{self, Cancel};
use crate::plan::ByteRange;

/// Bytes read at once by default.
pub const PIECE: usize = 1 << 20;

/// How [`copy_ranges`] copies.
#[derive(Clone, Copy, Debug)]
pub struct CopyOptions<'a> {
    /// Bytes read and written at once.
    pub piece: usize,
    /// The destination holds zeroes where it is written: pieces of zeroes
    /// are skipped instead of written.
    pub sparse: bool,
    /// Checked before every piece.
    pub cancel: &'a Cancel,
    /// Ranges of the source known to read as zeroes, sorted and not
    /// overlapping: they are not read, and are copied as zeroes would be
    /// (hashed as zeroes, skipped when `sparse`, written as zeroes if not).
    pub zeros: &'a [ByteRange],
}

/// Why a copy stopped.
#[derive(Debug)]
pub enum CopyError {
    /// The cancel flag was set, by this signal.
    Interrupted(i32),
    /// Reading the source at `offset` failed (an early end is an
    /// `UnexpectedEof`).
    Read {
        /// Offset of the piece.
        offset: u64,
        /// The error.
        source: io::Error,
    },
    /// Writing the destination at `offset` failed.
    Write {
        /// Offset of the piece.
        offset: u64,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interrupted(signal) => write!(f, "{}", cancel::interrupted(*signal)),
            Self::Read { offset, source } => write!(f, "reading at byte {offset}: {source}"),
            Self::Write { offset, source } => write!(f, "writing at byte {offset}: {source}"),
        }
    }
}

impl std::error::Error for CopyError {}

impl CopyError {
    /// Returns the error as an `io::Error`, keeping its text, and for an
    /// interruption its kind (see [`cancel::is_interrupted`]).
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Interrupted(signal) => cancel::interrupted(signal),
            other => {
                let kind = match &other {
                    Self::Read { source, .. } | Self::Write { source, .. } => source.kind(),
                    Self::Interrupted(_) => io::ErrorKind::Interrupted,
                };
                io::Error::new(kind, other.to_string())
            }
        }
    }
}

/// What [`copy_ranges`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Bytes read from the source.
    pub read: u64,
    /// Bytes written to the destination (less than `read` + `known_zero`
    /// where pieces of zeroes were skipped).
    pub written: u64,
    /// Bytes of [`CopyOptions::zeros`] copied as zeroes without reading.
    pub known_zero: u64,
}

/// Fills `buf` from `src`, retrying EINTR; an early end is an error.
fn read_full(src: &mut impl Read, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match src.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source ended early",
                ))
            }
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted && e.raw_os_error().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Returns whether every byte of `buf` is zero.
fn is_zero(buf: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: every bit pattern is a valid u64; `align_to` only
        // reinterprets the aligned middle of the slice.
        unsafe { buf.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Returns where the piece at `offset` ends, at most at `end`, and whether
/// it lies in one of `zeros` (sorted, not overlapping): a piece does not
/// cross the edge of a zero range. `next` is the index of the first zero
/// range not yet behind `offset`, advanced as the copy goes forward.
fn piece_end(zeros: &[ByteRange], next: &mut usize, offset: u64, end: u64) -> (u64, bool) {
    while *next < zeros.len() && zeros[*next].end <= offset {
        *next += 1;
    }
    match zeros.get(*next) {
        Some(z) if z.start <= offset => (end.min(z.end), true),
        Some(z) => (end.min(z.start), false),
        None => (end, false),
    }
}

/// Copies each of `ranges` from `src` to the same offsets of `dst`.
///
/// `hash`, if given, is fed every byte copied, in order (the zeroes of
/// [`CopyOptions::zeros`] included); `progress` is told the bytes of each
/// piece once it is written.
pub fn copy_ranges<R: Read + Seek, W: Write + Seek>(
    src: &mut R,
    dst: &mut W,
    ranges: &[ByteRange],
    opts: &CopyOptions<'_>,
    mut hash: Option<&mut Sha256>,
    progress: &mut dyn FnMut(u64),
) -> Result<Copied, CopyError> {
    let mut buf = vec![0u8; opts.piece.max(1)];
    let mut done = Copied::default();
    let mut next_zero = 0;
    let mut last_end = 0;
    for range in ranges {
        let mut offset = range.start;
        let read_err = |offset, source| CopyError::Read { offset, source };
        let write_err = |offset, source| CopyError::Write { offset, source };
        // Ranges need not be sorted: one that starts before the last one
        // ended looks for its zero ranges from the first.
        if range.start < last_end {
            next_zero = 0;
        }
        last_end = range.end;
        while offset < range.end {
            if let Some(signal) = opts.cancel.signal() {
                return Err(CopyError::Interrupted(signal));
            }
            let (end, zero) = piece_end(opts.zeros, &mut next_zero, offset, range.end);
            let n = (end - offset).min(buf.len() as u64) as usize;
            let piece = &mut buf[..n];
            if zero {
                piece.fill(0);
            } else {
                src.seek(SeekFrom::Start(offset))
                    .map_err(|e| read_err(offset, e))?;
                read_full(src, piece).map_err(|e| read_err(offset, e))?;
            }
            if let Some(h) = hash.as_deref_mut() {
                h.update(&*piece);
            }
            if !(opts.sparse && (zero || is_zero(piece))) {
                dst.seek(SeekFrom::Start(offset))
                    .map_err(|e| write_err(offset, e))?;
                dst.write_all(piece).map_err(|e| write_err(offset, e))?;
                done.written += n as u64;
            }
            if zero {
                done.known_zero += n as u64;
            } else {
                done.read += n as u64;
            }
            offset += n as u64;
            progress(n as u64);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::hex_digest;
    use crate::plan::full_ranges;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn data(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ salt ^ (i >> 9) as u8)
            .collect()
    }

    fn opts(cancel: &Cancel, piece: usize, sparse: bool) -> CopyOptions<'_> {
        CopyOptions {
            piece,
            sparse,
            cancel,
            zeros: &[],
        }
    }

    /// A reader that fails on any read that touches `forbidden`.
    struct Guarded<'a> {
        inner: Cursor<&'a [u8]>,
        forbidden: &'a [ByteRange],
    }

    impl Read for Guarded<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let start = self.inner.position();
            let end = start + buf.len() as u64;
            if self
                .forbidden
                .iter()
                .any(|z| z.start < end && start < z.end)
            {
                return Err(io::Error::other(format!("read of {start}..{end}")));
            }
            self.inner.read(buf)
        }
    }

    impl Seek for Guarded<'_> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn known_zero_ranges_are_not_read_and_copy_as_zeroes() {
        // The source holds data where the zero ranges are, which must
        // neither be read nor reach the destination or the hash.
        let src = data(40_000, 7);
        let zeros = [ByteRange::new(1000, 5096), ByteRange::new(20_000, 30_000)];
        let mut want = src.clone();
        for z in &zeros {
            want[z.start as usize..z.end as usize].fill(0);
        }
        let cancel = Cancel::new();
        for sparse in [false, true] {
            let mut dst = Cursor::new(vec![if sparse { 0 } else { 0xee }; src.len()]);
            let mut hash = Sha256::new();
            let mut seen = 0;
            let o = CopyOptions {
                zeros: &zeros,
                ..opts(&cancel, 3000, sparse)
            };
            let got = copy_ranges(
                &mut Guarded {
                    inner: Cursor::new(&src),
                    forbidden: &zeros,
                },
                &mut dst,
                &full_ranges(src.len() as u64),
                &o,
                Some(&mut hash),
                &mut |n| seen += n,
            )
            .unwrap();
            assert_eq!(dst.get_ref(), &want, "sparse {sparse}");
            assert_eq!(got.known_zero, 4096 + 10_000);
            assert_eq!(got.read, 40_000 - 14_096);
            assert_eq!(seen, 40_000);
            let written = if sparse { 40_000 - 14_096 } else { 40_000 };
            assert_eq!(got.written, written, "sparse {sparse}");
            assert_eq!(hex_digest(hash), hex_digest(Sha256::new_with_prefix(&want)));
        }
        // Ranges out of order, partly inside zero ranges.
        let ranges = [
            ByteRange::new(25_000, 32_000),
            ByteRange::new(0, 2000),
            ByteRange::new(4000, 21_000),
        ];
        let mut dst = Cursor::new(vec![0xee; src.len()]);
        let o = CopyOptions {
            zeros: &zeros,
            ..opts(&cancel, 1 << 20, false)
        };
        copy_ranges(
            &mut Guarded {
                inner: Cursor::new(&src),
                forbidden: &zeros,
            },
            &mut dst,
            &ranges,
            &o,
            None,
            &mut |_| {},
        )
        .unwrap();
        let mut expect = vec![0xee; src.len()];
        for r in &ranges {
            let (a, b) = (r.start as usize, r.end as usize);
            expect[a..b].copy_from_slice(&want[a..b]);
        }
        assert_eq!(dst.get_ref(), &expect);
    }

    #[test]
    fn a_full_copy_is_equal_and_hashed() {
        let src = data(100_000, 1);
        let cancel = Cancel::new();
        let mut dst = Cursor::new(vec![0u8; src.len()]);
        let mut hash = Sha256::new();
        let mut seen = 0;
        let got = copy_ranges(
            &mut Cursor::new(&src),
            &mut dst,
            &full_ranges(src.len() as u64),
            &opts(&cancel, 4096, false),
            Some(&mut hash),
            &mut |n| seen += n,
        )
        .unwrap();
        assert_eq!(dst.get_ref(), &src);
        assert_eq!(got.read, src.len() as u64);
        assert_eq!(got.written, src.len() as u64);
        assert_eq!(seen, src.len() as u64);
        assert_eq!(hex_digest(hash), hex_digest(Sha256::new_with_prefix(&src)));
    }

    #[test]
    fn sparse_copies_skip_zero_pieces() {
        let mut src = data(64 * 1024, 2);
        src[16 * 1024..40 * 1024].fill(0);
        let cancel = Cancel::new();
        // A destination that is not zero shows which pieces were skipped.
        let mut dst = Cursor::new(vec![0xee; src.len()]);
        let got = copy_ranges(
            &mut Cursor::new(&src),
            &mut dst,
            &full_ranges(src.len() as u64),
            &opts(&cancel, 4096, true),
            None,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(got.read, 64 * 1024);
        assert_eq!(got.written, 40 * 1024);
        assert!(dst.get_ref()[16 * 1024..40 * 1024]
            .iter()
            .all(|&b| b == 0xee));
        assert_eq!(dst.get_ref()[..16 * 1024], src[..16 * 1024]);
        assert_eq!(dst.get_ref()[40 * 1024..], src[40 * 1024..]);
        assert!(is_zero(&[0; 37]) && !is_zero(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn a_set_flag_stops_the_copy() {
        let src = data(10_000, 3);
        let cancel = Cancel::new();
        let mut dst = Cursor::new(vec![0u8; src.len()]);
        let mut pieces = 0;
        let err = copy_ranges(
            &mut Cursor::new(&src),
            &mut dst,
            &full_ranges(src.len() as u64),
            &opts(&cancel, 1000, false),
            None,
            &mut |_| {
                pieces += 1;
                if pieces == 3 {
                    cancel.set(libc::SIGINT);
                }
            },
        )
        .unwrap_err();
        assert!(matches!(err, CopyError::Interrupted(libc::SIGINT)), "{err}");
        assert_eq!(pieces, 3);
        assert!(cancel::is_interrupted(&err.into_io()));
        assert_eq!(dst.get_ref()[3000..], vec![0u8; 7000][..]);
    }

    #[test]
    fn a_short_source_is_a_read_error() {
        let src = data(5000, 4);
        let cancel = Cancel::new();
        let mut dst = Cursor::new(Vec::new());
        let err = copy_ranges(
            &mut Cursor::new(&src),
            &mut dst,
            &[ByteRange::new(4096, 8192)],
            &opts(&cancel, 1 << 20, false),
            None,
            &mut |_| {},
        )
        .unwrap_err();
        match &err {
            CopyError::Read { offset, source } => {
                assert_eq!(*offset, 4096);
                assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "reading at byte 4096: the source ended early"
        );
    }

    proptest! {
        #[test]
        fn ranges_update_exactly_their_bytes(
            len in 0usize..5000,
            cuts in proptest::collection::vec(0usize..5000, 0..10),
            piece in 1usize..700,
            sparse: bool,
        ) {
            let new = data(len, 5);
            let old = data(len, 6);
            let mut cuts: Vec<u64> = cuts.into_iter().map(|c| c.min(len) as u64).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let ranges: Vec<ByteRange> = cuts
                .chunks_exact(2)
                .map(|p| ByteRange::new(p[0], p[1]))
                .collect();
            let cancel = Cancel::new();
            // Sparse copies may only go over zeroes.
            let base = if sparse { vec![0u8; len] } else { old.clone() };
            let mut dst = Cursor::new(base.clone());
            let got = copy_ranges(
                &mut Cursor::new(&new),
                &mut dst,
                &ranges,
                &opts(&cancel, piece, sparse),
                None,
                &mut |_| {},
            ).unwrap();
            let mut want = base;
            for r in &ranges {
                want[r.start as usize..r.end as usize].copy_from_slice(&new[r.start as usize..r.end as usize]);
            }
            prop_assert_eq!(dst.get_ref(), &want);
            prop_assert_eq!(got.read, crate::plan::total_len(&ranges));
        }
    }
}
