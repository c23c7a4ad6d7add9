// SPDX-License-Identifier: GPL-2.0

//! Error codes the 6.12 kernel crate does not name.

use kernel::error::Error;

use super::bindings;

/// `EALREADY`: the operation was already done.
pub(crate) fn ealready() -> Error {
    Error::from_errno(-(bindings::EALREADY as i32))
}

/// `ENODATA`: no data in the requested range.
pub(crate) fn enodata() -> Error {
    Error::from_errno(-(bindings::ENODATA as i32))
}

/// `ERANGE`: a range reaches past the end of the device.
pub(crate) fn erange() -> Error {
    Error::from_errno(-(bindings::ERANGE as i32))
}

/// `EOPNOTSUPP`: the device has a feature the module cannot handle.
pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(bindings::EOPNOTSUPP as i32))
}
