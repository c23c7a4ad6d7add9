// SPDX-License-Identifier: GPL-2.0

//! The module's work queues (`workqueue.c`), and what a worker needs of its
//! task: allocations that start no I/O, short sleeps.

use kernel::error::to_result;
use kernel::prelude::*;
use kernel::workqueue::Queue;

use super::bindings;

/// The module's work queue for copy-on-write and image reads.
pub(crate) struct WorkQueue(());

impl WorkQueue {
    pub(crate) fn create() -> Result<Self> {
        // SAFETY: called once, at module load.
        to_result(unsafe { bindings::blksnap_wq_create() })?;
        Ok(Self(()))
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        // SAFETY: created in `create`; every snapshot is gone at unload
        // (each holds a module reference), so no work is queued any more.
        unsafe { bindings::blksnap_wq_destroy() };
    }
}

/// The queue created by [`WorkQueue::create`] for copy-on-write, image
/// reads, storage growth and events.
pub(crate) fn queue() -> &'static Queue {
    // SAFETY: work is only queued by snapshots, which exist between the
    // creation and the destruction of the queue.
    unsafe { Queue::from_raw(bindings::blksnap_wq().cast()) }
}

/// The queue of the stores to the difference storage, which the
/// copy-on-write worker may wait for.
pub(crate) fn store_queue() -> &'static Queue {
    // SAFETY: as for `queue`.
    unsafe { Queue::from_raw(bindings::blksnap_store_wq().cast()) }
}

/// The queue of the growths of storage files, which a store may wait for.
pub(crate) fn grow_queue() -> &'static Queue {
    // SAFETY: as for `queue`.
    unsafe { Queue::from_raw(bindings::blksnap_grow_wq().cast()) }
}

/// Waits for all queued work to finish.
pub(crate) fn flush_queue() {
    // SAFETY: the queue exists while the module is loaded.
    unsafe { bindings::blksnap_wq_flush() };
}

/// Memory allocations of this thread do not start I/O while it lives.
pub(crate) struct NoIo(u32);

impl NoIo {
    pub(crate) fn enter() -> Self {
        // SAFETY: no precondition; restored on drop, in nesting order.
        Self(unsafe { bindings::blksnap_noio_save() })
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: the flags come from the matching save.
        unsafe { bindings::blksnap_noio_restore(self.0) };
    }
}

/// Sleeps for `ms` milliseconds.
pub(crate) fn msleep(ms: u32) {
    // SAFETY: no precondition; called from process context.
    unsafe { bindings::blksnap_msleep(ms) };
}
