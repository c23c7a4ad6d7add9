// SPDX-License-Identifier: GPL-2.0

//! The "blksnap" filter: one tracker per filtered block device.
//!
//! For now the tracker passes every bio through unchanged and counts what
//! it sees in debugfs, `/sys/kernel/debug/blksnap/<major>:<minor>/` with
//! the files `reads`, `writes` (writes, discards, write-zeroes) and
//! `others` (flushes and the rest). The directory exists while the filter
//! is attached. Change-block tracking and copy-on-write build on it.

use kernel::c_str;
use kernel::fmt;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Arc;
use kernel::uaccess::UserPtr;

use crate::blkfilter::{BioAction, Filter, FilterType};
use crate::glue::block::{Bio, BioOp, BlockDevice};
use crate::glue::debugfs::Counters;
use crate::uapi;

/// The filter type registered under the name "blksnap".
pub(crate) static FILTER_TYPE: FilterType = FilterType {
    name: uapi::BLKSNAP_FILTER_NAME,
    attach,
};

const READS: usize = 0;
const WRITES: usize = 1;
const OTHERS: usize = 2;

/// The per-device state of the blksnap filter.
struct Tracker {
    counters: Counters<3>,
}

fn attach(bdev: &BlockDevice, _opt: UserPtr, _optlen: u32) -> Result<Arc<dyn Filter>> {
    let (major, minor) = bdev.dev();
    let dir = CString::try_from_fmt(fmt!("{major}:{minor}"))?;
    let counters = Counters::new(&dir, [c_str!("reads"), c_str!("writes"), c_str!("others")])?;
    Ok(Arc::new(Tracker { counters }, GFP_KERNEL)?)
}

impl Filter for Tracker {
    fn submit_bio(&self, bio: &Bio) -> BioAction {
        let counter = match bio.op() {
            BioOp::Read => READS,
            BioOp::Write => WRITES,
            BioOp::Other => OTHERS,
        };
        self.counters.add(counter, 1);
        BioAction::Pass
    }

    fn ctl(&self, _cmd: u32, _opt: UserPtr, _optlen: u32) -> Result<isize> {
        // The change tracker's sub-commands come with change-block tracking.
        Err(ENOTTY)
    }
}
