// SPDX-License-Identifier: GPL-2.0

//! The change-block tracking map of one device (uapi.md §4–§5).
//!
//! Two byte maps, one byte per tracking block: the write copy, which writes
//! mark with the active snapshot number, and the read copy, which CBTMAP
//! returns and which changes only when a snapshot is taken, at CBTDIRTY, or
//! when the map is reset. The arithmetic and the state machine are the pure
//! code of `logic/src/cbt.rs`, tested on the host; this file owns the memory,
//! the locking and the generation identifier.
//!
//! The maps are allocated with kvmalloc, so a large map does not need
//! physically contiguous memory: at the default parameters a map is at most
//! 2 MiB per copy for a device of up to 128 TiB, and 1 GiB at most with
//! any parameters (larger needs fail with ENOMEM).
//!
//! # Marking without a lock
//!
//! A device's writes mark the write copy on every CPU at once, so marking
//! takes no lock and shares no counter: a write reads the active number and
//! raises the bytes of its blocks to it with atomic byte operations
//! ([`cbt::raise_blocks`]), inside the RCU read section of the filter.
//! Everything else (the switch at a take, CBTDIRTY, a restart, CBTINFO,
//! CBTMAP) is done under the map's spinlock, and a new capacity replaces the
//! whole map ([`Cbt::refresh`]) under the registry lock, the old one being
//! freed after a grace period, when no mark can still reach it.
//!
//! Marks never undo each other: a byte only goes up (an atomic maximum), so
//! writes marking the same block at once leave the larger number.
//!
//! A mark can overlap the switch of a take: it read the active number
//! before the switch and raises the byte after it, with the old number, so
//! the write counts for the snapshot just taken, and the read copy may not
//! show it. Such a write is always marked again, after the switch. The take
//! publishes the snapshot's copy-on-write to the tracker, then waits for the
//! bios already in the filter (an SRCU grace period, `sync_submitters`) and
//! for the device's queue, and only then switches. A write whose mark can
//! overlap the switch therefore entered the filter after that grace period
//! began, and so finds the copy-on-write published; the copy-on-write holds
//! every write until the take is complete (it passes nothing before its
//! `start`, which follows the switch) and marks it again, with the new
//! number, when it passes it on (`DiffArea::pass_write`). The first mark is
//! made before the write is handed over, so the second comes after it. The
//! only writes a copy-on-write lets pass without holding them before its
//! start are those of a corrupted snapshot, on which no backup is based;
//! their old number still shows them changed since every earlier snapshot.
//!
//! At a wrap of the numbers or a restart both copies are zeroed under the
//! lock; a mark overlapping that may write its old, larger number after the
//! zeroing. The block then reads as changed in the new generation until the
//! numbers pass that value: a backup copies a little more, and never misses
//! a change.

use core::sync::atomic::{AtomicU8, Ordering};

use kernel::prelude::*;
use kernel::sync::Arc;

use crate::cbt::{self, CbtState, SwitchOutcome, TrackingParams};
use crate::glue::hooks::RegistryLock;
use crate::glue::irqlock::{new_irq_spinlock, IrqSpinLock};
use crate::glue::random;
use crate::glue::rcu::{self, RcuBox};
use crate::params;

/// The largest copy of a map, in bytes (one byte per block): 1 GiB, the
/// most `tracking_block_maximum_count` allows. A device that needs more
/// blocks (its block size held down by `tracking_block_maximum_shift`) gets
/// `ENOMEM`, as does one whose two copies would take more than half of the
/// memory available.
const MAX_MAP_BYTES: u64 = 1 << 30;

/// The change-block tracking of one device: its current map, replaced
/// whole when the device's capacity changes.
pub(crate) struct Cbt {
    map: RcuBox<Arc<CbtMap>>,
}

/// The map of one capacity.
#[pin_data]
pub(crate) struct CbtMap {
    capacity: u64,
    shift: u32,
    block_count: u32,
    /// The write copy: marked without a lock, changed otherwise only under
    /// `locked`.
    write_map: KVVec<AtomicU8>,
    /// The number writes mark with: the active number of `locked.state`,
    /// copied after each change of it.
    active: AtomicU8,
    #[pin]
    locked: IrqSpinLock<Locked>,
}

/// What changes only under the map's lock.
struct Locked {
    state: CbtState,
    read_map: KVVec<u8>,
    generation: [u8; 16],
}

/// What CBTINFO reports.
pub(crate) struct CbtInfo {
    /// Capacity in sectors the map was built for.
    pub(crate) capacity: u64,
    /// Tracking block size as a shift.
    pub(crate) shift: u32,
    /// Number of tracking blocks.
    pub(crate) block_count: u32,
    /// Generation identifier.
    pub(crate) generation: [u8; 16],
    /// Snapshot number of the read copy.
    pub(crate) changes_number: u8,
}

impl CbtMap {
    /// Returns a fresh map for a device of `capacity` sectors, with the
    /// block size the module parameters select and a new generation.
    fn new(capacity: u64) -> Result<Arc<Self>> {
        let tracking = TrackingParams {
            minimum_shift: params::tracking_block_minimum_shift(),
            maximum_count: params::tracking_block_maximum_count(),
            maximum_shift: params::tracking_block_maximum_shift(),
        };
        let shift = cbt::block_shift(capacity, &tracking);
        let block_count = cbt::block_count(capacity, shift);
        // `block_count` saturates at `u32::MAX`, above the bound, so a map
        // that would not cover the whole device is refused too.
        let bytes = u64::from(block_count);
        if bytes > MAX_MAP_BYTES || !params::memory_allows(bytes.saturating_mul(2)) {
            pr_warn!(
                "tracking {} sectors in blocks of 2^{} bytes needs 2 maps of {} MiB: refused\n",
                capacity,
                shift,
                bytes >> 20
            );
            return Err(ENOMEM);
        }
        let len = usize::try_from(block_count).map_err(|_| ENOMEM)?;
        // A failure is the caller's ENOMEM, not a warning in the kernel log.
        let gfp = GFP_KERNEL | __GFP_NOWARN;
        let mut write_map = KVVec::with_capacity(len, gfp)?;
        for _ in 0..len {
            write_map.push(AtomicU8::new(0), gfp)?;
        }
        let state = CbtState::new();
        Arc::pin_init(
            try_pin_init!(Self {
                capacity,
                shift,
                block_count,
                write_map,
                active: AtomicU8::new(state.active()),
                locked <- new_irq_spinlock!(
                    Locked {
                        state,
                        read_map: KVVec::from_elem(0, len, gfp)?,
                        generation: random::uuid(),
                    },
                    "blksnap:cbt"
                ),
            }? Error),
            GFP_KERNEL,
        )
    }

    /// Marks the blocks a write to `count` sectors at `sector` changes.
    /// Takes no lock; callable in any context, on any CPU at once.
    pub(crate) fn mark_write(&self, sector: u64, count: u64) {
        if let Some(blocks) = cbt::sectors_to_blocks(sector, count, self.shift, self.block_count) {
            cbt::raise_blocks(&self.write_map, blocks, self.active.load(Ordering::Relaxed));
        }
    }

    /// Copies the active number of `locked` for the marks without a lock.
    fn publish_active(&self, locked: &Locked) {
        self.active.store(locked.state.active(), Ordering::Relaxed);
    }
}

impl Cbt {
    /// The tracking of a device of `capacity` sectors.
    pub(crate) fn new(capacity: u64) -> Result<Arc<Self>> {
        let map = KBox::new(CbtMap::new(capacity)?, GFP_KERNEL)?;
        Ok(Arc::new(
            Self {
                map: RcuBox::new_with(map),
            },
            GFP_KERNEL,
        )?)
    }

    /// Calls `f` with the current map, inside an RCU read section: `f` must
    /// not sleep. `None` only if there is no map, which never happens.
    fn with<R>(&self, f: impl FnOnce(&CbtMap) -> R) -> Option<R> {
        let guard = rcu::read_lock();
        self.map.get(&guard).map(|map| f(map))
    }

    /// The current map, for the length of the caller's RCU read section.
    pub(crate) fn current<'a>(&'a self, guard: &'a rcu::ReadGuard) -> Option<&'a CbtMap> {
        self.map.get(guard).map(|map| &**map)
    }

    /// Marks the blocks a write to `count` sectors at `sector` changes.
    pub(crate) fn mark_write(&self, sector: u64, count: u64) {
        self.with(|map| map.mark_write(sector, count));
    }

    /// Marks a sector range changed in both copies (image writes).
    pub(crate) fn mark_dirty(&self, sector: u64, count: u64) {
        self.mark_dirty_at(None, sector, count);
    }

    /// Marks a sector range changed in both copies (CBTDIRTY, image
    /// writes), if the map is still of `capacity` sectors when one is
    /// given; returns false if not.
    pub(crate) fn mark_dirty_at(&self, capacity: Option<u64>, sector: u64, count: u64) -> bool {
        self.with(|map| {
            if capacity.is_some_and(|c| c != map.capacity) {
                return false;
            }
            if let Some(blocks) = cbt::sectors_to_blocks(sector, count, map.shift, map.block_count)
            {
                let mut locked = map.locked.lock();
                let locked = &mut *locked;
                locked
                    .state
                    .mark_both(&map.write_map, &mut locked.read_map, blocks);
            }
            true
        })
        .unwrap_or(false)
    }

    /// Starts a new generation with empty maps of the same size: the data
    /// of the device changed without writes (another medium). Never sleeps.
    pub(crate) fn restart(&self) {
        self.with(|map| {
            let mut locked = map.locked.lock();
            let locked = &mut *locked;
            locked.state.reset(&map.write_map, &mut locked.read_map);
            locked.generation = random::uuid();
            map.publish_active(locked);
        });
    }

    /// Switches the copies at a snapshot take; may start a new generation.
    pub(crate) fn switch(&self) {
        self.with(|map| {
            let mut locked = map.locked.lock();
            let locked = &mut *locked;
            if let SwitchOutcome::NewGeneration =
                locked.state.switch(&map.write_map, &mut locked.read_map)
            {
                locked.generation = random::uuid();
            }
            map.publish_active(locked);
        });
    }

    /// Returns the capacity in sectors the map was built for.
    pub(crate) fn capacity(&self) -> u64 {
        self.with(|map| map.capacity).unwrap_or(0)
    }

    /// Replaces the map with a fresh one, of a new generation, if the
    /// device's capacity is no longer `capacity`. Sleeps.
    pub(crate) fn refresh(&self, capacity: u64) -> Result {
        if self.capacity() == capacity {
            return Ok(());
        }
        let fresh = KBox::new(CbtMap::new(capacity)?, GFP_KERNEL)?;
        let lock = RegistryLock::lock();
        if self
            .map
            .get_locked(&lock)
            .is_some_and(|map| map.capacity == capacity)
        {
            return Ok(());
        }
        let old = self.map.replace(Some(fresh), &lock);
        drop(lock);
        // Freed without the lock: no mark can reach it after the grace
        // period that `replace` waited for.
        drop(old);
        Ok(())
    }

    /// Returns what CBTINFO reports.
    pub(crate) fn info(&self) -> Option<CbtInfo> {
        self.with(|map| {
            let locked = map.locked.lock();
            CbtInfo {
                capacity: map.capacity,
                shift: map.shift,
                block_count: map.block_count,
                generation: locked.generation,
                changes_number: locked.state.changes_number(),
            }
        })
    }

    /// Copies the write copy from byte `offset` into `out`, as much as
    /// there is; returns how many bytes were copied.
    pub(crate) fn dump_write_map(&self, offset: usize, out: &mut [u8]) -> usize {
        self.with(|map| {
            let src = map.write_map.get(offset..).unwrap_or(&[]);
            let n = src.len().min(out.len());
            for (o, s) in out.iter_mut().zip(src.iter()).take(n) {
                *o = s.load(Ordering::Relaxed);
            }
            n
        })
        .unwrap_or(0)
    }

    /// Copies the read copy from byte `offset` into `out`; false if the
    /// range is outside the map.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        self.with(|map| {
            let locked = map.locked.lock();
            match offset
                .checked_add(out.len())
                .and_then(|end| locked.read_map.get(offset..end))
            {
                Some(src) => {
                    out.copy_from_slice(src);
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
    }
}
