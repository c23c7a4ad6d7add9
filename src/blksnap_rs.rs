// SPDX-License-Identifier: GPL-2.0

//! blksnap: block-device snapshots and change-block tracking.
//!
//! The crate root only wires the parts together. The layers, from the
//! bottom: everything that touches C directly lives in [`glue`]; the
//! block-device filter layer is [`blkfilter`]; the "blksnap" filter, the
//! change tracker, is [`tracker`] with its maps in [`cbt_map`]; the
//! copy-on-write of each member of a taken snapshot is [`diff_area`], its
//! storage [`diff_storage`] and its events [`event_queue`]; snapshots are
//! [`snapshot`] with their images in [`snapimage`]; the control device is
//! [`ctl`]. Each layer names only those below it; where a lower one must
//! reach a higher one, it is handed a trait object
//! ([`tracker::CopyOnWrite`]) or a table of functions at load
//! ([`tracker::SnapshotCtl`], [`blkfilter::FilterType`]), and the glue
//! calls up through traits of its own ([`glue::entry::Filters`],
//! [`glue::entry::ImageServer`]). Module parameters
//! are read through [`params`]; the user-space interface is [`uapi`], the
//! same file the user-space `blksnap-uapi` crate compiles. [`cbt`],
//! [`chunk`], [`placement`], [`sectors`] and [`storage`] are the pure logic
//! shared with the host tests.
//!
//! # Locks, outermost first
//!
//! A lock is only taken while holding none below it in this list; the
//! spinlocks are never nested.
//!
//! 1. The registry lock (`glue::hooks::RegistryLock`, a mutex): the table
//!    of filters ([`blkfilter`]) and the list of snapshots ([`snapshot`]),
//!    which `UnderRegistry` ties to it; whatever is replaced under RCU
//!    (`RcuBox`) takes it as proof of the writer's exclusion.
//! 2. The file-system freeze of a member (`bdev_freeze`, at attach and
//!    take), or the disk's `open_mutex` (`BlockDevice::lock_live`), never
//!    both: freezing under `open_mutex` is forbidden.
//! 3. The freeze of a member's request queue (the take's drain), under the
//!    file-system freeze.
//! 4. The image worker's buffers of a diff area (`read_buf` and `scratch`,
//!    mutexes: one chunk's room for reads of the original, of stored
//!    chunks and for image writes).
//! 5. A snapshot's storage account (`DiffStorage::account`, a mutex: the
//!    places handed out, the size, the growths), then its event queue
//!    (`Events::queue`, a mutex, with the condition its waiters sleep on).
//! 6. The spinlocks, taken with interrupts off (bios arrive in interrupt
//!    context): a device's change maps (`CbtMap::locked`), a chunk's state
//!    with its held bios and copy (`Chunk::inner`), a diff area's lists of
//!    bios (`pending`, `image_writes`, `reads`) and its queue of chunks to
//!    store (`store_queue`).
//!
//! The submission of a filtered bio runs inside an SRCU read section
//! (`hooks.c`) that a take waits for under the registry lock and the
//! freezes: nothing on that path may take a sleeping lock of this module.
//! The registry lock is not held across waits that depend on other
//! snapshots or on user memory: the storage's first growth, the flush of
//! the work queues and copies to user space happen without it.

// The pin-initialisers of structures with many fields expand deeply.
#![recursion_limit = "256"]

use kernel::c_str;
use kernel::prelude::*;

mod blkfilter;
mod cbt_map;
mod ctl;
mod diff_area;
mod diff_storage;
mod event_queue;
mod glue;
mod params;
mod snapimage;
mod snapshot;
mod tracker;

#[path = "../uapi/src/abi.rs"]
pub mod uapi;

#[path = "../logic/src/cbt.rs"]
pub mod cbt;

#[path = "../logic/src/chunk.rs"]
pub mod chunk;

#[path = "../logic/src/placement.rs"]
pub mod placement;

#[path = "../logic/src/sectors.rs"]
pub mod sectors;

#[path = "../logic/src/storage.rs"]
pub mod storage;

glue::module::declare_module! {
    type: Blksnap,
    name: "blksnap",
    author: "blksnap-rs developers",
    description: "Block-device snapshots and change-block tracking",
    license: "GPL",
}

/// The module's state. Fields drop in order: the control device goes
/// first, the debugfs root last.
struct Blksnap {
    _control: glue::miscdev::Registration<ctl::Control>,
    _filters: blkfilter::Layer,
    _snapshots: glue::debugfs::Counters<0>,
    _debugfs: glue::debugfs::Root,
    _queue: glue::workqueue::WorkQueue,
}

impl kernel::Module for Blksnap {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let debugfs = glue::debugfs::Root::create(c_str!("blksnap"), module);
        let snapshots = snapshot::status::create()?;
        let queue = glue::workqueue::WorkQueue::create()?;
        tracker::set_snapshot_ctl(&snapshot::CTL);
        let filters = blkfilter::Layer::start(&tracker::FILTER_TYPE)?;
        let control = glue::miscdev::Registration::register(ctl::NAME, 0o600, module)?;
        pr_info!(
            "blksnap interface {}.{} loaded\n",
            uapi::BLKSNAP_VERSION_MAJOR,
            uapi::BLKSNAP_VERSION_MINOR
        );
        Ok(Self {
            _control: control,
            _filters: filters,
            _snapshots: snapshots,
            _debugfs: debugfs,
            _queue: queue,
        })
    }
}
