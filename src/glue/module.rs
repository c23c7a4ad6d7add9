// SPDX-License-Identifier: GPL-2.0

//! The module's declaration to the kernel.
//!
//! [`declare_module!`] takes the keys of the kernel's `module!` and passes
//! them on in the form the kernel built against expects; the crate root
//! invokes it once.

/// Declares the kernel module: its type, name, author, description and
/// licence, as the kernel's `module!` does.
// 6.15: `module!` takes a list of `authors` (and later no `author` key).
#[cfg(blksnap_module_authors)]
macro_rules! declare_module {
    (type: $type:ident, name: $name:tt, author: $author:tt,
     description: $description:tt, license: $license:tt $(,)?) => {
        ::kernel::prelude::module! {
            type: $type,
            name: $name,
            authors: [$author],
            description: $description,
            license: $license,
        }
    };
}

/// Declares the kernel module: its type, name, author, description and
/// licence, as the kernel's `module!` does.
#[cfg(not(blksnap_module_authors))]
macro_rules! declare_module {
    (type: $type:ident, name: $name:tt, author: $author:tt,
     description: $description:tt, license: $license:tt $(,)?) => {
        ::kernel::prelude::module! {
            type: $type,
            name: $name,
            author: $author,
            description: $description,
            license: $license,
        }
    };
}
pub(crate) use declare_module;
