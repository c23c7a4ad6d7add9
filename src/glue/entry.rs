// SPDX-License-Identifier: GPL-2.0

//! Every function that C calls into: the entry points of the hooks.
//!
//! Each one turns raw pointers into the glue's borrowed types and hands
//! over to the safe filter layer, [`crate::blkfilter`].

use kernel::ffi::{c_long, c_uint, c_ulong};

use super::bindings;
use super::block::{BdevId, Bio, BlockDevice, DiskId};
use super::hooks;
use super::snapio::OwnedBio;
use super::uaccess::{self, Abi};
use kernel::sync::ArcBorrow;

use crate::blkfilter;
use crate::diff_area::DiffArea;

/// Called by the submit_bio_noacct hook for every bio, of block device
/// `bdev` or, if `whole` is not null, of a partition of the disk `whole`;
/// `parent_ip` is the caller's address. Shows the bio to the filters of
/// the device and says whether one of them needs it redirected to
/// [`blksnap_filter_bio`]. Must not sleep.
#[no_mangle]
extern "C" fn blksnap_bio_wanted(
    bio: *mut bindings::bio,
    bdev: *mut bindings::block_device,
    whole: *mut bindings::block_device,
    parent_ip: c_ulong,
) -> bool {
    let whole = (!whole.is_null()).then(|| BdevId::from_ptr(whole));
    // SAFETY: the hook passes the bio submit_bio_noacct was called with,
    // live for the length of the call.
    let origin = || unsafe { hooks::bio_origin(bio, parent_ip) };
    // SAFETY: as above.
    let bio = unsafe { Bio::from_raw(bio) };
    blkfilter::bio_wanted(bio, BdevId::from_ptr(bdev), whole, origin)
}

/// Offers a bio to its device's filter; false means "pass it on".
#[no_mangle]
extern "C" fn blksnap_filter_bio(bio: *mut bindings::bio) -> bool {
    // SAFETY: the hook hands over the bio submit_bio_noacct was called
    // with: it is passed on by the hook if we give it back, or owned by the
    // filter otherwise.
    let bio = unsafe { OwnedBio::from_raw(bio) };
    match blkfilter::filter_bio(bio) {
        Some(bio) => {
            bio.into_raw();
            false
        }
        None => true,
    }
}

/// Handles BLKFILTER_ATTACH, _DETACH and _CTL issued on `bdev`, by a 32-bit
/// task if `compat` (then `arg` is already a 64-bit user address).
#[no_mangle]
extern "C" fn blksnap_blkfilter_ioctl(
    bdev: *mut bindings::block_device,
    cmd: c_uint,
    arg: c_ulong,
    compat: bool,
) -> c_long {
    // SAFETY: the block device of an open file stays valid while the
    // ioctl runs.
    let bdev = unsafe { BlockDevice::from_raw(bdev) };
    let abi = if compat {
        Abi::of_compat_task()
    } else {
        Abi::Native
    };
    match blkfilter::ioctl(bdev, cmd, uaccess::ioctl_arg(arg), abi) {
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

/// The medium under a disk (`part` null) or under one of its devices
/// changed: its data changed without a write. Must not sleep.
#[no_mangle]
extern "C" fn blksnap_disk_changed(
    disk: *mut bindings::gendisk,
    part: *mut bindings::block_device,
) {
    let part = (!part.is_null()).then(|| BdevId::from_ptr(part));
    blkfilter::disk_changed(DiskId::from_ptr(disk), part);
}

/// The deferred work scheduled by [`super::hooks::schedule_reap`].
#[no_mangle]
extern "C" fn blksnap_reap_filters() {
    blkfilter::reap();
}

/// A bio submitted to a snapshot image; `owner` is the image's diff area.
#[no_mangle]
extern "C" fn blksnap_image_submit_bio(owner: *mut kernel::ffi::c_void, bio: *mut bindings::bio) {
    // SAFETY: the block layer hands the bio over to the driver.
    let bio = unsafe { OwnedBio::from_raw(bio) };
    // SAFETY: `owner` is the diff area the image was added with
    // (`ImageDisk::add`); the snapshot keeps it alive until the image disk
    // is removed, after which no bio reaches the driver.
    let area = unsafe { ArcBorrow::from_raw(owner.cast::<DiffArea>()) };
    area.on_image_bio(bio);
}

/// A clone sent by `DiffArea::on_image_bio` to the `original` (or to the
/// storage) completed: may its data be trusted? Runs in the completion's
/// context, maybe an interrupt.
#[no_mangle]
extern "C" fn blksnap_image_read_valid(
    owner: *mut kernel::ffi::c_void,
    bio: *mut bindings::bio,
    original: bool,
) -> bool {
    // SAFETY: the image bio stays owned by the clone's context until done.
    let bio = unsafe { Bio::from_raw(bio) };
    // SAFETY: the area counts the clone in flight and outlives it.
    let area = unsafe { &*owner.cast::<DiffArea>() };
    area.remapped_read_valid(bio, original)
}

/// A clone's image bio was completed. May run in an interrupt.
#[no_mangle]
extern "C" fn blksnap_image_read_done(owner: *mut kernel::ffi::c_void) {
    // SAFETY: as in `blksnap_image_read_valid`.
    let area = unsafe { &*owner.cast::<DiffArea>() };
    area.remapped_read_done();
}

/// A clone's data could not be trusted: the image bio comes back, to be
/// served again. Runs in a work item.
#[no_mangle]
extern "C" fn blksnap_image_read_retry(owner: *mut kernel::ffi::c_void, bio: *mut bindings::bio) {
    // SAFETY: the clone's context hands the image bio back.
    let bio = unsafe { OwnedBio::from_raw(bio) };
    // SAFETY: as in `blksnap_image_read_valid`; the area is an `Arc`'s.
    let area = unsafe { ArcBorrow::from_raw(owner.cast::<DiffArea>()) };
    DiffArea::retry_read(&area.into(), bio);
}
