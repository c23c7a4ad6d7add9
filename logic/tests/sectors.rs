//! Unit and property tests of the sector-range arithmetic.

use blksnap_logic::sectors::{overlaps, shifted};
use proptest::prelude::*;

#[test]
fn a_partition_bio_seen_from_its_whole_disk_moves_by_the_start() {
    assert_eq!(shifted(10, 8, 2048), Some((2058, 8)));
}

#[test]
fn a_whole_disk_bio_inside_a_partition_moves_back() {
    assert_eq!(shifted(4096, 8, -2048), Some((2048, 8)));
    assert_eq!(shifted(2048, 8, -2048), Some((0, 8)));
}

#[test]
fn a_whole_disk_bio_crossing_the_partition_start_is_cut_there() {
    // Disk sectors 1024..4096 over a partition from sector 2048.
    assert_eq!(shifted(1024, 3072, -2048), Some((0, 2048)));
}

#[test]
fn a_whole_disk_bio_before_the_partition_is_not_on_it() {
    assert_eq!(shifted(0, 2048, -2048), None);
    assert_eq!(shifted(100, 8, -2048), None);
}

#[test]
fn an_empty_range_is_nowhere() {
    assert_eq!(shifted(5, 0, 0), None);
    assert!(!overlaps(&[(0, 10)], 5, 0));
}

#[test]
fn a_range_past_the_sector_space_is_cut() {
    assert_eq!(shifted(u64::MAX - 4, 8, 2), Some((u64::MAX - 2, 2)));
    assert_eq!(shifted(u64::MAX, 1, 1), None);
    assert_eq!(shifted(u64::MAX - 1, 5, 1), None);
}

#[test]
fn overlaps_finds_a_touching_range_only() {
    let r = [(10, 20), (30, 40)];
    assert!(!overlaps(&r, 0, 10));
    assert!(overlaps(&r, 0, 11));
    assert!(overlaps(&r, 19, 1));
    assert!(!overlaps(&r, 20, 10));
    assert!(overlaps(&r, 20, 11));
    assert!(overlaps(&r, 35, 100));
    assert!(!overlaps(&r, 40, 100));
    assert!(!overlaps(&[], 0, u64::MAX));
}

proptest! {
    /// Every sector the shifted range holds is a sector of the original
    /// range moved by the offset, at or after 0; and every such sector is
    /// held.
    #[test]
    fn shifted_keeps_exactly_the_sectors_on_the_device(
        sector in 0u64..1 << 20,
        count in 0u64..1 << 12,
        offset in -(1i64 << 21)..1i64 << 21,
    ) {
        let on_device = |s: u64| i128::from(s) + i128::from(offset) >= 0;
        let want = (sector..sector + count).filter(|&s| on_device(s)).count() as u64;
        match shifted(sector, count, offset) {
            None => prop_assert_eq!(want, 0),
            Some((first, n)) => {
                prop_assert_eq!(n, want);
                let lowest = (sector..sector + count).find(|&s| on_device(s)).unwrap();
                prop_assert_eq!(i128::from(first), i128::from(lowest) + i128::from(offset));
            }
        }
    }

    /// `overlaps` answers as a scan of every range would.
    #[test]
    fn overlaps_agrees_with_a_scan(
        mut bounds in proptest::collection::vec(0u64..1000, 0..12),
        sector in 0u64..1100,
        count in 0u64..200,
    ) {
        bounds.sort_unstable();
        bounds.dedup();
        let ranges: Vec<(u64, u64)> = bounds.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        let end = sector + count;
        let scan = count > 0 && ranges.iter().any(|&(s, e)| s < end && sector < e);
        prop_assert_eq!(overlaps(&ranges, sector, count), scan);
    }
}
