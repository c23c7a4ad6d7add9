// SPDX-License-Identifier: GPL-2.0

//! Snapshots: their lifecycle (uapi.md §2), difference storage (§6),
//! events, and the SNAPSHOTADD / SNAPSHOTINFO sub-commands (§1).
//!
//! The list of snapshots and the members of each are changed only under the
//! registry lock, the same lock that guards the table of attached filters,
//! so attach, detach, add, take and destroy see one consistent picture. The
//! hot path never takes it: a member's copy-on-write is published to its
//! tracker with RCU ([`crate::tracker::TrackerCore`]).
//!
//! What the copy-on-write workers of all members share, the storage, the
//! error and the events, lives in [`Shared`], which event waiters hold on
//! to without the lock. The module's lock order is written down in
//! [`crate::blkfilter`].

use core::cell::UnsafeCell;
use core::sync::atomic::{fence, AtomicI32, AtomicU32, Ordering};

use kernel::new_condvar;
use kernel::new_mutex;
use kernel::new_work;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex};
use kernel::time::{msecs_to_jiffies, Ktime};
use kernel::uaccess::{UserPtr, UserSlice};
use kernel::workqueue::{Work, WorkItem};

use crate::diff_area::DiffArea;
use crate::glue::block::{BdevRef, BlockDevice};
use crate::glue::errno;
use crate::glue::hooks::{self, ModuleRef, RegistryLock};
use crate::glue::random;
use crate::glue::snapio::{self, ImageDisk, NoIo, OwnedBio, StorageFile, UserPath};
use crate::glue::uaccess::{self, Abi};
use crate::params;
use crate::placement::{Footprint, Place};
use crate::storage::StorageAccount;
use crate::tracker::TrackerCore;
use crate::uapi;

pub(crate) mod status;

/// Events kept for a snapshot nobody waits on; older ones are dropped.
const MAX_QUEUED_EVENTS: usize = 64;

/// Byte offsets in `struct blksnap_snapshot_event` (uapi.md §2).
const EVENT_CODE_OFFSET: usize = 20;
const EVENT_DATA_OFFSET: usize = 32;

enum EventData {
    Corrupted(uapi::BlksnapEventCorrupted),
    NoSpace(uapi::BlksnapEventNoSpace),
}

struct Event {
    time: i64,
    data: EventData,
}

/// The events not yet collected: a ring of the newest ones.
struct EventQueue {
    ring: [Option<Event>; MAX_QUEUED_EVENTS],
    head: usize,
    len: usize,
    /// Set at destroy: waiters leave with ESRCH.
    closed: bool,
}

impl EventQueue {
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

/// What all diff areas of one snapshot share.
#[pin_data]
pub(crate) struct Shared {
    storage: StorageFile,
    /// Where the storage's bytes end up (see [`crate::placement`]).
    footprint: KBox<Footprint>,
    /// Identifies the snapshot as the exclusive opener of a storage device;
    /// dropped after `storage`.
    _holder: KBox<u8>,
    /// 0, or the negative errno that corrupted the snapshot.
    error: AtomicI32,
    #[pin]
    account: Mutex<StorageAccount>,
    /// Signalled when a growth of the storage ends.
    #[pin]
    growth_done: CondVar,
    #[pin]
    grow_work: Work<Shared, GROW_WORK>,
    /// Queues the corrupted event of [`Shared::corrupt_atomic`].
    #[pin]
    event_work: Work<Shared, EVENT_WORK>,
    /// The device of the first error.
    corrupted_dev: AtomicU32,
    #[pin]
    queue: Mutex<EventQueue>,
    #[pin]
    event_ready: CondVar,
}

impl Shared {
    fn new(path: &UserPath, limit: u64) -> Result<Arc<Self>> {
        let holder = KBox::new(0u8, GFP_KERNEL)?;
        let storage = StorageFile::open(path, (&*holder as *const u8).cast())?;
        let footprint = snapio::footprint(storage.place())?;
        let step = u64::from(params::diff_storage_minimum());
        let account = if storage.is_block_device() {
            StorageAccount::for_block_device(storage.sectors(), step)
        } else {
            StorageAccount::for_file(storage.sectors(), limit, step)
        };
        Arc::pin_init(
            pin_init!(Self {
                storage,
                footprint,
                _holder: holder,
                error: AtomicI32::new(0),
                account <- new_mutex!(account, "blksnap:storage"),
                growth_done <- new_condvar!("blksnap:grown"),
                grow_work <- new_work!("blksnap:grow"),
                event_work <- new_work!("blksnap:event"),
                corrupted_dev: AtomicU32::new(0),
                queue <- new_mutex!(EventQueue::new(), "blksnap:events"),
                event_ready <- new_condvar!("blksnap:event"),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn is_corrupted(&self) -> bool {
        self.error.load(Ordering::Acquire) != 0
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
            self.push_event(self.corrupted_event());
        }
    }

    /// [`Shared::corrupt`] where sleeping is not allowed: the event is queued
    /// by a work item.
    pub(crate) fn corrupt_atomic(self: &Arc<Self>, dev: u32, err: Error) {
        if self.mark_corrupted(dev, err) {
            let _ = snapio::queue().enqueue::<Arc<Self>, EVENT_WORK>(self.clone());
        }
    }

    fn push_event(&self, data: EventData) {
        let event = Event {
            time: Ktime::ktime_get().to_ns(),
            data,
        };
        self.queue.lock().push(event);
        self.event_ready.notify_all();
    }

    fn close_events(&self) {
        self.queue.lock().closed = true;
        self.event_ready.notify_all();
    }

    /// Queues the no_space event if it is due; called with the account.
    fn check_no_space(&self, account: &mut StorageAccount) {
        if let Some(requested) = account.no_space_event() {
            self.push_event(EventData::NoSpace(uapi::BlksnapEventNoSpace {
                requested_nr_sect: requested,
            }));
        }
    }

    /// Grows the storage file by one step if it is due, without holding the
    /// account during the `fallocate`. Runs as the growth work, and once at
    /// the take, so the first copies need not wait for it.
    fn grow(&self) {
        let _noio = NoIo::enter();
        let (old, new) = {
            let mut account = self.account.lock();
            let Some(new) = account.start_growth() else {
                return;
            };
            (account.capacity_sectors(), new)
        };
        let grown = self.storage.grow(old, new);
        let mut account = self.account.lock();
        match grown {
            Ok(()) => account.grown(new),
            Err(e) => {
                pr_warn!("cannot grow the difference storage: {:?}\n", e);
                account.growth_failed();
            }
        }
        self.check_no_space(&mut account);
        drop(account);
        self.growth_done.notify_all();
    }

    /// Hands out storage for `sectors`. When the space runs low the growth
    /// work is queued; an allocation that does not fit waits for it, and
    /// fails with ENOSPC once the storage cannot grow any more.
    fn allocate(self: &Arc<Self>, sectors: u64) -> Result<u64> {
        let mut account = self.account.lock();
        loop {
            let place = account.allocate(sectors);
            self.check_no_space(&mut account);
            if account.needs_growth().is_some() {
                let _ = snapio::queue().enqueue::<Arc<Self>, GROW_WORK>(self.clone());
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

    /// Writes a chunk's copy to the storage; returns its first sector there.
    pub(crate) fn store(self: &Arc<Self>, data: &[u8]) -> Result<u64> {
        let place = self.allocate((data.len() >> 9) as u64)?;
        self.storage.write_at(place, data)?;
        // An earlier store may have failed on its way to the disk.
        self.storage.check_written()?;
        Ok(place)
    }

    /// Overwrites stored data at storage sector `place` (image writes).
    pub(crate) fn write_stored(&self, place: u64, data: &[u8]) -> Result {
        self.storage.write_at(place, data)
    }

    /// Reads `len` bytes of stored data at storage sector `place` into
    /// `bio`'s data from byte `offset` on.
    pub(crate) fn load_into_bio(
        &self,
        place: u64,
        bio: &mut OwnedBio,
        offset: usize,
        len: usize,
    ) -> Result {
        self.storage.read_into_bio(place, bio, offset, len)
    }

    /// Fails with the error of a store that did not reach the disk (see
    /// [`StorageFile::check_written`]).
    pub(crate) fn check_written(&self) -> Result {
        self.storage.check_written()
    }

    /// Refuses `member` (EINVAL) if its bytes lie in this storage, or, for
    /// a member of this storage's own snapshot (`own`), if what is written
    /// to the storage ends up on the member: copy-on-write would then
    /// overwrite the original with its copies, or wait for ever for writes
    /// that it holds itself.
    fn is_on(&self, member: &Footprint, own: bool) -> Result {
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
        if own && self.footprint.rests_on(member) {
            pr_err!(
                "the difference storage is written through device {}:{}, a member of its own snapshot: refused\n",
                major,
                minor
            );
            return Err(EINVAL);
        }
        Ok(())
    }

    fn wait_event(&self, timeout_ms: u32) -> Result<Event> {
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

const GROW_WORK: u64 = 0;
const EVENT_WORK: u64 = 1;

kernel::impl_has_work! {
    impl HasWork<Self, GROW_WORK> for Shared { self.grow_work }
    impl HasWork<Self, EVENT_WORK> for Shared { self.event_work }
}

impl WorkItem<GROW_WORK> for Shared {
    type Pointer = Arc<Shared>;

    fn run(this: Arc<Shared>) {
        this.grow();
    }
}

impl WorkItem<EVENT_WORK> for Shared {
    type Pointer = Arc<Shared>;

    fn run(this: Arc<Shared>) {
        this.push_event(this.corrupted_event());
    }
}

struct Member {
    bdev: BdevRef,
    /// Where the device's bytes end up (see [`crate::placement`]).
    footprint: KBox<Footprint>,
    tracker: Arc<TrackerCore>,
    area: Option<Arc<DiffArea>>,
    image: Option<ImageDisk>,
}

struct Snapshot {
    id: [u8; 16],
    shared: Arc<Shared>,
    members: KVec<Member>,
    taken: bool,
    _module: ModuleRef,
}

impl Snapshot {
    /// Stops copy-on-write and removes the images, under the registry lock.
    /// Writes held at that moment still go on to their devices.
    ///
    /// Every area is closed before any is unpublished: from the moment a
    /// write can reach the original without a copy, image reads fail.
    fn stop(&mut self, lock: &RegistryLock) {
        for area in self.members.iter().filter_map(|m| m.area.as_ref()) {
            area.close();
        }
        for m in self.members.iter_mut() {
            drop(m.tracker.cow.replace(None, lock));
            drop(m.image.take());
        }
    }

    /// Waits, after [`Snapshot::stop`] and without the registry lock, until
    /// no image read is still out on an original and the work queued for
    /// the areas has run: every held write is passed on, every image bio
    /// ended.
    fn release(&mut self) {
        for area in self.members.iter().filter_map(|m| m.area.as_ref()) {
            area.wait_remapped();
        }
        snapio::flush_queue();
        for m in self.members.iter_mut() {
            m.area = None;
        }
    }
}

/// The snapshots; used only under the registry lock, through [`Locked`].
struct Registry(UnsafeCell<KVec<KBox<Snapshot>>>);

// SAFETY: the contents are only reached through `Locked`, under the lock.
unsafe impl Sync for Registry {}

static SNAPSHOTS: Registry = Registry(UnsafeCell::new(KVec::new()));

/// The registry lock, held to use the list of snapshots.
struct Locked(RegistryLock);

impl Locked {
    fn lock() -> Self {
        Self(RegistryLock::lock())
    }

    /// The list of snapshots and the lock, borrowed apart.
    fn parts(&mut self) -> (&mut KVec<KBox<Snapshot>>, &RegistryLock) {
        // SAFETY: the registry lock is held and `self` exclusively borrowed
        // for the lifetime of the result; only one `Locked` exists at a
        // time, so no other reference to the list exists.
        (unsafe { &mut *SNAPSHOTS.0.get() }, &self.0)
    }
}

/// Removes and returns element `index`, keeping the order of the others.
fn take_out<T>(list: &mut KVec<T>, index: usize) -> Result<T> {
    // Capacity for the others only: an empty list holds no memory, so
    // nothing is left allocated when the module goes.
    let mut rest = KVec::with_capacity(list.len().saturating_sub(1), GFP_KERNEL)?;
    let mut taken = None;
    for (i, item) in core::mem::replace(list, KVec::new())
        .into_iter()
        .enumerate()
    {
        if i == index {
            taken = Some(item);
        } else {
            // Cannot fail: the capacity is reserved.
            rest.push(item, GFP_ATOMIC)?;
        }
    }
    *list = rest;
    taken.ok_or(EINVAL)
}

fn find(list: &mut KVec<KBox<Snapshot>>, id: &[u8; 16]) -> Result<usize> {
    list.iter().position(|s| &s.id == id).ok_or(ESRCH)
}

pub(crate) fn create(arg: UserPtr, abi: Abi) -> Result<isize> {
    let req: uapi::BlksnapSnapshotCreate = uaccess::read(arg)?;
    let path = UserPath::read(abi.user_ptr(req.diff_storage_filename))?;
    let shared = Shared::new(&path, req.diff_storage_limit_sect)?;
    let snapshot = KBox::new(
        Snapshot {
            id: random::uuid(),
            shared,
            members: KVec::new(),
            taken: false,
            _module: ModuleRef::get()?,
        },
        GFP_KERNEL,
    )?;
    let id = uapi::BlksnapUuid { b: snapshot.id };
    uaccess::write(
        arg + core::mem::offset_of!(uapi::BlksnapSnapshotCreate, id),
        &id,
    )?;
    let mut locked = Locked::lock();
    let (list, _) = locked.parts();
    // Storages that overlap would overwrite each other's copies; a storage
    // that holds a member's data would change it behind its snapshot.
    for s in list.iter() {
        if s.shared.footprint.overlaps(&snapshot.shared.footprint) {
            pr_err!("the difference storage overlaps the storage of another snapshot: refused\n");
            return Err(EBUSY);
        }
        for m in s.members.iter() {
            snapshot.shared.is_on(&m.footprint, false)?;
        }
    }
    list.push(snapshot, GFP_KERNEL)?;
    Ok(0)
}

pub(crate) fn destroy(arg: UserPtr) -> Result<isize> {
    let id: uapi::BlksnapUuid = uaccess::read(arg)?;
    let mut snapshot = {
        let mut locked = Locked::lock();
        let (list, lock) = locked.parts();
        let index = find(list, &id.b)?;
        let mut snapshot = take_out(list, index)?;
        snapshot.stop(lock);
        snapshot
    };
    // The waits for other work are not made under the registry lock, so
    // they hold up no other snapshot's ioctls.
    snapshot.release();
    for m in snapshot.members.iter() {
        m.tracker.leave_snapshot();
    }
    snapshot.shared.close_events();
    drop(snapshot);
    Ok(0)
}

pub(crate) fn take(arg: UserPtr) -> Result<isize> {
    let id: uapi::BlksnapUuid = uaccess::read(arg)?;
    // The first growth of the storage (a `fallocate`) is made before, and
    // without the registry lock, so that the first copies need not wait.
    let shared = {
        let mut locked = Locked::lock();
        let (list, _) = locked.parts();
        let index = find(list, &id.b)?;
        list[index].shared.clone()
    };
    shared.grow();
    drop(shared);
    let mut locked = Locked::lock();
    let (list, lock) = locked.parts();
    let index = find(list, &id.b)?;
    let snapshot = &list[index];
    if snapshot.taken {
        return Err(errno::ealready());
    }
    // A member that went away since it was added cannot be copied from.
    if snapshot.members.is_empty() || snapshot.members.iter().any(|m| m.tracker.is_gone()) {
        return Err(ENODEV);
    }
    // The image of a member's device is still there from another snapshot
    // (the device was set up again since): its name is taken.
    let has_image = |dev: u32| {
        list.iter()
            .flat_map(|s| s.members.iter())
            .any(|m| m.image.is_some() && m.bdev.devs().0 == dev)
    };
    if snapshot.members.iter().any(|m| has_image(m.bdev.devs().0)) {
        return Err(EBUSY);
    }
    let snapshot = &mut list[index];
    // Everything that allocates or may fail is done before the devices are
    // frozen; a take that fails changes nothing.
    let n = snapshot.members.len();
    let mut areas = KVec::with_capacity(n, GFP_KERNEL)?;
    let mut published = KVec::with_capacity(n, GFP_KERNEL)?;
    for m in snapshot.members.iter() {
        let area = DiffArea::new(
            m.bdev.get_ref(),
            snapshot.shared.clone(),
            m.tracker.cbt.clone(),
        )?;
        published.push(KBox::new(area.clone(), GFP_KERNEL)?, GFP_KERNEL)?;
        areas.push(area, GFP_KERNEL)?;
    }
    // Declared after `areas`, so dropped before them on an error.
    let mut images = KVec::with_capacity(n, GFP_KERNEL)?;
    for (m, area) in snapshot.members.iter().zip(areas.iter()) {
        // SAFETY: the area outlives its image: both are kept by the member
        // (or by this function), and the image is always dropped first.
        let image = unsafe {
            ImageDisk::add(
                &m.bdev,
                (&**area as *const DiffArea).cast(),
                area.is_writable(),
            )
        };
        images.push(image?, GFP_KERNEL)?;
    }
    {
        let mut frozen = KVec::with_capacity(n, GFP_KERNEL)?;
        for m in snapshot.members.iter() {
            frozen.push(m.bdev.freeze()?, GFP_KERNEL)?;
        }
        // No file system writes on any member now. From here on every
        // write is held by the area, which copies nothing before `start`.
        for (m, area) in snapshot.members.iter().zip(published) {
            drop(m.tracker.cow.replace(Some(area), lock));
        }
        // Writes that passed before must be on the devices before the
        // first copy is read and before the change maps switch.
        if let Err(e) = drain_writes(&snapshot.members) {
            for (m, area) in snapshot.members.iter().zip(areas.iter()) {
                area.close();
                drop(m.tracker.cow.replace(None, lock));
                // Closed, it passes every held write without a copy.
                area.start();
            }
            return Err(e);
        }
        // The coherent moment.
        for m in snapshot.members.iter() {
            m.tracker.cbt.lock().switch();
        }
        // Started before the thaw: a file system may write while it thaws
        // (ext4 its superblock) and wait for that write.
        for area in areas.iter() {
            area.start();
        }
    }
    snapshot.taken = true;
    for ((m, area), image) in snapshot.members.iter_mut().zip(areas).zip(images) {
        m.area = Some(area);
        m.image = Some(image);
    }
    // A member that went away meanwhile did not see its area published:
    // pairs with the fence in the tracker's `Filter::gone`.
    fence(Ordering::SeqCst);
    for m in snapshot.members.iter() {
        if let (true, Some(area)) = (m.tracker.is_gone(), &m.area) {
            area.device_gone();
        }
    }
    for m in snapshot.members.iter() {
        if let (Some(image), Some(area)) = (&m.image, &m.area) {
            image.publish(area.capacity());
        }
    }
    Ok(0)
}

/// How long a take waits for the writes in flight on one member.
const DRAIN_TIMEOUT_MS: u32 = 60_000;

/// Waits for the members' writes that passed the filter before their areas
/// were published: out of `submit_bio_noacct` first, then completed.
fn drain_writes(members: &[Member]) -> Result {
    hooks::sync_submitters();
    for m in members {
        m.bdev.drain_queue(DRAIN_TIMEOUT_MS).inspect_err(|_| {
            let (major, minor) = m.bdev.dev();
            pr_err!("take: writes in flight on {major}:{minor} did not complete\n");
        })?;
    }
    Ok(())
}

/// COLLECT: `arg` is the user's structure, which starts with the count on
/// every layout; `count` and `ids` were read from it.
pub(crate) fn collect(arg: UserPtr, count: u32, ids: UserPtr) -> Result<isize> {
    // Copied out under the lock, written to user memory (which may fault
    // and sleep for long) without it.
    let (total, found) = {
        let mut locked = Locked::lock();
        let (list, _) = locked.parts();
        let total = u32::try_from(list.len()).map_err(|_| EINVAL)?;
        let n = if ids != 0 {
            (count as usize).min(list.len())
        } else {
            0
        };
        let mut found = KVec::with_capacity(n, GFP_KERNEL)?;
        for s in list.iter().take(n) {
            found.push(uapi::BlksnapUuid { b: s.id }, GFP_KERNEL)?;
        }
        (total, found)
    };
    if ids != 0 {
        let size = core::mem::size_of::<uapi::BlksnapUuid>();
        let mut writer = UserSlice::new(ids, found.len() * size).writer();
        for id in found.iter() {
            writer.write(id)?;
        }
    }
    uaccess::write(arg, &total)?;
    if ids != 0 && total > count {
        return Err(errno::enodata());
    }
    Ok(0)
}

pub(crate) fn wait_event(arg: UserPtr) -> Result<isize> {
    let id: uapi::BlksnapUuid = uaccess::read(arg)?;
    let timeout_ms: u32 =
        uaccess::read(arg + core::mem::offset_of!(uapi::BlksnapSnapshotEvent, timeout_ms))?;
    let shared = {
        let mut locked = Locked::lock();
        let (list, _) = locked.parts();
        let index = find(list, &id.b)?;
        list[index].shared.clone()
    };
    let event = shared.wait_event(timeout_ms)?;
    let data = arg + EVENT_DATA_OFFSET;
    let code = match &event.data {
        EventData::Corrupted(d) => {
            uaccess::write(data, d)?;
            uapi::BlksnapEventCode::Corrupted
        }
        EventData::NoSpace(d) => {
            uaccess::write(data, d)?;
            uapi::BlksnapEventCode::NoSpace
        }
    };
    uaccess::write(arg + EVENT_CODE_OFFSET, &(code as u32))?;
    uaccess::write(arg + EVENT_CODE_OFFSET + 4, &event.time)?;
    Ok(0)
}

/// SNAPSHOTADD on the device of `tracker`; `attached` tells, under the
/// registry lock, whether the tracker is still the device's filter.
pub(crate) fn add(
    tracker: &Arc<TrackerCore>,
    bdev: &BlockDevice,
    opt: UserPtr,
    attached: impl FnOnce(&RegistryLock) -> bool,
) -> Result<isize> {
    let req: uapi::BlksnapSnapshotadd = uaccess::read(opt)?;
    if bdev.is_unsupported() {
        return Err(EPERM);
    }
    // Found before the lock: it reads sysfs and looks up paths.
    let footprint = snapio::footprint(bdev.place())?;
    let mut locked = Locked::lock();
    let (list, lock) = locked.parts();
    // Detached since the filter was found: a detach is refused only once
    // the tracker is in a snapshot, which it is not yet.
    if !attached(lock) {
        return Err(ENOENT);
    }
    for s in list.iter() {
        if s.members.iter().any(|m| Arc::ptr_eq(&m.tracker, tracker)) {
            return Err(if s.id == req.id.b {
                errno::ealready()
            } else {
                EBUSY
            });
        }
    }
    let index = find(list, &req.id.b)?;
    if list[index].taken {
        return Err(EBUSY);
    }
    for (i, s) in list.iter().enumerate() {
        s.shared.is_on(&footprint, i == index)?;
    }
    list[index].members.push(
        Member {
            bdev: bdev.get_ref(),
            footprint,
            tracker: tracker.clone(),
            area: None,
            image: None,
        },
        GFP_KERNEL,
    )?;
    tracker.enter_snapshot();
    Ok(0)
}

/// SNAPSHOTINFO on the device of `tracker`: the error and the image name
/// of its snapshot (zero and empty outside a snapshot or before the take).
pub(crate) fn info(tracker: &Arc<TrackerCore>, opt: UserPtr) -> Result<isize> {
    let mut out = uapi::BlksnapSnapshotinfo {
        error_code: 0,
        image: [0; uapi::IMAGE_DISK_NAME_LEN],
    };
    {
        let mut locked = Locked::lock();
        for s in locked.parts().0.iter() {
            let Some(m) = s.members.iter().find(|m| Arc::ptr_eq(&m.tracker, tracker)) else {
                continue;
            };
            out.error_code = s.shared.error.load(Ordering::Acquire);
            if let Some(image) = &m.image {
                let name = image.name().as_bytes();
                let n = name.len().min(out.image.len() - 1);
                out.image[..n].copy_from_slice(&name[..n]);
            }
        }
    }
    uaccess::write(opt, &out)?;
    Ok(0)
}
