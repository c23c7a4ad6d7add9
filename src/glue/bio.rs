// SPDX-License-Identifier: GPL-2.0

//! Bios the module owns (`bio.c`): taken over from the filter or from
//! an image, passed on, ended, resubmitted, sent to the storage or as
//! clones of image reads; lists of held bios.

use core::ptr::NonNull;

use kernel::prelude::*;
use kernel::sync::ArcBorrow;

use super::bindings;
use super::block::{Bio, BlockDevice};
use super::entry::{ImageServer, Server};
use super::storage::StorageFile;

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
