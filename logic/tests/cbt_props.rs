//! Property tests of the CBT logic against plainly written reference models.

use blksnap_logic::cbt::{
    block_count, block_shift, map_slice_range, sectors_to_blocks, CbtState, SwitchOutcome,
    TrackingParams, MAX_BLOCK_SHIFT, MIN_BLOCK_SHIFT,
};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

// --- reference arithmetic in u128, where nothing can overflow ----------------

/// `ceil(capacity * 512 / 2^shift)`, saturated to `u32::MAX`.
fn ref_block_count(capacity_sectors: u64, shift: u32) -> u32 {
    let bytes = u128::from(capacity_sectors) * 512;
    let count = if shift >= 128 {
        u128::from(bytes > 0)
    } else {
        (bytes >> shift) + u128::from(bytes & ((1u128 << shift) - 1) != 0)
    };
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The blocks touched by the bytes of `[sector, min(sector + count, 2^64))`.
fn ref_sectors_to_blocks(
    sector: u64,
    count: u64,
    shift: u32,
    blocks: u32,
) -> Option<std::ops::Range<u32>> {
    let end_sector = (u128::from(sector) + u128::from(count)).min(1u128 << 64);
    if end_sector <= u128::from(sector) {
        return None;
    }
    let block_of = |byte: u128| if shift >= 128 { 0 } else { byte >> shift };
    let first = block_of(u128::from(sector) * 512);
    let last = block_of(end_sector * 512 - 1);
    if first >= u128::from(blocks) {
        return None;
    }
    let end = (last + 1).min(u128::from(blocks));
    Some(u32::try_from(first).unwrap()..u32::try_from(end).unwrap())
}

/// Blocks touched by each sector of a small range, one sector at a time.
fn naive_sectors_to_blocks(
    sector: u64,
    count: u64,
    shift: u32,
    blocks: u32,
) -> Option<std::ops::Range<u32>> {
    let mut touched = Vec::new();
    for s in sector..sector + count {
        let first = (s * 512) >> shift;
        let last = (s * 512 + 511) >> shift;
        touched.extend((first..=last).filter(|&b| b < u64::from(blocks)));
    }
    touched.sort_unstable();
    touched.dedup();
    let min = *touched.first()?;
    let max = *touched.last()?;
    // The touched blocks are contiguous, so a range describes them exactly.
    assert_eq!(touched, (min..=max).collect::<Vec<_>>());
    Some(u32::try_from(min).unwrap()..u32::try_from(max + 1).unwrap())
}

proptest! {
    #[test]
    fn block_count_matches_reference(capacity in any::<u64>(), shift in 0u32..140) {
        prop_assert_eq!(block_count(capacity, shift), ref_block_count(capacity, shift));
    }

    #[test]
    fn block_count_matches_reference_small(capacity in 0u64..100_000, shift in 0u32..40) {
        prop_assert_eq!(block_count(capacity, shift), ref_block_count(capacity, shift));
    }

    #[test]
    fn sectors_to_blocks_matches_naive_on_small_ranges(
        sector in 0u64..5_000,
        count in 0u64..300,
        shift in 0u32..=20,
        blocks in 0u32..200,
    ) {
        prop_assert_eq!(
            sectors_to_blocks(sector, count, shift, blocks),
            naive_sectors_to_blocks(sector, count, shift, blocks)
        );
    }

    #[test]
    fn sectors_to_blocks_matches_reference(
        sector in prop_oneof![any::<u64>(), (u64::MAX - 1_000)..=u64::MAX, 0u64..1_000_000],
        count in prop_oneof![any::<u64>(), 0u64..1_000],
        shift in 0u32..140,
        blocks in prop_oneof![any::<u32>(), 0u32..1_000],
    ) {
        prop_assert_eq!(
            sectors_to_blocks(sector, count, shift, blocks),
            ref_sectors_to_blocks(sector, count, shift, blocks)
        );
    }

    #[test]
    fn block_shift_obeys_the_rule(
        capacity in prop_oneof![any::<u64>(), 0u64..(1 << 40)],
        minimum_shift in prop_oneof![0u32..40, any::<u32>()],
        maximum_count in prop_oneof![0u32..5_000_000, any::<u32>()],
        maximum_shift in prop_oneof![0u32..40, any::<u32>()],
    ) {
        let p = TrackingParams { minimum_shift, maximum_count, maximum_shift };
        let shift = block_shift(capacity, &p);
        let lowest = minimum_shift.clamp(MIN_BLOCK_SHIFT, MAX_BLOCK_SHIFT);
        let highest = maximum_shift.clamp(lowest, MAX_BLOCK_SHIFT);
        prop_assert!((lowest..=highest).contains(&shift));
        // Few enough blocks, unless the shift hit its maximum.
        prop_assert!(block_count(capacity, shift) <= maximum_count || shift == highest);
        // And no larger than needed: one step smaller has too many blocks.
        if shift > lowest {
            prop_assert!(block_count(capacity, shift - 1) > maximum_count);
        }
    }

    #[test]
    fn map_slice_range_matches_reference(
        offset in prop_oneof![any::<u32>(), 0u32..100],
        length in prop_oneof![any::<u32>(), 0u32..100],
        map_len in prop_oneof![any::<u32>(), 0u32..100],
    ) {
        let end = u64::from(offset) + u64::from(length);
        let expected = (end <= u64::from(map_len)).then_some(offset as usize..end as usize);
        prop_assert_eq!(map_slice_range(offset, length, map_len), expected);
    }
}

// --- reference model of the CBT state machine -------------------------------

/// One operation on a tracked device.
#[derive(Clone, Debug)]
enum Op {
    /// A write to the original device.
    Write { sector: u64, count: u64 },
    /// CBTDIRTY or a write to a snapshot image.
    Dirty { sector: u64, count: u64 },
    /// A snapshot is taken.
    Take,
    /// The capacity changed to this many sectors.
    Resize { capacity: u64 },
}

/// The CBT as a history: when each block was written and when snapshots were
/// taken, since the generation began. Map values are derived from it, not
/// stored.
struct Model {
    shift: u32,
    blocks: usize,
    generation: u32,
    now: u64,
    /// Times of the TAKEs of this generation, increasing.
    takes: Vec<u64>,
    /// Per block, the times of writes and dirty marks in this generation.
    writes: Vec<Vec<u64>>,
    /// Per block, the times of dirty marks in this generation.
    dirties: Vec<Vec<u64>>,
}

impl Model {
    fn new(capacity: u64, shift: u32, earlier_takes: usize) -> Self {
        let blocks = usize::try_from(block_count(capacity, shift)).unwrap();
        Self {
            shift,
            blocks,
            generation: 0,
            now: 1,
            takes: vec![0; earlier_takes],
            writes: vec![Vec::new(); blocks],
            dirties: vec![Vec::new(); blocks],
        }
    }

    fn new_generation(&mut self) {
        self.generation += 1;
        self.takes.clear();
        self.writes = vec![Vec::new(); self.blocks];
        self.dirties = vec![Vec::new(); self.blocks];
    }

    /// Snapshot number of an event at time `t`: one more than the TAKEs before it.
    fn number(&self, t: u64) -> u8 {
        u8::try_from(1 + self.takes.partition_point(|&take| take < t)).unwrap()
    }

    /// The number CBTINFO reports: how many TAKEs this generation had.
    fn changes_number(&self) -> u8 {
        u8::try_from(self.takes.len()).unwrap()
    }

    fn touched(&self, sector: u64, count: u64) -> Vec<usize> {
        let sectors_per_block = 1u64 << (self.shift - 9);
        let mut blocks: Vec<usize> = (sector..sector + count)
            .map(|s| usize::try_from(s / sectors_per_block).unwrap())
            .filter(|&b| b < self.blocks)
            .collect();
        blocks.dedup();
        blocks
    }

    fn apply(&mut self, op: &Op) -> Option<bool> {
        self.now += 1;
        let now = self.now;
        match *op {
            Op::Write { sector, count } => {
                for b in self.touched(sector, count) {
                    self.writes[b].push(now);
                }
                None
            }
            Op::Dirty { sector, count } => {
                for b in self.touched(sector, count) {
                    self.writes[b].push(now);
                    self.dirties[b].push(now);
                }
                None
            }
            Op::Take => {
                // Numbers are 1..=255: a generation holds at most 254 TAKEs,
                // the 255th starts the next generation.
                if self.takes.len() == 254 {
                    self.new_generation();
                    Some(true)
                } else {
                    self.takes.push(now);
                    Some(false)
                }
            }
            Op::Resize { capacity } => {
                self.blocks = usize::try_from(block_count(capacity, self.shift)).unwrap();
                self.new_generation();
                None
            }
        }
    }

    fn write_map(&self) -> Vec<u8> {
        self.writes
            .iter()
            .map(|times| times.iter().map(|&t| self.number(t)).max().unwrap_or(0))
            .collect()
    }

    /// Writes before the last TAKE, plus dirty marks after it.
    fn read_map(&self) -> Vec<u8> {
        let last_take = self.takes.last().copied().unwrap_or(0);
        (0..self.blocks)
            .map(|b| {
                let before = self.writes[b].iter().filter(|&&t| t < last_take);
                let dirty_after = self.dirties[b].iter().filter(|&&t| t > last_take);
                before
                    .chain(dirty_after)
                    .map(|&t| self.number(t))
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (0u64..320, 0u64..48).prop_map(|(sector, count)| Op::Write { sector, count }),
        8 => (0u64..320, 0u64..48).prop_map(|(sector, count)| Op::Dirty { sector, count }),
        30 => Just(Op::Take),
        1 => (0u64..300).prop_map(|capacity| Op::Resize { capacity }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn state_machine_matches_model(
        capacity in 0u64..300,
        shift in 9u32..=12,
        start_active in prop_oneof![Just(1u8), 1u8..=255, 240u8..=255],
        ops in prop::collection::vec(op_strategy(), 1..700),
    ) {
        let mut state = CbtState::with_numbers(start_active - 1, start_active).unwrap();
        let mut model = Model::new(capacity, shift, usize::from(start_active - 1));
        let mut blocks = block_count(capacity, shift);
        let mut write_map: Vec<AtomicU8> = (0..model.blocks).map(|_| AtomicU8::new(0)).collect();
        let mut read_map = vec![0u8; model.blocks];

        for op in &ops {
            let outcome = match *op {
                Op::Write { sector, count } => {
                    if let Some(range) = sectors_to_blocks(sector, count, shift, blocks) {
                        state.mark(&write_map, range);
                    }
                    None
                }
                Op::Dirty { sector, count } => {
                    if let Some(range) = sectors_to_blocks(sector, count, shift, blocks) {
                        state.mark_both(&write_map, &mut read_map, range);
                    }
                    None
                }
                Op::Take => Some(state.switch(&write_map, &mut read_map)),
                Op::Resize { capacity } => {
                    blocks = block_count(capacity, shift);
                    // Fresh allocations hold garbage until reset.
                    write_map = (0..blocks).map(|_| AtomicU8::new(0xa5)).collect();
                    read_map = vec![0x5a; usize::try_from(blocks).unwrap()];
                    state.reset(&write_map, &mut read_map);
                    None
                }
            };
            let generation_before = model.generation;
            let expected = model.apply(op);
            prop_assert_eq!(
                outcome.map(|o| o == SwitchOutcome::NewGeneration),
                expected,
                "outcome of {:?}", op
            );
            if matches!(op, Op::Resize { .. }) {
                prop_assert_eq!(model.generation, generation_before + 1);
            }
            prop_assert_eq!(state.changes_number(), model.changes_number(), "after {:?}", op);
            prop_assert_eq!(state.previous(), model.changes_number());
            prop_assert_eq!(state.active(), model.changes_number() + 1);
            let write_bytes: Vec<u8> = write_map.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            prop_assert_eq!(&write_bytes, &model.write_map(), "write map after {:?}", op);
            prop_assert_eq!(&read_map, &model.read_map(), "read map after {:?}", op);
        }
    }
}
