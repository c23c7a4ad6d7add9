// SPDX-License-Identifier: GPL-2.0

//! Every function that C calls into: the entry points of the hooks.
//!
//! Each one turns raw pointers into the glue's borrowed types and hands
//! over to the safe filter layer, [`crate::blkfilter`].

use kernel::ffi::{c_long, c_uint, c_ulong};
use kernel::uaccess::UserPtr;

use super::bindings;
use super::block::{BdevId, Bio, BlockDevice, DiskId};
use crate::blkfilter;

/// Called by the submit_bio_noacct hook for every bio not issued by this
/// module: is its block device filtered? Must not sleep.
#[no_mangle]
extern "C" fn blksnap_bdev_filtered(bdev: *mut bindings::block_device) -> bool {
    blkfilter::is_filtered(BdevId::from_ptr(bdev))
}

/// Offers a bio to its device's filter; false means "pass it on".
#[no_mangle]
extern "C" fn blksnap_filter_bio(bio: *mut bindings::bio) -> bool {
    // SAFETY: the hook passes the bio submit_bio_noacct was called with,
    // which stays valid at least until it is passed on or completed.
    let bio = unsafe { Bio::from_raw(bio) };
    blkfilter::filter_bio(bio)
}

/// Handles BLKFILTER_ATTACH, _DETACH and _CTL issued on `bdev`.
#[no_mangle]
extern "C" fn blksnap_blkfilter_ioctl(
    bdev: *mut bindings::block_device,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    // SAFETY: the block device of an open file stays valid while the
    // ioctl runs.
    let bdev = unsafe { BlockDevice::from_raw(bdev) };
    match blkfilter::ioctl(bdev, cmd, arg as UserPtr) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// A disk (`part` null) or one of its partitions is going away. Must not
/// sleep.
#[no_mangle]
extern "C" fn blksnap_disk_gone(disk: *mut bindings::gendisk, part: *mut bindings::block_device) {
    let part = (!part.is_null()).then(|| BdevId::from_ptr(part));
    blkfilter::disk_gone(DiskId::from_ptr(disk), part);
}

/// The deferred work scheduled by [`super::hooks::schedule_reap`].
#[no_mangle]
extern "C" fn blksnap_reap_filters() {
    blkfilter::reap();
}
