// SPDX-License-Identifier: GPL-2.0

//! The "blksnap" filter: one tracker per filtered block device.
//!
//! The tracker owns the device's change-block tracking map ([`Cbt`]) and
//! marks it for every bio that changes data, in the submitter's context and
//! before the bio can complete; a whole disk's tracker also marks the
//! writes issued through its partitions. It answers the CBTINFO, CBTMAP and
//! CBTDIRTY sub-commands of BLKFILTER_CTL. The map is reset with a new
//! generation when the device's capacity changes; the check is made whenever
//! user space asks for the map, so a resize is never missed. A new medium
//! under the device starts a new generation at once.
//!
//! It also counts the bios it sees (per CPU, summed when read) in debugfs,
//! `/sys/kernel/debug/blksnap/<major>:<minor>/` with the files `reads`,
//! `writes` (writes, discards, write-zeroes) and `others` (flushes and the
//! rest), for tests and diagnostics, and `write_map`, the write copy of the
//! change map, which user space otherwise sees only after a snapshot take;
//! the directory exists while attached.
//!
//! Locking: writes mark the map without a lock (see [`crate::cbt_map`]);
//! everything else is done under the map's spinlock, held only for a
//! bounded piece of work; user memory is never touched under it.

use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use kernel::c_str;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{Arc, ArcBorrow};
use kernel::uaccess::{UserPtr, UserSlice};

use crate::blkfilter::{self, Filter, FilterType};
use crate::cbt;
use crate::cbt_map::Cbt;
use crate::glue::bio::OwnedBio;
use crate::glue::block::{Bio, BioOp, BlockDevice};
use crate::glue::debugfs::{Counters, Dump};
use crate::glue::errno;
use crate::glue::hooks::RegistryLock;
use crate::glue::rcu::{self, RcuBox, ReadGuard};
use crate::glue::slot::Slot;
use crate::glue::uaccess::{self, Abi};
use crate::uapi::{self, BlkfilterCtlBlksnap as Cmd};

/// Copy-on-write of a device while its snapshot is taken: where the
/// tracker sends the device's writes. The layer above (the diff area)
/// implements it.
pub(crate) trait CopyOnWrite: Send + Sync {
    /// Offers a write of the device (its sectors plus `offset` are those of
    /// the device); returns it if it may pass now. Must not sleep.
    fn on_write(self: ArcBorrow<'_, Self>, bio: OwnedBio, offset: i64) -> Option<OwnedBio>;
    /// Offers a discard of the device (`offset` as for
    /// [`CopyOnWrite::on_write`]); returns it if it is to go on to the
    /// device (and then changes the blocks it covers), or completes it
    /// itself. Must not sleep.
    fn on_discard(&self, bio: OwnedBio, offset: i64) -> Option<OwnedBio>;
    /// The device went away, or the medium under it changed. Must not
    /// sleep.
    fn device_gone(&self);
}

/// Tells, under the registry lock, whether a tracker is still its device's
/// filter.
pub(crate) type StillAttached<'a> = &'a dyn Fn(&RegistryLock) -> bool;

/// SNAPSHOTADD: the tracker, its device, the user's request.
pub(crate) type SnapshotAdd =
    fn(&Arc<TrackerCore>, &BlockDevice, UserPtr, StillAttached<'_>) -> Result<isize>;

/// The commands of the snapshot layer above that arrive through the
/// tracker's BLKFILTER_CTL (SNAPSHOTADD, SNAPSHOTINFO), given at load.
pub(crate) struct SnapshotCtl {
    /// SNAPSHOTADD on the device of a tracker; the closure tells, under the
    /// registry lock, whether the tracker is still the device's filter.
    pub(crate) add: SnapshotAdd,
    /// SNAPSHOTINFO on the device of a tracker.
    pub(crate) info: fn(&Arc<TrackerCore>, UserPtr) -> Result<isize>,
}

static SNAPSHOT_CTL: Slot<SnapshotCtl> = Slot::new();

/// Gives the tracker the snapshot commands; called once at load.
pub(crate) fn set_snapshot_ctl(ctl: &'static SnapshotCtl) {
    SNAPSHOT_CTL.set(ctl);
}

/// The filter type registered under the name "blksnap".
pub(crate) static FILTER_TYPE: FilterType = FilterType {
    name: uapi::BLKSNAP_FILTER_NAME,
    attach,
};

const READS: usize = 0;
const WRITES: usize = 1;
const OTHERS: usize = 2;

/// Most ranges one CBTDIRTY may carry (16 MiB of ranges).
const MAX_DIRTY_RANGES: u32 = 1 << 20;
/// Bytes of the map copied per lock hold in CBTMAP.
const MAP_COPY_STEP: usize = 4096;

/// The part of a tracker that a snapshot holding the device shares.
pub(crate) struct TrackerCore {
    pub(crate) cbt: Arc<Cbt>,
    /// Copy-on-write of the device while its snapshot is taken; replaced
    /// under the registry lock, read under RCU by the write path.
    pub(crate) cow: RcuBox<Arc<dyn CopyOnWrite>>,
    /// Whether the device belongs to a snapshot (detach is refused then).
    in_snapshot: AtomicBool,
    /// Whether the device went away: its writes are no longer seen.
    gone: AtomicBool,
    /// How often the data under the device changed without a write (see
    /// [`Filter::changed`]): a take compares it before and after it
    /// publishes copy-on-write.
    media: AtomicU64,
}

impl TrackerCore {
    pub(crate) fn enter_snapshot(&self) {
        self.in_snapshot.store(true, Ordering::Release);
    }

    /// Whether the device went away (see [`Filter::gone`]).
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// How often the medium under the device changed so far (see
    /// [`Filter::changed`]).
    pub(crate) fn media_changes(&self) -> u64 {
        self.media.load(Ordering::SeqCst)
    }

    pub(crate) fn leave_snapshot(&self) {
        self.in_snapshot.store(false, Ordering::Release);
    }
}

/// The per-device state of the blksnap filter.
struct Tracker {
    core: Arc<TrackerCore>,
    counters: Counters<3>,
}

impl Dump for Cbt {
    fn dump(&self, offset: usize, out: &mut [u8]) -> usize {
        self.dump_write_map(offset, out)
    }
}

fn attach(bdev: &BlockDevice, _opt: UserPtr, _optlen: u32) -> Result<Arc<dyn Filter>> {
    // Zone appends choose their sector at completion: neither the change
    // map nor copy-on-write could know which chunk they change.
    if bdev.is_zoned() {
        return Err(errno::eopnotsupp());
    }
    let (major, minor) = bdev.dev();
    let dir = CString::try_from_fmt(format_args!("{major}:{minor}"))?;
    let mut counters = Counters::new(&dir, [c_str!("reads"), c_str!("writes"), c_str!("others")])?;
    let cbt = Cbt::new(bdev.nr_sectors())?;
    counters.add_dump(c_str!("write_map"), cbt.clone())?;
    let core = Arc::new(
        TrackerCore {
            cbt,
            cow: RcuBox::new(),
            in_snapshot: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            media: AtomicU64::new(0),
        },
        GFP_KERNEL,
    )?;
    Ok(Arc::new(Tracker { core, counters }, GFP_KERNEL)?)
}

impl Filter for Tracker {
    /// Counts every bio; only writes change what the tracker keeps.
    fn wants(&self, op: BioOp) -> bool {
        let counter = match op {
            BioOp::Read => READS,
            BioOp::Write | BioOp::Discard => WRITES,
            BioOp::Other => OTHERS,
        };
        self.counters.add(counter, 1);
        matches!(op, BioOp::Write | BioOp::Discard)
    }

    fn submit_bio(&self, bio: OwnedBio, offset: i64, rcu: &ReadGuard) -> Option<OwnedBio> {
        match bio.op() {
            BioOp::Write => {
                self.mark(&bio, offset, rcu);
                if let Some(area) = self.core.cow.get(rcu) {
                    return area.as_arc_borrow().on_write(bio, offset);
                }
            }
            // A discard that a snapshot completes never reaches the device
            // and changes no block: nothing to mark.
            BioOp::Discard => {
                let bio = match self.core.cow.get(rcu) {
                    Some(area) => area.on_discard(bio, offset)?,
                    None => bio,
                };
                self.mark(&bio, offset, rcu);
                return Some(bio);
            }
            BioOp::Read | BioOp::Other => {}
        }
        Some(bio)
    }

    /// The copies another snapshot keeps on the device change it: an
    /// incremental backup of the device must copy them.
    fn storage_write(&self, bio: &Bio, offset: i64, rcu: &ReadGuard) {
        self.counters.add(WRITES, 1);
        self.mark(bio, offset, rcu);
    }

    fn gone(&self) {
        self.core.gone.store(true, Ordering::SeqCst);
        // Pairs with the fence of a take after it published the area: either
        // the area is seen here, or the take sees the device gone.
        fence(Ordering::SeqCst);
        let guard = rcu::read_lock();
        if let Some(area) = self.core.cow.get(&guard) {
            area.device_gone();
        }
    }

    fn changed(&self) {
        // Pairs with the fence of a take after it published the area, as
        // in `gone`: either the area is seen below, or the take sees the
        // count moved.
        self.core.media.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // No write marked what changed: user space must start over.
        self.core.cbt.restart();
        // To the snapshot, another medium is as gone as a removed device.
        let guard = rcu::read_lock();
        if let Some(area) = self.core.cow.get(&guard) {
            area.device_gone();
        }
    }

    fn detached(&self) {
        self.counters.give_up_name();
    }

    fn is_busy(&self) -> bool {
        self.core.in_snapshot.load(Ordering::Acquire)
    }

    fn ctl(
        &self,
        bdev: &BlockDevice,
        cmd: u32,
        opt: UserPtr,
        optlen: u32,
        abi: Abi,
    ) -> Result<isize> {
        let cmd = Cmd::from_u32(cmd).ok_or(ENOTTY)?;
        self.refresh(bdev)?;
        match cmd {
            Cmd::Cbtinfo => self.cbtinfo(opt, optlen, abi),
            Cmd::Cbtmap => self.cbtmap(opt, optlen, abi),
            Cmd::Cbtdirty => self.cbtdirty(opt, optlen, abi),
            // Snapshots come with the snapshot code.
            Cmd::Snapshotadd => {
                check_optlen::<uapi::BlksnapSnapshotadd>(optlen)?;
                // The filter was found without the registry lock: the add
                // checks under it that the tracker is still attached.
                let this = core::ptr::from_ref(self).cast::<()>();
                let ctl = SNAPSHOT_CTL.get().ok_or(ENOTTY)?;
                (ctl.add)(&self.core, bdev, opt, &|lock| {
                    blkfilter::is_attached(lock, bdev, this)
                })
            }
            Cmd::Snapshotinfo => {
                check_optlen::<uapi::BlksnapSnapshotinfo>(optlen)?;
                let ctl = SNAPSHOT_CTL.get().ok_or(ENOTTY)?;
                (ctl.info)(&self.core, opt)
            }
        }
    }
}

/// Fails with `EINVAL` when user space passed less than a whole `T`.
fn check_optlen<T>(optlen: u32) -> Result {
    check_size(optlen, core::mem::size_of::<T>())
}

/// Fails with `EINVAL` when user space passed less than `size` bytes.
fn check_size(optlen: u32, size: usize) -> Result {
    if (optlen as usize) < size {
        return Err(EINVAL);
    }
    Ok(())
}

impl Tracker {
    /// Marks the blocks a write changes in the change map.
    fn mark(&self, bio: &Bio, offset: i64, rcu: &ReadGuard) {
        let (Some((sector, count)), Some(map)) = (
            blkfilter::sectors_on(bio, offset),
            self.core.cbt.current(rcu),
        ) else {
            return;
        };
        map.mark_write(sector, count);
    }

    /// Resets the map with a new generation if the capacity changed.
    fn refresh(&self, bdev: &BlockDevice) -> Result {
        self.core.cbt.refresh(bdev.nr_sectors())
    }

    fn cbtinfo(&self, opt: UserPtr, optlen: u32, abi: Abi) -> Result<isize> {
        // The i386 layout is the x86-64 one without its last padding.
        let size = match abi {
            Abi::Native | Abi::Compat => core::mem::size_of::<uapi::BlksnapCbtinfo>(),
            Abi::I386 => uapi::BLKSNAP_CBTINFO_COMPAT_SIZE,
        };
        check_size(optlen, size)?;
        let info = self.core.cbt.info().ok_or_else(errno::enodata)?;
        let info = uapi::BlksnapCbtinfo {
            device_capacity: info.capacity << cbt::SECTOR_SHIFT,
            block_size: 1 << info.shift,
            block_count: info.block_count,
            generation_id: uapi::BlksnapUuid { b: info.generation },
            changes_number: info.changes_number,
        };
        let bytes = info.to_bytes();
        UserSlice::new(opt, size)
            .writer()
            .write_slice(&bytes[..size])?;
        Ok(0)
    }

    fn cbtmap(&self, opt: UserPtr, optlen: u32, abi: Abi) -> Result<isize> {
        check_optlen::<uapi::BlksnapCbtmap>(optlen)?;
        let arg: uapi::BlksnapCbtmap = uaccess::read(opt)?;
        let block_count = self.core.cbt.info().ok_or_else(errno::enodata)?.block_count;
        let range =
            cbt::map_slice_range(arg.offset, arg.length, block_count).ok_or_else(errno::enodata)?;
        let mut buf = KVec::from_elem(0u8, MAP_COPY_STEP.min(range.len()), GFP_KERNEL)?;
        let mut writer = UserSlice::new(abi.user_ptr(arg.buffer), range.len()).writer();
        let mut offset = range.start;
        while offset < range.end {
            let n = MAP_COPY_STEP.min(range.end - offset);
            let piece = &mut buf[..n];
            // The map may have been reset since the range was checked.
            if !self.core.cbt.read(offset, piece) {
                return Err(errno::enodata());
            }
            writer.write_slice(piece)?;
            offset += n;
        }
        Ok(0)
    }

    fn cbtdirty(&self, opt: UserPtr, optlen: u32, abi: Abi) -> Result<isize> {
        let (count, list) = match abi {
            Abi::Native | Abi::Compat => {
                check_optlen::<uapi::BlksnapCbtdirty>(optlen)?;
                let arg: uapi::BlksnapCbtdirty = uaccess::read(opt)?;
                (arg.count, arg.dirty_sectors)
            }
            Abi::I386 => {
                check_optlen::<uapi::BlksnapCbtdirtyCompat>(optlen)?;
                let arg: uapi::BlksnapCbtdirtyCompat = uaccess::read(opt)?;
                (arg.count, arg.dirty_sectors)
            }
        };
        if count > MAX_DIRTY_RANGES {
            return Err(EINVAL);
        }
        let count = count as usize;
        let len = count * core::mem::size_of::<uapi::BlksnapSectors>();
        let mut reader = UserSlice::new(abi.user_ptr(list), len).reader();
        let mut ranges = KVVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            let range: uapi::BlksnapSectors = reader.read()?;
            ranges.push(range, GFP_KERNEL)?;
        }
        // Every range is checked before any is marked: all or nothing. The
        // map's lock is held with interrupts off, so the checks run outside
        // it and the marking takes it for at most MAP_COPY_STEP blocks.
        let info = self.core.cbt.info().ok_or_else(errno::enodata)?;
        let fits = |r: &uapi::BlksnapSectors| {
            r.offset
                .checked_add(r.count)
                .is_some_and(|end| end <= info.capacity)
        };
        if !ranges.iter().all(fits) {
            return Err(errno::erange());
        }
        let step = (MAP_COPY_STEP as u64) << info.shift.saturating_sub(cbt::SECTOR_SHIFT);
        for r in ranges.iter() {
            let (mut sector, end) = (r.offset, r.offset + r.count);
            while sector < end {
                let n = step.min(end - sector);
                // The device was resized meanwhile: a new generation began.
                if !self.core.cbt.mark_dirty_at(Some(info.capacity), sector, n) {
                    return Err(errno::erange());
                }
                sector += n;
            }
        }
        Ok(0)
    }
}
