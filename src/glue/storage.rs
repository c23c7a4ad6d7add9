// SPDX-License-Identifier: GPL-2.0

//! The difference storage as an open file (`storage.c`, `volume.c`): a
//! regular file, an unnamed temporary file, a block device, or the pinned
//! extents of an in-volume file; its I/O, growth and write-back errors.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::error::to_result;
use kernel::prelude::*;

use super::bindings;
use super::bio::OwnedBio;
use super::topology::place_from_raw;
use super::uaccess::UserPath;
use crate::placement::Place;

/// An open difference storage: a regular file, an unnamed temporary file
/// or a block device held exclusively.
pub(crate) struct StorageFile {
    file: NonNull<bindings::file>,
    /// The write-back error state of the file's mapping when it was opened.
    wb_since: u32,
    /// The pinned extents of an in-volume storage, null for any other;
    /// set once, before the snapshot is taken, by [`StorageFile::pin`].
    volume: AtomicPtr<bindings::blksnap_volume>,
}

// SAFETY: a struct file may be used and released from any thread.
unsafe impl Send for StorageFile {}
// SAFETY: file I/O at explicit offsets needs no exclusion.
unsafe impl Sync for StorageFile {}

impl StorageFile {
    /// Opens `path`; `holder` identifies the exclusive opener of a block
    /// device and must stay valid until the file is dropped.
    pub(crate) fn open(path: &UserPath, holder: *const ()) -> Result<Self> {
        // SAFETY: the path is NUL-terminated; `holder` is only compared.
        let file = unsafe { bindings::blksnap_storage_open(path.as_char_ptr(), holder as *mut _) };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(file.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(file.cast())
            }));
        }
        // SAFETY: not null, checked above.
        let file = unsafe { NonNull::new_unchecked(file) };
        // SAFETY: the file was just opened.
        let wb_since = unsafe { bindings::blksnap_storage_wb_sample(file.as_ptr()) };
        Ok(Self {
            file,
            wb_since,
            volume: AtomicPtr::new(core::ptr::null_mut()),
        })
    }

    pub(super) fn as_ptr(&self) -> *mut bindings::file {
        self.file.as_ptr()
    }

    /// The in-volume mapping for the C side, or null.
    pub(super) fn volume_ptr(&self) -> *const bindings::blksnap_volume {
        self.volume.load(Ordering::Acquire)
    }

    /// Makes this regular file in-volume storage (see `volume.c`): pins it
    /// and maps its extents, from then on written and read as sectors of
    /// its file system's device. EBUSY if it is pinned already; the
    /// caller serialises the calls.
    pub(crate) fn pin(&self) -> Result {
        if !self.volume_ptr().is_null() {
            return Err(EBUSY);
        }
        // SAFETY: the file is open while `self` lives; process context.
        let volume = unsafe { bindings::blksnap_volume_map(self.as_ptr()) };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(volume.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(volume.cast())
            }));
        }
        self.volume.store(volume, Ordering::Release);
        Ok(())
    }

    /// Where the file system of this regular file starts on device `dev`,
    /// in sectors, if it lies on `dev` or on a partition of it.
    pub(crate) fn lives_on(&self, dev: u32) -> Option<u64> {
        let mut offset = 0u64;
        // SAFETY: the file is open while `self` lives; `offset` is writable.
        unsafe { bindings::blksnap_file_lives_on(self.as_ptr(), dev, &mut offset) }
            .then_some(offset)
    }

    /// Whether this is in-volume storage.
    pub(crate) fn is_in_volume(&self) -> bool {
        !self.volume_ptr().is_null()
    }

    /// Whether the storage is read and written with the module's own bios
    /// (a block device, or in-volume storage), never through a page cache.
    pub(crate) fn uses_bios(&self) -> bool {
        self.is_in_volume() || self.is_block_device()
    }

    /// For in-volume storage: its file system's device and its extents on
    /// it, as (first sector, sectors), in file order or, if `by_dev`, in
    /// the order of the device.
    pub(crate) fn volume_extents(&self, by_dev: bool) -> Option<(u32, VolumeExtents<'_>)> {
        let volume = self.volume_ptr();
        if volume.is_null() {
            return None;
        }
        // SAFETY: the mapping lives until `self` is dropped.
        let dev = unsafe { bindings::blksnap_volume_dev(volume) };
        Some((
            dev,
            VolumeExtents {
                volume,
                by_dev,
                next: 0,
                _file: PhantomData,
            },
        ))
    }

    /// Fails with the error of a write-back of the storage that failed since
    /// it was opened. Only a file whose file system refuses direct I/O is
    /// written through its page cache, where such a failure shows only
    /// here; once it has, data read back from the storage cannot be
    /// trusted.
    pub(crate) fn check_written(&self) -> Result {
        // SAFETY: the file is open while `self` lives.
        to_result(unsafe { bindings::blksnap_storage_wb_check(self.as_ptr(), self.wb_since) })
    }

    pub(crate) fn is_block_device(&self) -> bool {
        // SAFETY: the file is open while `self` lives.
        unsafe { bindings::blksnap_storage_is_bdev(self.as_ptr()) }
    }

    /// For a block device: its device number and that of its whole disk.
    pub(crate) fn device_devs(&self) -> Option<(u32, u32)> {
        if !self.is_block_device() {
            return None;
        }
        let (mut dev, mut whole) = (0u32, 0u32);
        // SAFETY: the file is open while `self` lives and is a block
        // device; both outputs are writable.
        unsafe { bindings::blksnap_storage_bdev_devs(self.as_ptr(), &mut dev, &mut whole) };
        Some((dev, whole))
    }

    /// The size of the file or device, in sectors.
    pub(crate) fn sectors(&self) -> u64 {
        let volume = self.volume_ptr();
        if !volume.is_null() {
            // SAFETY: the mapping lives until `self` is dropped.
            return unsafe { bindings::blksnap_volume_sectors(volume) };
        }
        // SAFETY: the file is open while `self` lives.
        unsafe { bindings::blksnap_storage_sectors(self.as_ptr()) }
    }

    /// The place of the storage: its block device, or its file.
    pub(crate) fn place(&self) -> Place {
        let mut raw = bindings::blksnap_place::default();
        // SAFETY: the file is open while `self` lives; `raw` is writable.
        unsafe { bindings::blksnap_storage_place(self.as_ptr(), &mut raw) };
        place_from_raw(&raw)
    }

    /// Grows the file from `old` to `new` sectors with fallocate.
    pub(crate) fn grow(&self, old: u64, new: u64) -> Result {
        // SAFETY: the file is open while `self` lives.
        to_result(unsafe { bindings::blksnap_storage_grow(self.as_ptr(), old, new) })
    }

    /// Reads `len` bytes at storage `sector` straight into `bio`'s data,
    /// from byte `offset` of it on.
    pub(crate) fn read_into_bio(
        &self,
        sector: u64,
        bio: &mut OwnedBio,
        offset: usize,
        len: usize,
    ) -> Result {
        // SAFETY: the file is open and the bio is live and owned, so nobody
        // else touches its pages; the C side refuses a range past its end.
        to_result(unsafe {
            bindings::blksnap_storage_read_bio(self.as_ptr(), sector, bio.as_ptr(), offset, len)
        })
    }
}

impl Drop for StorageFile {
    fn drop(&mut self) {
        let volume = *self.volume.get_mut();
        if !volume.is_null() {
            // SAFETY: mapped by `pin`, unmapped once; no I/O of the storage
            // is left once its snapshot lets go of it.
            unsafe { bindings::blksnap_volume_unmap(volume) };
        }
        // SAFETY: opened by `open`, released once.
        unsafe { bindings::blksnap_storage_close(self.as_ptr()) };
    }
}

/// The extents of an in-volume storage on its file system's device.
pub(crate) struct VolumeExtents<'a> {
    volume: *const bindings::blksnap_volume,
    by_dev: bool,
    next: u32,
    _file: PhantomData<&'a StorageFile>,
}

impl Iterator for VolumeExtents<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let (mut start, mut count) = (0u64, 0u64);
        // SAFETY: the mapping lives while the `StorageFile` it was taken
        // from does, which the lifetime ensures.
        let found = unsafe {
            bindings::blksnap_volume_extent(
                self.volume,
                self.next,
                self.by_dev,
                &mut start,
                &mut count,
            )
        };
        self.next += 1;
        found.then_some((start, count))
    }
}
