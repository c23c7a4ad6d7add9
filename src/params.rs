// SPDX-License-Identifier: GPL-2.0

//! The module parameters of uapi.md section 4.
//!
//! The parameters are defined in C (`src/glue/params.c`) because the 6.12
//! `module!` macro cannot declare them. They are writable through sysfs at
//! any time, so each read is a single volatile load, like `READ_ONCE`.

use core::ptr::{addr_of, read_volatile};

use crate::glue::bindings;

macro_rules! param_getters {
    ($($(#[$doc:meta])* $name:ident => $sym:ident;)*) => {$(
        $(#[$doc])*
        // The chunk and storage parameters wait for the snapshot code.
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
    /// Smallest change-tracking block, as a shift.
    tracking_block_minimum_shift => blksnap_param_tracking_block_minimum_shift;
    /// Most change-tracking blocks per device.
    tracking_block_maximum_count => blksnap_param_tracking_block_maximum_count;
    /// Largest change-tracking block, as a shift.
    tracking_block_maximum_shift => blksnap_param_tracking_block_maximum_shift;
    /// Smallest copy-on-write chunk, as a shift.
    chunk_minimum_shift => blksnap_param_chunk_minimum_shift;
    /// At most 2^N copy-on-write chunks per device.
    chunk_maximum_count_shift => blksnap_param_chunk_maximum_count_shift;
    /// Largest copy-on-write chunk, as a shift.
    chunk_maximum_shift => blksnap_param_chunk_maximum_shift;
    /// Most chunks waiting to be stored.
    chunk_maximum_in_queue => blksnap_param_chunk_maximum_in_queue;
    /// Growth step of a difference storage file, in sectors.
    diff_storage_minimum => blksnap_param_diff_storage_minimum;
    /// `image_writable`: images of later takes accept writes.
    image_writable => blksnap_param_image_writable;
}
