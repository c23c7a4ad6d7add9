// SPDX-License-Identifier: GPL-2.0

//! blksnap: block-device snapshots and change-block tracking.
//!
//! The crate root only wires the parts together. The control device lives in
//! [`ctl`]; everything that touches C directly lives in [`glue`]; module
//! parameters are read through [`params`]; the user-space interface is
//! [`uapi`], the same file the user-space `blksnap-uapi` crate compiles.

use kernel::prelude::*;

mod ctl;
mod glue;
mod params;

#[path = "../uapi/src/abi.rs"]
pub mod uapi;

module! {
    type: Blksnap,
    name: "blksnap",
    author: "blksnap-rs developers",
    description: "Block-device snapshots and change-block tracking",
    license: "GPL",
}

struct Blksnap {
    _control: glue::miscdev::Registration<ctl::Control>,
}

impl kernel::Module for Blksnap {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let control = glue::miscdev::Registration::register(ctl::NAME, 0o600, module)?;
        pr_info!(
            "blksnap interface {}.{} loaded\n",
            uapi::BLKSNAP_VERSION_MAJOR,
            uapi::BLKSNAP_VERSION_MINOR
        );
        Ok(Self { _control: control })
    }
}
