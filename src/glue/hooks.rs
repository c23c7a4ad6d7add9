// SPDX-License-Identifier: GPL-2.0

//! Installing and removing the ftrace hooks of `src/glue/hooks.c`.
//!
//! While a [`Hooks`] value exists, every bio, every block-device filter
//! ioctl and every device removal reaches the functions of [`super::entry`].

use core::cell::UnsafeCell;
use core::marker::PhantomData;

use kernel::error::to_result;
use kernel::prelude::*;

use super::bindings;
use super::block::BlockDevice;

/// The installed hooks; removed on drop.
pub(crate) struct Hooks(());

impl Hooks {
    /// Installs every hook, or none.
    pub(crate) fn install() -> Result<Self> {
        // SAFETY: called once, from module init; the C side undoes partial
        // registration itself on failure.
        to_result(unsafe { bindings::blksnap_hooks_register() })?;
        Ok(Self(()))
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        // SAFETY: the hooks were installed by `install`. Unregistering waits
        // for redirected calls still running, then the deferred reaping of
        // dead filters is flushed so no work item outlives the module.
        unsafe {
            bindings::blksnap_hooks_unregister();
            bindings::blksnap_flush_reap();
        }
    }
}

/// Asks for [`super::entry::Filters::reap`] to run soon in a worker. Callable
/// from any context.
pub(crate) fn schedule_reap() {
    // SAFETY: schedule_work may be called from any context.
    unsafe { bindings::blksnap_schedule_reap() };
}

/// What a bio is to the filters, by who submitted it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BioOrigin {
    /// Submitted by anybody else: the filters act on it.
    Foreign,
    /// This module's own, or one the filters handed back: they do not see
    /// it.
    Own,
    /// A write of this module to a difference storage that is a block
    /// device: the filters record it, none may hold it.
    Store,
}

/// What `bio`, submitted by the code at `ip`, is to the filters.
///
/// # Safety
///
/// `bio` is a live bio.
pub(super) unsafe fn bio_origin(bio: *mut bindings::bio, ip: kernel::ffi::c_ulong) -> BioOrigin {
    // SAFETY: the caller guarantees the bio is live; the helper only reads
    // its pool and operation and compares `ip` with the module's ranges.
    match unsafe { bindings::blksnap_bio_origin(bio, ip) } {
        bindings::blksnap_bio_origin_BLKSNAP_BIO_STORE => BioOrigin::Store,
        bindings::blksnap_bio_origin_BLKSNAP_BIO_OWN => BioOrigin::Own,
        _ => BioOrigin::Foreign,
    }
}

/// A reference on this module: it cannot be unloaded while one exists.
pub(crate) struct ModuleRef(());

impl ModuleRef {
    /// Takes a reference; fails with `ENODEV` while the module is unloading.
    pub(crate) fn get() -> Result<Self> {
        // SAFETY: always allowed.
        if unsafe { bindings::blksnap_module_get() } {
            Ok(Self(()))
        } else {
            Err(ENODEV)
        }
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: taken by `get`.
        unsafe { bindings::blksnap_module_put() };
    }
}

/// Serializes changes to the table of attached filters and to the
/// snapshots; held until drop, by the task that took it.
///
/// # Invariants
///
/// The registry mutex is held by the current task; at most one value of
/// this type exists at a time.
pub(crate) struct RegistryLock(PhantomData<*mut ()>);

impl RegistryLock {
    /// Takes the lock. Sleeps.
    pub(crate) fn lock() -> Self {
        // SAFETY: process context; released by drop.
        unsafe { bindings::blksnap_registry_lock() };
        // INVARIANT: the mutex is held, so no other value exists; not
        // `Send`, so it is dropped by this task.
        Self(PhantomData)
    }
}

/// A value used only under the registry lock: it is reached through the
/// held lock, borrowed exclusively for as long as the value is.
pub(crate) struct UnderRegistry<T>(UnsafeCell<T>);

// SAFETY: the value is reached only by the task holding the registry lock
// (see `get`), one task at a time; it may be any task, hence `T: Send`.
unsafe impl<T: Send> Sync for UnderRegistry<T> {}

impl<T> UnderRegistry<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The value, with the lock, for as long as `lock` is borrowed.
    pub(crate) fn get<'a>(&'a self, lock: &'a mut RegistryLock) -> (&'a mut T, &'a RegistryLock) {
        // SAFETY: the registry lock is held (invariant of `RegistryLock`),
        // so no other task reaches the value; the only lock is borrowed
        // exclusively for `'a`, so no other reference to the value is made
        // meanwhile.
        (unsafe { &mut *self.0.get() }, lock)
    }
}

impl Drop for RegistryLock {
    fn drop(&mut self) {
        // SAFETY: taken in `lock`.
        unsafe { bindings::blksnap_registry_unlock() };
    }
}

/// Returns true if the calling task may administer block devices.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: always allowed in process context.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as kernel::ffi::c_int) }
}

/// Waits until every bio that entered a filter before the call has left
/// `submit_bio_noacct`, queued to its driver or completed. Sleeps.
pub(crate) fn sync_submitters() {
    // SAFETY: process context; the hooks' SRCU domain lives as long as the
    // module's filter layer, which every caller (a snapshot) is part of.
    unsafe { bindings::blksnap_sync_submitters() };
}

/// Waits, at most `timeout_ms`, until every write that a filter let pass
/// to a bio-based device (dm, md) before the call has completed, also one
/// a target keeps in a worker of its own; `ETIMEDOUT` if they did not.
/// Sleeps.
pub(crate) fn wait_passed_writes(timeout_ms: u32) -> Result {
    // SAFETY: process context; the domain the writes are counted in lives
    // as long as the hooks, hence as every caller (a snapshot).
    to_result(unsafe { bindings::blksnap_wait_passed_writes(timeout_ms) })
}

impl BlockDevice {
    /// Whether the device's driver is bio-based (device-mapper, md, ...),
    /// so that a drain of its queue does not wait for the writes it holds.
    pub(crate) fn is_bio_based(&self) -> bool {
        // SAFETY: the device is live while borrowed, and so is its queue.
        unsafe { bindings::blksnap_bdev_is_bio_based(self.as_ptr()) }
    }

    /// Starts draining the requests the device's driver holds: from now on
    /// new bios wait until the returned drain is dropped. Sleeps.
    pub(crate) fn start_drain(&self) -> Drain<'_> {
        // SAFETY: the device is live while borrowed, and so is its queue;
        // `Drain` ends the freeze started here.
        unsafe { bindings::blksnap_drain_start(self.as_ptr()) };
        // INVARIANT: started just above.
        Drain { bdev: self }
    }

    /// Waits, at most `timeout_ms`, until a bio-based driver (dm, md) has
    /// completed the writes its I/O accounting counts on the device's disk;
    /// at once for a request-based driver. `ETIMEDOUT` if they did not
    /// complete. Called with no drain under way. Sleeps.
    pub(crate) fn wait_bio_writes(&self, timeout_ms: u32) -> Result {
        // SAFETY: the device is live while borrowed, and so is its queue;
        // process context.
        to_result(unsafe { bindings::blksnap_wait_bio_writes(self.as_ptr(), timeout_ms) })
    }
}

/// A drain of a device's queue under way (a queue freeze); ended, and the
/// bios that waited for it let go, when dropped.
///
/// # Invariants
///
/// A drain of `bdev` was started and is not ended.
pub(crate) struct Drain<'a> {
    bdev: &'a BlockDevice,
}

impl Drain<'_> {
    /// Waits, at most `timeout_ms`, until the requests the driver held
    /// when the drain started have completed; `ETIMEDOUT` if they did not.
    /// Sleeps.
    pub(crate) fn wait(&self, timeout_ms: u32) -> Result {
        // SAFETY: a drain of the live device is under way (invariant).
        to_result(unsafe { bindings::blksnap_drain_wait(self.bdev.as_ptr(), timeout_ms) })
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        // SAFETY: by the invariant, a drain of the device was started and
        // this ends it, once.
        unsafe { bindings::blksnap_drain_end(self.bdev.as_ptr()) };
    }
}
