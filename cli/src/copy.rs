//! The copy engine of `blksnap backup`: byte ranges from a source to the
//! same offsets of a destination.
//!
//! The source is any `Read + Seek` (a snapshot image in the tool, a regular
//! file in the tests), the destination any `Write + Seek`. [`copy_ranges`]
//! reads each range in pieces of [`CopyOptions::piece`] bytes, checks the
//! [`Cancel`] flag before each piece, can leave pieces of zeroes unwritten
//! when the destination is known to hold zeroes there (a new file of the
//! right size, which then stays sparse), can feed what it reads to a
//! [`Sha256`] (meaningful when the ranges are the whole source, in order),
//! and reports progress after each piece.

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
    /// Bytes written to the destination (less than `read` where pieces of
    /// zeroes were skipped).
    pub written: u64,
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

/// Copies each of `ranges` from `src` to the same offsets of `dst`.
///
/// `hash`, if given, is fed every byte read, in order; `progress` is told
/// the bytes of each piece once it is written.
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
    for range in ranges {
        let mut offset = range.start;
        let read_err = |offset, source| CopyError::Read { offset, source };
        let write_err = |offset, source| CopyError::Write { offset, source };
        src.seek(SeekFrom::Start(offset))
            .map_err(|e| read_err(offset, e))?;
        dst.seek(SeekFrom::Start(offset))
            .map_err(|e| write_err(offset, e))?;
        while offset < range.end {
            if let Some(signal) = opts.cancel.signal() {
                return Err(CopyError::Interrupted(signal));
            }
            let n = (range.end - offset).min(buf.len() as u64) as usize;
            let piece = &mut buf[..n];
            read_full(src, piece).map_err(|e| read_err(offset, e))?;
            if let Some(h) = hash.as_deref_mut() {
                h.update(&*piece);
            }
            if opts.sparse && is_zero(piece) {
                dst.seek(SeekFrom::Current(n as i64))
                    .map_err(|e| write_err(offset, e))?;
            } else {
                dst.write_all(piece).map_err(|e| write_err(offset, e))?;
                done.written += n as u64;
            }
            done.read += n as u64;
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
        }
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
