// SPDX-License-Identifier: GPL-2.0

//! The kernel's monotonic clock, for the time stamps of events.

use super::bindings;

/// The monotonic clock (`ktime_get`) in nanoseconds since boot.
pub(crate) fn monotonic_ns() -> i64 {
    // SAFETY: reads the clock; callable in any context.
    unsafe { bindings::ktime_get() }
}
