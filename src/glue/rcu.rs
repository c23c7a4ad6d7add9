// SPDX-License-Identifier: GPL-2.0

//! RCU read-side critical sections and grace periods.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::prelude::*;

use super::bindings;
use super::hooks::RegistryLock;

/// An RCU read-side critical section, left on drop.
///
/// The guard is neither `Send` nor `Sync`: it must be dropped by the task
/// that took it.
pub(crate) struct ReadGuard(PhantomData<*mut ()>);

/// Enters an RCU read-side critical section.
pub(crate) fn read_lock() -> ReadGuard {
    // SAFETY: always allowed; balanced by the guard's drop.
    unsafe { bindings::blksnap_rcu_read_lock() };
    ReadGuard(PhantomData)
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        // SAFETY: this guard entered the section in `read_lock`.
        unsafe { bindings::blksnap_rcu_read_unlock() };
    }
}

/// Waits until every read-side critical section that began before the call
/// has ended. Sleeps.
pub(crate) fn synchronize() {
    // SAFETY: called from process context, outside any critical section.
    unsafe { bindings::synchronize_rcu() };
}

/// A value published to RCU readers, replaced as a whole by writers.
///
/// Readers borrow the current value for the length of their critical
/// section; a writer swaps in a new value and gets the old one back only
/// after a grace period, when no reader can still see it.
///
/// # Invariants
///
/// `ptr` is null or comes from `KBox::into_raw`, and is freed only after a
/// grace period has passed since it was unpublished.
pub(crate) struct RcuBox<T: Send + Sync> {
    ptr: AtomicPtr<T>,
}

impl<T: Send + Sync> RcuBox<T> {
    /// Returns an empty `RcuBox`.
    pub(crate) const fn new() -> Self {
        // INVARIANT: null.
        Self {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Returns an `RcuBox` holding `value`.
    pub(crate) fn new_with(value: KBox<T>) -> Self {
        // INVARIANT: from `KBox::into_raw`.
        Self {
            ptr: AtomicPtr::new(KBox::into_raw(value)),
        }
    }

    /// Returns the current value, for the length of the critical section.
    pub(crate) fn get<'a>(&'a self, _guard: &'a ReadGuard) -> Option<&'a T> {
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: by the type invariant a published value is freed only a
        // grace period after it is unpublished, and `_guard` keeps this
        // critical section open for `'a`.
        unsafe { ptr.as_ref() }
    }

    /// Returns the current value to a writer.
    ///
    /// Writers are serialized by the registry lock; the caller shows its
    /// guard as `_writer`, so the value cannot be freed meanwhile.
    pub(crate) fn get_locked<'a>(&'a self, _writer: &'a RegistryLock) -> Option<&'a T> {
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: only writers free values, and they are serialized by the
        // registry lock, whose guard is borrowed for `'a`.
        unsafe { ptr.as_ref() }
    }

    /// Publishes `new` and returns the previous value once no reader can
    /// see it any more. Sleeps. Writers are serialized by the registry
    /// lock, whose guard the caller shows as `_writer`.
    pub(crate) fn replace(&self, new: Option<KBox<T>>, _writer: &RegistryLock) -> Option<KBox<T>> {
        let new = new.map_or(core::ptr::null_mut(), KBox::into_raw);
        // INVARIANT: `new` comes from `KBox::into_raw`; the old value is
        // freed only after the grace period below.
        let old = self.ptr.swap(new, Ordering::AcqRel);
        if old.is_null() {
            return None;
        }
        synchronize();
        // SAFETY: `old` came from `KBox::into_raw` and no reader can see it
        // after the grace period.
        Some(unsafe { KBox::from_raw(old) })
    }
}

impl<T: Send + Sync> Drop for RcuBox<T> {
    fn drop(&mut self) {
        let ptr = *self.ptr.get_mut();
        if !ptr.is_null() {
            // SAFETY: `ptr` came from `KBox::into_raw`; a reader borrows the
            // value only while it borrows `self`, so none is left now.
            drop(unsafe { KBox::from_raw(ptr) });
        }
    }
}
