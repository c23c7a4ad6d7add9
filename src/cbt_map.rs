// SPDX-License-Identifier: GPL-2.0

//! The change-block tracking map of one device (uapi.md §4–§5).
//!
//! Two byte maps, one byte per tracking block: the write copy, which writes
//! mark with the active snapshot number, and the read copy, which CBTMAP
//! returns and which changes only when a snapshot is taken, at CBTDIRTY, or
//! when the map is reset. The arithmetic and the state machine are the pure
//! code of `logic/src/cbt.rs`, tested on the host; this file owns the memory
//! and the generation identifier.
//!
//! The maps are allocated with kvmalloc, so a large map does not need
//! physically contiguous memory: at the default parameters a map is at most
//! 2 MiB per copy for a device of up to 128 TiB, and 1 GiB at most with
//! any parameters (larger needs fail with ENOMEM). The owner (the tracker) keeps a
//! `CbtMap` under a spinlock; nothing here sleeps or allocates except `new`.

use kernel::prelude::*;

use crate::cbt::{self, CbtState, SwitchOutcome, TrackingParams};
use crate::glue::random;
use crate::params;

/// The largest copy of a map, in bytes (one byte per block): 1 GiB, the
/// most `tracking_block_maximum_count` allows. A device that needs more
/// blocks (its block size held down by `tracking_block_maximum_shift`) gets
/// `ENOMEM`, as does one whose two copies would take more than half of the
/// memory available.
const MAX_MAP_BYTES: u64 = 1 << 30;

/// The change-block tracking state of one device.
pub(crate) struct CbtMap {
    state: CbtState,
    write_map: KVVec<u8>,
    read_map: KVVec<u8>,
    generation: [u8; 16],
    capacity: u64,
    shift: u32,
    block_count: u32,
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
    pub(crate) fn new(capacity: u64) -> Result<Self> {
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
        Ok(Self {
            state: CbtState::new(),
            write_map: KVVec::from_elem(0, len, gfp)?,
            read_map: KVVec::from_elem(0, len, gfp)?,
            generation: random::uuid(),
            capacity,
            shift,
            block_count,
        })
    }

    /// Returns the capacity in sectors this map was built for.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Marks the blocks a write to `count` sectors at `sector` changes.
    pub(crate) fn mark_write(&mut self, sector: u64, count: u64) {
        if let Some(blocks) = cbt::sectors_to_blocks(sector, count, self.shift, self.block_count) {
            self.state.mark(&mut self.write_map, blocks);
        }
    }

    /// Marks a sector range changed in both copies (CBTDIRTY, image writes).
    pub(crate) fn mark_dirty(&mut self, sector: u64, count: u64) {
        if let Some(blocks) = cbt::sectors_to_blocks(sector, count, self.shift, self.block_count) {
            self.state
                .mark_both(&mut self.write_map, &mut self.read_map, blocks);
        }
    }

    /// Starts a new generation with empty maps of the same size: the data
    /// of the device changed without writes (another medium). Clears both
    /// copies under the caller's lock, as a wrapping switch does.
    pub(crate) fn restart(&mut self) {
        self.state.reset(&mut self.write_map, &mut self.read_map);
        self.generation = random::uuid();
    }

    /// Switches the copies at a snapshot take; may start a new generation.
    pub(crate) fn switch(&mut self) {
        if let SwitchOutcome::NewGeneration =
            self.state.switch(&mut self.write_map, &mut self.read_map)
        {
            self.generation = random::uuid();
        }
    }

    /// Returns what CBTINFO reports.
    pub(crate) fn info(&self) -> CbtInfo {
        CbtInfo {
            capacity: self.capacity,
            shift: self.shift,
            block_count: self.block_count,
            generation: self.generation,
            changes_number: self.state.changes_number(),
        }
    }

    /// Copies the write copy from byte `offset` into `out`, as much as
    /// there is; returns how many bytes were copied.
    pub(crate) fn dump_write_map(&self, offset: usize, out: &mut [u8]) -> usize {
        let src = self.write_map.get(offset..).unwrap_or(&[]);
        let n = src.len().min(out.len());
        out[..n].copy_from_slice(&src[..n]);
        n
    }

    /// Copies the read copy from byte `offset` into `out`; false if the
    /// range is outside the map.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        match offset
            .checked_add(out.len())
            .and_then(|end| self.read_map.get(offset..end))
        {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}
