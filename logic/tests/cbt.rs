//! Unit tests of the CBT arithmetic and state machine, edge cases first.

use std::sync::atomic::{AtomicU8, Ordering};

use blksnap_logic::cbt::{
    block_count, block_shift, map_slice_range, mark_blocks, raise_blocks, sectors_to_blocks,
    CbtState, SwitchOutcome, TrackingParams, MAX_BLOCK_SHIFT, MIN_BLOCK_SHIFT,
};

/// Sectors in a 64 KiB block, the default minimum.
const S64K: u64 = 128;

fn params(minimum_shift: u32, maximum_count: u32, maximum_shift: u32) -> TrackingParams {
    TrackingParams {
        minimum_shift,
        maximum_count,
        maximum_shift,
    }
}

// --- block_count -----------------------------------------------------------

#[test]
fn block_count_of_empty_device_is_zero_for_any_shift() {
    for shift in [0, 1, 8, 9, 16, 31, 63, 64, 72, 73, 200, u32::MAX] {
        assert_eq!(block_count(0, shift), 0, "shift {shift}");
    }
}

#[test]
fn block_count_of_one_sector() {
    assert_eq!(block_count(1, 16), 1);
    assert_eq!(block_count(1, 9), 1);
    assert_eq!(block_count(1, 8), 2);
    assert_eq!(block_count(1, 0), 512);
    assert_eq!(block_count(1, 100), 1);
}

#[test]
fn block_count_rounds_up_partial_last_block() {
    assert_eq!(block_count(S64K - 1, 16), 1);
    assert_eq!(block_count(S64K, 16), 1);
    assert_eq!(block_count(S64K + 1, 16), 2);
    assert_eq!(block_count(2 * S64K - 1, 16), 2);
    assert_eq!(block_count(2 * S64K, 16), 2);
    assert_eq!(block_count(2 * S64K + 1, 16), 3);
    assert_eq!(block_count(1000, 16), 8);
}

#[test]
fn block_count_at_the_u32_limit() {
    let max = u64::from(u32::MAX);
    assert_eq!(block_count((max - 1) * S64K, 16), u32::MAX - 1);
    assert_eq!(block_count(max * S64K, 16), u32::MAX);
    assert_eq!(block_count(max * S64K + 1, 16), u32::MAX);
    assert_eq!(block_count((max + 1) * S64K, 16), u32::MAX);
}

#[test]
fn block_count_of_the_whole_sector_space() {
    assert_eq!(block_count(u64::MAX, 16), u32::MAX);
    assert_eq!(block_count(u64::MAX, 31), u32::MAX);
    assert_eq!(block_count(u64::MAX, 0), u32::MAX);
    // 2^73 bytes minus one sector fit in two 2^72-byte blocks, one 2^73.
    assert_eq!(block_count(u64::MAX, 72), 2);
    assert_eq!(block_count(u64::MAX, 73), 1);
    assert_eq!(block_count(u64::MAX, u32::MAX), 1);
}

// --- block_shift -----------------------------------------------------------

#[test]
fn block_shift_defaults() {
    let p = TrackingParams::default();
    assert_eq!(p, TrackingParams::DEFAULT);
    assert_eq!(block_shift(0, &p), 16);
    assert_eq!(block_shift(1, &p), 16);
    // 2^21 blocks of 64 KiB exactly: no doubling yet.
    assert_eq!(block_shift((1 << 21) * S64K, &p), 16);
    assert_eq!(block_shift((1 << 21) * S64K + 1, &p), 17);
    // 1 TiB: 2^40 / 2^19 = 2^21 blocks.
    assert_eq!(block_shift(1 << 31, &p), 19);
    assert_eq!(block_count(1 << 31, 19), 1 << 21);
    // Too large even for 64 MiB blocks: stops at the maximum.
    assert_eq!(block_shift(u64::MAX, &p), 26);
}

#[test]
fn block_shift_with_maximum_below_minimum_returns_minimum() {
    assert_eq!(block_shift(u64::MAX, &params(20, 1, 10)), 20);
    assert_eq!(block_shift(0, &params(20, 1, 10)), 20);
}

#[test]
fn block_shift_clamps_absurd_shifts() {
    assert_eq!(block_shift(1, &params(0, u32::MAX, 0)), MIN_BLOCK_SHIFT);
    assert_eq!(block_shift(u64::MAX, &params(0, 1, 0)), MIN_BLOCK_SHIFT);
    assert_eq!(block_shift(1, &params(200, 1, 300)), MAX_BLOCK_SHIFT);
    assert_eq!(
        block_shift(u64::MAX, &params(16, 1, u32::MAX)),
        MAX_BLOCK_SHIFT
    );
    assert_eq!(
        block_shift(1, &params(u32::MAX, 0, u32::MAX)),
        MAX_BLOCK_SHIFT
    );
}

#[test]
fn block_shift_with_zero_maximum_count() {
    assert_eq!(block_shift(0, &params(16, 0, 26)), 16);
    assert_eq!(block_shift(1, &params(16, 0, 26)), 26);
}

// --- sectors_to_blocks -----------------------------------------------------

#[test]
fn sectors_to_blocks_empty_range_is_none() {
    assert_eq!(sectors_to_blocks(0, 0, 16, 10), None);
    assert_eq!(sectors_to_blocks(5, 0, 16, 10), None);
    assert_eq!(sectors_to_blocks(u64::MAX, 0, 16, 10), None);
}

#[test]
fn sectors_to_blocks_within_one_block() {
    assert_eq!(sectors_to_blocks(0, 1, 16, 10), Some(0..1));
    assert_eq!(sectors_to_blocks(0, S64K, 16, 10), Some(0..1));
    assert_eq!(sectors_to_blocks(S64K, S64K, 16, 10), Some(1..2));
    assert_eq!(sectors_to_blocks(S64K + 5, 3, 16, 10), Some(1..2));
}

#[test]
fn sectors_to_blocks_spanning_blocks() {
    assert_eq!(sectors_to_blocks(0, S64K + 1, 16, 10), Some(0..2));
    assert_eq!(sectors_to_blocks(S64K - 1, 2, 16, 10), Some(0..2));
    assert_eq!(sectors_to_blocks(S64K - 1, S64K + 2, 16, 10), Some(0..3));
}

#[test]
fn sectors_to_blocks_at_and_past_the_last_block() {
    assert_eq!(sectors_to_blocks(9 * S64K, 1, 16, 10), Some(9..10));
    assert_eq!(sectors_to_blocks(10 * S64K - 1, 1, 16, 10), Some(9..10));
    assert_eq!(sectors_to_blocks(10 * S64K, 1, 16, 10), None);
    assert_eq!(sectors_to_blocks(9 * S64K, 1000, 16, 10), Some(9..10));
    assert_eq!(sectors_to_blocks(0, 10_000, 16, 10), Some(0..10));
    assert_eq!(sectors_to_blocks(0, 1, 16, 0), None);
}

#[test]
fn sectors_to_blocks_in_partial_last_block() {
    let blocks = block_count(1000, 16);
    assert_eq!(blocks, 8);
    assert_eq!(sectors_to_blocks(999, 1, 16, blocks), Some(7..8));
    assert_eq!(sectors_to_blocks(999, 2, 16, blocks), Some(7..8));
    assert_eq!(sectors_to_blocks(1000, 1, 16, blocks), Some(7..8));
    assert_eq!(sectors_to_blocks(1024, 1, 16, blocks), None);
}

#[test]
fn sectors_to_blocks_near_u64_max() {
    assert_eq!(sectors_to_blocks(0, u64::MAX, 16, 10), Some(0..10));
    assert_eq!(sectors_to_blocks(5 * S64K, u64::MAX, 16, 10), Some(5..10));
    assert_eq!(sectors_to_blocks(u64::MAX, 1, 16, 10), None);
    assert_eq!(sectors_to_blocks(u64::MAX, u64::MAX, 16, u32::MAX), None);
    assert_eq!(sectors_to_blocks(u64::MAX - 1, 10, 9, u32::MAX), None);
    let last = u64::from(u32::MAX - 1);
    assert_eq!(
        sectors_to_blocks(last, u64::MAX, 9, u32::MAX),
        Some(u32::MAX - 1..u32::MAX)
    );
    // Blocks as large as the sector space.
    assert_eq!(sectors_to_blocks(u64::MAX, 1, 73, 1), Some(0..1));
    assert_eq!(sectors_to_blocks(u64::MAX, 1, 72, 2), Some(1..2));
    assert_eq!(sectors_to_blocks(u64::MAX, u64::MAX, 200, 5), Some(0..1));
}

#[test]
fn sectors_to_blocks_with_blocks_smaller_than_a_sector() {
    assert_eq!(sectors_to_blocks(0, 1, 8, 10), Some(0..2));
    assert_eq!(sectors_to_blocks(4, 1, 8, 10), Some(8..10));
    assert_eq!(sectors_to_blocks(4, 1, 8, 9), Some(8..9));
    assert_eq!(sectors_to_blocks(1, 1, 0, 10_000), Some(512..1024));
    assert_eq!(sectors_to_blocks(u64::MAX, 1, 0, u32::MAX), None);
    assert_eq!(
        sectors_to_blocks(0, u64::MAX, 0, u32::MAX),
        Some(0..u32::MAX)
    );
}

// --- map_slice_range -------------------------------------------------------

#[test]
fn map_slice_range_inside() {
    assert_eq!(map_slice_range(0, 10, 10), Some(0..10));
    assert_eq!(map_slice_range(5, 5, 10), Some(5..10));
    assert_eq!(map_slice_range(3, 1, 10), Some(3..4));
    assert_eq!(
        map_slice_range(0, u32::MAX, u32::MAX),
        Some(0..u32::MAX as usize)
    );
}

#[test]
fn map_slice_range_outside() {
    assert_eq!(map_slice_range(0, 11, 10), None);
    assert_eq!(map_slice_range(10, 1, 10), None);
    assert_eq!(map_slice_range(9, 2, 10), None);
    assert_eq!(map_slice_range(0, 1, 0), None);
}

#[test]
fn map_slice_range_does_not_wrap() {
    assert_eq!(map_slice_range(u32::MAX, 1, u32::MAX), None);
    assert_eq!(map_slice_range(1, u32::MAX, u32::MAX), None);
    assert_eq!(map_slice_range(u32::MAX, u32::MAX, u32::MAX), None);
    assert_eq!(map_slice_range(2, u32::MAX - 1, 10), None);
}

#[test]
fn map_slice_range_zero_length() {
    assert_eq!(map_slice_range(0, 0, 0), Some(0..0));
    assert_eq!(map_slice_range(4, 0, 10), Some(4..4));
    assert_eq!(map_slice_range(10, 0, 10), Some(10..10));
    assert_eq!(map_slice_range(11, 0, 10), None);
    assert_eq!(
        map_slice_range(u32::MAX, 0, u32::MAX),
        Some(u32::MAX as usize..u32::MAX as usize)
    );
}

/// A write map holding `bytes`.
fn atomic(bytes: &[u8]) -> Vec<AtomicU8> {
    bytes.iter().map(|&b| AtomicU8::new(b)).collect()
}

/// The bytes of a write map.
fn bytes(map: &[AtomicU8]) -> Vec<u8> {
    map.iter().map(|b| b.load(Ordering::Relaxed)).collect()
}

// --- marking ---------------------------------------------------------------

#[test]
fn mark_blocks_never_lowers() {
    let mut map = [0, 5, 0, 0, 7];
    mark_blocks(&mut map, 0..4, 3);
    assert_eq!(map, [3, 5, 3, 3, 7]);
    mark_blocks(&mut map, 0..5, 1);
    assert_eq!(map, [3, 5, 3, 3, 7]);
}

#[test]
fn mark_blocks_ignores_blocks_outside_the_map() {
    let mut map = [0u8; 4];
    mark_blocks(&mut map, 2..100, 9);
    assert_eq!(map, [0, 0, 9, 9]);
    mark_blocks(&mut map, 10..20, 8);
    mark_blocks(&mut map, 4..4, 8);
    #[allow(clippy::reversed_empty_ranges)]
    mark_blocks(&mut map, 3..1, 8);
    mark_blocks(&mut map, u32::MAX..u32::MAX, 8);
    assert_eq!(map, [0, 0, 9, 9]);
    mark_blocks(&mut [], 0..10, 1);
}

#[test]
fn raise_blocks_never_lowers() {
    let map = atomic(&[0, 5, 0, 0, 7]);
    raise_blocks(&map, 0..4, 3);
    assert_eq!(bytes(&map), [3, 5, 3, 3, 7]);
    raise_blocks(&map, 0..5, 1);
    assert_eq!(bytes(&map), [3, 5, 3, 3, 7]);
    raise_blocks(&map, 3..100, 9);
    assert_eq!(bytes(&map), [3, 5, 3, 9, 9]);
    raise_blocks(&map, 10..20, 10);
    raise_blocks(&[], 0..10, 1);
    assert_eq!(bytes(&map), [3, 5, 3, 9, 9]);
}

/// Threads marking the same bytes with different numbers at once leave
/// the largest in every byte: no mark puts back a smaller number.
#[test]
fn raise_blocks_from_many_threads_keeps_the_largest() {
    let map = atomic(&[0u8; 64]);
    std::thread::scope(|scope| {
        for number in 1..=8u8 {
            let map = &map;
            scope.spawn(move || {
                for round in 0..2000u32 {
                    let start = round % 64;
                    raise_blocks(map, start..64, number);
                    raise_blocks(map, 0..64 - start, number);
                }
            });
        }
    });
    assert!(bytes(&map).iter().all(|&b| b == 8), "{:?}", bytes(&map));
}

#[test]
fn mark_touches_write_map_only_and_mark_both_both() {
    let mut state = CbtState::new();
    let write = atomic(&[0u8; 4]);
    let mut read = [0u8; 4];
    state.mark(&write, 0..2);
    assert_eq!(bytes(&write), [1, 1, 0, 0]);
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::SameGeneration
    );
    assert_eq!(read, [1, 1, 0, 0]);
    state.mark(&write, 1..3);
    assert_eq!(bytes(&write), [1, 2, 2, 0]);
    assert_eq!(read, [1, 1, 0, 0], "read map stays stable");
    state.mark_both(&write, &mut read, 2..4);
    assert_eq!(bytes(&write), [1, 2, 2, 2]);
    assert_eq!(read, [1, 1, 2, 2]);
}

// --- CbtState --------------------------------------------------------------

#[test]
fn new_state_is_attach_state() {
    let state = CbtState::new();
    assert_eq!(state.previous(), 0);
    assert_eq!(state.active(), 1);
    assert_eq!(state.changes_number(), 0);
    assert_eq!(state, CbtState::default());
    assert_eq!(CbtState::with_numbers(0, 1), Some(state));
}

#[test]
fn with_numbers_checks_invariants() {
    assert_eq!(CbtState::with_numbers(0, 0), None);
    assert_eq!(CbtState::with_numbers(5, 5), None);
    assert_eq!(CbtState::with_numbers(6, 5), None);
    assert_eq!(CbtState::with_numbers(255, 1), None);
    let state = CbtState::with_numbers(254, 255).expect("valid");
    assert_eq!((state.previous(), state.active()), (254, 255));
    assert!(CbtState::with_numbers(0, 255).is_some());
}

#[test]
fn switch_copies_and_counts_up() {
    let mut state = CbtState::new();
    let write = atomic(&[0, 1, 1]);
    let mut read = [9, 9, 9];
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::SameGeneration
    );
    assert_eq!(read, [0, 1, 1]);
    assert_eq!(bytes(&write), [0, 1, 1]);
    assert_eq!((state.previous(), state.active()), (1, 2));
    assert_eq!(state.changes_number(), 1);
}

#[test]
fn switch_at_255_starts_a_new_generation() {
    let mut state = CbtState::with_numbers(254, 255).expect("valid");
    let write = atomic(&[255, 3, 0]);
    let mut read = [254, 3, 0];
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::NewGeneration
    );
    assert_eq!(bytes(&write), [0, 0, 0]);
    assert_eq!(read, [0, 0, 0]);
    assert_eq!(state, CbtState::new());
    assert_eq!(state.changes_number(), 0);
    // Writes after the wrap are seen by the next TAKE as changes since 0.
    state.mark(&write, 1..2);
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::SameGeneration
    );
    assert_eq!(read, [0, 1, 0]);
    assert_eq!(state.changes_number(), 1);
}

#[test]
fn two_hundred_fifty_five_takes_from_attach_wrap_once() {
    let mut state = CbtState::new();
    let write = atomic(&[0u8; 2]);
    let mut read = [0u8; 2];
    for take in 1..=254u8 {
        state.mark(&write, 0..1);
        assert_eq!(
            state.switch(&write, &mut read),
            SwitchOutcome::SameGeneration
        );
        assert_eq!(state.changes_number(), take);
        assert_eq!(read, [take, 0]);
    }
    assert_eq!(state.active(), 255);
    state.mark(&write, 0..2);
    assert_eq!(bytes(&write), [255, 255]);
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::NewGeneration
    );
    assert_eq!(state.changes_number(), 0);
    assert_eq!((bytes(&write), read), (vec![0, 0], [0, 0]));
}

#[test]
fn switch_with_maps_of_different_lengths() {
    let mut state = CbtState::new();
    let write = atomic(&[1, 1]);
    let mut read = [7, 7, 7, 7];
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::SameGeneration
    );
    assert_eq!(read, [1, 1, 0, 0]);
    let write = atomic(&[2, 2, 2]);
    let mut read = [0];
    assert_eq!(
        state.switch(&write, &mut read),
        SwitchOutcome::SameGeneration
    );
    assert_eq!(read, [2]);
    assert_eq!(state.switch(&[], &mut []), SwitchOutcome::SameGeneration);
}

#[test]
fn reset_zeroes_and_returns_to_attach_state() {
    let mut state = CbtState::with_numbers(99, 100).expect("valid");
    let write = atomic(&[0xaa; 7]);
    let mut read = vec![0x55; 7];
    state.reset(&write, &mut read);
    assert_eq!(state, CbtState::new());
    assert!(bytes(&write).iter().chain(read.iter()).all(|&b| b == 0));
}
