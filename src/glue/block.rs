// SPDX-License-Identifier: GPL-2.0

//! Block devices and bios, as the filter layer sees them.
//!
//! [`BlockDevice`] and [`Bio`] are borrowed views of kernel objects handed
//! to the module by a hook; [`BdevRef`] keeps a block device's structure
//! alive (without opening the device) for as long as a filter is attached,
//! so a filter is only ever matched against the very object it was attached
//! to, never against a new device that reuses the number.

use core::ptr::NonNull;

use kernel::error::to_result;
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings;

/// A block device, `struct block_device`.
///
/// # Invariants
///
/// The structure is valid for the lifetime of the reference.
#[repr(transparent)]
pub(crate) struct BlockDevice(Opaque<bindings::block_device>);

/// Identity of a disk (`struct gendisk`), for comparison only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskId(usize);

/// Identity of a block device, for comparison only (and an order with no
/// meaning but that it is total and does not change).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BdevId(usize);

impl BdevId {
    /// Returns the identity of the block device at `ptr`, which may be null.
    pub(crate) fn from_ptr(ptr: *const bindings::block_device) -> Self {
        Self(ptr as usize)
    }
}

impl DiskId {
    /// Returns the identity of the disk at `ptr`.
    pub(crate) fn from_ptr(ptr: *const bindings::gendisk) -> Self {
        Self(ptr as usize)
    }
}

impl BlockDevice {
    /// Borrows the block device at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct block_device` that stays valid
    /// for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::block_device) -> &'a Self {
        // SAFETY: `BlockDevice` is a transparent wrapper; the caller
        // guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    pub(super) fn as_ptr(&self) -> *mut bindings::block_device {
        self.0.get()
    }

    /// Returns this device's identity.
    pub(crate) fn id(&self) -> BdevId {
        BdevId::from_ptr(self.as_ptr())
    }

    /// Returns the identity of the disk the device belongs to.
    pub(crate) fn disk(&self) -> DiskId {
        // SAFETY: valid by the type invariant; `bd_disk` is set at creation
        // and never changes.
        DiskId::from_ptr(unsafe { (*self.as_ptr()).bd_disk })
    }

    /// Returns the device number as (major, minor).
    pub(crate) fn dev(&self) -> (u32, u32) {
        // SAFETY: valid by the type invariant; `bd_dev` never changes.
        let dev = unsafe { (*self.as_ptr()).bd_dev };
        (dev >> 20, dev & 0xfffff)
    }

    /// Returns the capacity in 512-byte sectors.
    pub(crate) fn nr_sectors(&self) -> u64 {
        // SAFETY: valid by the type invariant.
        unsafe { bindings::blksnap_bdev_nr_sectors(self.as_ptr()) }
    }

    /// Returns where the device starts on its disk, in sectors (0 for a
    /// whole disk).
    pub(crate) fn start_sect(&self) -> u64 {
        // SAFETY: valid by the type invariant; a partition's start never
        // changes (BLKPG can resize a partition but not move it).
        unsafe { bindings::blksnap_bdev_start_sect(self.as_ptr()) }
    }

    /// Returns true for a partition, false for a whole disk.
    pub(crate) fn is_partition(&self) -> bool {
        // SAFETY: valid by the type invariant.
        !unsafe { bindings::blksnap_bdev_whole(self.as_ptr()) }.is_null()
    }

    /// Returns true for a zoned device (sequential-write zones).
    pub(crate) fn is_zoned(&self) -> bool {
        // SAFETY: valid by the type invariant.
        unsafe { bindings::blksnap_bdev_is_zoned(self.as_ptr()) }
    }

    /// Returns true while the disk is live (not being removed).
    pub(crate) fn is_live(&self) -> bool {
        // SAFETY: valid by the type invariant; the disk outlives its devices.
        unsafe { bindings::disk_live((*self.as_ptr()).bd_disk) }
    }

    /// Locks the disk's `open_mutex` and checks that the disk is still live.
    pub(crate) fn lock_live(&self) -> Result<DiskLock<'_>> {
        // SAFETY: valid by the type invariant; the disk outlives its devices.
        let mutex = unsafe { core::ptr::addr_of_mut!((*(*self.as_ptr()).bd_disk).open_mutex) };
        // SAFETY: `mutex` is the disk's initialised open_mutex.
        unsafe { bindings::blksnap_mutex_lock(mutex) };
        // INVARIANT: locked just above.
        let lock = DiskLock { mutex, _bdev: self };
        if self.is_live() {
            Ok(lock)
        } else {
            Err(ENODEV)
        }
    }

    /// Freezes the file system on the device (if any), and for a whole
    /// disk those of its partitions too, until the guard drops.
    pub(crate) fn freeze(&self) -> Result<Frozen<'_>> {
        // SAFETY: valid by the type invariant.
        to_result(unsafe { bindings::bdev_freeze(self.as_ptr()) })?;
        // SAFETY: valid by the type invariant; process context.
        let parts = unsafe { bindings::blksnap_freeze_parts(self.as_ptr()) };
        // SAFETY: plain pointer inspection (null: no partitions).
        if !parts.is_null() && unsafe { bindings::blksnap_is_err(parts.cast()) } {
            // SAFETY: frozen just above.
            let _ = unsafe { bindings::bdev_thaw(self.as_ptr()) };
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(parts.cast())
            }));
        }
        // INVARIANT: frozen just above, with its partitions in `parts`.
        Ok(Frozen { bdev: self, parts })
    }

    /// Takes a reference that keeps the structure alive.
    pub(crate) fn get_ref(&self) -> BdevRef {
        // SAFETY: valid by the type invariant; `bd_device` is the embedded
        // device whose reference count governs the structure's life.
        unsafe { bindings::get_device(core::ptr::addr_of_mut!((*self.as_ptr()).bd_device)) };
        // INVARIANT: the reference was taken just above.
        BdevRef {
            ptr: NonNull::from(self),
        }
    }
}

/// The disk's `open_mutex`, held.
///
/// # Invariants
///
/// `mutex` is locked by this task.
pub(crate) struct DiskLock<'a> {
    mutex: *mut bindings::mutex,
    _bdev: &'a BlockDevice,
}

impl Drop for DiskLock<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by this task, by the type invariant.
        unsafe { bindings::mutex_unlock(self.mutex) };
    }
}

/// A frozen block device; thawed on drop.
///
/// # Invariants
///
/// `bdev_freeze` succeeded on `bdev` and was not yet undone; `parts` is
/// null or what `blksnap_freeze_parts` returned for `bdev`, not yet thawed.
pub(crate) struct Frozen<'a> {
    bdev: &'a BlockDevice,
    /// The frozen partitions of a whole disk, or null.
    parts: *mut bindings::blksnap_parts,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if !self.parts.is_null() {
            // SAFETY: frozen by `freeze`, thawed once.
            unsafe { bindings::blksnap_thaw_parts(self.parts) };
        }
        // SAFETY: frozen by the type invariant. A thaw error means the
        // device was thawed by someone else, which leaves nothing to undo.
        let _ = unsafe { bindings::bdev_thaw(self.bdev.as_ptr()) };
    }
}

/// A counted reference to a block device's structure (not an open).
///
/// # Invariants
///
/// `ptr` is valid and a reference on its `bd_device` is owned by this value.
pub(crate) struct BdevRef {
    ptr: NonNull<BlockDevice>,
}

// SAFETY: the reference may be dropped from any task; the structure is
// only read through it.
unsafe impl Send for BdevRef {}
// SAFETY: shared access only reads immutable fields.
unsafe impl Sync for BdevRef {}

impl core::ops::Deref for BdevRef {
    type Target = BlockDevice;

    fn deref(&self) -> &BlockDevice {
        // SAFETY: valid while the reference is held, by the type invariant.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for BdevRef {
    fn drop(&mut self) {
        // SAFETY: the reference owned by this value, by the type invariant.
        unsafe { bindings::put_device(core::ptr::addr_of_mut!((*self.as_ptr()).bd_device)) };
    }
}

/// An open of a block device for reading, held for as long as the module
/// may send the device bios: while it is held, a loop device cannot lose
/// its backing file (a detach waits for the last close), nor can a
/// device-mapper, md or partition device be removed by user space. A disk
/// its driver deletes still goes; its queue then fails every bio, which
/// needs no special case.
///
/// # Invariants
///
/// `file` is an open of the block device at `bdev`, owned by this value,
/// which keeps the structure alive.
pub(crate) struct BdevOpen {
    file: NonNull<bindings::file>,
    bdev: NonNull<BlockDevice>,
}

// SAFETY: an open block device may be used and closed from any task.
unsafe impl Send for BdevOpen {}
// SAFETY: shared access only reads the device's immutable fields.
unsafe impl Sync for BdevOpen {}

impl BlockDevice {
    /// Opens the device for reading, without claiming it. `ENODEV` if its
    /// number now names another device.
    pub(crate) fn open(&self) -> Result<BdevOpen> {
        // SAFETY: valid by the type invariant; process context.
        let file = unsafe { bindings::blksnap_bdev_open(self.as_ptr()) };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(file.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(file.cast())
            }));
        }
        // INVARIANT: `file` is an open of this very device (the C side
        // checked), owned from here on.
        Ok(BdevOpen {
            // SAFETY: not an error pointer, hence not null.
            file: unsafe { NonNull::new_unchecked(file) },
            bdev: NonNull::from(self),
        })
    }
}

impl core::ops::Deref for BdevOpen {
    type Target = BlockDevice;

    fn deref(&self) -> &BlockDevice {
        // SAFETY: the open keeps the structure alive, by the type invariant.
        unsafe { self.bdev.as_ref() }
    }
}

impl Drop for BdevOpen {
    fn drop(&mut self) {
        // SAFETY: the open owned by this value, closed once; `fput` may run
        // in any context.
        unsafe { bindings::blksnap_bdev_close(self.file.as_ptr()) };
    }
}

/// What a bio does, as far as the filter layer cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BioOp {
    /// Reads data.
    Read,
    /// Changes data: write, secure erase or write-zeroes.
    Write,
    /// Gives sectors up (a discard): what they read afterwards is
    /// unspecified, so nothing needs to be kept of what they held.
    Discard,
    /// Anything else, e.g. a flush.
    Other,
}

/// A bio, `struct bio`, offered to a filter.
///
/// # Invariants
///
/// The structure is valid for the lifetime of the reference.
#[repr(transparent)]
pub(crate) struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Borrows the bio at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid bio that stays valid for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a Self {
        // SAFETY: transparent wrapper; validity from the caller.
        unsafe { &*ptr.cast() }
    }

    fn as_ptr(&self) -> *mut bindings::bio {
        self.0.get()
    }

    /// Returns the block device the bio is aimed at.
    pub(crate) fn bdev_id(&self) -> BdevId {
        // SAFETY: valid by the type invariant.
        BdevId::from_ptr(unsafe { (*self.as_ptr()).bi_bdev })
    }

    /// Returns the whole disk of the bio's block device if that is a
    /// partition.
    pub(crate) fn whole_id(&self) -> Option<BdevId> {
        // SAFETY: valid by the type invariant; a bio's block device is
        // valid while the bio is.
        let whole = unsafe { bindings::blksnap_bdev_whole((*self.as_ptr()).bi_bdev) };
        (!whole.is_null()).then(|| BdevId::from_ptr(whole))
    }

    /// Returns the disk of the bio's block device.
    pub(crate) fn disk(&self) -> DiskId {
        // SAFETY: valid by the type invariant; a bio's block device is
        // valid while the bio is, and its disk outlives it.
        DiskId::from_ptr(unsafe { (*(*self.as_ptr()).bi_bdev).bd_disk })
    }

    /// Returns where the bio's block device starts relative to `dev`, a
    /// device of the same disk, in sectors: 0 when `dev` is that device,
    /// the partition's start when `dev` is the whole disk of the bio's
    /// partition, minus the start of `dev` when `dev` is a partition of the
    /// bio's whole disk. Added to [`Bio::sectors`], it gives sectors of
    /// `dev`; a bio of the whole disk may start before `dev` and end after
    /// it.
    pub(crate) fn offset_in(&self, dev: &BlockDevice) -> i64 {
        // SAFETY: valid by the type invariant; a bio's block device is
        // valid while the bio is.
        let start = unsafe { bindings::blksnap_bdev_start_sect((*self.as_ptr()).bi_bdev) };
        // Sector numbers are below 2^63: the kernel keeps them in a
        // sector_t but sizes in a loff_t.
        (start as i64).wrapping_sub(dev.start_sect() as i64)
    }

    /// Returns the sectors the bio covers, relative to its block device, as
    /// (first, count). Discards and write-zeroes cover their whole range.
    pub(crate) fn sectors(&self) -> (u64, u64) {
        // SAFETY: valid by the type invariant.
        unsafe {
            (
                bindings::blksnap_bio_sector(self.as_ptr()),
                bindings::blksnap_bio_sectors(self.as_ptr()).into(),
            )
        }
    }

    /// Returns what the bio does.
    pub(crate) fn op(&self) -> BioOp {
        // SAFETY: valid by the type invariant.
        let op = unsafe { bindings::blksnap_bio_op(self.as_ptr()) };
        match op {
            bindings::req_op_REQ_OP_READ => BioOp::Read,
            bindings::req_op_REQ_OP_DISCARD => BioOp::Discard,
            bindings::req_op_REQ_OP_WRITE
            | bindings::req_op_REQ_OP_SECURE_ERASE
            | bindings::req_op_REQ_OP_WRITE_ZEROES => BioOp::Write,
            _ => BioOp::Other,
        }
    }
}

impl BlockDevice {
    /// Reads `buf.len()` bytes at `sector` and waits. The filter does not
    /// see this I/O.
    pub(crate) fn read_sync(&self, sector: u64, buf: &mut [u8]) -> Result {
        // SAFETY: the device is live while borrowed and `buf` is writable
        // memory of that length, untouched by anyone else until we return.
        to_result(unsafe {
            bindings::blksnap_bdev_rw(
                self.as_ptr(),
                sector,
                buf.as_mut_ptr().cast(),
                buf.len(),
                false,
            )
        })
    }

    /// The device's preferred minimum I/O size, in bytes.
    pub(crate) fn io_min(&self) -> u32 {
        // SAFETY: the device is live while borrowed.
        unsafe { bindings::blksnap_bdev_io_min(self.as_ptr()) }
    }

    /// The device number and that of its whole disk.
    pub(crate) fn devs(&self) -> (u32, u32) {
        // SAFETY: the device is live while borrowed.
        unsafe {
            (
                bindings::blksnap_bdev_dev(self.as_ptr()),
                bindings::blksnap_bdev_whole_dev(self.as_ptr()),
            )
        }
    }

    /// Whether bios of the device carry integrity data or encryption
    /// contexts, which a snapshot cannot preserve.
    pub(crate) fn is_unsupported(&self) -> bool {
        // SAFETY: the device is live while borrowed.
        unsafe { bindings::blksnap_bdev_unsupported(self.as_ptr()) }
    }
}
