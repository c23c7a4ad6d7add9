// SPDX-License-Identifier: GPL-2.0

//! The event queue of a snapshot (uapi.md §2): whether the snapshot is
//! corrupted, by which error on which device, and the events that
//! `SNAPSHOT_WAIT_EVENT` hands out (`corrupted`, `no_space`).
//!
//! The copy-on-write engine reports here; the snapshot layer holds the
//! queue and waits on it without the registry lock.

use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use kernel::new_condvar;
use kernel::new_mutex;
use kernel::new_work;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex};
use kernel::time::msecs_to_jiffies;
use kernel::workqueue::{Work, WorkItem};

use crate::glue::{time, workqueue};
use crate::uapi;

/// Events kept for a snapshot nobody waits on; older ones are dropped.
const MAX_QUEUED_EVENTS: usize = 64;

pub(crate) enum EventData {
    Corrupted(uapi::BlksnapEventCorrupted),
    NoSpace(uapi::BlksnapEventNoSpace),
}

pub(crate) struct Event {
    pub(crate) time: i64,
    pub(crate) data: EventData,
}

/// The events not yet collected: a ring of the newest ones.
struct Ring {
    ring: [Option<Event>; MAX_QUEUED_EVENTS],
    head: usize,
    len: usize,
    /// Set at destroy: waiters leave with ESRCH.
    closed: bool,
}

impl Ring {
    fn new() -> Self {
        Self {
            ring: core::array::from_fn(|_| None),
            head: 0,
            len: 0,
            closed: false,
        }
    }

    /// Adds an event; when full the oldest one is dropped.
    fn push(&mut self, event: Event) {
        if self.len == MAX_QUEUED_EVENTS {
            self.head = (self.head + 1) % MAX_QUEUED_EVENTS;
            self.len -= 1;
        }
        self.ring[(self.head + self.len) % MAX_QUEUED_EVENTS] = Some(event);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let event = self.ring[self.head].take();
        self.head = (self.head + 1) % MAX_QUEUED_EVENTS;
        self.len -= 1;
        event
    }
}

/// The state and the events of one snapshot.
#[pin_data]
pub(crate) struct Events {
    /// 0, or the negative errno that corrupted the snapshot.
    error: AtomicI32,
    /// The device of the first error.
    corrupted_dev: AtomicU32,
    #[pin]
    queue: Mutex<Ring>,
    #[pin]
    event_ready: CondVar,
    /// Queues the corrupted event of [`Events::corrupt_atomic`].
    #[pin]
    event_work: Work<Events>,
}

impl Events {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                error: AtomicI32::new(0),
                corrupted_dev: AtomicU32::new(0),
                queue <- new_mutex!(Ring::new(), "blksnap:events"),
                event_ready <- new_condvar!("blksnap:event"),
                event_work <- new_work!("blksnap:event"),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn is_corrupted(&self) -> bool {
        self.error.load(Ordering::Acquire) != 0
    }

    /// 0, or the negative errno that corrupted the snapshot.
    pub(crate) fn error_code(&self) -> i32 {
        self.error.load(Ordering::Acquire)
    }

    /// The device of the error that corrupted the snapshot (0 for none).
    pub(crate) fn error_dev(&self) -> u32 {
        self.corrupted_dev.load(Ordering::Acquire)
    }

    /// Records `err` as the snapshot's error if it is the first; returns
    /// whether it was. Never sleeps.
    fn mark_corrupted(&self, dev: u32, err: Error) -> bool {
        let first = self
            .error
            .compare_exchange(0, err.to_errno(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.corrupted_dev.store(dev, Ordering::Release);
        }
        first
    }

    /// The corrupted event for the error recorded first.
    fn corrupted_event(&self) -> EventData {
        let dev = self.corrupted_dev.load(Ordering::Acquire);
        let code = self.error.load(Ordering::Acquire);
        pr_err!(
            "snapshot corrupted: device {}:{}, error {}\n",
            dev >> 20,
            dev & 0xfffff,
            code
        );
        EventData::Corrupted(uapi::BlksnapEventCorrupted {
            dev_id_mj: dev >> 20,
            dev_id_mn: dev & 0xfffff,
            err_code: -code,
        })
    }

    /// Marks the snapshot corrupted by `err` on device `dev`; only the first
    /// error counts and queues the corrupted event.
    pub(crate) fn corrupt(&self, dev: u32, err: Error) {
        if self.mark_corrupted(dev, err) {
            self.push(self.corrupted_event());
        }
    }

    /// [`Events::corrupt`] where sleeping is not allowed: the event is
    /// queued by a work item.
    pub(crate) fn corrupt_atomic(self: &Arc<Self>, dev: u32, err: Error) {
        if self.mark_corrupted(dev, err) {
            let _ = workqueue::queue().enqueue(self.clone());
        }
    }

    /// Queues the `no_space` event: the storage was asked to grow to
    /// `requested` sectors and can grow no more.
    pub(crate) fn no_space(&self, requested: u64) {
        self.push(EventData::NoSpace(uapi::BlksnapEventNoSpace {
            requested_nr_sect: requested,
        }));
    }

    fn push(&self, data: EventData) {
        let event = Event {
            time: time::monotonic_ns(),
            data,
        };
        self.queue.lock().push(event);
        self.event_ready.notify_all();
    }

    /// The snapshot is destroyed: waiters leave with ESRCH.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.event_ready.notify_all();
    }

    /// The oldest event not yet collected, waiting up to `timeout_ms` for
    /// one: ENOENT on timeout, EINTR on a signal, ESRCH once closed.
    pub(crate) fn wait(&self, timeout_ms: u32) -> Result<Event> {
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut queue = self.queue.lock();
        loop {
            if let Some(event) = queue.pop() {
                return Ok(event);
            }
            if queue.closed {
                return Err(ESRCH);
            }
            match self
                .event_ready
                .wait_interruptible_timeout(&mut queue, left)
            {
                kernel::sync::CondVarTimeoutResult::Timeout => return Err(ENOENT),
                kernel::sync::CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
                kernel::sync::CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
            }
        }
    }
}

kernel::impl_has_work! {
    impl HasWork<Self> for Events { self.event_work }
}

impl WorkItem for Events {
    type Pointer = Arc<Events>;

    fn run(this: Arc<Events>) {
        this.push(this.corrupted_event());
    }
}
