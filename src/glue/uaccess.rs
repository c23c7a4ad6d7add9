// SPDX-License-Identifier: GPL-2.0

//! Copying uAPI structures from and to user memory.
//!
//! The marker traits that let [`kernel::uaccess`] copy the structures of
//! [`crate::uapi`] are implemented here, once, with the reasoning for each.

use kernel::prelude::*;
use kernel::types::{AsBytes, FromBytes};
use kernel::uaccess::{UserPtr, UserSlice};

use super::bindings;
use crate::uapi;

// SAFETY: plain integers and byte arrays; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlkfilterAttach {}
// SAFETY: plain integers and byte arrays; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlkfilterAttachCompat {}
// SAFETY: plain integers and byte arrays; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlkfilterDetach {}
// SAFETY: plain integers and byte arrays; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlkfilterCtl {}
// SAFETY: plain integers; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapCbtmap {}
// SAFETY: plain integers; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapCbtdirty {}
// SAFETY: plain integers; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapCbtdirtyCompat {}
// SAFETY: plain integers; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapSectors {}
// SAFETY: a byte array; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapUuid {}
// SAFETY: a byte array; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapSnapshotadd {}
// SAFETY: plain integers and a byte array; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapSnapshotCreate {}
// SAFETY: plain integers; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapSnapshotCollect {}
// SAFETY: plain integers; every bit pattern is valid.
unsafe impl FromBytes for uapi::BlksnapSnapshotCollectCompat {}
// SAFETY: a byte array, no padding.
unsafe impl AsBytes for uapi::BlksnapUuid {}
// SAFETY: an `i32` and a byte array of 32: 36 bytes, no padding.
unsafe impl AsBytes for uapi::BlksnapSnapshotinfo {}
// SAFETY: three 4-byte integers, no padding.
unsafe impl AsBytes for uapi::BlksnapEventCorrupted {}
// SAFETY: one `u64`, no padding.
unsafe impl AsBytes for uapi::BlksnapEventNoSpace {}
// SAFETY: four `u16` with no padding, so every byte is initialised.
unsafe impl AsBytes for uapi::BlksnapVersion {}

/// The layouts of the calling task's structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abi {
    /// A 64-bit task: the layouts of [`crate::uapi`].
    Native,
    /// A 32-bit task whose structures have the 64-bit layouts (x32): only
    /// its pointers are narrower.
    Compat,
    /// A 32-bit x86 task: the `*Compat` layouts of [`crate::uapi`] where
    /// they differ from the 64-bit ones.
    I386,
}

impl Abi {
    /// The ABI of the current task, which came in through a compat ioctl.
    pub(crate) fn of_compat_task() -> Self {
        // SAFETY: looks at the current task only.
        if unsafe { bindings::blksnap_in_ia32_syscall() } {
            Abi::I386
        } else {
            Abi::Compat
        }
    }

    /// Turns a pointer field of a user structure into a user address. A
    /// 32-bit task's pointers are 32 bits wide whatever the field holds.
    pub(crate) fn user_ptr(self, field: u64) -> UserPtr {
        match self {
            Abi::Native => field as UserPtr,
            Abi::Compat | Abi::I386 => field as u32 as UserPtr,
        }
    }
}

/// Reads a `T` from the user address `ptr`.
pub(crate) fn read<T: FromBytes>(ptr: UserPtr) -> Result<T> {
    UserSlice::new(ptr, core::mem::size_of::<T>())
        .reader()
        .read()
}

/// Writes `value` to the user address `ptr`.
pub(crate) fn write<T: AsBytes>(ptr: UserPtr, value: &T) -> Result {
    UserSlice::new(ptr, core::mem::size_of::<T>())
        .writer()
        .write(value)
}
