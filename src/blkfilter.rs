// SPDX-License-Identifier: GPL-2.0

//! The block-device filter layer (blkfilter).
//!
//! A [`FilterType`] is a kind of filter known by name ("blksnap" is the only
//! one); attaching it to a block device creates a [`Filter`] object that
//! sees every bio submitted to that device, and answers BLKFILTER_CTL
//! sub-commands. This file has the shape of the blkfilter of the upstream
//! proposal, so a kernel with a native blkfilter can serve the rest of the
//! module by replacing this file and the hooks under `glue/` alone.
//!
//! The attached filters are kept in one table published with RCU: the hot
//! path (a bio entering `submit_bio_noacct`) only reads it, lock-free; an
//! empty table costs one pointer load. Attaching, detaching and reaping
//! replace the table as a whole under the registry lock.
//!
//! Every bio costs one pass over the table, in the hook ([`bio_wanted`]):
//! the filters of its device see what kind of bio it is there
//! ([`Filter::wants`]), and only a bio that one of them wants leaves the
//! hook to be offered to them ([`filter_bio`], which looks the filters up
//! again). A filter that needs only writes lets reads go on at the cost of
//! that one pass, and nothing on the way writes shared memory: no counter,
//! no lock, no reference count.
//!
//! A filter attached to a whole disk sees the bios of the disk's partitions
//! too, after the partition's own filter if it has one: every write to the
//! disk's sectors, whichever node it was issued through. A filter attached
//! to a partition sees the bios of the whole disk that land in it, after
//! the disk's own filter, with sectors that may start before the partition
//! and end after it (a bio over several partitions goes to each of their
//! filters, in the order of the partitions on the disk). A filter that kept
//! a bio hands it back to [`pass_on`], which offers it to the next filter
//! in that order before sending it to the device.
//!
//! A filter's `submit_bio` runs in the submitter's context inside an RCU
//! read-side critical section: it must not sleep. Once a filter has been
//! removed from the table and a grace period has passed, no bio is inside
//! it; it is dropped when the last `BLKFILTER_CTL` using it returns.
//!
//! Device removal is reported by hooks in atomic context: the filter is
//! marked dead at once (so it never applies to a device that reuses the
//! structure, as loop devices do) and removed from the table by a worker.
//! A change of the medium under a device (another backing file, another
//! capacity) is reported the same way; the filter is told and stays.
//!
//! The table is guarded by the registry lock, the module's outermost lock;
//! the whole order is written once, at the crate root.

use core::sync::atomic::{AtomicBool, Ordering};

use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::uaccess::UserPtr;

use crate::glue::bio::OwnedBio;
use crate::glue::block::{BdevId, BdevRef, Bio, BioOp, BlockDevice, DiskId};
use crate::glue::entry::{Above, Filters};
use crate::glue::errno;
use crate::glue::hooks::{self, BioOrigin, Hooks, ModuleRef, RegistryLock};
use crate::glue::rcu::{self, RcuBox, ReadGuard};
use crate::glue::slot::Slot;
use crate::glue::uaccess::{self, Abi};
use crate::sectors;
use crate::uapi;

/// A filter attached to one block device.
pub(crate) trait Filter: Send + Sync {
    /// Sees the kind of each bio submitted to the device, or to one of its
    /// partitions if it is a whole disk, and tells whether it must have the
    /// bio in [`Filter::submit_bio`]. Called from the hook of every bio,
    /// with preemption disabled: must not sleep and should cost little.
    fn wants(&self, _op: BioOp) -> bool {
        true
    }

    /// Has a bio submitted to the device, to one of its partitions if it
    /// is a whole disk, or to its whole disk at its sectors if it is a
    /// partition, that this filter or another one of the device wanted:
    /// the bio's sectors plus `offset` are sectors of the filtered device
    /// (see [`sectors_on`]; a bio of the whole disk may start before
    /// a partition and end after it). Runs inside the RCU read section
    /// `rcu`: must not sleep. Returns the bio to let it go on to the
    /// device; a filter that keeps it completes it or gives it to
    /// [`pass_on`] itself.
    fn submit_bio(&self, bio: OwnedBio, offset: i64, rcu: &ReadGuard) -> Option<OwnedBio>;

    /// Sees a write that this module sends to the device, or to one of its
    /// partitions if it is a whole disk, as a difference storage: it changes
    /// the device, so a filter may record it, but it must go on untouched
    /// (a storage is never a member of a snapshot, [`crate::placement`]).
    /// `offset` is as for [`Filter::submit_bio`]. Called from the hook,
    /// with preemption disabled, inside `rcu`: must not sleep.
    fn storage_write(&self, _bio: &Bio, _offset: i64, _rcu: &ReadGuard) {}

    /// The device is going away: from now on the filter sees none of its
    /// bios. Must not sleep.
    fn gone(&self) {}

    /// The data of the device changed without a write: another medium,
    /// another backing file, another capacity. The filter stays attached.
    /// Must not sleep.
    fn changed(&self) {}

    /// The filter left the table (detached, or its device went away): no
    /// bio or ioctl of the device reaches it any more, though its last
    /// users may still hold it. It gives up the device's name (its debugfs
    /// directory) now, so that the next filter of the device can use it.
    /// Called under the registry lock: must not wait for user space.
    fn detached(&self) {}

    /// Whether the filter must stay: detach then fails with EBUSY.
    fn is_busy(&self) -> bool {
        false
    }

    /// Handles the BLKFILTER_CTL sub-command `cmd` issued on `bdev` by a
    /// task whose structures have the layouts of `abi`.
    fn ctl(
        &self,
        bdev: &BlockDevice,
        cmd: u32,
        opt: UserPtr,
        optlen: u32,
        abi: Abi,
    ) -> Result<isize>;
}

/// A kind of filter, found by name.
pub(crate) struct FilterType {
    /// The name user space attaches it by.
    pub(crate) name: &'static [u8],
    /// Creates the filter for a block device, with the user's options.
    pub(crate) attach: fn(&BlockDevice, UserPtr, u32) -> Result<Arc<dyn Filter>>,
}

/// The filter type this module provides, given by the layer above at
/// load ([`Layer::start`]).
static FILTER_TYPE: Slot<FilterType> = Slot::new();

/// Most bytes of options a filter may be given at attach.
const MAX_ATTACH_OPTLEN: u32 = 4096;

/// A filter attached to a block device, as the table holds it.
struct Attached {
    filter: Arc<dyn Filter>,
    kind: &'static FilterType,
    bdev: BdevRef,
    /// Set when the device went away; the entry no longer applies.
    dead: AtomicBool,
    /// Dropped last: the module stays loaded while a filter is attached.
    _module: ModuleRef,
}

impl Attached {
    fn applies_to(&self, bdev: BdevId) -> bool {
        self.bdev.id() == bdev && !self.dead.load(Ordering::Acquire)
    }

    /// Whether `bio`, a bio of a whole disk, lands in this filter's
    /// device, a partition of that disk. On the path of every bio: the
    /// disks are compared first.
    fn lands_in(&self, bio: &Bio) -> bool {
        self.bdev.disk() == bio.disk()
            && self.bdev.is_partition()
            && !self.dead.load(Ordering::Acquire)
            && sectors_on(bio, bio.offset_in(&self.bdev))
                .is_some_and(|(first, _)| first < self.bdev.nr_sectors())
    }
}

type Table = KVec<Arc<Attached>>;

static TABLE: RcuBox<Table> = RcuBox::new();

fn lookup<'a>(guard: &'a ReadGuard, bdev: BdevId) -> Option<&'a Arc<Attached>> {
    TABLE.get(guard)?.iter().find(|a| a.applies_to(bdev))
}

/// Shows a bio of `bdev` (or, `whole` given, of a partition of that
/// disk) to the filters it goes to: its device's and its whole disk's.
/// Returns true if one of them wants it ([`Filter::wants`]). `origin`,
/// asked only when a filter applies, tells this module's own bios: those
/// are never wanted, and its writes to a difference storage are shown to
/// the filters as such ([`Filter::storage_write`]). One pass over the
/// table, lock-free; never sleeps.
fn bio_wanted(
    bio: &Bio,
    bdev: BdevId,
    whole: Option<BdevId>,
    origin: impl FnOnce() -> BioOrigin,
) -> bool {
    let guard = rcu::read_lock();
    let Some(table) = TABLE.get(&guard) else {
        return false;
    };
    // A bio of a whole disk also goes to the filters of the partitions it
    // lands in: their devices change through the disk as well.
    let mut filters = table
        .iter()
        .filter(|a| match whole {
            Some(w) => a.applies_to(bdev) || a.applies_to(w),
            None => a.applies_to(bdev) || a.lands_in(bio),
        })
        .peekable();
    if filters.peek().is_none() {
        return false;
    }
    match origin() {
        BioOrigin::Foreign => {
            let op = bio.op();
            // Every filter of the bio sees it, even once one wanted it.
            filters.fold(false, |wanted, a| a.filter.wants(op) | wanted)
        }
        BioOrigin::Own => false,
        BioOrigin::Store => {
            for a in filters {
                a.filter.storage_write(bio, bio.offset_in(&a.bdev), &guard);
            }
            false
        }
    }
}

/// The sectors `bio` covers of a device on which its own sectors lie at
/// `offset` from theirs (see [`Bio::offset_in`]), as (first, count): cut
/// where the bio starts before that device; `None` if none lies there.
pub(crate) fn sectors_on(bio: &Bio, offset: i64) -> Option<(u64, u64)> {
    let (sector, count) = bio.sectors();
    sectors::shifted(sector, count, offset)
}

/// Offers `bio` to the filter of its device, then to that of its whole
/// disk or, for a bio of a whole disk, to those of the partitions it lands
/// in; returns it if it goes on.
fn filter_bio(bio: OwnedBio) -> Option<OwnedBio> {
    let guard = rcu::read_lock();
    let bio = match lookup(&guard, bio.bdev_id()) {
        Some(attached) => attached.filter.submit_bio(bio, 0, &guard)?,
        None => bio,
    };
    let bio = offer_to_whole(&guard, bio)?;
    offer_to_parts(&guard, bio, None)
}

/// Offers a bio of a partition to the filter of the whole disk, if any.
fn offer_to_whole(guard: &ReadGuard, bio: OwnedBio) -> Option<OwnedBio> {
    let Some(attached) = bio.whole_id().and_then(|w| lookup(guard, w)) else {
        return Some(bio);
    };
    let offset = bio.offset_in(&attached.bdev);
    attached.filter.submit_bio(bio, offset, guard)
}

/// Where a partition comes in the order its filters see a bio of the whole
/// disk: by its start, then (for partitions that start alike, which a
/// partition table may hold) by identity.
fn part_order(bdev: &BlockDevice) -> (u64, BdevId) {
    (bdev.start_sect(), bdev.id())
}

/// Whether `attached` comes after `after` in [`part_order`] (any does after
/// none).
fn after_key(attached: &Attached, after: Option<(u64, BdevId)>) -> bool {
    match after {
        Some(key) => part_order(&attached.bdev) > key,
        None => true,
    }
}

/// Offers a bio of a whole disk to the filters of the partitions it lands
/// in that come after `after` (none: from the first), in the order of
/// [`part_order`]; returns it if it goes on. A bio of a partition is
/// returned as it is.
fn offer_to_parts(
    guard: &ReadGuard,
    mut bio: OwnedBio,
    mut after: Option<(u64, BdevId)>,
) -> Option<OwnedBio> {
    if bio.whole_id().is_some() {
        return Some(bio);
    }
    let Some(table) = TABLE.get(guard) else {
        return Some(bio);
    };
    loop {
        let Some(attached) = table
            .iter()
            .filter(|a| after_key(a, after) && a.lands_in(&bio))
            .min_by_key(|a| part_order(&a.bdev))
        else {
            return Some(bio);
        };
        after = Some(part_order(&attached.bdev));
        let offset = bio.offset_in(&attached.bdev);
        bio = attached.filter.submit_bio(bio, offset, guard)?;
    }
}

/// Sends on a bio that the filter of `by` kept: the filters after it see
/// the bio first (the whole disk's filter, after a partition's; the
/// partitions' filters, after the whole disk's or an earlier partition's).
/// Must not sleep.
pub(crate) fn pass_on(bio: OwnedBio, by: &BlockDevice) {
    let bio = {
        let guard = rcu::read_lock();
        if bio.bdev_id() == by.id() {
            offer_to_whole(&guard, bio).and_then(|bio| offer_to_parts(&guard, bio, None))
        } else if by.is_partition() && bio.whole_id().is_none() {
            // A bio of the whole disk, kept by the filter of a partition.
            offer_to_parts(&guard, bio, Some(part_order(by)))
        } else {
            Some(bio)
        }
    };
    if let Some(bio) = bio {
        bio.pass();
    }
}

/// Handles a BLKFILTER_* ioctl issued on `bdev` by a task of `abi`.
fn ioctl(bdev: &BlockDevice, cmd: u32, arg: UserPtr, abi: Abi) -> Result<isize> {
    if !hooks::capable_sys_admin() {
        return Err(EACCES);
    }
    match cmd {
        uapi::BLKFILTER_ATTACH => attach(bdev, uaccess::read(arg)?, abi),
        uapi::BLKFILTER_ATTACH_COMPAT if abi == Abi::I386 => {
            let arg: uapi::BlkfilterAttachCompat = uaccess::read(arg)?;
            let arg = uapi::BlkfilterAttach {
                name: arg.name,
                opt: arg.opt,
                optlen: arg.optlen,
            };
            attach(bdev, arg, abi)
        }
        uapi::BLKFILTER_DETACH => detach(bdev, uaccess::read(arg)?),
        uapi::BLKFILTER_CTL => ctl(bdev, uaccess::read(arg)?, abi),
        _ => Err(ENOTTY),
    }
}

/// Returns the name in a NUL-padded name field; `EINVAL` without a NUL.
fn parse_name(field: &[u8; uapi::BLKFILTER_NAME_LENGTH]) -> Result<&[u8]> {
    let len = field.iter().position(|&b| b == 0).ok_or(EINVAL)?;
    Ok(&field[..len])
}

/// The live entry for `bdev`, to a writer.
fn find_locked<'a>(lock: &'a RegistryLock, bdev: BdevId) -> Option<&'a Arc<Attached>> {
    TABLE.get_locked(lock)?.iter().find(|a| a.applies_to(bdev))
}

/// Whether `filter` (the address of a filter object) is the live filter of
/// `bdev`, to a writer: a filter found without the lock may have been
/// detached since.
pub(crate) fn is_attached(lock: &RegistryLock, bdev: &BlockDevice, filter: *const ()) -> bool {
    find_locked(lock, bdev.id()).is_some_and(|a| {
        core::ptr::eq(
            core::ptr::from_ref::<dyn Filter>(&*a.filter).cast::<()>(),
            filter,
        )
    })
}

/// Publishes a table made of the current entries that `keep` accepts, plus
/// `add`; returns the old table, which no reader sees any more.
fn republish(
    lock: &RegistryLock,
    keep: impl Fn(&Arc<Attached>) -> bool,
    add: Option<Arc<Attached>>,
) -> Result<Option<KBox<Table>>> {
    let mut table = Table::new();
    for a in TABLE.get_locked(lock).into_iter().flatten() {
        if keep(a) {
            table.push(a.clone(), GFP_KERNEL)?;
        }
    }
    if let Some(a) = add {
        table.push(a, GFP_KERNEL)?;
    }
    let table = if table.is_empty() {
        None
    } else {
        Some(KBox::new(table, GFP_KERNEL)?)
    };
    Ok(TABLE.replace(table, lock))
}

/// Removes the entries of devices that went away.
fn reap_locked(lock: &RegistryLock) -> Result {
    let any_dead = TABLE
        .get_locked(lock)
        .is_some_and(|t| t.iter().any(|a| a.dead.load(Ordering::Acquire)));
    if any_dead {
        let old = republish(lock, |a| !a.dead.load(Ordering::Acquire), None)?;
        for a in old.iter().flat_map(|t| t.iter()) {
            if a.dead.load(Ordering::Acquire) {
                a.filter.detached();
            }
        }
    }
    Ok(())
}

fn attach(bdev: &BlockDevice, arg: uapi::BlkfilterAttach, abi: Abi) -> Result<isize> {
    let name = parse_name(&arg.name)?;
    let kind = FILTER_TYPE.get().filter(|t| t.name == name).ok_or(ENOENT)?;
    if arg.optlen > MAX_ATTACH_OPTLEN {
        return Err(EINVAL);
    }
    let lock = RegistryLock::lock();
    reap_locked(&lock)?;
    {
        let _disk = bdev.lock_live()?;
        if let Some(present) = find_locked(&lock, bdev.id()) {
            return Err(if core::ptr::eq(present.kind, kind) {
                errno::ealready()
            } else {
                EBUSY
            });
        }
    }
    let attached = Arc::new(
        Attached {
            filter: (kind.attach)(bdev, abi.user_ptr(arg.opt), arg.optlen)?,
            kind,
            bdev: bdev.get_ref(),
            dead: AtomicBool::new(false),
            _module: ModuleRef::get()?,
        },
        GFP_KERNEL,
    )?;
    // Writes the file system has in flight complete before the filter is
    // published, and none starts until it is: nothing slips past untracked.
    // The freeze must not run under `open_mutex` (it takes the superblock).
    let frozen = bdev.freeze()?;
    republish(&lock, |_| true, Some(attached.clone()))?;
    drop(frozen);
    // The device may have gone between the check above and the publication;
    // the removal hooks saw the table either before (then this check sees
    // the device gone) or after (then they marked the entry dead).
    if !bdev.is_live() || bdev.nr_sectors() == 0 {
        attached.dead.store(true, Ordering::Release);
        reap_locked(&lock)?;
        return Err(ENODEV);
    }
    Ok(0)
}

fn detach(bdev: &BlockDevice, arg: uapi::BlkfilterDetach) -> Result<isize> {
    let name = parse_name(&arg.name)?;
    let lock = RegistryLock::lock();
    drop(bdev.lock_live()?);
    let present = find_locked(&lock, bdev.id()).ok_or(ENOENT)?;
    if present.kind.name != name {
        return Err(EINVAL);
    }
    if present.filter.is_busy() {
        return Err(EBUSY);
    }
    let present = present.clone();
    let old = republish(&lock, |a| !Arc::ptr_eq(a, &present), None)?;
    present.filter.detached();
    drop(lock);
    // The filter and its references go when the last user lets go.
    drop(old);
    Ok(0)
}

fn ctl(bdev: &BlockDevice, arg: uapi::BlkfilterCtl, abi: Abi) -> Result<isize> {
    let name = parse_name(&arg.name)?;
    let present = {
        let guard = rcu::read_lock();
        lookup(&guard, bdev.id()).cloned()
    }
    .ok_or(ENOENT)?;
    if present.kind.name != name {
        return Err(EINVAL);
    }
    present
        .filter
        .ctl(bdev, arg.cmd, abi.user_ptr(arg.opt), arg.optlen, abi)
}

/// Marks the filters of a disk that is going away (or of one partition,
/// `part`) dead, and schedules their removal. Never sleeps.
fn disk_gone(disk: DiskId, part: Option<BdevId>) {
    mark_gone(|a| a.bdev.disk() == disk && (part.is_none() || part == Some(a.bdev.id())));
}

/// Tells the filters of a disk whose medium changed (or of one of its
/// devices, `part`) that their data changed. Never sleeps.
fn disk_changed(disk: DiskId, part: Option<BdevId>) {
    let guard = rcu::read_lock();
    for a in TABLE.get(&guard).into_iter().flatten() {
        let hit = a.bdev.disk() == disk && (part.is_none() || part == Some(a.bdev.id()));
        if hit && !a.dead.load(Ordering::Acquire) {
            a.filter.changed();
        }
    }
}

/// Marks the filters of devices that are going away dead, tells each
/// filter, and schedules the reap. Must not sleep.
fn mark_gone(gone: impl Fn(&Attached) -> bool) {
    let guard = rcu::read_lock();
    let mut any = false;
    for a in TABLE.get(&guard).into_iter().flatten() {
        if gone(a) && !a.dead.swap(true, Ordering::AcqRel) {
            a.filter.gone();
            any = true;
        }
    }
    if any {
        hooks::schedule_reap();
    }
}

/// Removes the filters marked dead (the deferred half of [`disk_gone`]).
fn reap() {
    let lock = RegistryLock::lock();
    if reap_locked(&lock).is_err() {
        // Out of memory: the dead entries stay, inert, until the next try.
        hooks::schedule_reap();
    }
}

/// The running filter layer: the hooks are installed while it exists.
pub(crate) struct Layer {
    hooks: Option<Hooks>,
}

impl Layer {
    /// Installs the hooks; from now on bios and filter ioctls arrive here,
    /// and BLKFILTER_ATTACH attaches filters of type `kind`.
    pub(crate) fn start(kind: &'static FilterType) -> Result<Self> {
        FILTER_TYPE.set(kind);
        Ok(Self {
            hooks: Some(Hooks::install()?),
        })
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        // No filter is attached (each holds a module reference), but the
        // table may remain. Remove the hooks first, so nothing reads it.
        drop(self.hooks.take());
        let lock = RegistryLock::lock();
        drop(TABLE.replace(None, &lock));
    }
}

/// The hooks' entry points call the functions above.
impl Filters for Above {
    fn bio_wanted(
        bio: &Bio,
        bdev: BdevId,
        whole: Option<BdevId>,
        origin: impl FnOnce() -> BioOrigin,
    ) -> bool {
        bio_wanted(bio, bdev, whole, origin)
    }

    fn filter_bio(bio: OwnedBio) -> Option<OwnedBio> {
        filter_bio(bio)
    }

    fn ioctl(bdev: &BlockDevice, cmd: u32, arg: UserPtr, abi: Abi) -> Result<isize> {
        ioctl(bdev, cmd, arg, abi)
    }

    fn disk_gone(disk: DiskId, part: Option<BdevId>) {
        disk_gone(disk, part);
    }

    fn disk_changed(disk: DiskId, part: Option<BdevId>) {
        disk_changed(disk, part);
    }

    fn reap() {
        reap();
    }
}
