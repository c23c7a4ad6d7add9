//! Opening a block device or regular file for direct I/O, and the aligned
//! buffers that direct I/O needs.
//!
//! Devices are opened with `O_DIRECT`, so reads see the device and not the
//! page cache, and a write has reached the block layer when it returns.
//! Where the filesystem refuses `O_DIRECT` at open time with `EINVAL` (older
//! tmpfs, some overlay setups) the file is opened without it, which is what
//! the host unit tests on regular files may need.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::block::BLOCK_SIZE;

/// A failure of a `tagblk` command: a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// The OS error `err` met while doing `what`.
    pub fn io(what: impl fmt::Display, err: io::Error) -> Self {
        Self(format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Result of `tagblk`'s operations.
pub type Result<T> = std::result::Result<T, Error>;

/// An open block device or regular file.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
    size: u64,
    direct: bool,
}

impl Device {
    /// Opens `path` for reading, and for writing too if `write`.
    pub fn open(path: &Path, write: bool) -> Result<Self> {
        let open = |flags| {
            OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(flags)
                .open(path)
        };
        let (mut file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                open(0).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?,
                false,
            ),
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        };
        // Works for block devices, where the metadata length is 0.
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(format!("cannot find the size of {}", path.display()), e))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            size,
            direct,
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether it is open with `O_DIRECT`.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Whether it is a regular file (which writes may extend).
    pub fn is_regular_file(&self) -> bool {
        self.file.metadata().map(|m| m.is_file()).unwrap_or(false)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                format!("read of {} at offset {offset}", self.path.display()),
                e,
            )
        })
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| {
            Error::io(
                format!("write to {} at offset {offset}", self.path.display()),
                e,
            )
        })
    }

    /// Flushes what was written down to stable storage.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fdatasync of {}", self.path.display()), e))
    }
}

/// A byte buffer whose start is aligned to [`BLOCK_SIZE`], as `O_DIRECT`
/// needs.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + BLOCK_SIZE];
        let start = storage.as_ptr().align_offset(BLOCK_SIZE);
        Self {
            storage,
            start,
            len,
        }
    }

    /// The buffer.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The buffer, to write into.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// A byte range of a device: whole blocks, inside the device (or, for a
/// regular file being written, possibly past its end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Start, in bytes, a multiple of [`BLOCK_SIZE`].
    pub offset: u64,
    /// Length, in bytes, a nonzero multiple of [`BLOCK_SIZE`].
    pub len: u64,
}

impl Range {
    /// The range from `offset` of `len` bytes (default: to the end of a
    /// device of `size` bytes), checked: block-aligned, not empty, and
    /// inside the device unless `may_extend`.
    pub fn resolve(offset: u64, len: Option<u64>, size: u64, may_extend: bool) -> Result<Self> {
        let bs = BLOCK_SIZE as u64;
        if !offset.is_multiple_of(bs) {
            return Err(Error(format!(
                "offset {offset} is not a multiple of {BLOCK_SIZE}"
            )));
        }
        let len = match len {
            Some(len) => len,
            None => size
                .checked_sub(offset)
                .ok_or_else(|| Error(format!("offset {offset} is past the end ({size} bytes)")))?,
        };
        if len == 0 || !len.is_multiple_of(bs) {
            return Err(Error(format!(
                "length {len} is not a positive multiple of {BLOCK_SIZE}"
            )));
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| Error(format!("offset {offset} + length {len} overflows")))?;
        if end > size && !may_extend {
            return Err(Error(format!(
                "range {offset}..{end} goes past the end of the device ({size} bytes)"
            )));
        }
        Ok(Self { offset, len })
    }

    /// Number of blocks in the range.
    pub fn blocks(&self) -> u64 {
        self.len / BLOCK_SIZE as u64
    }

    /// Byte offset of block `i` of the range.
    pub fn block_offset(&self, i: u64) -> u64 {
        self.offset + i * BLOCK_SIZE as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned_and_zeroed() {
        for len in [BLOCK_SIZE, 3 * BLOCK_SIZE, 1 << 20] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.as_slice().as_ptr() as usize % BLOCK_SIZE, 0);
            assert_eq!(b.as_slice().len(), len);
            assert!(b.as_slice().iter().all(|&x| x == 0));
            b.as_mut_slice()[len - 1] = 1;
            assert_eq!(b.as_slice()[len - 1], 1);
        }
    }

    #[test]
    fn ranges_default_to_the_rest_of_the_device() {
        let r = Range::resolve(8192, None, 65536, false).unwrap();
        assert_eq!((r.offset, r.len, r.blocks()), (8192, 57344, 14));
        assert_eq!(r.block_offset(2), 16384);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(Range::resolve(100, None, 65536, false).is_err());
        assert!(Range::resolve(0, Some(100), 65536, false).is_err());
        assert!(Range::resolve(0, Some(0), 65536, false).is_err());
        assert!(Range::resolve(65536, None, 65536, false).is_err());
        assert!(Range::resolve(69632, None, 65536, false).is_err());
        assert!(Range::resolve(61440, Some(8192), 65536, false).is_err());
        assert!(Range::resolve(u64::MAX - 4095, Some(8192), 65536, true).is_err());
        assert_eq!(
            Range::resolve(61440, Some(8192), 65536, true).unwrap(),
            Range {
                offset: 61440,
                len: 8192
            }
        );
    }
}
