// SPDX-License-Identifier: GPL-2.0

//! The module parameters of uapi.md section 4.
//!
//! The parameters are defined in C (`src/glue/params.c`) because the 6.12
//! `module!` macro cannot declare them; `params.c` checks each one's range at
//! load and on every sysfs write, and `src/glue/params.rs` reads them. This
//! module is the name the rest of the module uses for them.

pub(crate) use crate::glue::params::*;
