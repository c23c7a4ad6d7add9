// SPDX-License-Identifier: GPL-2.0

//! Snapshots: their lifecycle (uapi.md §2) and the SNAPSHOTADD /
//! SNAPSHOTINFO sub-commands (§1). The difference storage is
//! [`crate::diff_storage`], the events [`crate::event_queue`], the
//! copy-on-write of each member [`crate::diff_area`].
//!
//! The list of snapshots and the members of each are changed only under the
//! registry lock, the same lock that guards the table of attached filters,
//! so attach, detach, add, take and destroy see one consistent picture. The
//! hot path never takes it: a member's copy-on-write is published to its
//! tracker with RCU ([`crate::tracker::TrackerCore`]).
//!
//! What the copy-on-write of all members shares, the storage and the
//! events, is held by `Arc`: event waiters hold the events without the
//! lock. The module's lock order is written down in [`crate::blkfilter`].

use core::sync::atomic::{fence, Ordering};

use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::diff_area::DiffArea;
use crate::diff_storage::DiffStorage;
use crate::event_queue::{EventData, Events};
use crate::glue::block::{BdevOpen, BlockDevice};
use crate::glue::errno;
use crate::glue::hooks::{self, Drain, ModuleRef, RegistryLock, UnderRegistry};
use crate::glue::random;
use crate::glue::rcu;
use crate::glue::topology;
use crate::glue::uaccess::UserPath;
use crate::glue::uaccess::{self, Abi};
use crate::glue::workqueue;
use crate::placement::{self, Footprint};
use crate::snapimage::SnapImage;
use crate::tracker::{CopyOnWrite, SnapshotCtl, StillAttached, TrackerCore};
use crate::uapi;

pub(crate) mod status;

/// Byte offsets in `struct blksnap_snapshot_event` (uapi.md §2).
const EVENT_CODE_OFFSET: usize = 20;
const EVENT_DATA_OFFSET: usize = 32;

struct Member {
    /// Held open for the snapshot's life: the module sends the device
    /// bios (copies, image reads) and must hold what it sends them to.
    bdev: Arc<BdevOpen>,
    /// Where the device's bytes end up (see [`crate::placement`]).
    footprint: KBox<Footprint>,
    tracker: Arc<TrackerCore>,
    area: Option<Arc<DiffArea>>,
    image: Option<SnapImage>,
    /// The area of the device, made when it was added so that the take
    /// need not (until then nothing sees it).
    prepared: Option<Arc<DiffArea>>,
}

/// Makes the area of a member: what its take publishes.
fn new_area(
    bdev: &Arc<BdevOpen>,
    storage: &Arc<DiffStorage>,
    events: &Arc<Events>,
    tracker: &TrackerCore,
) -> Result<Arc<DiffArea>> {
    DiffArea::new(
        bdev.clone(),
        storage.clone(),
        events.clone(),
        tracker.cbt.clone(),
    )
}

struct Snapshot {
    id: [u8; 16],
    storage: Arc<DiffStorage>,
    events: Arc<Events>,
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
        let areas = || self.members.iter().filter_map(|m| m.area.as_ref());
        loop {
            for area in areas() {
                area.wait_idle();
            }
            // The completions that ended the last I/O have returned (they
            // run in RCU read sections) and queued what they queue; the
            // work they and the closing queued has run. A worker that was
            // starting a copy as the area closed shows here.
            rcu::synchronize();
            workqueue::flush_queue();
            if areas().all(|a| a.is_idle()) {
                break;
            }
        }
        for area in areas() {
            area.mark_storage_changed();
        }
        for m in self.members.iter_mut() {
            m.area = None;
        }
    }
}

/// The snapshots; used only under the registry lock, through [`Locked`].
static SNAPSHOTS: UnderRegistry<KVec<KBox<Snapshot>>> = UnderRegistry::new(KVec::new());

/// The registry lock, held to use the list of snapshots.
struct Locked(RegistryLock);

impl Locked {
    fn lock() -> Self {
        Self(RegistryLock::lock())
    }

    /// The list of snapshots and the lock, borrowed apart.
    fn parts(&mut self) -> (&mut KVec<KBox<Snapshot>>, &RegistryLock) {
        SNAPSHOTS.get(&mut self.0)
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

/// The snapshot at `index` of `list`, as [`find`] gave it; never panics.
fn at(list: &[KBox<Snapshot>], index: usize) -> Result<&Snapshot> {
    list.get(index).map(|s| &**s).ok_or(ESRCH)
}

/// [`at`], borrowed mutably.
fn at_mut(list: &mut [KBox<Snapshot>], index: usize) -> Result<&mut Snapshot> {
    list.get_mut(index).map(|s| &mut **s).ok_or(ESRCH)
}

pub(crate) fn create(arg: UserPtr, abi: Abi) -> Result<isize> {
    let req: uapi::BlksnapSnapshotCreate = uaccess::read(arg)?;
    let path = UserPath::read(abi.user_ptr(req.diff_storage_filename))?;
    let events = Events::new()?;
    let storage = DiffStorage::new(&path, req.diff_storage_limit_sect, events.clone())?;
    // The first growth of a storage file (a `fallocate`), here and not in
    // the take, whose members are frozen meanwhile; without the registry
    // lock.
    storage.grow_first();
    let snapshot = KBox::new(
        Snapshot {
            id: random::uuid(),
            storage,
            events,
            members: KVec::new(),
            taken: false,
            _module: ModuleRef::get()?,
        },
        GFP_KERNEL,
    )?;
    let id = uapi::BlksnapUuid { b: snapshot.id };
    uaccess::write(
        uaccess::offset(arg, core::mem::offset_of!(uapi::BlksnapSnapshotCreate, id)),
        &id,
    )?;
    let mut locked = Locked::lock();
    let (list, _) = locked.parts();
    // Storages that overlap would overwrite each other's copies; a storage
    // that holds a member's data would change it behind its snapshot.
    for s in list.iter() {
        if s.storage.footprint().overlaps(snapshot.storage.footprint()) {
            pr_err!("the difference storage overlaps the storage of another snapshot: refused\n");
            return Err(EBUSY);
        }
        for m in s.members.iter() {
            snapshot.storage.is_on(&m.footprint, false)?;
            if snapshot.storage.bypasses_filter_of(m.bdev.devs().0) {
                pr_err!("the difference storage device is (a partition of) a member of another snapshot, which would not see its writes: refused\n");
                return Err(EBUSY);
            }
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
    snapshot.events.close();
    drop(snapshot);
    Ok(0)
}

pub(crate) fn take(arg: UserPtr) -> Result<isize> {
    let id: uapi::BlksnapUuid = uaccess::read(arg)?;
    let mut locked = Locked::lock();
    let (list, lock) = locked.parts();
    let index = find(list, &id.b)?;
    let snapshot = at(list, index)?;
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
    let Snapshot {
        members,
        storage,
        events,
        ..
    } = at_mut(list, index)?;
    // Everything that allocates or may fail is done before the devices are
    // frozen; a take that fails changes nothing.
    let n = members.len();
    // A medium that changes from here on may not be the one the area was
    // made for: checked once the areas are published.
    let mut media = KVec::with_capacity(n, GFP_KERNEL)?;
    for m in members.iter() {
        media.push(m.tracker.media_changes(), GFP_KERNEL)?;
    }
    let mut areas = KVec::with_capacity(n, GFP_KERNEL)?;
    let mut published = KVec::with_capacity(n, GFP_KERNEL)?;
    for m in members.iter_mut() {
        // Made again if the device's capacity or the parameters changed
        // since it was added.
        let area = match m.prepared.take() {
            Some(area) if area.still_fits() => area,
            _ => new_area(&m.bdev, storage, events, &m.tracker)?,
        };
        let cow: Arc<dyn CopyOnWrite> = area.clone();
        published.push(KBox::new(cow, GFP_KERNEL)?, GFP_KERNEL)?;
        areas.push(area, GFP_KERNEL)?;
    }
    let snapshot = at_mut(list, index)?;
    // Declared after `areas`, so dropped before them on an error.
    let mut images = KVec::with_capacity(n, GFP_KERNEL)?;
    for (m, area) in snapshot.members.iter().zip(areas.iter()) {
        let image = SnapImage::add(&m.bdev, area);
        images.push(image?, GFP_KERNEL)?;
    }
    {
        let order = drain_order(&snapshot.members)?;
        let mut drains = KVec::with_capacity(n, GFP_KERNEL)?;
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
        if let Err(e) = drain_writes(&snapshot.members, &order, &mut drains) {
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
            m.tracker.cbt.switch();
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
    // A member that went away, or whose medium changed, meanwhile did not
    // see its area published: pairs with the fences in the tracker's
    // `Filter::gone` and `Filter::changed`.
    fence(Ordering::SeqCst);
    for (m, seen) in snapshot.members.iter().zip(media) {
        let moved = m.tracker.is_gone() || m.tracker.media_changes() != seen;
        if let (true, Some(area)) = (moved, &m.area) {
            area.device_gone();
        }
    }
    for m in snapshot.members.iter() {
        if let Some(image) = &m.image {
            image.publish();
        }
    }
    Ok(0)
}

/// Whether a member whose place is `member`, added to snapshot `index`,
/// would close a ring of snapshots each of whose storage lies on a member
/// of the next. A storage written through another snapshot's member is
/// copied on write by that snapshot, into its own storage: around a ring
/// (A's storage on B's member, B's on A's, or longer), the copies of each
/// would be copied by the next without end.
fn closes_storage_ring(list: &[KBox<Snapshot>], index: usize, member: &Footprint) -> Result<bool> {
    let mut seen = KVec::with_capacity(list.len(), GFP_KERNEL)?;
    for _ in list {
        seen.push(false, GFP_KERNEL)?;
    }
    // a -> b: b copies the writes of a's storage.
    let copies = |a: usize, b: usize| {
        a != b
            && match (list.get(a), list.get(b)) {
                (Some(x), Some(y)) => y
                    .members
                    .iter()
                    .any(|m| x.storage.footprint().rests_on(&m.footprint)),
                _ => false,
            }
    };
    // The member brings the edges y -> index, for each y whose storage
    // lies on it; a ring if index already reaches such a y.
    for (y, s) in list.iter().enumerate() {
        if y != index
            && s.storage.footprint().rests_on(member)
            && placement::reaches(copies, index, y, &mut seen)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How long a take waits for the writes in flight on one member.
const DRAIN_TIMEOUT_MS: u32 = 60_000;

/// Waits for the members' writes that passed the filter before their areas
/// were published: out of `submit_bio_noacct` first, then completed. The
/// drains of all members start at once, so that their grace periods
/// overlap, and are waited for in `order`, each ended when done: the bios
/// of a device stacked on another may have to pass the lower one's queue
/// before they complete. `drains` has room for a drain per member; all of
/// them are ended on return, whatever happened.
fn drain_writes<'a>(
    members: &'a [Member],
    order: &[usize],
    drains: &mut KVec<Option<Drain<'a>>>,
) -> Result {
    hooks::sync_submitters();
    let mut wait_all = || {
        for m in members {
            // Cannot fail: the capacity is reserved.
            drains.push(Some(m.bdev.start_drain()), GFP_ATOMIC)?;
        }
        for (&i, m) in order.iter().filter_map(|i| Some((i, members.get(*i)?))) {
            let Some(drain) = drains.get_mut(i).and_then(Option::take) else {
                continue;
            };
            drain.wait(DRAIN_TIMEOUT_MS).inspect_err(|_| {
                let (major, minor) = m.bdev.dev();
                pr_err!("take: writes in flight on {major}:{minor} did not complete\n");
            })?;
        }
        Ok(())
    };
    let result: Result = wait_all();
    // Writes that waited meanwhile must be able to go on.
    for drain in drains.iter_mut() {
        drop(drain.take());
    }
    result?;
    // The writes a bio-based member (dm, md) still holds below its queue,
    // waited for with every queue running again: the driver may have to
    // pass them to a device whose queue another member's drain froze.
    for m in members {
        m.bdev.wait_bio_writes(DRAIN_TIMEOUT_MS).inspect_err(|_| {
            let (major, minor) = m.bdev.dev();
            pr_err!("take: writes a driver holds on {major}:{minor} did not complete\n");
        })?;
    }
    // Also those a target keeps in a worker of its own before its driver
    // counts them (dm-crypt, dm-thin, dm-cache, dm-delay).
    if members.iter().any(|m| m.bdev.is_bio_based()) {
        hooks::wait_passed_writes(DRAIN_TIMEOUT_MS).inspect_err(|_| {
            pr_err!("take: writes passed to a device-mapper or md member did not complete\n");
        })?;
    }
    Ok(())
}

/// The order in which the members' drains are waited for: each device
/// before the members stacked on it.
fn drain_order(members: &[Member]) -> Result<KVec<usize>> {
    let mut order = KVec::with_capacity(members.len(), GFP_KERNEL)?;
    let mut done = KVec::with_capacity(members.len(), GFP_KERNEL)?;
    for _ in members {
        done.push(false, GFP_KERNEL)?;
    }
    while let Some(i) = placement::next_lowest(members, &done) {
        if let Some(d) = done.get_mut(i) {
            *d = true;
        }
        order.push(i, GFP_KERNEL)?;
    }
    Ok(order)
}

impl AsRef<Footprint> for Member {
    fn as_ref(&self) -> &Footprint {
        &self.footprint
    }
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
        let n = if !uaccess::is_null(ids) {
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
    if !uaccess::is_null(ids) {
        let size = core::mem::size_of::<uapi::BlksnapUuid>();
        let mut writer = UserSlice::new(ids, found.len() * size).writer();
        for id in found.iter() {
            writer.write(id)?;
        }
    }
    uaccess::write(arg, &total)?;
    if !uaccess::is_null(ids) && total > count {
        return Err(errno::enodata());
    }
    Ok(0)
}

pub(crate) fn wait_event(arg: UserPtr) -> Result<isize> {
    let id: uapi::BlksnapUuid = uaccess::read(arg)?;
    let timeout_ms: u32 = uaccess::read(uaccess::offset(
        arg,
        core::mem::offset_of!(uapi::BlksnapSnapshotEvent, timeout_ms),
    ))?;
    let events = {
        let mut locked = Locked::lock();
        let (list, _) = locked.parts();
        let index = find(list, &id.b)?;
        at(list, index)?.events.clone()
    };
    let event = events.wait(timeout_ms)?;
    let data = uaccess::offset(arg, EVENT_DATA_OFFSET);
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
    uaccess::write(uaccess::offset(arg, EVENT_CODE_OFFSET), &(code as u32))?;
    uaccess::write(uaccess::offset(arg, EVENT_CODE_OFFSET + 4), &event.time)?;
    Ok(0)
}

/// The snapshot commands that arrive through a tracker.
pub(crate) static CTL: SnapshotCtl = SnapshotCtl { add, info };

/// SNAPSHOTADD on the device of `tracker`; `attached` tells, under the
/// registry lock, whether the tracker is still the device's filter.
fn add(
    tracker: &Arc<TrackerCore>,
    bdev: &BlockDevice,
    opt: UserPtr,
    attached: StillAttached<'_>,
) -> Result<isize> {
    let req: uapi::BlksnapSnapshotadd = uaccess::read(opt)?;
    if bdev.is_unsupported() {
        return Err(EPERM);
    }
    // Found before the lock: it reads sysfs and looks up paths.
    let footprint = topology::footprint(bdev.place())?;
    // Opened before the lock (an open may wait for the device), closed
    // after it on every path: the last close of a device may call the
    // module's hooks back.
    let open = Arc::new(bdev.open()?, GFP_KERNEL)?;
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
    if at(list, index)?.taken {
        return Err(EBUSY);
    }
    let dev = bdev.devs().0;
    for (i, s) in list.iter().enumerate() {
        // The storage's bios pass below the filter: a device they go to
        // cannot be copied on write.
        if i != index && s.storage.bypasses_filter_of(dev) {
            pr_err!("the device holds the difference storage of another snapshot: refused\n");
            return Err(EBUSY);
        }
    }
    let storage = &at(list, index)?.storage;
    if storage.lives_on(dev) && !storage.is_in_volume() {
        let taken_elsewhere = list
            .iter()
            .flat_map(|s| s.members.iter())
            .any(|m| storage.lives_on(m.bdev.devs().0));
        if taken_elsewhere {
            pr_err!("the difference storage lies on a member of another snapshot: refused\n");
            return Err(EBUSY);
        }
        storage.make_in_volume()?;
    }
    for (i, s) in list.iter().enumerate() {
        s.storage.is_on(&footprint, i == index)?;
    }
    if closes_storage_ring(list, index, &footprint)? {
        pr_err!(
            "the difference storages of snapshots would lie on each other's members: refused\n"
        );
        return Err(EBUSY);
    }
    // Made now, so that the take need not; if it cannot be (no memory),
    // the take tries again and says why.
    let snapshot = at(list, index)?;
    let prepared = new_area(&open, &snapshot.storage, &snapshot.events, tracker).ok();
    at_mut(list, index)?.members.push(
        Member {
            bdev: open.clone(),
            footprint,
            tracker: tracker.clone(),
            area: None,
            image: None,
            prepared,
        },
        GFP_KERNEL,
    )?;
    tracker.enter_snapshot();
    Ok(0)
}

/// SNAPSHOTINFO on the device of `tracker`: the error and the image name
/// of its snapshot (zero and empty outside a snapshot or before the take).
fn info(tracker: &Arc<TrackerCore>, opt: UserPtr) -> Result<isize> {
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
            out.error_code = s.events.error_code();
            if let Some(image) = &m.image {
                let name = image.name();
                let n = name.len().min(out.image.len() - 1);
                out.image[..n].copy_from_slice(&name[..n]);
            }
        }
    }
    uaccess::write(opt, &out)?;
    Ok(0)
}
