//! Property tests of the difference-storage accounting under random
//! allocations and growths.

use blksnap_logic::storage::{NoSpace, StorageAccount, MAX_STORAGE_SECTORS};
use proptest::prelude::*;

/// What the diff storage does next.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// A chunk of this many sectors is stored.
    Allocate(u64),
    /// The caller checks whether to grow, and starts the growth if so.
    StartGrowth,
    /// The growth in flight (if any) ends: `fallocate` made the file this
    /// much larger than the size asked for (negative: smaller).
    Grown(i64),
    /// The growth in flight (if any) failed.
    GrowthFailed,
    /// The caller checks for the no_space event.
    NoSpaceEvent,
}

fn op_strategy(scale: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..=scale).prop_map(Op::Allocate),
        1 => any::<u64>().prop_map(Op::Allocate),
        4 => Just(Op::StartGrowth),
        3 => Just(Op::Grown(0)),
        1 => (-(scale as i64)..=scale as i64).prop_map(Op::Grown),
        1 => Just(Op::GrowthFailed),
        2 => Just(Op::NoSpaceEvent),
    ]
}

/// An account built from arbitrary, often absurd, sizes.
fn account_strategy(scale: u64) -> impl Strategy<Value = StorageAccount> {
    let size = prop_oneof![0..=4 * scale, any::<u64>()];
    let file = (
        size.clone(),
        size.clone(),
        prop_oneof![0..=scale, any::<u64>()],
    )
        .prop_map(|(cap, limit, step)| StorageAccount::for_file(cap, limit, step));
    let bdev = (size, prop_oneof![0..=scale, any::<u64>()])
        .prop_map(|(cap, step)| StorageAccount::for_block_device(cap, step));
    prop_oneof![4 => file, 1 => bdev]
}

fn check_invariants(s: &StorageAccount) -> Result<(), TestCaseError> {
    prop_assert!(s.used_sectors() <= s.capacity_sectors());
    prop_assert!(s.capacity_sectors() <= s.limit_sectors());
    prop_assert!(s.limit_sectors() <= MAX_STORAGE_SECTORS);
    prop_assert!(s.step_sectors() >= 1);
    prop_assert_eq!(s.free_sectors(), s.capacity_sectors() - s.used_sectors());
    prop_assert!(s.requested_sectors() >= s.capacity_sectors());
    prop_assert!(s.requested_sectors() <= s.limit_sectors());
    if s.is_growing() {
        prop_assert_eq!(s.needs_growth(), None);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_allocations_and_growths_keep_the_invariants(
        start in account_strategy(1000),
        ops in prop::collection::vec(op_strategy(1000), 0..300),
    ) {
        let mut s = start;
        let growable_at_start = s.is_growable();
        let limit = s.limit_sectors();
        let mut handed_out: Vec<(u64, u64)> = Vec::new();
        // The size the storage was last asked to have.
        let mut requested = s.capacity_sectors();
        let mut in_flight: Option<u64> = None;
        let mut no_space_events = 0;
        check_invariants(&s)?;
        for op in ops {
            let before = s;
            match op {
                Op::Allocate(n) => {
                    match s.allocate(n) {
                        Ok(start) => {
                            // Right after the previous one, inside the capacity.
                            prop_assert_eq!(start, before.used_sectors());
                            prop_assert!(n <= before.free_sectors());
                            prop_assert_eq!(s.used_sectors(), start + n);
                            handed_out.push((start, n));
                        }
                        Err(NoSpace) => {
                            prop_assert!(n > before.free_sectors());
                            prop_assert_eq!(s.used_sectors(), before.used_sectors());
                            prop_assert_eq!(s.capacity_sectors(), before.capacity_sectors());
                        }
                    }
                    prop_assert_eq!(s.requested_sectors(), requested);
                }
                Op::StartGrowth => {
                    let wanted = s.needs_growth();
                    let started = s.start_growth();
                    prop_assert_eq!(wanted, started);
                    if let Some(size) = started {
                        prop_assert!(in_flight.is_none(), "two growths at once");
                        prop_assert!(growable_at_start);
                        // Grows, by at most a step, never past the limit.
                        prop_assert!(size > before.capacity_sectors());
                        prop_assert!(size <= limit);
                        prop_assert!(size - before.capacity_sectors() <= s.step_sectors());
                        prop_assert!(
                            size - before.capacity_sectors() == s.step_sectors() || size == limit
                        );
                        prop_assert!(s.is_growing());
                        in_flight = Some(size);
                        requested = size;
                    } else {
                        prop_assert_eq!(s, before);
                    }
                }
                Op::Grown(delta) => {
                    if let Some(size) = in_flight.take() {
                        let reported = size.saturating_add_signed(delta);
                        s.grown(reported);
                        prop_assert!(!s.is_growing());
                        let expected = reported.min(limit).max(before.capacity_sectors());
                        prop_assert_eq!(s.capacity_sectors(), expected);
                        requested = requested.max(expected);
                        if expected == before.capacity_sectors() {
                            prop_assert!(!s.is_growable());
                        }
                    }
                }
                Op::GrowthFailed => {
                    if in_flight.take().is_some() {
                        s.growth_failed();
                        prop_assert!(!s.is_growing());
                        prop_assert!(!s.is_growable());
                        prop_assert_eq!(s.capacity_sectors(), before.capacity_sectors());
                    }
                }
                Op::NoSpaceEvent => {
                    let due = s.limit_reached();
                    match s.no_space_event() {
                        Some(data) => {
                            prop_assert!(due);
                            prop_assert_eq!(data, requested);
                            no_space_events += 1;
                        }
                        None => prop_assert!(!due || no_space_events == 1),
                    }
                    prop_assert!(no_space_events <= 1);
                }
            }
            // Never grows unless it is a file; never past the limit.
            prop_assert_eq!(s.limit_sectors(), limit);
            if !growable_at_start {
                prop_assert_eq!(s.capacity_sectors(), start.capacity_sectors());
            }
            // Low space and room to grow always gets a growth started.
            if in_flight.is_none() && s.is_growable() {
                let low = s.free_sectors() <= s.step_sectors() / 2;
                prop_assert!(!low || s.needs_growth().is_some());
            }
            check_invariants(&s)?;
        }
        // The allocations are disjoint, in order, and inside the storage.
        for pair in handed_out.windows(2) {
            prop_assert!(pair[0].0 + pair[0].1 <= pair[1].0);
        }
        if let Some(&(start, n)) = handed_out.last() {
            prop_assert!(start + n <= s.capacity_sectors());
        }
    }

    #[test]
    fn prompt_growth_with_small_chunks_fails_only_at_the_limit(
        capacity in 0u64..5_000,
        limit in 0u64..50_000,
        step in 1u64..2_000,
        chunks in prop::collection::vec(1u64..1_000, 1..200),
    ) {
        // A caller that grows as soon as asked, with chunks of at most half
        // a step, never runs out before the capacity reached the limit.
        let mut s = StorageAccount::for_file(capacity, limit, step);
        for n in chunks {
            while let Some(size) = s.start_growth() {
                s.grown(size);
            }
            let n = n.min(s.step_sectors() / 2).max(1);
            match s.allocate(n) {
                Ok(_) => {}
                Err(NoSpace) => {
                    prop_assert_eq!(s.capacity_sectors(), s.limit_sectors());
                    prop_assert!(s.limit_reached());
                }
            }
            if s.limit_reached() {
                prop_assert_eq!(s.capacity_sectors(), s.limit_sectors());
            }
        }
    }
}
