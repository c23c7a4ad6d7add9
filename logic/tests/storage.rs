//! Unit tests of the difference-storage space accounting.

use blksnap_logic::storage::{NoSpace, StorageAccount, MAX_STORAGE_SECTORS};

/// The default growth step, `diff_storage_minimum`: 1 GiB in sectors.
const STEP: u64 = 2_097_152;

// --- construction ----------------------------------------------------------

#[test]
fn new_file_starts_empty_at_its_size() {
    let s = StorageAccount::for_file(1000, 10 * STEP, STEP);
    assert_eq!(s.capacity_sectors(), 1000);
    assert_eq!(s.used_sectors(), 0);
    assert_eq!(s.free_sectors(), 1000);
    assert_eq!(s.limit_sectors(), 10 * STEP);
    assert_eq!(s.step_sectors(), STEP);
    // Asked for nothing beyond its size yet.
    assert_eq!(s.requested_sectors(), 1000);
    assert!(s.is_growable());
    assert!(!s.is_growing());
}

#[test]
fn file_larger_than_the_limit_is_used_whole_and_never_grown() {
    let mut s = StorageAccount::for_file(5 * STEP, STEP, STEP);
    assert_eq!(s.limit_sectors(), 5 * STEP);
    assert!(!s.is_growable());
    assert_eq!(s.allocate(5 * STEP), Ok(0));
    assert_eq!(s.needs_growth(), None);
    assert!(s.limit_reached());
}

#[test]
fn zero_step_counts_as_one_sector() {
    assert_eq!(StorageAccount::for_file(0, 10, 0).step_sectors(), 1);
    assert_eq!(StorageAccount::for_block_device(10, 0).step_sectors(), 1);
}

#[test]
fn huge_sizes_are_clipped_so_bytes_fit_loff_t() {
    assert_eq!(MAX_STORAGE_SECTORS, (i64::MAX as u64) >> 9);
    let s = StorageAccount::for_file(u64::MAX, u64::MAX, u64::MAX);
    assert_eq!(s.capacity_sectors(), MAX_STORAGE_SECTORS);
    assert_eq!(s.limit_sectors(), MAX_STORAGE_SECTORS);
    let s = StorageAccount::for_file(0, u64::MAX, STEP);
    assert_eq!(s.limit_sectors(), MAX_STORAGE_SECTORS);
    let s = StorageAccount::for_block_device(u64::MAX, STEP);
    assert_eq!(s.capacity_sectors(), MAX_STORAGE_SECTORS);
}

// --- allocate --------------------------------------------------------------

#[test]
fn allocations_follow_each_other() {
    let mut s = StorageAccount::for_file(100, 100, 10);
    assert_eq!(s.allocate(10), Ok(0));
    assert_eq!(s.allocate(30), Ok(10));
    assert_eq!(s.allocate(1), Ok(40));
    assert_eq!(s.used_sectors(), 41);
    assert_eq!(s.free_sectors(), 59);
    // Allocations do not change the size asked for.
    assert_eq!(s.requested_sectors(), 100);
}

#[test]
fn allocation_fills_exactly_then_fails() {
    let mut s = StorageAccount::for_file(100, 100, 10);
    assert_eq!(s.allocate(60), Ok(0));
    assert_eq!(s.allocate(41), Err(NoSpace));
    assert_eq!(s.used_sectors(), 60);
    assert_eq!(s.allocate(40), Ok(60));
    assert_eq!(s.free_sectors(), 0);
    assert_eq!(s.allocate(1), Err(NoSpace));
    // Failed allocations do not either.
    assert_eq!(s.requested_sectors(), 100);
}

#[test]
fn zero_sector_allocation_hands_out_nothing() {
    let mut s = StorageAccount::for_file(0, 0, 10);
    assert_eq!(s.allocate(0), Ok(0));
    let mut s = StorageAccount::for_file(10, 10, 10);
    assert_eq!(s.allocate(10), Ok(0));
    assert_eq!(s.allocate(0), Ok(10));
    assert_eq!(s.used_sectors(), 10);
}

#[test]
fn allocation_does_not_wrap() {
    let mut s = StorageAccount::for_file(MAX_STORAGE_SECTORS, MAX_STORAGE_SECTORS, 10);
    assert_eq!(s.allocate(5), Ok(0));
    assert_eq!(s.allocate(u64::MAX), Err(NoSpace));
    assert_eq!(s.allocate(u64::MAX - 4), Err(NoSpace));
    assert_eq!(s.used_sectors(), 5);
    assert_eq!(s.requested_sectors(), MAX_STORAGE_SECTORS);
    assert_eq!(s.allocate(MAX_STORAGE_SECTORS - 5), Ok(5));
    assert_eq!(s.free_sectors(), 0);
}

// --- growth ----------------------------------------------------------------

#[test]
fn empty_file_needs_growth_at_once() {
    let mut s = StorageAccount::for_file(0, 10 * STEP, STEP);
    assert_eq!(s.needs_growth(), Some(STEP));
    assert!(!s.limit_reached());
    assert_eq!(s.start_growth(), Some(STEP));
    assert!(s.is_growing());
    assert_eq!(s.needs_growth(), None);
    assert_eq!(s.start_growth(), None);
    s.grown(STEP);
    assert!(!s.is_growing());
    assert_eq!(s.capacity_sectors(), STEP);
    assert_eq!(s.needs_growth(), None);
}

#[test]
fn growth_starts_when_free_space_falls_to_half_a_step() {
    let mut s = StorageAccount::for_file(STEP, 10 * STEP, STEP);
    assert_eq!(s.allocate(STEP / 2 - 1), Ok(0));
    assert_eq!(s.needs_growth(), None);
    assert_eq!(s.allocate(1), Ok(STEP / 2 - 1));
    assert_eq!(s.free_sectors(), STEP / 2);
    assert_eq!(s.needs_growth(), Some(2 * STEP));
    // Allocations go on while the growth is in flight.
    assert_eq!(s.start_growth(), Some(2 * STEP));
    assert_eq!(s.allocate(STEP / 2), Ok(STEP / 2));
    assert_eq!(s.allocate(1), Err(NoSpace));
    assert!(!s.limit_reached());
    s.grown(2 * STEP);
    assert_eq!(s.allocate(1), Ok(STEP));
    assert_eq!(s.needs_growth(), None);
}

#[test]
fn odd_step_threshold_rounds_down() {
    let mut s = StorageAccount::for_file(10, 100, 7);
    assert_eq!(s.allocate(6), Ok(0));
    assert_eq!(s.needs_growth(), None);
    assert_eq!(s.allocate(1), Ok(6));
    assert_eq!(s.free_sectors(), 3);
    assert_eq!(s.needs_growth(), Some(17));
}

#[test]
fn last_growth_stops_at_the_limit() {
    let limit = 2 * STEP + 1000;
    let mut s = StorageAccount::for_file(0, limit, STEP);
    let mut sizes = Vec::new();
    while let Some(size) = s.start_growth() {
        sizes.push(size);
        s.grown(size);
        s.allocate(s.free_sectors()).expect("fits");
    }
    assert_eq!(sizes, [STEP, 2 * STEP, limit]);
    assert_eq!(s.capacity_sectors(), limit);
    assert!(!s.is_growable());
    assert!(s.limit_reached());
}

#[test]
fn failed_allocation_asks_for_growth_even_with_free_space() {
    let mut s = StorageAccount::for_file(100, 1000, 10);
    assert_eq!(s.allocate(50), Ok(0));
    assert_eq!(s.needs_growth(), None);
    assert_eq!(s.allocate(60), Err(NoSpace));
    assert_eq!(s.needs_growth(), Some(110));
    assert_eq!(s.start_growth(), Some(110));
    s.grown(110);
    // The growth clears the shortage; the free space is not low.
    assert_eq!(s.needs_growth(), None);
    assert_eq!(s.allocate(60), Ok(50));
}

#[test]
fn growth_reported_larger_is_clipped_to_the_limit() {
    let mut s = StorageAccount::for_file(0, 100, 64);
    assert_eq!(s.start_growth(), Some(64));
    s.grown(5000);
    assert_eq!(s.capacity_sectors(), 100);
    assert!(!s.is_growable());
}

#[test]
fn growth_that_does_not_grow_counts_as_failed() {
    let mut s = StorageAccount::for_file(10, 100, 64);
    assert_eq!(s.start_growth(), Some(74));
    s.grown(10);
    assert!(!s.is_growing());
    assert!(!s.is_growable());
    assert_eq!(s.capacity_sectors(), 10);
    assert_eq!(s.needs_growth(), None);
    assert!(s.limit_reached());
    let mut s = StorageAccount::for_file(10, 100, 64);
    s.grown(3);
    assert_eq!(s.capacity_sectors(), 10);
    assert!(!s.is_growable());
}

#[test]
fn partial_growth_is_kept() {
    let mut s = StorageAccount::for_file(0, 1000, 100);
    assert_eq!(s.start_growth(), Some(100));
    s.grown(30);
    assert_eq!(s.capacity_sectors(), 30);
    assert!(s.is_growable());
    assert_eq!(s.needs_growth(), Some(130));
}

#[test]
fn failed_growth_stops_growing() {
    let mut s = StorageAccount::for_file(0, 1000, 100);
    assert_eq!(s.start_growth(), Some(100));
    s.growth_failed();
    assert!(!s.is_growing());
    assert!(!s.is_growable());
    assert_eq!(s.needs_growth(), None);
    assert!(s.limit_reached());
    assert_eq!(s.limit_sectors(), 1000);
}

// --- block devices ---------------------------------------------------------

#[test]
fn block_device_never_grows() {
    let mut s = StorageAccount::for_block_device(1000, 100);
    assert_eq!(s.limit_sectors(), 1000);
    assert!(!s.is_growable());
    assert_eq!(s.allocate(949), Ok(0));
    assert_eq!(s.needs_growth(), None);
    assert!(!s.limit_reached());
    assert_eq!(s.allocate(1), Ok(949));
    assert_eq!(s.free_sectors(), 50);
    assert_eq!(s.needs_growth(), None);
    assert_eq!(s.start_growth(), None);
    assert!(s.limit_reached());
    s.grown(5000);
    assert_eq!(s.capacity_sectors(), 1000);
}

// --- the no_space event ----------------------------------------------------

#[test]
fn no_space_event_is_due_once() {
    let mut s = StorageAccount::for_block_device(100, 20);
    assert_eq!(s.no_space_event(), None);
    assert_eq!(s.allocate(90), Ok(0));
    assert!(s.limit_reached());
    // A block device is never asked to grow: its size is what it has.
    assert_eq!(s.no_space_event(), Some(100));
    assert_eq!(s.no_space_event(), None);
    assert_eq!(s.allocate(20), Err(NoSpace));
    assert!(s.limit_reached());
    assert_eq!(s.no_space_event(), None);
    assert_eq!(s.requested_sectors(), 100);
}

#[test]
fn no_space_event_carries_the_size_not_the_space_used() {
    let mut s = StorageAccount::for_file(100, 100, 2);
    assert_eq!(s.allocate(80), Ok(0));
    assert!(!s.limit_reached());
    assert_eq!(s.allocate(30), Err(NoSpace));
    assert!(s.limit_reached());
    assert_eq!(s.no_space_event(), Some(100));
}

#[test]
fn no_space_event_carries_the_size_of_the_refused_growth() {
    let mut s = StorageAccount::for_file(100, 1000, 100);
    assert_eq!(s.allocate(60), Ok(0));
    assert_eq!(s.start_growth(), Some(200));
    assert_eq!(s.requested_sectors(), 200);
    s.growth_failed();
    assert_eq!(s.capacity_sectors(), 100);
    assert!(s.limit_reached());
    assert_eq!(s.no_space_event(), Some(200));
}

#[test]
fn no_space_event_at_the_limit_reports_the_limit() {
    // The case of the issue: an empty storage file limited to 512 MiB with
    // the default step of 1 GiB grows once, to the limit; copies of 256 KiB
    // then fill it. The event says the storage was asked for 1,048,576
    // sectors, whatever the copies used when it came (917,504 or so).
    const LIMIT: u64 = 1_048_576;
    let mut s = StorageAccount::for_file(0, LIMIT, STEP);
    assert_eq!(s.start_growth(), Some(LIMIT));
    s.grown(LIMIT);
    let mut event = None;
    while s.allocate(512).is_ok() {
        if let Some(data) = s.no_space_event() {
            event.get_or_insert((data, s.used_sectors()));
        }
    }
    let (data, used) = event.unwrap();
    assert_eq!(data, LIMIT);
    assert!(used < LIMIT);
    assert_eq!(s.requested_sectors(), LIMIT);
}

#[test]
fn file_grown_beyond_the_request_counts_as_asked_for_its_size() {
    let mut s = StorageAccount::for_file(100, 1000, 100);
    assert_eq!(s.allocate(60), Ok(0));
    assert_eq!(s.start_growth(), Some(200));
    s.grown(256);
    assert_eq!(s.capacity_sectors(), 256);
    assert_eq!(s.requested_sectors(), 256);
}

#[test]
fn no_space_event_waits_for_the_growth_in_flight() {
    let mut s = StorageAccount::for_file(100, 300, 100);
    assert_eq!(s.allocate(60), Ok(0));
    assert_eq!(s.start_growth(), Some(200));
    assert_eq!(s.allocate(50), Err(NoSpace));
    assert_eq!(s.no_space_event(), None);
    s.grown(200);
    assert_eq!(s.allocate(50), Ok(60));
    assert_eq!(s.allocate(40), Ok(110));
    assert_eq!(s.start_growth(), Some(300));
    s.grown(300);
    assert_eq!(s.allocate(60), Ok(150));
    assert_eq!(s.no_space_event(), None);
    assert_eq!(s.allocate(40), Ok(210));
    assert!(s.limit_reached());
    assert_eq!(s.no_space_event(), Some(300));
    assert_eq!(s.no_space_event(), None);
}

#[test]
fn zero_limit_file_reaches_the_limit_at_once() {
    let mut s = StorageAccount::for_file(0, 0, STEP);
    assert_eq!(s.needs_growth(), None);
    assert!(s.limit_reached());
    assert_eq!(s.no_space_event(), Some(0));
    assert_eq!(s.allocate(1), Err(NoSpace));
}
