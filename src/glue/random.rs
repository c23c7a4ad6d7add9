// SPDX-License-Identifier: GPL-2.0

//! Random identifiers.

use super::bindings;

/// Returns a new random (version 4) UUID.
pub(crate) fn uuid() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: `b` is a writable 16-byte buffer, as the function requires.
    unsafe { bindings::generate_random_uuid(b.as_mut_ptr()) };
    b
}
