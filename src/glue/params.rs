// SPDX-License-Identifier: GPL-2.0

//! The module parameters of `params.c`, and the memory bound on what they
//! size.
//!
//! The parameters are writable through sysfs at any time, within the ranges
//! `params.c` checks, so each read is a single volatile load, like
//! `READ_ONCE`. Two parameters may still disagree (a minimum above its
//! maximum, each written on its own): their users resolve that when they
//! read them (see `logic/src/chunk.rs` and `logic/src/cbt.rs`).

use core::ptr::{addr_of, read_volatile};

use super::bindings;

macro_rules! param_getters {
    ($($(#[$doc:meta])* $name:ident => $sym:ident;)*) => {$(
        $(#[$doc])*
        // Not every parameter has a reader yet.
        #[allow(dead_code)]
        pub(crate) fn $name() -> u32 {
            // SAFETY: the parameter is a valid `unsigned int` for the life of
            // the module; sysfs writes it with single stores, so a volatile
            // load sees either the old or the new value.
            unsafe { read_volatile(addr_of!(bindings::$sym)) }
        }
    )*};
}

param_getters! {
    /// Smallest change-tracking block, as a shift (9 to 31).
    tracking_block_minimum_shift => blksnap_param_tracking_block_minimum_shift;
    /// Most change-tracking blocks per device (1 to 2^30).
    tracking_block_maximum_count => blksnap_param_tracking_block_maximum_count;
    /// Largest change-tracking block, as a shift (9 to 31).
    tracking_block_maximum_shift => blksnap_param_tracking_block_maximum_shift;
    /// Smallest copy-on-write chunk, as a shift (9 to 30).
    chunk_minimum_shift => blksnap_param_chunk_minimum_shift;
    /// At most 2^N copy-on-write chunks per device (0 to 63).
    chunk_maximum_count_shift => blksnap_param_chunk_maximum_count_shift;
    /// Largest copy-on-write chunk, as a shift (9 to 30).
    chunk_maximum_shift => blksnap_param_chunk_maximum_shift;
    /// Most chunks waiting to be stored (1 to 65536).
    chunk_maximum_in_queue => blksnap_param_chunk_maximum_in_queue;
    /// Growth step of a difference storage file, in sectors (2048 to 2^31).
    diff_storage_minimum => blksnap_param_diff_storage_minimum;
    /// `image_writable`: images of later takes accept writes (0 or 1).
    image_writable => blksnap_param_image_writable;
}

/// Whether `bytes` of tables and buffers for one device may be allocated:
/// they leave at least half of the memory available now to the rest of the
/// system.
pub(crate) fn memory_allows(bytes: u64) -> bool {
    // SAFETY: the function only reads the memory counters.
    unsafe { bindings::blksnap_memory_allows(bytes) }
}
