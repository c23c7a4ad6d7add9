// SPDX-License-Identifier: GPL-2.0

//! Counters kept per CPU (`percpu.c`), for what the I/O path counts.
//!
//! Adding to a counter changes only the calling CPU's copy: no atomic
//! instruction, no cache line that other CPUs write, whatever the number of
//! CPUs submitting I/O. Reading sums the copies of every CPU, so it costs
//! time in the number of CPUs: for statistics read rarely (debugfs), and
//! for counts of things in flight that are waited for only once nothing
//! can start any more (see [`PerCpuCounters::sum_signed`]).

use core::ptr::NonNull;

use kernel::prelude::*;
use kernel::str::CStr;

use super::bindings;

/// `N` counters with one copy per CPU; freed on drop.
///
/// # Invariants
///
/// `ptr` is a per-CPU allocation of `N` zero-initialised `u64`s, from
/// `blksnap_pcpu_alloc`, freed only by drop.
pub(crate) struct PerCpuCounters<const N: usize> {
    ptr: NonNull<u64>,
}

// SAFETY: the per-CPU copies are only changed with this_cpu operations,
// which are safe from any thread, and read with READ_ONCE.
unsafe impl<const N: usize> Send for PerCpuCounters<N> {}
// SAFETY: as above: shared use only adds to the local copy or reads.
unsafe impl<const N: usize> Sync for PerCpuCounters<N> {}

impl<const N: usize> PerCpuCounters<N> {
    /// `N` counters at zero.
    pub(crate) fn new() -> Result<Self> {
        let count = u32::try_from(N.max(1)).map_err(|_| EINVAL)?;
        // SAFETY: no precondition; the memory is freed by drop.
        let ptr = NonNull::new(unsafe { bindings::blksnap_pcpu_alloc(count) }).ok_or(ENOMEM)?;
        // INVARIANT: a fresh per-CPU allocation of at least `N` counters,
        // zeroed by `__alloc_percpu`.
        Ok(Self { ptr })
    }

    /// Adds `delta` (which may be negative) to counter `index`, on the
    /// calling CPU. Callable in any context; never sleeps.
    pub(crate) fn add(&self, index: usize, delta: i64) {
        if index < N {
            // SAFETY: by the type invariant `ptr` holds `N` counters, and
            // `index` is below `N`.
            unsafe { bindings::blksnap_pcpu_add(self.ptr.as_ptr(), index as u32, delta) };
        }
    }

    /// The sum of counter `index` over every CPU.
    pub(crate) fn sum(&self, index: usize) -> u64 {
        if index >= N {
            return 0;
        }
        // SAFETY: as in `add`.
        unsafe { bindings::blksnap_pcpu_sum(self.ptr.as_ptr(), index as u32) }
    }

    /// The sum of counter `index`, read as a signed number: a count of
    /// things in flight, added to on the CPU where each starts and taken
    /// from on the one where it ends.
    ///
    /// While nothing adds to the counter any more, the copies only go
    /// down, so each copy read is at least its value at the end of the
    /// read: a sum of 0 then means that nothing is left.
    pub(crate) fn sum_signed(&self, index: usize) -> i64 {
        self.sum(index) as i64
    }

    /// Creates the read-only debugfs file `name` in `dir` showing the sum
    /// of counter `index`.
    ///
    /// # Safety
    ///
    /// `dir` is a debugfs directory (or null or an error pointer, which
    /// debugfs ignores), removed, with the file, before `self` is dropped.
    pub(super) unsafe fn debugfs_file(
        &self,
        name: &CStr,
        dir: *mut bindings::dentry,
        index: usize,
    ) {
        if index < N {
            // SAFETY: `name` is NUL-terminated; the counters outlive the
            // file by the caller's guarantee, and a read in progress holds
            // off the removal.
            unsafe {
                bindings::blksnap_pcpu_debugfs(
                    name.as_char_ptr(),
                    dir,
                    self.ptr.as_ptr(),
                    index as u32,
                )
            };
        }
    }
}

impl<const N: usize> Drop for PerCpuCounters<N> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant, allocated by `blksnap_pcpu_alloc`
        // and not freed yet.
        unsafe { bindings::blksnap_pcpu_free(self.ptr.as_ptr()) };
    }
}
