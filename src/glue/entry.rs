// SPDX-License-Identifier: GPL-2.0

//! Every function that C calls into: the entry points of the hooks and of
//! the image disks.
//!
//! Each one turns raw pointers into the glue's borrowed types and hands
//! over to the safe layers above, which the glue does not name: it calls
//! them through traits of its own, implemented above for [`Above`] (the
//! filter, [`Filters`]) and by the image's server ([`ImageServer`], the
//! type [`ImageEntry::Server`] names). That is static dispatch, and a
//! missing implementation fails the build.

use kernel::ffi::{c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};

use super::bindings;
use super::bio::OwnedBio;
use super::block::{BdevId, Bio, BlockDevice, DiskId};
use super::hooks::{self, BioOrigin};
use kernel::uaccess::UserPtr;

use super::uaccess::{self, Abi};

/// The layers above the glue, as the entry points see them: the traits
/// below are implemented for this type by the layer that handles each call.
pub(crate) enum Above {}

/// The filter layer's side of the hooks.
pub(crate) trait Filters {
    /// A bio of `bdev` (of a partition of `whole`, if some) is submitted:
    /// does a filter of the device need it redirected to [`Filters::filter_bio`]?
    /// `origin` tells who submitted it. Must not sleep.
    fn bio_wanted(
        bio: &Bio,
        bdev: BdevId,
        whole: Option<BdevId>,
        origin: impl FnOnce() -> BioOrigin,
    ) -> bool;
    /// Offers a bio to its device's filters; gives it back if it goes on.
    fn filter_bio(bio: OwnedBio) -> Option<OwnedBio>;
    /// BLKFILTER_ATTACH, _DETACH or _CTL issued on `bdev` by a task of `abi`.
    fn ioctl(bdev: &BlockDevice, cmd: u32, arg: UserPtr, abi: Abi) -> Result<isize>;
    /// A disk (`part` none) or one of its partitions is going away. Must not
    /// sleep.
    fn disk_gone(disk: DiskId, part: Option<BdevId>);
    /// The medium under a disk (`part` none) or one of its devices changed.
    /// Must not sleep.
    fn disk_changed(disk: DiskId, part: Option<BdevId>);
    /// The deferred work asked for by [`super::hooks::schedule_reap`].
    fn reap();
}

/// What serves the bios of an image disk, and counts the image reads sent
/// on as clones ([`OwnedBio::remap_read`], [`OwnedBio::remap_storage`]).
pub(crate) trait ImageServer: Send + Sync + 'static {
    /// A bio submitted to the image.
    fn on_image_bio(self: ArcBorrow<'_, Self>, bio: OwnedBio);
    /// A clone of an image read is about to be sent.
    fn remapped_read_begin(&self);
    /// A clone of the image read `bio`, sent to the original (`original`)
    /// or to the storage, completed: may its data be trusted? May run in
    /// an interrupt.
    fn remapped_read_valid(&self, bio: &Bio, original: bool) -> bool;
    /// A clone's image bio was completed, or its clone was not sent. May
    /// run in an interrupt.
    fn remapped_read_done(&self);
    /// The data of a clone could not be trusted: the image bio comes back,
    /// to be served again. Runs in a work item.
    fn retry_read(this: &Arc<Self>, bio: OwnedBio);
}

/// The one type whose pointers C holds for image disks and their clones.
pub(crate) trait ImageEntry {
    /// The server of every image disk ([`super::gendisk::ImageDisk`]).
    type Server: ImageServer;
}

/// The server of image disks, as the layer above names it.
pub(crate) type Server = <Above as ImageEntry>::Server;

/// Called by the submit_bio_noacct hook for every bio, of block device
/// `bdev` or, if `whole` is not null, of a partition of the disk `whole`;
/// `parent_ip` is the caller's address. Shows the bio to the filters of
/// the device and says whether one of them needs it redirected to
/// [`blksnap_filter_bio`]. Must not sleep.
///
/// # Safety
///
/// `bio` is the live bio submit_bio_noacct was called with, not completed
/// during the call; `bdev` and `whole` (if not null) are block devices,
/// used as identities only.
#[no_mangle]
unsafe extern "C" fn blksnap_bio_wanted(
    bio: *mut bindings::bio,
    bdev: *mut bindings::block_device,
    whole: *mut bindings::block_device,
    parent_ip: c_ulong,
) -> bool {
    let whole = (!whole.is_null()).then(|| BdevId::from_ptr(whole));
    // SAFETY: `bio` is live for the length of the call (the caller's duty).
    let origin = || unsafe { hooks::bio_origin(bio, parent_ip) };
    // SAFETY: as above; the borrow ends with the call.
    let bio = unsafe { Bio::from_raw(bio) };
    <Above as Filters>::bio_wanted(bio, BdevId::from_ptr(bdev), whole, origin)
}

/// Offers a bio to its device's filter; false means "pass it on".
///
/// # Safety
///
/// `bio` is a live bio the caller owns and hands over: the caller passes
/// it on if false is returned, and never touches it again otherwise.
#[no_mangle]
unsafe extern "C" fn blksnap_filter_bio(bio: *mut bindings::bio) -> bool {
    // SAFETY: owned and live, handed over (the caller's duty).
    let bio = unsafe { OwnedBio::from_raw(bio) };
    match <Above as Filters>::filter_bio(bio) {
        Some(bio) => {
            bio.into_raw();
            false
        }
        None => true,
    }
}

/// Handles BLKFILTER_ATTACH, _DETACH and _CTL issued on `bdev`, by a 32-bit
/// task if `compat` (then `arg` is already a 64-bit user address).
///
/// # Safety
///
/// `bdev` is the block device of the file the ioctl is issued on, which
/// stays open while the call runs.
#[no_mangle]
unsafe extern "C" fn blksnap_blkfilter_ioctl(
    bdev: *mut bindings::block_device,
    cmd: c_uint,
    arg: c_ulong,
    compat: bool,
) -> c_long {
    // SAFETY: live while the call runs (the caller's duty).
    let bdev = unsafe { BlockDevice::from_raw(bdev) };
    let abi = if compat {
        Abi::of_compat_task()
    } else {
        Abi::Native
    };
    match <Above as Filters>::ioctl(bdev, cmd, uaccess::ioctl_arg(arg), abi) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// A disk (`part` null) or one of its partitions is going away. Must not
/// sleep. The pointers are used as identities only, never dereferenced.
#[no_mangle]
extern "C" fn blksnap_disk_gone(disk: *mut bindings::gendisk, part: *mut bindings::block_device) {
    let part = (!part.is_null()).then(|| BdevId::from_ptr(part));
    <Above as Filters>::disk_gone(DiskId::from_ptr(disk), part);
}

/// The medium under a disk (`part` null) or under one of its devices
/// changed: its data changed without a write. Must not sleep. The pointers
/// are used as identities only.
#[no_mangle]
extern "C" fn blksnap_disk_changed(
    disk: *mut bindings::gendisk,
    part: *mut bindings::block_device,
) {
    let part = (!part.is_null()).then(|| BdevId::from_ptr(part));
    <Above as Filters>::disk_changed(DiskId::from_ptr(disk), part);
}

/// The deferred work scheduled by [`super::hooks::schedule_reap`].
#[no_mangle]
extern "C" fn blksnap_reap_filters() {
    <Above as Filters>::reap();
}

/// A bio submitted to a snapshot image.
///
/// # Safety
///
/// `owner` is the pointer the image disk was added with
/// ([`super::gendisk::ImageDisk::add`]: the address of a [`Server`] inside
/// an `Arc`, as `Arc::into_raw` gives it), and the disk is not yet
/// removed, so that `Arc` is still held; `bio` is live and handed over.
#[no_mangle]
unsafe extern "C" fn blksnap_image_submit_bio(owner: *mut c_void, bio: *mut bindings::bio) {
    // SAFETY: owned, live, handed over (the caller's duty).
    let bio = unsafe { OwnedBio::from_raw(bio) };
    // SAFETY: `owner` points into an `Arc<Server>` the image disk holds
    // while the call runs (the caller's duty).
    let server = unsafe { ArcBorrow::from_raw(owner.cast::<Server>()) };
    server.on_image_bio(bio);
}

/// A clone sent by [`OwnedBio::remap_read`] or [`OwnedBio::remap_storage`]
/// completed: may its data be trusted? Runs in the completion's context,
/// maybe an interrupt.
///
/// # Safety
///
/// `owner` is the pointer the clone was sent with: the address of a
/// [`Server`] inside an `Arc`, which counts the clone in flight
/// ([`ImageServer::remapped_read_begin`]) and is kept until that count
/// falls to zero; `bio` is the clone's image bio, live until the clone is
/// done.
#[no_mangle]
unsafe extern "C" fn blksnap_image_read_valid(
    owner: *mut c_void,
    bio: *mut bindings::bio,
    original: bool,
) -> bool {
    // SAFETY: live while the clone is not done (the caller's duty).
    let bio = unsafe { Bio::from_raw(bio) };
    // SAFETY: a live `Server` while its clone is counted (the caller's duty).
    let server = unsafe { &*owner.cast::<Server>() };
    server.remapped_read_valid(bio, original)
}

/// A clone's image bio was completed. May run in an interrupt.
///
/// # Safety
///
/// As for [`blksnap_image_read_valid`]; called once per clone, last.
#[no_mangle]
unsafe extern "C" fn blksnap_image_read_done(owner: *mut c_void) {
    // SAFETY: a live `Server` until this call uncounts the clone.
    let server = unsafe { &*owner.cast::<Server>() };
    server.remapped_read_done();
}

/// A clone's data could not be trusted: the image bio comes back, to be
/// served again. Runs in a work item.
///
/// # Safety
///
/// As for [`blksnap_image_read_valid`], the clone still counted; `bio` is
/// handed back, owned and live.
#[no_mangle]
unsafe extern "C" fn blksnap_image_read_retry(owner: *mut c_void, bio: *mut bindings::bio) {
    // SAFETY: owned, live, handed back (the caller's duty).
    let bio = unsafe { OwnedBio::from_raw(bio) };
    // SAFETY: `owner` points into an `Arc<Server>` held while the clone is
    // counted, which it still is (the caller's duty).
    let server = unsafe { ArcBorrow::from_raw(owner.cast::<Server>()) };
    Server::retry_read(&server.into(), bio);
}
