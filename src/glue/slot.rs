// SPDX-License-Identifier: GPL-2.0

//! A static slot for a reference to a static, set once at module load: how
//! a lower layer is given what a higher one provides (a filter type, the
//! snapshot commands) without naming it.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Holds a `&'static T`, or nothing.
pub(crate) struct Slot<T: 'static>(AtomicPtr<T>);

impl<T: Sync + 'static> Slot<T> {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(ptr::null_mut()))
    }

    pub(crate) fn set(&self, value: &'static T) {
        self.0
            .store(ptr::from_ref(value).cast_mut(), Ordering::Release);
    }

    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: the slot only ever holds null or a `&'static T`, which
        // is valid and shared forever; `T: Sync` lets any thread use it.
        unsafe { p.cast_const().as_ref() }
    }
}
