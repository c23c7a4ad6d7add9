// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers for the I/O of snapshots (`snapio.c`): bios the module
//! owns, lists of held bios, synchronous block-device I/O that the filter
//! does not see, the difference storage file, the footprints of storages
//! and members (what lies below them), image disks, the work queue.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::error::to_result;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::uaccess::UserPtr;
use kernel::workqueue::Queue;

use super::bindings;
use super::block::{Bio, BlockDevice};
use super::entry::{ImageServer, Server};
use super::uaccess;
use crate::placement::{Footprint, Place, Topology, WalkError};

/// A bio the module owns: taken over from the filter or from an image.
///
/// It must be passed on or ended; dropping it ends it with EIO, so a
/// forgotten bio is reported to its submitter instead of hanging it.
pub(crate) struct OwnedBio(NonNull<bindings::bio>);

// SAFETY: a bio may be completed or resubmitted from any thread.
unsafe impl Send for OwnedBio {}

impl OwnedBio {
    /// # Safety
    ///
    /// `ptr` is a live bio whose ownership the caller hands over: nobody
    /// else passes it on or ends it.
    pub(crate) unsafe fn from_raw(ptr: *mut bindings::bio) -> Self {
        // SAFETY: the caller passes a live, hence non-null, bio.
        Self(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// Gives up ownership and returns the raw bio.
    pub(crate) fn into_raw(self) -> *mut bindings::bio {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }

    /// Passes the bio on to its device; the filter does not see it again.
    pub(crate) fn pass(self) {
        // SAFETY: the bio is owned and live; ownership goes to the block layer.
        unsafe { bindings::blksnap_bio_resubmit(self.into_raw()) };
    }

    /// Completes the bio with `result`.
    pub(crate) fn end(self, result: Result) {
        let err = match result {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        // SAFETY: the bio is owned and live; ending it gives it back.
        unsafe { bindings::blksnap_bio_end(self.into_raw(), err) };
    }

    /// Whether the submitter asked not to be blocked (REQ_NOWAIT).
    pub(crate) fn is_nowait(&self) -> bool {
        // SAFETY: the bio is live.
        unsafe { bindings::blksnap_bio_nowait(self.0.as_ptr()) }
    }

    /// Sends an image read served by `server` to `original` as a clone that
    /// fills this bio's pages. The server counts the clone in flight until
    /// it is told the outcome: the bio is completed by the clone
    /// ([`ImageServer::remapped_read_done`]), or handed back to
    /// [`ImageServer::retry_read`] when [`ImageServer::remapped_read_valid`]
    /// says no. Gives the bio back if memory is short. The server must keep
    /// itself alive until its count of clones falls to zero.
    pub(crate) fn remap_read(
        self,
        original: &BlockDevice,
        server: ArcBorrow<'_, Server>,
    ) -> Result<(), Self> {
        server.remapped_read_begin();
        let owner = core::ptr::from_ref::<Server>(&server).cast_mut().cast();
        // SAFETY: the bio is owned and live, the original is live while
        // borrowed (its clone holds its own reference). `owner` is the
        // address of the server inside its `Arc`, which counts the clone
        // from here until its outcome is reported, and is kept until that
        // count fell to zero (the server's duty above): the entry points
        // of the clone's completion may use it.
        if unsafe { bindings::blksnap_image_remap_read(self.0.as_ptr(), original.as_ptr(), owner) }
        {
            core::mem::forget(self);
            Ok(())
        } else {
            server.remapped_read_done();
            Err(self)
        }
    }

    /// Sends an image read served by `server` that lies in one stored chunk
    /// to `sector` of `storage`, a block device or an in-volume storage, as
    /// a clone that fills this bio's pages; the server counts it as
    /// [`OwnedBio::remap_read`] says. Gives the bio back if the storage is
    /// a file, if the sectors are not contiguous on the device, or if
    /// memory is short.
    pub(crate) fn remap_storage(
        self,
        sector: u64,
        storage: &StorageFile,
        server: ArcBorrow<'_, Server>,
    ) -> Result<(), Self> {
        server.remapped_read_begin();
        let owner = core::ptr::from_ref::<Server>(&server).cast_mut().cast();
        // SAFETY: as in `remap_read`; the storage is open while borrowed,
        // and its clone holds its own reference to the device.
        if unsafe {
            bindings::blksnap_image_remap_storage(
                self.0.as_ptr(),
                storage.as_ptr(),
                storage.volume_ptr(),
                sector,
                owner,
            )
        } {
            core::mem::forget(self);
            Ok(())
        } else {
            server.remapped_read_done();
            Err(self)
        }
    }

    /// Cuts the first `sectors` off this bio as a bio of its own, which
    /// must be ended before this one completes; `None` unless `sectors`
    /// lies within the bio.
    pub(crate) fn split_front(&mut self, sectors: u32) -> Option<OwnedBio> {
        // SAFETY: the bio is owned and live.
        let front = unsafe { bindings::blksnap_bio_split_front(self.0.as_ptr(), sectors) };
        // SAFETY: a new bio, owned by the caller, chained to this one.
        NonNull::new(front).map(|_| unsafe { OwnedBio::from_raw(front) })
    }

    /// Completes a read with zeros.
    pub(crate) fn end_with_zeros(self) {
        // SAFETY: the bio is owned and live; ending it gives it back.
        unsafe { bindings::blksnap_bio_zero_end(self.into_raw()) };
    }

    /// The raw bio, for the glue's C calls; it stays owned.
    pub(super) fn as_ptr(&self) -> *mut bindings::bio {
        self.0.as_ptr()
    }

    /// Completes the bio with EAGAIN, as REQ_NOWAIT asks when it would block.
    pub(crate) fn would_block(self) {
        // SAFETY: the bio is owned and live; ending it gives it back.
        unsafe { bindings::blksnap_bio_wouldblock(self.into_raw()) };
    }

    /// Copies `data` into the bio's data from byte `offset` on.
    pub(crate) fn copy_to(&mut self, offset: usize, data: &[u8]) {
        // SAFETY: the bio is live and owned, so nobody else touches its
        // pages; the C side never copies more than the bio holds.
        unsafe {
            bindings::blksnap_bio_copy_to(self.0.as_ptr(), offset, data.as_ptr().cast(), data.len())
        };
    }
}

impl core::ops::Deref for OwnedBio {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        // SAFETY: the bio is live while owned.
        unsafe { Bio::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedBio {
    fn drop(&mut self) {
        // SAFETY: still owned (every consuming method forgets `self`).
        unsafe { bindings::blksnap_bio_end(self.0.as_ptr(), EIO.to_errno()) };
    }
}

/// A FIFO of owned bios, linked through the bios themselves: adding one
/// never allocates, so it works where sleeping is not allowed.
pub(crate) struct BioList(bindings::bio_list);

// SAFETY: the list only holds owned bios, which may move between threads.
unsafe impl Send for BioList {}

impl BioList {
    pub(crate) const fn new() -> Self {
        Self(bindings::bio_list {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
        })
    }

    pub(crate) fn push(&mut self, bio: OwnedBio) {
        // SAFETY: the list is valid and the bio owned; the list now owns it.
        unsafe { bindings::blksnap_bio_list_add(&mut self.0, bio.into_raw()) };
    }

    /// Puts the bio first, to be popped next.
    pub(crate) fn push_front(&mut self, bio: OwnedBio) {
        // SAFETY: the list is valid and the bio owned; the list now owns it.
        unsafe { bindings::blksnap_bio_list_add_head(&mut self.0, bio.into_raw()) };
    }

    pub(crate) fn pop(&mut self) -> Option<OwnedBio> {
        // SAFETY: the list is valid.
        let bio = unsafe { bindings::blksnap_bio_list_pop(&mut self.0) };
        // SAFETY: a bio on the list is owned by it; it passes to the caller.
        (!bio.is_null()).then(|| unsafe { OwnedBio::from_raw(bio) })
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        while let Some(bio) = self.pop() {
            bio.end(Err(EIO));
        }
    }
}

/// Writes of an original device held until their chunks are copied.
///
/// Dropped, it passes the writes it still holds on to their device: a write
/// of the original is never failed for the snapshot's sake.
pub(crate) struct HeldWrites(BioList);

impl HeldWrites {
    pub(crate) const fn new() -> Self {
        Self(BioList::new())
    }

    pub(crate) fn push(&mut self, bio: OwnedBio) {
        self.0.push(bio);
    }

    pub(crate) fn push_front(&mut self, bio: OwnedBio) {
        self.0.push_front(bio);
    }

    pub(crate) fn pop(&mut self) -> Option<OwnedBio> {
        self.0.pop()
    }
}

impl Drop for HeldWrites {
    fn drop(&mut self) {
        while let Some(bio) = self.0.pop() {
            bio.pass();
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

/// Memory allocations of this thread do not start I/O while it lives.
pub(crate) struct NoIo(u32);

impl NoIo {
    pub(crate) fn enter() -> Self {
        // SAFETY: no precondition; restored on drop, in nesting order.
        Self(unsafe { bindings::blksnap_noio_save() })
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: the flags come from the matching save.
        unsafe { bindings::blksnap_noio_restore(self.0) };
    }
}

/// The module's work queue for copy-on-write and image reads.
pub(crate) struct WorkQueue(());

impl WorkQueue {
    pub(crate) fn create() -> Result<Self> {
        // SAFETY: called once, at module load.
        to_result(unsafe { bindings::blksnap_wq_create() })?;
        Ok(Self(()))
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        // SAFETY: created in `create`; every snapshot is gone at unload
        // (each holds a module reference), so no work is queued any more.
        unsafe { bindings::blksnap_wq_destroy() };
    }
}

/// The queue created by [`WorkQueue::create`] for copy-on-write, image
/// reads, storage growth and events.
pub(crate) fn queue() -> &'static Queue {
    // SAFETY: work is only queued by snapshots, which exist between the
    // creation and the destruction of the queue.
    unsafe { Queue::from_raw(bindings::blksnap_wq().cast()) }
}

/// The queue of the stores to the difference storage, which the
/// copy-on-write worker may wait for.
pub(crate) fn store_queue() -> &'static Queue {
    // SAFETY: as for `queue`.
    unsafe { Queue::from_raw(bindings::blksnap_store_wq().cast()) }
}

/// The queue of the growths of storage files, which a store may wait for.
pub(crate) fn grow_queue() -> &'static Queue {
    // SAFETY: as for `queue`.
    unsafe { Queue::from_raw(bindings::blksnap_grow_wq().cast()) }
}

/// Sleeps for `ms` milliseconds.
pub(crate) fn msleep(ms: u32) {
    // SAFETY: no precondition; called from process context.
    unsafe { bindings::blksnap_msleep(ms) };
}

/// Waits for all queued work to finish.
pub(crate) fn flush_queue() {
    // SAFETY: the queue exists while the module is loaded.
    unsafe { bindings::blksnap_wq_flush() };
}

/// A NUL-terminated path copied from user space.
pub(crate) struct UserPath(NonNull<kernel::ffi::c_char>);

impl UserPath {
    /// Copies at most `PATH_MAX` bytes; EINVAL if longer, EFAULT if the
    /// pointer is bad.
    pub(crate) fn read(ptr: UserPtr) -> Result<Self> {
        const PATH_MAX: isize = 4096;
        // SAFETY: strndup_user checks the user pointer itself.
        let p =
            unsafe { bindings::blksnap_strndup_user(uaccess::as_user_ptr(ptr).cast(), PATH_MAX) };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(p.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(p.cast())
            }));
        }
        // SAFETY: not null, checked above.
        Ok(Self(unsafe { NonNull::new_unchecked(p) }))
    }

    /// The NUL-terminated copy, which lives as long as `self`.
    fn as_char_ptr(&self) -> *const kernel::ffi::c_char {
        self.0.as_ptr()
    }
}

impl Drop for UserPath {
    fn drop(&mut self) {
        // SAFETY: allocated by strndup_user.
        unsafe { bindings::blksnap_kfree(self.0.as_ptr().cast()) };
    }
}

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
            bindings::blksnap_storage_read_bio(self.as_ptr(), sector, bio.0.as_ptr(), offset, len)
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

fn place_from_raw(raw: &bindings::blksnap_place) -> Place {
    if raw.is_file {
        Place::File {
            fs: raw.dev,
            ino: raw.ino,
            generation: raw.generation,
            device: raw.fs_bdev,
        }
    } else {
        Place::Device(raw.dev)
    }
}

/// What lies below block devices, as sysfs tells it: a private mount of
/// sysfs, unmounted on drop.
struct Sysfs(NonNull<bindings::vfsmount>);

impl Sysfs {
    fn open() -> Result<Self> {
        // SAFETY: process context; the mount is released by drop.
        let mnt = unsafe { bindings::blksnap_topology_open() };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(mnt.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(mnt.cast())
            }));
        }
        // SAFETY: not null, checked above.
        Ok(Self(unsafe { NonNull::new_unchecked(mnt) }))
    }
}

impl Drop for Sysfs {
    fn drop(&mut self) {
        // SAFETY: mounted by `open`, unmounted once.
        unsafe { bindings::blksnap_topology_close(self.0.as_ptr()) };
    }
}

impl Topology for Sysfs {
    type Error = Error;

    fn below(&mut self, dev: u32, out: &mut [Place]) -> Result<usize, WalkError<Error>> {
        let mut raw = KVec::from_elem(bindings::blksnap_place::default(), out.len(), GFP_KERNEL)
            .map_err(|_| WalkError::Lookup(ENOMEM))?;
        let max = u32::try_from(raw.len()).unwrap_or(u32::MAX);
        // SAFETY: the mount lives while `self` does; `raw` holds `max`
        // writable places.
        let n = unsafe { bindings::blksnap_dev_below(self.0.as_ptr(), dev, raw.as_mut_ptr(), max) };
        if n == E2BIG.to_errno() {
            return Err(WalkError::TooLarge);
        }
        let n = usize::try_from(n).map_err(|_| WalkError::Lookup(Error::from_errno(n)))?;
        for (place, raw) in out.iter_mut().zip(raw.iter()).take(n) {
            *place = place_from_raw(raw);
        }
        Ok(n.min(out.len()))
    }
}

/// Finds the footprint of `place` (see [`crate::placement`]): EINVAL when
/// the stack of devices below it is too large to check.
pub(crate) fn footprint(place: Place) -> Result<KBox<Footprint>> {
    let mut footprint = KBox::new(Footprint::new(place), GFP_KERNEL)?;
    let mut sysfs = Sysfs::open()?;
    match footprint.walk(&mut sysfs) {
        Ok(()) => Ok(footprint),
        Err(WalkError::TooLarge) => {
            pr_err!("too many devices below the storage or a member to check where they lie\n");
            Err(EINVAL)
        }
        Err(WalkError::Lookup(e)) => Err(e),
    }
}

impl BlockDevice {
    /// The place of the device.
    pub(crate) fn place(&self) -> Place {
        Place::Device(self.devs().0)
    }
}

/// The gendisk of a snapshot image, whose bios go to the server it holds.
/// Dropping it removes the disk, even if it is open or mounted, then lets
/// go of the server.
pub(crate) struct ImageDisk {
    disk: NonNull<bindings::gendisk>,
    /// Dropped after the disk is removed: no bio reaches the server after.
    _server: Arc<Server>,
}

// SAFETY: a gendisk may be removed from any thread.
unsafe impl Send for ImageDisk {}
// SAFETY: only its name is read through a shared reference.
unsafe impl Sync for ImageDisk {}

impl ImageDisk {
    /// Adds the image disk of `original`, writable or not, with a capacity
    /// of 0 until [`ImageDisk::publish`]; its bios go to `server`.
    pub(crate) fn add(original: &BlockDevice, server: Arc<Server>, writable: bool) -> Result<Self> {
        let owner = core::ptr::from_ref::<Server>(&server).cast_mut().cast();
        // SAFETY: the original is live while borrowed; `owner` is the
        // address of the server inside the `Arc` this disk holds until it is
        // removed (`blksnap_image_submit_bio` in entry.rs turns it back).
        let disk = unsafe { bindings::blksnap_image_add(original.as_ptr(), owner, writable) };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(disk.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(disk.cast())
            }));
        }
        Ok(Self {
            // SAFETY: not null, checked above.
            disk: unsafe { NonNull::new_unchecked(disk) },
            _server: server,
        })
    }

    /// Gives the image its capacity, `sectors`: from now on it can be read.
    pub(crate) fn publish(&self, sectors: u64) {
        // SAFETY: the disk was added by `add` and is not removed before drop.
        unsafe { bindings::blksnap_image_publish(self.disk.as_ptr(), sectors) };
    }

    /// The disk name, such as `blksnap-7-0`, without its NUL.
    pub(crate) fn name(&self) -> &[u8] {
        // SAFETY: disk_name is a NUL-terminated array of the live gendisk,
        // which lives as long as `self`.
        unsafe { core::ffi::CStr::from_ptr(bindings::blksnap_disk_name(self.disk.as_ptr()).cast()) }
            .to_bytes()
    }
}

impl Drop for ImageDisk {
    fn drop(&mut self) {
        // SAFETY: added by `add`, removed once.
        unsafe { bindings::blksnap_image_remove(self.disk.as_ptr()) };
    }
}
