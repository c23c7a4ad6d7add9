// SPDX-License-Identifier: GPL-2.0

//! debugfs directories of counters, for tests and diagnostics.
//!
//! `/sys/kernel/debug/blksnap/` is created at module load ([`Root`]); a
//! [`Counters`] is a subdirectory with one read-only file per counter. The
//! counters live in the same allocation as the directory handle and the
//! directory is removed before they are freed. Failures are ignored, as
//! debugfs intends: diagnostics never stop the module from working.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use kernel::prelude::*;
use kernel::str::CStr;

use super::bindings;

/// The module's debugfs root; removed on drop.
pub(crate) struct Root(());

static ROOT: AtomicPtr<bindings::dentry> = AtomicPtr::new(core::ptr::null_mut());

impl Root {
    /// Creates `/sys/kernel/debug/<name>/`.
    pub(crate) fn create(name: &CStr) -> Self {
        // SAFETY: `name` is NUL-terminated; a null parent is debugfs' root.
        let dir =
            unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), core::ptr::null_mut()) };
        ROOT.store(dir, Ordering::Release);
        Self(())
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let dir = ROOT.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `dir` came from debugfs_create_dir (or is an error pointer
        // or null, which debugfs_remove ignores); nothing refers to it now,
        // every `Counters` below it having been dropped first.
        unsafe { bindings::debugfs_remove(dir) };
    }
}

/// A debugfs directory holding `N` counters.
pub(crate) struct Counters<const N: usize> {
    values: Pin<KBox<[AtomicU64; N]>>,
    dir: *mut bindings::dentry,
}

// SAFETY: the counters are atomics; `dir` is only used by `drop`.
unsafe impl<const N: usize> Send for Counters<N> {}
// SAFETY: shared access only touches the atomics.
unsafe impl<const N: usize> Sync for Counters<N> {}

impl<const N: usize> Counters<N> {
    /// Creates `<root>/<dir>/` with one file per name.
    pub(crate) fn new(dir: &CStr, names: [&CStr; N]) -> Result<Self> {
        let values = KBox::pin(core::array::from_fn(|_| AtomicU64::new(0)), GFP_KERNEL)?;
        let root = ROOT.load(Ordering::Acquire);
        // SAFETY: `dir` is NUL-terminated; `root` is the module's root or
        // null/an error pointer, which debugfs handles.
        let dentry = unsafe { bindings::debugfs_create_dir(dir.as_char_ptr(), root) };
        for (name, value) in names.iter().zip(values.iter()) {
            // SAFETY: the file reads the `u64` behind `value` (an AtomicU64
            // has the same layout); the value is pinned and outlives the
            // file, which `drop` removes before freeing `values`.
            unsafe {
                bindings::debugfs_create_u64(name.as_char_ptr(), 0o444, dentry, value.as_ptr())
            };
        }
        Ok(Self {
            values,
            dir: dentry,
        })
    }

    /// Adds `n` to counter `index`.
    pub(crate) fn add(&self, index: usize, n: u64) {
        if let Some(v) = self.values.get(index) {
            v.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl<const N: usize> Drop for Counters<N> {
    fn drop(&mut self) {
        // SAFETY: `dir` came from debugfs_create_dir; removing it waits for
        // open files to be released, so no reader touches `values` after.
        unsafe { bindings::debugfs_remove(self.dir) };
    }
}
