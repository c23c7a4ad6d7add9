// SPDX-License-Identifier: GPL-2.0

//! Change-block tracking (CBT): block geometry and the snapshot-number state.
//!
//! This file owns the arithmetic and the state machine of CBT and nothing
//! else; the kernel module's tracker owns the lock, allocates the two byte
//! maps and calls in here on every write, TAKE, CBTDIRTY, CBTMAP and capacity
//! change. The write map is made of atomic bytes, so that writes mark it
//! without the lock ([`raise_blocks`]); every other change is made under the
//! caller's lock. It uses only `core`, no allocation and no `unsafe`, never panics
//! and never overflows, so it is compiled unchanged into the module
//! (`#[path = "../logic/src/cbt.rs"] mod cbt;`) and tested on the host by the
//! `blksnap-logic` crate.
//!
//! # Geometry
//!
//! A device of `capacity_sectors` 512-byte sectors is cut into blocks of
//! `1 << shift` bytes; [`block_shift`] picks the shift from the module
//! parameters ([`TrackingParams`]), [`block_count`] gives the number of
//! blocks (the last one may be partial), [`sectors_to_blocks`] turns the
//! sector range of a write into the range of blocks it touches, and
//! [`map_slice_range`] checks a CBTMAP request against the map.
//!
//! # Snapshot numbers
//!
//! Each block has one byte in each of two maps, holding a snapshot number.
//! [`CbtState`] holds the two numbers that matter: `active`, written into
//! `write_map` by every write, and `previous`, the number of the last TAKE,
//! reported by CBTINFO as `changes_number`. A TAKE ([`CbtState::switch`])
//! copies `write_map` to `read_map`, which CBTMAP reads and which stays
//! stable while the snapshot is held. A consumer that backed up snapshot `n`
//! of a generation finds the blocks changed since then as those with
//! `read_map[b] > n`, as long as the generation UUID has not changed.
//!
//! # The wrap
//!
//! When `active` would pass 255, the TAKE starts a new generation: the caller
//! draws a new UUID ([`SwitchOutcome::NewGeneration`]), `write_map` is
//! zeroed and `active` restarts at 1. That TAKE's snapshot becomes snapshot
//! number 0 of the new generation: `previous` is 0 and `read_map` is the copy
//! of the zeroed `write_map`, that is all zeros, exactly as right after
//! attach. Consumers must make a full backup of it anyway (new UUID), and
//! keeping `previous` at 255 would break the next incremental backup: its
//! snapshot gets number 1 in the new generation, and no block would compare
//! greater than a stored 255. With 0, the rule `read_map[b] > n` holds across
//! the wrap, `changes_number == 0` always means "no history in this
//! generation", and `previous + 1 == active` holds in every state.

use core::ops::Range;
use core::sync::atomic::{AtomicU8, Ordering};

/// Log2 of the size of a sector, the unit of block-layer addresses.
pub const SECTOR_SHIFT: u32 = 9;

/// The smallest block shift [`block_shift`] returns: one sector.
pub const MIN_BLOCK_SHIFT: u32 = SECTOR_SHIFT;

/// The largest block shift [`block_shift`] returns, so the block size fits
/// the `u32` `block_size` of CBTINFO.
pub const MAX_BLOCK_SHIFT: u32 = 31;

/// The module parameters that size the CBT blocks (uapi.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackingParams {
    /// `tracking_block_minimum_shift`: log2 of the smallest block, in bytes.
    pub minimum_shift: u32,
    /// `tracking_block_maximum_count`: the most blocks a device should have.
    pub maximum_count: u32,
    /// `tracking_block_maximum_shift`: log2 of the largest block, in bytes.
    pub maximum_shift: u32,
}

impl TrackingParams {
    /// The parameters' default values: 64 KiB to 64 MiB blocks, at most 2^21.
    pub const DEFAULT: Self = Self {
        minimum_shift: 16,
        maximum_count: 2_097_152,
        maximum_shift: 26,
    };
}

impl Default for TrackingParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Returns the log2 of the CBT block size, in bytes, for a device.
///
/// Starts at the minimum shift and doubles the block while the device would
/// have more than `maximum_count` blocks and the shift is below the maximum.
///
/// Absurd parameters give a usable answer instead of an error: both shifts
/// are first clamped to [`MIN_BLOCK_SHIFT`]`..=`[`MAX_BLOCK_SHIFT`], and a
/// maximum below the minimum counts as equal to it. So the result is always
/// in that range, and it is the minimum shift when `maximum_shift <=
/// minimum_shift`, even if the count then exceeds `maximum_count`.
pub fn block_shift(capacity_sectors: u64, p: &TrackingParams) -> u32 {
    let min = p.minimum_shift.clamp(MIN_BLOCK_SHIFT, MAX_BLOCK_SHIFT);
    // Not `clamp(min, ..)`, whose check that `min <= MAX_BLOCK_SHIFT` could panic.
    let max = p.maximum_shift.min(MAX_BLOCK_SHIFT).max(min);
    let mut shift = min;
    while shift < max && block_count(capacity_sectors, shift) > p.maximum_count {
        // Never saturates: `shift < max <= MAX_BLOCK_SHIFT`.
        shift = shift.saturating_add(1);
    }
    shift
}

/// Returns the number of `1 << shift`-byte blocks covering the device.
///
/// This is the capacity in bytes divided by the block size, rounded up, so a
/// partial last block counts; 0 for an empty device. Any `shift` is accepted:
/// blocks smaller than a sector (shift below 9) multiply the count, and a
/// block at least as large as the whole sector space (shift of 73 and more)
/// gives one block. A count that does not fit a `u32` saturates to
/// `u32::MAX`.
pub fn block_count(capacity_sectors: u64, shift: u32) -> u32 {
    match capacity_sectors.checked_sub(1) {
        None => 0,
        Some(last_sector) => {
            let (_, last_block) = blocks_of_sector(last_sector, shift);
            let blocks = last_block.saturating_add(1);
            u32::try_from(blocks).unwrap_or(u32::MAX)
        }
    }
}

/// Returns the indexes of the first and the last block holding bytes of `sector`.
///
/// Both saturate to `u64::MAX` when blocks are so small that an index does
/// not fit; such an index is past the end of any map.
fn blocks_of_sector(sector: u64, shift: u32) -> (u64, u64) {
    match SECTOR_SHIFT.checked_sub(shift) {
        // Blocks of a sector or more: the sector lies in one block.
        // `checked_shr` fails only for a shift of 64 and more, where every
        // sector lies in block 0.
        None | Some(0) => {
            let block = sector
                .checked_shr(shift.saturating_sub(SECTOR_SHIFT))
                .unwrap_or(0);
            (block, block)
        }
        // Blocks smaller than a sector: it spans `1 << n` blocks, `n` in `1..=9`.
        Some(n) => {
            if sector > u64::MAX >> n {
                (u64::MAX, u64::MAX)
            } else {
                let first = sector << n;
                // The low `n` bits of `first` are clear.
                (first, first | ((1u64 << n).saturating_sub(1)))
            }
        }
    }
}

/// Returns the tracking blocks touched by the sectors `[sector, sector + count)`.
///
/// The range is clipped to the `block_count` blocks of the map. Returns
/// `None` when `count` is 0 or the whole range lies past the end of the map.
/// Sectors past `u64::MAX` do not exist, so a range running past the end of
/// the sector space is cut there instead of wrapping. `shift` is the block
/// shift in bytes; any value is accepted, as in [`block_count`].
pub fn sectors_to_blocks(
    sector: u64,
    count: u64,
    shift: u32,
    block_count: u32,
) -> Option<Range<u32>> {
    let last_sector = sector.saturating_add(count.checked_sub(1)?);
    let (first, _) = blocks_of_sector(sector, shift);
    let (_, last) = blocks_of_sector(last_sector, shift);
    let first = u32::try_from(first)
        .ok()
        .filter(|&first| first < block_count)?;
    let end = u32::try_from(last)
        .ok()
        .filter(|&last| last < block_count)
        // Never saturates: `last < block_count <= u32::MAX`.
        .map_or(block_count, |last| last.saturating_add(1));
    Some(first..end)
}

/// Returns the bytes of a `map_len`-byte map that CBTMAP should copy.
///
/// The request is `length` bytes from `offset`. Returns `None` (ENODATA) if
/// any of it lies outside the map, including when `offset + length` does not
/// fit a `u32`. A `length` of 0 is allowed and gives an empty range when
/// `offset <= map_len`, so the ioctl copies nothing and succeeds, like a
/// zero-length `read(2)`.
pub fn map_slice_range(offset: u32, length: u32, map_len: u32) -> Option<Range<usize>> {
    let end = offset.checked_add(length).filter(|&end| end <= map_len)?;
    Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
}

/// Raises `map[b]` to `number` for every block `b` in `blocks`.
///
/// A byte already holding a larger number keeps it. Blocks past the end of
/// `map` are ignored (the caller clips ranges with [`sectors_to_blocks`], so
/// this only guards against a map of the wrong length).
pub fn mark_blocks(map: &mut [u8], blocks: Range<u32>, number: u8) {
    let (Ok(start), Ok(end)) = (usize::try_from(blocks.start), usize::try_from(blocks.end)) else {
        return;
    };
    if let Some(bytes) = map.get_mut(start..end.min(map.len())) {
        for byte in bytes {
            *byte = (*byte).max(number);
        }
    }
}

/// Raises `map[b]` to `number` for every block `b` in `blocks`, without a
/// lock: callable by any number of threads at once, on the same bytes.
///
/// A byte is only ever raised, never lowered, whatever the interleaving:
/// two writes marking the same byte with different numbers leave the larger
/// one (an atomic maximum, not a load and a store that could put back a
/// smaller number). A byte that already holds `number` or more is only
/// read, so repeated writes to the same blocks do not write the shared
/// cache lines. Blocks past the end of `map` are ignored.
pub fn raise_blocks(map: &[AtomicU8], blocks: Range<u32>, number: u8) {
    let (Ok(start), Ok(end)) = (usize::try_from(blocks.start), usize::try_from(blocks.end)) else {
        return;
    };
    if let Some(bytes) = map.get(start..end.min(map.len())) {
        for byte in bytes {
            if byte.load(Ordering::Relaxed) < number {
                byte.fetch_max(number, Ordering::Relaxed);
            }
        }
    }
}

/// Sets every byte of `map` to 0.
fn clear(map: &[AtomicU8]) {
    for byte in map {
        byte.store(0, Ordering::Relaxed);
    }
}

/// What the caller of [`CbtState::switch`] must do with the generation UUID.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// The generation goes on; keep the UUID.
    SameGeneration,
    /// The snapshot numbers wrapped and the maps were cleared; draw a new UUID.
    NewGeneration,
}

/// The snapshot numbers of one device's CBT.
///
/// The two byte maps belong to the caller, which passes them to every method
/// that changes them and serialises the calls (the tracker's lock), except
/// [`CbtState::mark`] and [`raise_blocks`], which may run at any time on
/// the write map: what a mark concurrent with a switch or a reset leaves is
/// discussed there.
///
/// # Invariants
///
/// `1 <= active` and `previous < active`. Every state reached from
/// [`CbtState::new`] also has `previous + 1 == active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbtState {
    previous: u8,
    active: u8,
}

impl CbtState {
    /// Returns the state at attach: previous 0, active 1.
    ///
    /// The caller draws a random generation UUID and starts with zeroed maps.
    pub const fn new() -> Self {
        // INVARIANT: `1 <= 1` and `0 < 1`.
        Self {
            previous: 0,
            active: 1,
        }
    }

    /// Returns a state with the given numbers, or `None` if they break the
    /// invariants.
    ///
    /// Meant for tests (to start next to the wrap) and for restoring a saved
    /// state; `previous` must be below `active`, and `active` at least 1.
    pub const fn with_numbers(previous: u8, active: u8) -> Option<Self> {
        if active >= 1 && previous < active {
            // INVARIANT: checked just above.
            Some(Self { previous, active })
        } else {
            None
        }
    }

    /// Returns the number of the last TAKE, 0 at the start of a generation.
    pub const fn previous(&self) -> u8 {
        self.previous
    }

    /// Returns the number that writes mark blocks with.
    pub const fn active(&self) -> u8 {
        self.active
    }

    /// Returns CBTINFO's `changes_number`, which is the previous number.
    pub const fn changes_number(&self) -> u8 {
        self.previous
    }

    /// Records a write to the original device in `write_map`.
    ///
    /// Raises every block of `blocks` to the active number, never lowering
    /// it ([`raise_blocks`]). The read map is left alone so CBTMAP answers
    /// stay stable while a snapshot is held. A caller that marks without
    /// the lock reads the active number from its own copy of it, which it
    /// updates after each [`CbtState::switch`] and [`CbtState::reset`]; a
    /// mark that read the number before such a change may land after it,
    /// with the old number: in `write_map` after the switch copied it, or
    /// in the zeroed maps after a wrap or a reset. The old number is then
    /// either lower than the active one (the write counts for the snapshot
    /// just taken) or, after a wrap or a reset, higher (the block reads as
    /// changed until the numbers pass it): the caller must mark such a
    /// write again once the change is done if it lands after it.
    pub fn mark(&self, write_map: &[AtomicU8], blocks: Range<u32>) {
        raise_blocks(write_map, blocks, self.active);
    }

    /// Records a CBTDIRTY range or a write to a snapshot image in both maps.
    ///
    /// Raises every block of `blocks` to the active number in `write_map` and
    /// in `read_map`, never lowering either.
    pub fn mark_both(&self, write_map: &[AtomicU8], read_map: &mut [u8], blocks: Range<u32>) {
        raise_blocks(write_map, blocks.clone(), self.active);
        mark_blocks(read_map, blocks, self.active);
    }

    /// Switches the maps at TAKE.
    ///
    /// Normally `previous` becomes `active`, `active` goes up by one and
    /// `read_map` becomes a copy of `write_map`. When `active` is 255 the
    /// numbers wrap instead (see the module documentation): both maps are
    /// zeroed, `previous` becomes 0 and `active` 1, and the caller must draw
    /// a new generation UUID. The maps should have the same length; if not,
    /// only the common prefix is copied and the rest of `read_map` is zeroed.
    pub fn switch(&mut self, write_map: &[AtomicU8], read_map: &mut [u8]) -> SwitchOutcome {
        match self.active.checked_add(1) {
            Some(next) => {
                for (read, write) in read_map.iter_mut().zip(write_map.iter()) {
                    *read = write.load(Ordering::Relaxed);
                }
                if let Some(rest) = read_map.get_mut(write_map.len()..) {
                    rest.fill(0);
                }
                // INVARIANT: `next = active + 1 >= 1` and `previous = active < next`.
                self.previous = self.active;
                self.active = next;
                SwitchOutcome::SameGeneration
            }
            None => {
                clear(write_map);
                read_map.fill(0);
                *self = Self::new();
                SwitchOutcome::NewGeneration
            }
        }
    }

    /// Resets the CBT after a change of the device's capacity.
    ///
    /// Zeroes both maps (normally just reallocated to the new block count)
    /// and goes back to the state at attach; the caller must draw a new
    /// generation UUID.
    pub fn reset(&mut self, write_map: &[AtomicU8], read_map: &mut [u8]) {
        clear(write_map);
        read_map.fill(0);
        *self = Self::new();
    }
}

impl Default for CbtState {
    fn default() -> Self {
        Self::new()
    }
}
