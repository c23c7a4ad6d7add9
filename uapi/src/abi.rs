//! Layouts, constants and ioctl numbers of the blkfilter and blksnap uAPI.
//!
//! Every structure is `#[repr(C)]` with the x86-64 layout of the upstream
//! proposal's headers (`include/uapi/linux/blk-filter.h` and
//! `include/uapi/linux/blksnap.h` in this project). Sizes and field offsets
//! are pinned by compile-time assertions at the end of this file, and the
//! host test `c_headers_agree` compares them with the C headers.
//!
//! This file is compiled twice: as the body of the `blksnap-uapi` crate for
//! user space, and as the `uapi` module of the kernel module. It must stay
//! free of anything but `core`.

use core::mem::{offset_of, size_of};

/// Length of a filter name, including the terminating NUL.
pub const BLKFILTER_NAME_LENGTH: usize = 32;
/// Name under which blksnap registers its block-device filter.
pub const BLKSNAP_FILTER_NAME: &[u8] = b"blksnap";
/// Name of the control misc device, `/dev/blksnap-control`.
pub const BLKSNAP_CTL: &str = "blksnap-control";
/// Prefix of snapshot image disk names, `blksnap-<major>-<minor>`.
pub const BLKSNAP_IMAGE_NAME: &str = "blksnap";
/// Length of an image disk name in [`BlksnapSnapshotinfo`], with its NUL.
pub const IMAGE_DISK_NAME_LEN: usize = 32;
/// Size of a snapshot identifier.
pub const UUID_SIZE: usize = 16;
/// Size of the event payload in [`BlksnapSnapshotEvent`].
pub const EVENT_DATA_SIZE: usize = 4096 - 32;

/// Interface level reported by the VERSION ioctl: major.
pub const BLKSNAP_VERSION_MAJOR: u16 = 2;
/// Interface level reported by the VERSION ioctl: minor.
pub const BLKSNAP_VERSION_MINOR: u16 = 0;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// Encodes an ioctl number the way the kernel's `_IOC()` macro does.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `_IOR(ty, nr, T)`.
pub const fn ior<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ, ty, nr, size_of::<T>())
}

/// `_IOW(ty, nr, T)`.
pub const fn iow<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_WRITE, ty, nr, size_of::<T>())
}

/// `_IOWR(ty, nr, T)`.
pub const fn iowr<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size_of::<T>())
}

// ---------------------------------------------------------------------------
// Block-device filter ioctls, issued on an open block device node.

/// Argument of `BLKFILTER_ATTACH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkfilterAttach {
    /// NUL-padded filter name.
    pub name: [u8; BLKFILTER_NAME_LENGTH],
    /// User pointer to the filter's options, may be 0.
    pub opt: u64,
    /// Length of the options.
    pub optlen: u32,
}

/// Argument of `BLKFILTER_DETACH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkfilterDetach {
    /// NUL-padded filter name.
    pub name: [u8; BLKFILTER_NAME_LENGTH],
}

/// Argument of `BLKFILTER_CTL`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkfilterCtl {
    /// NUL-padded filter name.
    pub name: [u8; BLKFILTER_NAME_LENGTH],
    /// Filter-specific sub-command, for blksnap one of [`BlkfilterCtlBlksnap`].
    pub cmd: u32,
    /// Length of the sub-command's structure.
    pub optlen: u32,
    /// User pointer to the sub-command's structure.
    pub opt: u64,
}

/// The ioctl type of the block-device filter ioctls (that of `BLKROSET`).
pub const BLKFILTER_IOCTL_TYPE: u8 = 0x12;
/// Attach a filter to the block device.
pub const BLKFILTER_ATTACH: u32 = iowr::<BlkfilterAttach>(BLKFILTER_IOCTL_TYPE, 142);
/// Detach a filter from the block device.
pub const BLKFILTER_DETACH: u32 = iowr::<BlkfilterDetach>(BLKFILTER_IOCTL_TYPE, 143);
/// Send a sub-command to the block device's filter.
pub const BLKFILTER_CTL: u32 = iowr::<BlkfilterCtl>(BLKFILTER_IOCTL_TYPE, 144);

/// Sub-commands of `BLKFILTER_CTL` for the blksnap filter.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkfilterCtlBlksnap {
    /// Read [`BlksnapCbtinfo`].
    Cbtinfo = 0,
    /// Read a slice of the CBT map, [`BlksnapCbtmap`].
    Cbtmap = 1,
    /// Mark sector ranges as changed, [`BlksnapCbtdirty`].
    Cbtdirty = 2,
    /// Add the device to a snapshot, [`BlksnapSnapshotadd`].
    Snapshotadd = 3,
    /// Read the device's snapshot state, [`BlksnapSnapshotinfo`].
    Snapshotinfo = 4,
}

impl BlkfilterCtlBlksnap {
    /// Returns the sub-command with this number, if there is one.
    pub const fn from_u32(cmd: u32) -> Option<Self> {
        Some(match cmd {
            0 => Self::Cbtinfo,
            1 => Self::Cbtmap,
            2 => Self::Cbtdirty,
            3 => Self::Snapshotadd,
            4 => Self::Snapshotinfo,
            _ => return None,
        })
    }
}

/// A snapshot or CBT generation identifier.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlksnapUuid {
    /// The 16 bytes of the UUID.
    pub b: [u8; UUID_SIZE],
}

/// Output of the CBTINFO sub-command.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapCbtinfo {
    /// Capacity of the device in bytes.
    pub device_capacity: u64,
    /// Size of one tracking block in bytes.
    pub block_size: u32,
    /// Number of tracking blocks.
    pub block_count: u32,
    /// Generation of the change tracker.
    pub generation_id: BlksnapUuid,
    /// Snapshot number of the read copy of the map.
    pub changes_number: u8,
}

impl BlksnapCbtinfo {
    /// Returns the structure as the bytes user space reads, padding zeroed.
    pub fn to_bytes(&self) -> [u8; size_of::<BlksnapCbtinfo>()] {
        let mut out = [0u8; size_of::<BlksnapCbtinfo>()];
        let fields: [(usize, &[u8]); 5] = [
            (
                offset_of!(BlksnapCbtinfo, device_capacity),
                &self.device_capacity.to_le_bytes(),
            ),
            (
                offset_of!(BlksnapCbtinfo, block_size),
                &self.block_size.to_le_bytes(),
            ),
            (
                offset_of!(BlksnapCbtinfo, block_count),
                &self.block_count.to_le_bytes(),
            ),
            (
                offset_of!(BlksnapCbtinfo, generation_id),
                &self.generation_id.b,
            ),
            (
                offset_of!(BlksnapCbtinfo, changes_number),
                &[self.changes_number],
            ),
        ];
        for (offset, bytes) in fields {
            if let Some(dst) = out.get_mut(offset..offset + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        out
    }
}

/// Argument of the CBTMAP sub-command.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapCbtmap {
    /// First byte of the map to copy.
    pub offset: u32,
    /// Number of bytes to copy.
    pub length: u32,
    /// User pointer to the destination buffer.
    pub buffer: u64,
}

/// A range of 512-byte sectors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapSectors {
    /// First sector.
    pub offset: u64,
    /// Number of sectors.
    pub count: u64,
}

/// Argument of the CBTDIRTY sub-command.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapCbtdirty {
    /// Number of ranges.
    pub count: u32,
    /// User pointer to an array of [`BlksnapSectors`].
    pub dirty_sectors: u64,
}

/// Argument of the SNAPSHOTADD sub-command.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapSnapshotadd {
    /// The snapshot to add the device to.
    pub id: BlksnapUuid,
}

/// Output of the SNAPSHOTINFO sub-command.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlksnapSnapshotinfo {
    /// 0, or the negative errno that broke the snapshot.
    pub error_code: i32,
    /// NUL-terminated disk name of the image, empty before the take.
    pub image: [u8; IMAGE_DISK_NAME_LEN],
}

// ---------------------------------------------------------------------------
// The control device, /dev/blksnap-control.

/// The ioctl type of the control device.
pub const BLKSNAP_IOCTL_TYPE: u8 = b'V';

/// Output of `BLKSNAP_IOCTL_VERSION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapVersion {
    /// Interface major level.
    pub major: u16,
    /// Interface minor level.
    pub minor: u16,
    /// Revision of the implementation.
    pub revision: u16,
    /// Build number of the implementation.
    pub build: u16,
}

/// Argument of `BLKSNAP_IOCTL_SNAPSHOT_CREATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapSnapshotCreate {
    /// Most sectors the difference storage may grow to.
    pub diff_storage_limit_sect: u64,
    /// User pointer to the NUL-terminated path of the difference storage.
    pub diff_storage_filename: u64,
    /// Output: the identifier of the new snapshot.
    pub id: BlksnapUuid,
}

/// Argument of `BLKSNAP_IOCTL_SNAPSHOT_COLLECT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapSnapshotCollect {
    /// In: room in `ids`; out: number of snapshots.
    pub count: u32,
    /// User pointer to an array of [`BlksnapUuid`], or 0 to ask the count.
    pub ids: u64,
}

/// Argument of `BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlksnapSnapshotEvent {
    /// The snapshot whose events to wait for.
    pub id: BlksnapUuid,
    /// How long to wait, in milliseconds.
    pub timeout_ms: u32,
    /// Output: one of [`BlksnapEventCode`].
    pub code: u32,
    /// Output: when the event happened, monotonic nanoseconds.
    pub time_label: i64,
    /// Output: the event's payload.
    pub data: [u8; EVENT_DATA_SIZE],
}

impl Default for BlksnapSnapshotEvent {
    fn default() -> Self {
        Self {
            id: BlksnapUuid::default(),
            timeout_ms: 0,
            code: 0,
            time_label: 0,
            data: [0; EVENT_DATA_SIZE],
        }
    }
}

/// Codes of snapshot events.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlksnapEventCode {
    /// The snapshot is corrupted; payload [`BlksnapEventCorrupted`].
    Corrupted = 0,
    /// The difference storage reached its limit; payload [`BlksnapEventNoSpace`].
    NoSpace = 1,
}

impl BlksnapEventCode {
    /// Returns the event code with this number, if there is one.
    pub const fn from_u32(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Corrupted),
            1 => Some(Self::NoSpace),
            _ => None,
        }
    }
}

/// Payload of the corrupted event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapEventCorrupted {
    /// Major number of the device whose copy failed.
    pub dev_id_mj: u32,
    /// Minor number of the device whose copy failed.
    pub dev_id_mn: u32,
    /// Positive errno of the failure.
    pub err_code: i32,
}

/// Payload of the no_space event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapEventNoSpace {
    /// Total size in sectors the storage was asked to grow to.
    pub requested_nr_sect: u64,
}

// The requests of the control device. The C header calls them
// `IOCTL_BLKSNAP_*`, as the upstream proposal does, and its `BLKSNAP_IOCTL_*`
// are their bare command numbers (0 to 5).

/// Report the interface version.
pub const BLKSNAP_IOCTL_VERSION: u32 = ior::<BlksnapVersion>(BLKSNAP_IOCTL_TYPE, 0);
/// Create a snapshot.
pub const BLKSNAP_IOCTL_SNAPSHOT_CREATE: u32 = iowr::<BlksnapSnapshotCreate>(BLKSNAP_IOCTL_TYPE, 1);
/// Destroy a snapshot.
pub const BLKSNAP_IOCTL_SNAPSHOT_DESTROY: u32 = iow::<BlksnapUuid>(BLKSNAP_IOCTL_TYPE, 2);
/// Take a snapshot.
pub const BLKSNAP_IOCTL_SNAPSHOT_TAKE: u32 = iow::<BlksnapUuid>(BLKSNAP_IOCTL_TYPE, 3);
/// List the snapshots.
pub const BLKSNAP_IOCTL_SNAPSHOT_COLLECT: u32 =
    ior::<BlksnapSnapshotCollect>(BLKSNAP_IOCTL_TYPE, 4);
/// Wait for a snapshot's next event.
pub const BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT: u32 =
    ior::<BlksnapSnapshotEvent>(BLKSNAP_IOCTL_TYPE, 5);

// ---------------------------------------------------------------------------
// 32-bit user space on a 64-bit kernel.
//
// Compiled for i386, the same headers give `__u64` an alignment of 4, so
// the three structures below lose their padding before a `__u64` or at the
// end, and the two whose size is in the ioctl number get other numbers.
// Every other structure has the same layout on both sides. A pointer field
// of a 32-bit caller holds a 32-bit address; only its low half counts.

/// `struct blkfilter_attach` as i386 lays it out (44 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkfilterAttachCompat {
    /// NUL-padded filter name.
    pub name: [u8; BLKFILTER_NAME_LENGTH],
    /// User pointer to the filter's options, may be 0.
    pub opt: u64,
    /// Length of the options.
    pub optlen: u32,
}

/// `BLKFILTER_ATTACH` as a 32-bit caller numbers it.
pub const BLKFILTER_ATTACH_COMPAT: u32 = iowr::<BlkfilterAttachCompat>(BLKFILTER_IOCTL_TYPE, 142);

/// `struct blksnap_cbtdirty` as i386 lays it out (12 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapCbtdirtyCompat {
    /// Number of ranges.
    pub count: u32,
    /// User pointer to an array of [`BlksnapSectors`].
    pub dirty_sectors: u64,
}

/// `struct blksnap_snapshot_collect` as i386 lays it out (12 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlksnapSnapshotCollectCompat {
    /// In: room in `ids`; out: number of snapshots.
    pub count: u32,
    /// User pointer to an array of [`BlksnapUuid`], or 0 to ask the count.
    pub ids: u64,
}

/// `BLKSNAP_IOCTL_SNAPSHOT_COLLECT` as a 32-bit caller numbers it.
pub const BLKSNAP_IOCTL_SNAPSHOT_COLLECT_COMPAT: u32 =
    ior::<BlksnapSnapshotCollectCompat>(BLKSNAP_IOCTL_TYPE, 4);

/// Size of `struct blksnap_cbtinfo` on i386: its fields end at byte 33 and
/// the structure is 4-aligned. The first 36 bytes of the x86-64 layout are
/// the same.
pub const BLKSNAP_CBTINFO_COMPAT_SIZE: usize = 36;

// ---------------------------------------------------------------------------
// Layout pins: the contract's sizes, offsets and numbers.

macro_rules! pin_layout {
    ($ty:ty, $size:expr $(, $field:ident @ $off:expr)*) => {
        const _: () = assert!(size_of::<$ty>() == $size);
        $(const _: () = assert!(offset_of!($ty, $field) == $off);)*
    };
}

pin_layout!(BlkfilterAttach, 48, name @ 0, opt @ 32, optlen @ 40);
pin_layout!(BlkfilterDetach, 32, name @ 0);
pin_layout!(BlkfilterCtl, 48, name @ 0, cmd @ 32, optlen @ 36, opt @ 40);
pin_layout!(BlksnapUuid, 16, b @ 0);
pin_layout!(BlksnapCbtinfo, 40, device_capacity @ 0, block_size @ 8, block_count @ 12,
    generation_id @ 16, changes_number @ 32);
pin_layout!(BlksnapCbtmap, 16, offset @ 0, length @ 4, buffer @ 8);
pin_layout!(BlksnapSectors, 16, offset @ 0, count @ 8);
pin_layout!(BlksnapCbtdirty, 16, count @ 0, dirty_sectors @ 8);
pin_layout!(BlksnapSnapshotadd, 16, id @ 0);
pin_layout!(BlksnapSnapshotinfo, 36, error_code @ 0, image @ 4);
pin_layout!(BlksnapVersion, 8, major @ 0, minor @ 2, revision @ 4, build @ 6);
pin_layout!(BlksnapSnapshotCreate, 32, diff_storage_limit_sect @ 0,
    diff_storage_filename @ 8, id @ 16);
pin_layout!(BlksnapSnapshotCollect, 16, count @ 0, ids @ 8);
pin_layout!(BlksnapSnapshotEvent, 4096, id @ 0, timeout_ms @ 16, code @ 20,
    time_label @ 24, data @ 32);
pin_layout!(BlksnapEventCorrupted, 12, dev_id_mj @ 0, dev_id_mn @ 4, err_code @ 8);
pin_layout!(BlksnapEventNoSpace, 8, requested_nr_sect @ 0);
pin_layout!(BlkfilterAttachCompat, 44, name @ 0, opt @ 32, optlen @ 40);
pin_layout!(BlksnapCbtdirtyCompat, 12, count @ 0, dirty_sectors @ 4);
pin_layout!(BlksnapSnapshotCollectCompat, 12, count @ 0, ids @ 4);
const _: () = assert!(
    BLKSNAP_CBTINFO_COMPAT_SIZE == (offset_of!(BlksnapCbtinfo, changes_number) + 1 + 3) & !3
);

const _: () = assert!(BLKFILTER_ATTACH == 0xc030_128e);
const _: () = assert!(BLKFILTER_DETACH == 0xc020_128f);
const _: () = assert!(BLKFILTER_CTL == 0xc030_1290);
const _: () = assert!(BLKSNAP_IOCTL_VERSION == 0x8008_5600);
const _: () = assert!(BLKSNAP_IOCTL_SNAPSHOT_CREATE == 0xc020_5601);
const _: () = assert!(BLKSNAP_IOCTL_SNAPSHOT_DESTROY == 0x4010_5602);
const _: () = assert!(BLKSNAP_IOCTL_SNAPSHOT_TAKE == 0x4010_5603);
const _: () = assert!(BLKSNAP_IOCTL_SNAPSHOT_COLLECT == 0x8010_5604);
const _: () = assert!(BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT == 0x9000_5605);
const _: () = assert!(BLKFILTER_ATTACH_COMPAT == 0xc02c_128e);
const _: () = assert!(BLKSNAP_IOCTL_SNAPSHOT_COLLECT_COMPAT == 0x800c_5604);
