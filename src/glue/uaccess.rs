// SPDX-License-Identifier: GPL-2.0

//! Copying uAPI structures from and to user memory.
//!
//! The marker traits that let [`kernel::uaccess`] copy the structures of
//! [`crate::uapi`] are implemented here, once, with the reasoning for each.

use core::ptr::NonNull;

use kernel::prelude::*;
// 6.14: the marker traits moved from `kernel::types` to `kernel::transmute`.
#[cfg(blksnap_kernel_transmute)]
use kernel::transmute::{AsBytes, FromBytes};
#[cfg(not(blksnap_kernel_transmute))]
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
            Abi::Native => user_addr(field as usize),
            Abi::Compat | Abi::I386 => user_addr(field as u32 as usize),
        }
    }
}

/// A user pointer to and from the address it holds.
// 6.16: `UserPtr` is a type of its own instead of a `usize`.
#[cfg(blksnap_user_ptr_type)]
mod addr {
    use kernel::uaccess::UserPtr;

    pub(super) fn from(addr: usize) -> UserPtr {
        UserPtr::from_addr(addr)
    }

    // The kernel crate's `c_ulong` is a `usize` there.
    pub(super) fn from_ulong(arg: kernel::ffi::c_ulong) -> UserPtr {
        UserPtr::from_addr(arg)
    }

    pub(super) fn of(ptr: UserPtr) -> usize {
        ptr.as_const_ptr() as usize
    }
}

/// A user pointer to and from the address it holds.
#[cfg(not(blksnap_user_ptr_type))]
mod addr {
    use kernel::uaccess::UserPtr;

    pub(super) fn from(addr: usize) -> UserPtr {
        addr
    }

    pub(super) fn from_ulong(arg: kernel::ffi::c_ulong) -> UserPtr {
        arg as UserPtr
    }

    pub(super) fn of(ptr: UserPtr) -> usize {
        ptr
    }
}

/// The user pointer to the address `addr`.
pub(crate) fn user_addr(addr: usize) -> UserPtr {
    addr::from(addr)
}

/// The user pointer an ioctl's argument holds.
pub(crate) fn ioctl_arg(arg: kernel::ffi::c_ulong) -> UserPtr {
    addr::from_ulong(arg)
}

/// The user pointer `bytes` past `ptr`, as for a field of a structure.
pub(crate) fn offset(ptr: UserPtr, bytes: usize) -> UserPtr {
    addr::from(addr::of(ptr).wrapping_add(bytes))
}

/// Whether `ptr` is the null pointer, which some commands take for "none".
pub(crate) fn is_null(ptr: UserPtr) -> bool {
    addr::of(ptr) == 0
}

/// `ptr` as the raw pointer that C functions taking `__user` pointers take.
pub(crate) fn as_user_ptr(ptr: UserPtr) -> *const kernel::ffi::c_void {
    addr::of(ptr) as *const kernel::ffi::c_void
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

/// A NUL-terminated path copied from user space.
pub(crate) struct UserPath(NonNull<kernel::ffi::c_char>);

impl UserPath {
    /// Copies at most `PATH_MAX` bytes; EINVAL if longer, EFAULT if the
    /// pointer is bad.
    pub(crate) fn read(ptr: UserPtr) -> Result<Self> {
        const PATH_MAX: isize = 4096;
        // SAFETY: strndup_user checks the user pointer itself.
        let p = unsafe { bindings::blksnap_strndup_user(as_user_ptr(ptr).cast(), PATH_MAX) };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(p.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(p.cast())
            }));
        }
        // SAFETY: not null, checked above.
        Ok(Self(unsafe { NonNull::new_unchecked(p) }))
    }

    /// The NUL-terminated copy, which lives as long as `self`.
    pub(super) fn as_char_ptr(&self) -> *const kernel::ffi::c_char {
        self.0.as_ptr()
    }
}

impl Drop for UserPath {
    fn drop(&mut self) {
        // SAFETY: allocated by strndup_user.
        unsafe { bindings::blksnap_kfree(self.0.as_ptr().cast()) };
    }
}
