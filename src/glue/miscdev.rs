// SPDX-License-Identifier: GPL-2.0

//! Misc character devices that answer ioctls.
//!
//! 6.12's kernel crate has no misc device abstraction, so this file provides
//! the small part the control device needs: register a dynamic-minor device
//! with a name and a mode, route `unlocked_ioctl` and `compat_ioctl` (the
//! ioctls of 32-bit tasks) to an [`IoctlHandler`], and deregister on drop.
//! The file operations carry the module as owner, so an open device node
//! pins the module.

use core::marker::{PhantomData, PhantomPinned};
use core::pin::Pin;

use kernel::error::to_result;
use kernel::ffi::{c_long, c_uint, c_ulong};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::types::Opaque;
use kernel::uaccess::UserPtr;

use super::bindings;
use super::uaccess::{self, Abi};

/// What a misc device does with the ioctls issued on it.
pub(crate) trait IoctlHandler {
    /// Handles ioctl `cmd` whose argument is the user address `arg`, from a
    /// task whose structures have the layouts of `abi`.
    fn ioctl(cmd: u32, arg: UserPtr, abi: Abi) -> Result<isize>;
}

/// The C structures of one device; they must not move while registered.
struct Device {
    fops: bindings::file_operations,
    misc: Opaque<bindings::miscdevice>,
    _pin: PhantomPinned,
}

/// A registered misc device whose ioctls go to `T`.
///
/// # Invariants
///
/// `device.misc` is registered with the misc subsystem, and its `fops`
/// points at `device.fops`, which is not changed while registered.
pub(crate) struct Registration<T: IoctlHandler> {
    device: Pin<KBox<Device>>,
    _handler: PhantomData<T>,
}

// SAFETY: the C structures are touched only by `register` and `drop`, which
// take ownership or exclusive access; the misc core serializes its own use.
unsafe impl<T: IoctlHandler> Send for Registration<T> {}
// SAFETY: a shared reference gives no access to the C structures at all.
unsafe impl<T: IoctlHandler> Sync for Registration<T> {}

impl<T: IoctlHandler> Registration<T> {
    /// Registers `/dev/<name>` with the given permission bits.
    pub(crate) fn register(
        name: &'static CStr,
        mode: u16,
        module: &'static ThisModule,
    ) -> Result<Self> {
        let device = KBox::new(
            Device {
                fops: bindings::file_operations {
                    owner: module.as_ptr().cast(),
                    unlocked_ioctl: Some(ioctl_callback::<T>),
                    compat_ioctl: Some(compat_ioctl_callback::<T>),
                    ..Default::default()
                },
                misc: Opaque::uninit(),
                _pin: PhantomPinned,
            },
            GFP_KERNEL,
        )?;
        let fops: *const bindings::file_operations = &device.fops;
        let misc = bindings::miscdevice {
            minor: bindings::MISC_DYNAMIC_MINOR as kernel::ffi::c_int,
            name: name.as_char_ptr(),
            fops,
            mode,
            ..Default::default()
        };
        // SAFETY: `device.misc` is valid for writes and nothing else refers
        // to it yet.
        unsafe { device.misc.get().write(misc) };
        let device = Pin::from(device);
        // SAFETY: `misc` is fully initialised; the box is pinned, so it and
        // the `fops` it points at stay at this address until `drop`
        // deregisters it, and `name` is static.
        to_result(unsafe { bindings::misc_register(device.misc.get()) })?;
        // INVARIANT: registered just above, with `fops` at `device.fops`.
        Ok(Self {
            device,
            _handler: PhantomData,
        })
    }
}

impl<T: IoctlHandler> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the device is registered; after this
        // call the misc core no longer refers to it, and running ioctls hold
        // a reference to the module, so none runs past module unload.
        unsafe { bindings::misc_deregister(self.device.misc.get()) };
    }
}

/// The `unlocked_ioctl` entry: converts the handler's result to a long.
extern "C" fn ioctl_callback<T: IoctlHandler>(
    _file: *mut bindings::file,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    to_long(T::ioctl(cmd, uaccess::ioctl_arg(arg), Abi::Native))
}

/// The `compat_ioctl` entry, for 32-bit tasks: their argument is a 32-bit
/// address.
extern "C" fn compat_ioctl_callback<T: IoctlHandler>(
    _file: *mut bindings::file,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    let abi = Abi::of_compat_task();
    to_long(T::ioctl(cmd, abi.user_ptr(arg as u64), abi))
}

fn to_long(result: Result<isize>) -> c_long {
    match result {
        Ok(value) => value as c_long,
        Err(err) => err.to_errno() as c_long,
    }
}
