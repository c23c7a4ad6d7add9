// SPDX-License-Identifier: GPL-2.0

//! The image disks (`gendisk.c`): a bio-based gendisk per member, whose
//! bios go to the image's server.

use core::ptr::NonNull;

use kernel::prelude::*;
use kernel::sync::Arc;

use super::bindings;
use super::block::BlockDevice;
use super::entry::Server;

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
