//! Where a file's data lies on its block device, for `markdirtyblock --file`.
//!
//! A file is located in two steps. Its `st_dev` names the block device of
//! its filesystem, found as `/dev/<DEVNAME>` from
//! `/sys/dev/block/MAJ:MIN/uevent` or as `/dev/block/MAJ:MIN`; for a
//! filesystem on a partition that is the partition, which is the device
//! whose filter tracks the writes. The FIEMAP ioctl then gives the file's
//! extents as byte ranges on that same device, which
//! [`extents_to_sectors`] widens to whole 512-byte sectors and merges.
//!
//! The FIEMAP layouts come from `linux/fiemap.h` and are written out here,
//! pinned by size and offset assertions.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::mem::{offset_of, size_of};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::sectors::{Sectors, SECTOR_SIZE};
use crate::{ioctl, Error, Result};

/// `struct fiemap`, the header of a FIEMAP request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Fiemap {
    /// Logical byte offset at which to start mapping (in).
    fm_start: u64,
    /// Logical length of the mapping (in).
    fm_length: u64,
    /// `FIEMAP_FLAG_*` (in/out).
    fm_flags: u32,
    /// Number of extents that were mapped (out).
    fm_mapped_extents: u32,
    /// Room in the extent array that follows (in).
    fm_extent_count: u32,
    /// Reserved.
    fm_reserved: u32,
}

/// `struct fiemap_extent`, one mapped extent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FiemapExtent {
    /// Byte offset of the extent in the file.
    fe_logical: u64,
    /// Byte offset of the extent on the device.
    fe_physical: u64,
    /// Length of the extent in bytes.
    fe_length: u64,
    /// Reserved.
    fe_reserved64: [u64; 2],
    /// `FIEMAP_EXTENT_*`.
    fe_flags: u32,
    /// Reserved.
    fe_reserved: [u32; 3],
}

const _: () = assert!(size_of::<Fiemap>() == 32);
const _: () = assert!(offset_of!(Fiemap, fm_start) == 0);
const _: () = assert!(offset_of!(Fiemap, fm_length) == 8);
const _: () = assert!(offset_of!(Fiemap, fm_flags) == 16);
const _: () = assert!(offset_of!(Fiemap, fm_mapped_extents) == 20);
const _: () = assert!(offset_of!(Fiemap, fm_extent_count) == 24);
const _: () = assert!(offset_of!(Fiemap, fm_reserved) == 28);
const _: () = assert!(size_of::<FiemapExtent>() == 56);
const _: () = assert!(offset_of!(FiemapExtent, fe_logical) == 0);
const _: () = assert!(offset_of!(FiemapExtent, fe_physical) == 8);
const _: () = assert!(offset_of!(FiemapExtent, fe_length) == 16);
const _: () = assert!(offset_of!(FiemapExtent, fe_reserved64) == 24);
const _: () = assert!(offset_of!(FiemapExtent, fe_flags) == 40);
const _: () = assert!(offset_of!(FiemapExtent, fe_reserved) == 44);

/// `FS_IOC_FIEMAP`, `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: u32 = blksnap_uapi::iowr::<Fiemap>(b'f', 11);
const _: () = assert!(FS_IOC_FIEMAP == 0xc020_660b);

/// Largest logical offset, `FIEMAP_MAX_OFFSET`.
const FIEMAP_MAX_OFFSET: u64 = u64::MAX;
/// Write the file's dirty pages back before mapping.
const FIEMAP_FLAG_SYNC: u32 = 0x1;

/// The last extent of the file.
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// The data's location is not known.
pub const FIEMAP_EXTENT_UNKNOWN: u32 = 0x2;
/// Delayed allocation: no location yet (also sets UNKNOWN).
pub const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;

/// Extents asked for per FIEMAP call.
const EXTENTS_PER_CALL: usize = 256;

/// A FIEMAP request: the header and room for [`EXTENTS_PER_CALL`] extents.
#[repr(C)]
struct FiemapRequest {
    head: Fiemap,
    extents: [FiemapExtent; EXTENTS_PER_CALL],
}

const _: () = assert!(offset_of!(FiemapRequest, extents) == size_of::<Fiemap>());

/// One extent of a file, as FIEMAP reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset in the file.
    pub logical: u64,
    /// Byte offset on the filesystem's block device.
    pub physical: u64,
    /// Length in bytes.
    pub length: u64,
    /// `FIEMAP_EXTENT_*` flags.
    pub flags: u32,
}

/// Why extents cannot be turned into sector ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentError {
    /// The filesystem does not know where this extent's data lies.
    UnknownLocation {
        /// Byte offset of the extent in the file.
        logical: u64,
    },
    /// The extent's end on the device does not fit in 64 bits.
    TooLarge {
        /// Byte offset of the extent in the file.
        logical: u64,
    },
}

impl fmt::Display for ExtentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLocation { logical } => write!(
                f,
                "the extent at file offset {logical} has no known location on the device"
            ),
            Self::TooLarge { logical } => write!(
                f,
                "the extent at file offset {logical} ends past the largest device offset"
            ),
        }
    }
}

impl std::error::Error for ExtentError {}

/// Converts extents to the 512-byte sector ranges that cover them.
///
/// Each extent is widened outward to whole sectors; empty extents are
/// dropped; the ranges come back sorted by sector with overlapping and
/// adjacent ones merged. Extents whose location is unknown (delayed
/// allocation, or flagged unknown) are an error, since nothing could be
/// marked for them.
pub fn extents_to_sectors(extents: &[Extent]) -> std::result::Result<Vec<Sectors>, ExtentError> {
    let mut ranges = Vec::with_capacity(extents.len());
    for e in extents.iter().filter(|e| e.length > 0) {
        if e.flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC) != 0 {
            return Err(ExtentError::UnknownLocation { logical: e.logical });
        }
        let end = e
            .physical
            .checked_add(e.length)
            .ok_or(ExtentError::TooLarge { logical: e.logical })?;
        let first = e.physical / SECTOR_SIZE;
        let last = end.div_ceil(SECTOR_SIZE);
        ranges.push(Sectors::new(first, last - first));
    }
    ranges.sort_unstable();
    let mut merged: Vec<Sectors> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            // `end()` cannot overflow: it is at most ceil(u64::MAX / 512).
            Some(prev) if r.offset <= prev.offset + prev.count => {
                let end = (r.offset + r.count).max(prev.offset + prev.count);
                prev.count = end - prev.offset;
            }
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

/// Returns the extents of the open regular file `file`, from FIEMAP.
///
/// Dirty pages are written back first (`FIEMAP_FLAG_SYNC`), so delayed
/// allocations get their place. A filesystem without FIEMAP fails with
/// EOPNOTSUPP.
pub fn file_extents(file: &File) -> io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    let mut flags = FIEMAP_FLAG_SYNC;
    loop {
        let mut req = Box::new(FiemapRequest {
            head: Fiemap {
                fm_start: start,
                fm_length: FIEMAP_MAX_OFFSET,
                fm_flags: flags,
                fm_extent_count: EXTENTS_PER_CALL as u32,
                ..Fiemap::default()
            },
            extents: [FiemapExtent::default(); EXTENTS_PER_CALL],
        });
        // SAFETY: FS_IOC_FIEMAP reads the `fiemap` header and writes at most
        // `fm_extent_count` (= EXTENTS_PER_CALL) extents right after it, all
        // inside the `FiemapRequest` that `req` owns.
        unsafe { ioctl(file, FS_IOC_FIEMAP, &mut *req) }?;
        flags = 0;
        let mapped = (req.head.fm_mapped_extents as usize).min(EXTENTS_PER_CALL);
        let got = &req.extents[..mapped];
        out.extend(got.iter().map(|e| Extent {
            logical: e.fe_logical,
            physical: e.fe_physical,
            length: e.fe_length,
            flags: e.fe_flags,
        }));
        let Some(last) = got.last() else { break };
        if last.fe_flags & FIEMAP_EXTENT_LAST != 0 {
            break;
        }
        let next = last.fe_logical.saturating_add(last.fe_length);
        if next <= start {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "FIEMAP returned extents that do not advance",
            ));
        }
        start = next;
    }
    Ok(out)
}

/// Returns the `DEVNAME=` value of a sysfs `uevent` file's text.
fn uevent_devname(uevent: &str) -> Option<&str> {
    uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// Returns a device node for the block device with device number `dev`.
///
/// Tries `/dev/<DEVNAME>` from `/sys/dev/block/MAJ:MIN/uevent`, then
/// `/dev/block/MAJ:MIN`, and takes the first that is a block device with
/// that number.
pub fn block_device_of(dev: u64) -> io::Result<PathBuf> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "device number {major}:{minor} is anonymous, not a block device's \
                 (tmpfs, overlayfs, btrfs and the like use such numbers)"
            ),
        ));
    }
    let mut candidates = Vec::new();
    let uevent = format!("/sys/dev/block/{major}:{minor}/uevent");
    if let Ok(text) = fs::read_to_string(&uevent) {
        if let Some(name) = uevent_devname(&text) {
            candidates.push(Path::new("/dev").join(name));
        }
    }
    candidates.push(PathBuf::from(format!("/dev/block/{major}:{minor}")));
    candidates
        .into_iter()
        .find(|path| {
            fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == dev)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no device node for block device {major}:{minor} in /dev"),
            )
        })
}

/// A file's place on its block device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSectors {
    /// Device node of the block device that holds the file.
    pub device: PathBuf,
    /// Device number of that block device.
    pub device_number: u64,
    /// The sectors the file's data occupies, sorted and merged.
    pub ranges: Vec<Sectors>,
    /// The extents FIEMAP reported, in file order.
    pub extents: Vec<Extent>,
}

/// Formats what `markdirtyblock --file` prints, as the upstream tool does:
/// the device that holds the file, `device path: '/dev/block/MAJOR:MINOR'`,
/// then one `allocate range: ofs=SECTOR cnt=COUNT` per extent, its device
/// offset and length in bytes divided by 512.
pub fn format_allocated(device_number: u64, extents: &[Extent]) -> String {
    let (major, minor) = (libc::major(device_number), libc::minor(device_number));
    let mut out = format!("device path: '/dev/block/{major}:{minor}'\n");
    for e in extents {
        out += &format!(
            "allocate range: ofs={} cnt={}\n",
            e.physical / SECTOR_SIZE,
            e.length / SECTOR_SIZE
        );
    }
    out
}

/// Finds the block device that holds the regular file at `path` and the
/// sectors its data occupies there.
pub fn file_sectors(path: impl AsRef<Path>) -> Result<FileSectors> {
    let path = path.as_ref();
    let shown = path.display();
    let file = File::open(path).map_err(|e| Error::new(format!("cannot open {shown}"), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::new(format!("cannot stat {shown}"), e))?;
    if !meta.is_file() {
        return Err(Error::new(
            format!("cannot map {shown}"),
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    let device_number = meta.dev();
    let device = block_device_of(device_number)
        .map_err(|e| Error::new(format!("finding the block device that holds {shown}"), e))?;
    let context = || format!("finding the extents of {shown} with FIEMAP");
    let extents = file_extents(&file).map_err(|e| Error::new(context(), e))?;
    let ranges = extents_to_sectors(&extents)
        .map_err(|e| Error::new(context(), io::Error::new(io::ErrorKind::InvalidData, e)))?;
    Ok(FileSectors {
        device,
        device_number,
        ranges,
        extents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn extent(logical: u64, physical: u64, length: u64) -> Extent {
        Extent {
            logical,
            physical,
            length,
            flags: 0,
        }
    }

    #[test]
    fn allocated_ranges_are_the_upstream_tools_lines() {
        let dev = libc::makedev(7, 3);
        assert_eq!(
            format_allocated(dev, &[]),
            "device path: '/dev/block/7:3'\n"
        );
        let extents = [extent(0, 1 << 20, 65536), extent(65536, 1 << 21, 4096)];
        assert_eq!(
            format_allocated(dev, &extents),
            "device path: '/dev/block/7:3'\n\
             allocate range: ofs=2048 cnt=128\n\
             allocate range: ofs=4096 cnt=8\n"
        );
    }

    #[test]
    fn aligned_extents_map_exactly() {
        let got = extents_to_sectors(&[extent(0, 4096, 8192)]).unwrap();
        assert_eq!(got, [Sectors::new(8, 16)]);
    }

    #[test]
    fn unaligned_extents_round_outward() {
        // Bytes 600..700 lie in sector 1 only.
        assert_eq!(
            extents_to_sectors(&[extent(0, 600, 100)]).unwrap(),
            [Sectors::new(1, 1)]
        );
        // Bytes 511..513 touch sectors 0 and 1.
        assert_eq!(
            extents_to_sectors(&[extent(0, 511, 2)]).unwrap(),
            [Sectors::new(0, 2)]
        );
        // Bytes 512..1025 touch sectors 1 and 2.
        assert_eq!(
            extents_to_sectors(&[extent(0, 512, 513)]).unwrap(),
            [Sectors::new(1, 2)]
        );
    }

    #[test]
    fn ranges_are_sorted_and_merged() {
        let got = extents_to_sectors(&[
            extent(8192, 1 << 20, 4096),
            extent(0, 0, 4096),
            extent(4096, 4096, 4096),
            extent(12288, (1 << 20) + 2048, 4096),
            extent(16384, 1 << 30, 512),
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                Sectors::new(0, 16),
                Sectors::new(2048, 12),
                Sectors::new(1 << 21, 1)
            ]
        );
    }

    #[test]
    fn empty_extents_are_dropped() {
        assert_eq!(extents_to_sectors(&[]).unwrap(), []);
        assert_eq!(extents_to_sectors(&[extent(0, 4096, 0)]).unwrap(), []);
    }

    #[test]
    fn unknown_locations_are_errors() {
        for flags in [
            FIEMAP_EXTENT_UNKNOWN,
            FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC,
        ] {
            let e = Extent {
                flags,
                ..extent(4096, 0, 4096)
            };
            assert_eq!(
                extents_to_sectors(&[extent(0, 0, 4096), e]),
                Err(ExtentError::UnknownLocation { logical: 4096 })
            );
        }
    }

    #[test]
    fn the_last_flag_is_kept() {
        let e = Extent {
            flags: FIEMAP_EXTENT_LAST,
            ..extent(0, 512, 512)
        };
        assert_eq!(extents_to_sectors(&[e]).unwrap(), [Sectors::new(1, 1)]);
    }

    #[test]
    fn overflowing_extents_are_errors() {
        assert_eq!(
            extents_to_sectors(&[extent(7, u64::MAX - 10, 11)]),
            Err(ExtentError::TooLarge { logical: 7 })
        );
        // Ending exactly at u64::MAX is fine.
        assert_eq!(
            extents_to_sectors(&[extent(0, u64::MAX - 1023, 1023)]).unwrap(),
            [Sectors::new(u64::MAX / 512 - 1, 2)]
        );
    }

    #[test]
    fn devname_comes_from_uevent() {
        let text = "MAJOR=259\nMINOR=1\nDEVNAME=nvme0n1p1\nDEVTYPE=partition\n";
        assert_eq!(uevent_devname(text), Some("nvme0n1p1"));
        assert_eq!(
            uevent_devname("MAJOR=7\nDEVNAME=mapper/x\n"),
            Some("mapper/x")
        );
        assert_eq!(uevent_devname("MAJOR=7\nMINOR=0\n"), None);
        assert_eq!(uevent_devname("DEVNAME=\n"), None);
    }

    #[test]
    fn anonymous_devices_are_refused() {
        let err = block_device_of(libc::makedev(0, 42)).unwrap_err();
        assert!(err.to_string().contains("0:42"), "{err}");
    }

    proptest! {
        #[test]
        fn sectors_cover_exactly_the_extents(
            raw in proptest::collection::vec((0u64..1 << 40, 0u64..1 << 24), 0..20)
        ) {
            let extents: Vec<Extent> = raw.iter().map(|&(p, l)| extent(0, p, l)).collect();
            let ranges = extents_to_sectors(&extents).unwrap();
            // Sorted, disjoint, not adjacent, none empty.
            for w in ranges.windows(2) {
                prop_assert!(w[0].offset + w[0].count < w[1].offset);
            }
            prop_assert!(ranges.iter().all(|r| r.count > 0));
            let covered = |s: u64| ranges.iter().any(|r| r.offset <= s && s < r.offset + r.count);
            let touched = |s: u64| extents.iter().any(|e| {
                e.length > 0 && e.physical < (s + 1) * 512 && s * 512 < e.physical + e.length
            });
            // Every byte of every extent is in a range.
            for e in extents.iter().filter(|e| e.length > 0) {
                prop_assert!(covered(e.physical / 512));
                prop_assert!(covered((e.physical + e.length - 1) / 512));
            }
            // Every range's first and last sector hold extent bytes.
            for r in &ranges {
                prop_assert!(touched(r.offset));
                prop_assert!(touched(r.offset + r.count - 1));
            }
        }
    }

    /// Writes a file of `len` bytes in the temp directory and syncs it.
    fn synced_temp_file(name: &str, len: usize) -> (PathBuf, File) {
        let path = std::env::temp_dir().join(format!("blksnap-{name}-{}", std::process::id()));
        let mut file = File::create(&path).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        file.write_all(&data).unwrap();
        file.sync_all().unwrap();
        (path, file)
    }

    /// Returns whether `err` means the temp dir has no FIEMAP, saying so.
    fn fiemap_unsupported(err: &io::Error) -> bool {
        let unsupported = matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOTTY));
        if unsupported {
            eprintln!(
                "note: skipped, FIEMAP unsupported in {}: {err}",
                std::env::temp_dir().display()
            );
        }
        unsupported
    }

    #[test]
    fn real_file_extents_cover_the_file() {
        let len = (1 << 20) + 1234;
        let (path, file) = synced_temp_file("fiemap", len);
        let result = file_extents(&file);
        fs::remove_file(&path).unwrap();
        let extents = match result {
            Ok(extents) => extents,
            Err(err) if fiemap_unsupported(&err) => return,
            Err(err) => panic!("FIEMAP failed: {err}"),
        };
        assert!(!extents.is_empty());
        // The logical extents cover [0, len) without a hole.
        let mut logical: Vec<_> = extents.iter().map(|e| (e.logical, e.length)).collect();
        logical.sort_unstable();
        let mut covered = 0u64;
        for (start, length) in logical {
            assert!(start <= covered, "hole at {covered} in {extents:?}");
            covered = covered.max(start + length);
        }
        assert!(covered >= len as u64, "{covered} < {len}: {extents:?}");
        let ranges = extents_to_sectors(&extents).unwrap();
        let sectors: u64 = ranges.iter().map(|r| r.count).sum();
        assert!(sectors * SECTOR_SIZE >= len as u64, "{ranges:?}");
    }

    #[test]
    fn real_file_is_found_on_its_device() {
        let (path, _file) = synced_temp_file("locate", 8192);
        let result = file_sectors(&path);
        fs::remove_file(&path).unwrap();
        match result {
            Ok(found) => {
                let meta = fs::metadata(&found.device).unwrap();
                assert!(meta.file_type().is_block_device());
                assert_eq!(meta.rdev(), found.device_number);
                let sectors: u64 = found.ranges.iter().map(|r| r.count).sum();
                assert!(sectors * SECTOR_SIZE >= 8192, "{found:?}");
            }
            // No block device behind the temp dir (tmpfs, overlayfs, a
            // container without /dev nodes) or no FIEMAP: nothing to check.
            Err(err) => eprintln!("note: skipped, {err}"),
        }
    }

    #[test]
    fn directories_are_refused() {
        let err = file_sectors(std::env::temp_dir()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
