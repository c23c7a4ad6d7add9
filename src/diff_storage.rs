// SPDX-License-Identifier: GPL-2.0

//! The difference storage of a snapshot (uapi.md §6): the file or block
//! device the copies go to, where it lies, and the accounting of its space
//! (`logic/src/storage.rs`), with the growth of a file in the background.
//!
//! The copy-on-write engine asks for space ([`DiffStorage::allocate`]) and
//! writes to the storage file itself, below the page cache
//! (`src/glue/cowio.c`); a storage that can grow no more queues the
//! `no_space` event.
//!
//! A preallocated regular file on the file system of one of the snapshot's
//! own members becomes *in-volume storage* when that member is added
//! ([`DiffStorage::make_in_volume`], `src/glue/volume.c`): pinned, written
//! below its file system to the sectors it has, never grown, and read as
//! zeros through the member's image.

use kernel::new_condvar;
use kernel::new_mutex;
use kernel::new_work;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex};
use kernel::workqueue::{Work, WorkItem};

use crate::event_queue::Events;
use crate::glue::storage::StorageFile;
use crate::glue::topology;
use crate::glue::uaccess::UserPath;
use crate::glue::workqueue::{self, NoIo};
use crate::params;
use crate::placement::{Footprint, Place};
use crate::storage::StorageAccount;

/// The difference storage of one snapshot.
#[pin_data]
pub(crate) struct DiffStorage {
    file: StorageFile,
    /// The file's size when it was opened, before any growth, in sectors.
    given: u64,
    /// Where the storage's bytes end up (see [`crate::placement`]).
    footprint: KBox<Footprint>,
    /// Identifies the snapshot as the exclusive opener of a storage device;
    /// dropped after `file`.
    _holder: KBox<u8>,
    events: Arc<Events>,
    #[pin]
    account: Mutex<StorageAccount>,
    /// Signalled when a growth of the storage ends.
    #[pin]
    growth_done: CondVar,
    #[pin]
    grow_work: Work<DiffStorage>,
}

impl DiffStorage {
    /// Opens the storage named by `path`, which may grow to `limit`
    /// sectors; its `no_space` event goes to `events`.
    pub(crate) fn new(path: &UserPath, limit: u64, events: Arc<Events>) -> Result<Arc<Self>> {
        let holder = KBox::new(0u8, GFP_KERNEL)?;
        let file = StorageFile::open(path, core::ptr::from_ref::<u8>(&holder).cast())?;
        let footprint = topology::footprint(file.place())?;
        let given = file.sectors();
        let step = u64::from(params::diff_storage_minimum());
        let account = if file.is_block_device() {
            StorageAccount::for_block_device(file.sectors(), step)
        } else {
            StorageAccount::for_file(file.sectors(), limit, step)
        };
        Arc::pin_init(
            pin_init!(Self {
                file,
                given,
                footprint,
                _holder: holder,
                events,
                account <- new_mutex!(account, "blksnap:storage"),
                growth_done <- new_condvar!("blksnap:grown"),
                grow_work <- new_work!("blksnap:grow"),
            }),
            GFP_KERNEL,
        )
    }

    /// The storage file or device.
    pub(crate) fn file(&self) -> &StorageFile {
        &self.file
    }

    /// The storage's size, the part of it in use and its limit, in sectors.
    pub(crate) fn usage(&self) -> (u64, u64, u64) {
        let account = self.account.lock();
        (
            account.capacity_sectors(),
            account.used_sectors(),
            account.limit_sectors(),
        )
    }

    /// Where the storage's bytes end up.
    pub(crate) fn footprint(&self) -> &Footprint {
        &self.footprint
    }

    /// Queues the no_space event if it is due; called with the account.
    fn check_no_space(&self, account: &mut StorageAccount) {
        if let Some(requested) = account.no_space_event() {
            self.events.no_space(requested);
        }
    }

    /// Grows the storage file by one step if it is due, without holding the
    /// account during the `fallocate`. Runs as the growth work, and once at
    /// create, so the take does not wait for it and the first copies do
    /// not either.
    fn grow(&self, report: bool) {
        let _noio = NoIo::enter();
        let (old, new) = {
            let mut account = self.account.lock();
            let Some(new) = account.start_growth() else {
                return;
            };
            (account.capacity_sectors(), new)
        };
        let grown = self.file.grow(old, new);
        let mut account = self.account.lock();
        match grown {
            Ok(()) => account.grown(new),
            Err(e) => {
                pr_warn!("cannot grow the difference storage: {:?}\n", e);
                account.growth_failed();
            }
        }
        if report {
            self.check_no_space(&mut account);
        }
        drop(account);
        self.growth_done.notify_all();
    }

    /// The first growth of a storage file, at create: a `no_space` event it
    /// makes due (a limit below the growth step) is queued by the first
    /// allocation after the take, not before the snapshot is taken.
    pub(crate) fn grow_first(&self) {
        self.grow(false);
    }

    /// Hands out storage for `sectors`. When the space runs low the growth
    /// work is queued; an allocation that does not fit waits for it, and
    /// fails with ENOSPC once the storage cannot grow any more.
    pub(crate) fn allocate(self: &Arc<Self>, sectors: u64) -> Result<u64> {
        let mut account = self.account.lock();
        loop {
            let place = account.allocate(sectors);
            self.check_no_space(&mut account);
            if account.needs_growth().is_some() {
                let _ = workqueue::grow_queue().enqueue(self.clone());
            }
            match place {
                Ok(place) => return Ok(place),
                Err(_) if account.is_growing() || account.needs_growth().is_some() => {
                    self.growth_done.wait(&mut account);
                }
                Err(_) => return Err(ENOSPC),
            }
        }
    }

    /// Whether the storage is a regular file on a file system of device
    /// `dev` (or of a partition of it).
    pub(crate) fn lives_on(&self, dev: u32) -> bool {
        self.file.lives_on(dev).is_some()
    }

    /// Whether the storage's own bios go straight to device `dev` (or to
    /// a partition of it): the module's bios are never offered to a filter,
    /// so a snapshot of `dev` would not copy what they overwrite. True for
    /// a storage device that is `dev` or a partition of it, and for
    /// in-volume storage on `dev`.
    pub(crate) fn bypasses_filter_of(&self, dev: u32) -> bool {
        if self.is_in_volume() {
            return self.lives_on(dev);
        }
        self.file
            .device_devs()
            .is_some_and(|(own, whole)| own == dev || (own != whole && whole == dev))
    }

    /// Whether the storage is in-volume storage.
    pub(crate) fn is_in_volume(&self) -> bool {
        self.file.is_in_volume()
    }

    /// Makes the storage file, which lives on a member of its own snapshot,
    /// in-volume storage; nothing if it is already. EINVAL if it was
    /// smaller than `diff_storage_minimum` when the snapshot was created or
    /// is not fully allocated, EOPNOTSUPP on a file system whose extents
    /// cannot be pinned, EBUSY if it is pinned as swap. Called before the
    /// take, under the snapshot registry's lock.
    pub(crate) fn make_in_volume(&self) -> Result {
        if self.file.is_in_volume() {
            return Ok(());
        }
        let minimum = u64::from(params::diff_storage_minimum());
        if self.given < minimum {
            pr_err!(
                "in-volume storage: the file had {} sectors, fewer than diff_storage_minimum ({}); preallocate it before create\n",
                self.given,
                minimum
            );
            return Err(EINVAL);
        }
        self.file.pin()?;
        // No copy was stored yet: the take comes later. The file has the
        // size it was given (and its first growth, if any), never more.
        let mut account = self.account.lock();
        *account = StorageAccount::for_block_device(self.file.sectors(), minimum);
        Ok(())
    }

    /// The sectors of member device `devs` (its device and whole-disk
    /// numbers) that hold this in-volume storage, as sorted, merged
    /// `[start, end)` ranges; empty for any other storage or member.
    pub(crate) fn hidden_on(&self, devs: (u32, u32)) -> Result<KVec<(u64, u64)>> {
        let mut hidden = KVec::new();
        let (Some(offset), Some((_, extents))) =
            (self.file.lives_on(devs.0), self.file.volume_extents(true))
        else {
            return Ok(hidden);
        };
        // In the order of the device: merging neighbours keeps it sorted.
        for (start, count) in extents {
            let start = start.saturating_add(offset);
            let end = start.saturating_add(count);
            match hidden.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => hidden.push((start, end), GFP_KERNEL)?,
            }
        }
        Ok(hidden)
    }

    /// Refuses (EINVAL) a member whose data lies in this storage, and,
    /// for a member of this storage's own snapshot (`own`), one the
    /// storage rests on, unless it is in-volume storage on that member.
    pub(crate) fn is_on(&self, member: &Footprint, own: bool) -> Result {
        let dev = |place| match place {
            Place::Device(dev) => (dev >> 20, dev & 0xfffff),
            Place::File { .. } => (0, 0),
        };
        let (major, minor) = dev(member.place());
        if member.rests_on(&self.footprint) {
            pr_err!(
                "device {}:{} keeps its data in the difference storage of a snapshot: refused\n",
                major,
                minor
            );
            return Err(EINVAL);
        }
        let in_volume = match member.place() {
            Place::Device(dev) => self.is_in_volume() && self.lives_on(dev),
            Place::File { .. } => false,
        };
        if own && !in_volume && self.footprint.rests_on(member) {
            pr_err!(
                "the difference storage is written through device {}:{}, a member of its own snapshot: refused\n",
                major,
                minor
            );
            return Err(EINVAL);
        }
        Ok(())
    }
}

kernel::impl_has_work! {
    impl HasWork<Self> for DiffStorage { self.grow_work }
}

impl WorkItem for DiffStorage {
    type Pointer = Arc<DiffStorage>;

    fn run(this: Arc<DiffStorage>) {
        this.grow(true);
    }
}
