//! Sector ranges: seen from another device of the same disk, and against a
//! sorted set of ranges.
//!
//! A bio names sectors of its own block device. A filter of another device
//! of the same disk (the whole disk for a bio of a partition, a partition
//! for a bio of the whole disk) sees them shifted by where the two devices
//! start relative to each other, and a bio of the whole disk may begin
//! before a partition: [`shifted`] gives the part that lies on the other
//! device. [`overlaps`] tells whether a range meets one of a device's
//! sorted, disjoint ranges (the sectors an in-volume storage holds).

/// The `count` sectors from `sector` of one device, seen from a device on
/// which they lie at `sector + offset`: the part at or after that device's
/// start, as (first, count), or `None` if none of them lies there (or
/// `count` is 0). The end is the caller's to cut, who knows the device's
/// size. A range running past the end of the sector space is cut there.
pub fn shifted(sector: u64, count: u64, offset: i64) -> Option<(u64, u64)> {
    let back = offset.unsigned_abs();
    let (first, count) = if offset >= 0 {
        (sector.checked_add(back)?, count)
    } else {
        match sector.checked_sub(back) {
            Some(first) => (first, count),
            // Starts before the device: only what reaches past its start.
            None => (0, count.saturating_sub(back - sector)),
        }
    };
    let count = count.min(u64::MAX - first);
    (count > 0).then_some((first, count))
}

/// Whether the `count` sectors from `sector` meet one of `ranges`: sorted,
/// disjoint `[start, end)` pairs. A binary search: `O(log n)`.
pub fn overlaps(ranges: &[(u64, u64)], sector: u64, count: u64) -> bool {
    let end = sector.saturating_add(count);
    let next = ranges.partition_point(|&(_, range_end)| range_end <= sector);
    count > 0 && ranges.get(next).is_some_and(|&(start, _)| start < end)
}
