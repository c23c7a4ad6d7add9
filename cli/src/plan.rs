//! What a backup copies: all of a device, or the byte ranges its change
//! tracking marks as changed since the backup a saved state describes.
//!
//! `blksnap backup` keeps, next to each backup file, a [`BackupState`]: the
//! CBT generation, the `changes_number`, the block size and the capacity
//! the device had when the snapshot of that backup was taken. With
//! `--incremental`, [`choose_mode`] compares it with the device's CBT info
//! after the new take and says whether an incremental copy is possible, or
//! why not ([`FullReason`]); [`changed_ranges`] then turns the CBT map into
//! the byte ranges to copy: the blocks whose byte in the map exceeds the
//! saved number, merged where they touch, the last block cut at the
//! capacity. These are pure functions of their inputs, checked on the host
//! against a byte-by-byte model.
//!
//! ```
//! use blksnap::plan::{changed_ranges, ByteRange};
//!
//! // Four 64 KiB blocks, the last one 4 KiB; blocks 1 and 3 changed since
//! // snapshot 2.
//! let map = [1, 3, 2, 4];
//! let ranges = changed_ranges(&map, 2, 65536, 3 * 65536 + 4096).unwrap();
//! assert_eq!(
//!     ranges,
//!     [ByteRange::new(65536, 131072), ByteRange::new(196608, 200704)]
//! );
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{CbtInfo, Uuid};

/// A range of bytes, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Byte just past the range.
    pub end: u64,
}

impl ByteRange {
    /// Returns the range `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Returns the number of bytes in the range.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Returns whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Returns the number of bytes in `ranges`.
pub fn total_len(ranges: &[ByteRange]) -> u64 {
    ranges.iter().map(ByteRange::len).sum()
}

/// Version of the state file format that [`BackupState`] writes.
pub const STATE_VERSION: u32 = 1;

/// What a backup file holds: the CBT state of the device at the take of
/// the snapshot it was copied from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupState {
    /// The device that was backed up, as it was named.
    pub device: PathBuf,
    /// CBT generation at the take.
    pub generation_id: Uuid,
    /// CBT `changes_number` right after the take: the number of that
    /// snapshot. Blocks changed later have a greater byte in the map.
    pub changes_number: u8,
    /// CBT block size in bytes.
    pub block_size: u32,
    /// Capacity of the device in bytes, which is the backup file's size.
    pub device_capacity: u64,
    /// SHA-256 of the whole backup file, in hexadecimal.
    pub sha256: String,
}

/// The state file as JSON: [`BackupState`] with the format version.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    device: String,
    generation_id: String,
    changes_number: u8,
    block_size: u32,
    device_capacity: u64,
    sha256: String,
}

/// Why a state file cannot be read.
#[derive(Debug)]
pub struct ParseStateError(String);

impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseStateError {}

impl BackupState {
    /// Returns the state of a backup of `device` whose take found `info`,
    /// with the file's SHA-256 `sha256`.
    pub fn new(device: &Path, info: &CbtInfo, sha256: String) -> Self {
        Self {
            device: device.to_path_buf(),
            generation_id: info.generation_id,
            changes_number: info.changes_number,
            block_size: info.block_size,
            device_capacity: info.device_capacity,
            sha256,
        }
    }

    /// Returns the state as one line of JSON, with a newline.
    pub fn to_json(&self) -> String {
        let file = StateFile {
            version: STATE_VERSION,
            device: self.device.to_string_lossy().into_owned(),
            generation_id: self.generation_id.to_string(),
            changes_number: self.changes_number,
            block_size: self.block_size,
            device_capacity: self.device_capacity,
            sha256: self.sha256.clone(),
        };
        // A struct of integers and strings: serializing cannot fail.
        let text = serde_json::to_string(&file).expect("plain data serializes to JSON");
        format!("{text}\n")
    }

    /// Parses a state from what [`to_json`](Self::to_json) wrote.
    pub fn from_json(text: &str) -> Result<Self, ParseStateError> {
        let file: StateFile =
            serde_json::from_str(text).map_err(|e| ParseStateError(format!("not a state: {e}")))?;
        if file.version != STATE_VERSION {
            return Err(ParseStateError(format!(
                "state version {} is not the supported {STATE_VERSION}",
                file.version
            )));
        }
        let generation_id = file
            .generation_id
            .parse()
            .map_err(|e| ParseStateError(format!("generation_id: {e}")))?;
        Ok(Self {
            device: PathBuf::from(file.device),
            generation_id,
            changes_number: file.changes_number,
            block_size: file.block_size,
            device_capacity: file.device_capacity,
            sha256: file.sha256,
        })
    }
}

/// Why a backup copies the whole device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FullReason {
    /// No incremental backup was asked for.
    NotAsked,
    /// There is no state file, so no previous backup to build on.
    NoState,
    /// The state file could not be read or parsed.
    BadState(String),
    /// There is no backup file, or not one of the device's capacity.
    NoBackupFile,
    /// The backup file's size is not the capacity the state records.
    BackupSize {
        /// Size of the file.
        file: u64,
        /// Capacity in the state.
        saved: u64,
    },
    /// The change tracking has a new generation: its map says nothing about
    /// the changes since the saved state.
    Generation {
        /// Generation in the state.
        saved: Uuid,
        /// Generation of the device now.
        now: Uuid,
    },
    /// The CBT block size differs from the saved one.
    BlockSize {
        /// Block size in the state.
        saved: u32,
        /// Block size now.
        now: u32,
    },
    /// The device's capacity differs from the saved one.
    Capacity {
        /// Capacity in the state.
        saved: u64,
        /// Capacity now.
        now: u64,
    },
    /// The saved changes_number is past the device's: the state does not
    /// belong to this device's history.
    Ahead {
        /// changes_number in the state.
        saved: u8,
        /// changes_number now.
        now: u8,
    },
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAsked => f.write_str("no incremental backup was asked for"),
            Self::NoState => f.write_str("there is no state of a previous backup"),
            Self::BadState(why) => write!(f, "the state of the previous backup is unusable: {why}"),
            Self::NoBackupFile => f.write_str("the previous backup file is missing"),
            Self::BackupSize { file, saved } => write!(
                f,
                "the previous backup file has {file} bytes, not the {saved} of the device"
            ),
            Self::Generation { saved, now } => write!(
                f,
                "the change tracking has a new generation ({now}, the backup has {saved})"
            ),
            Self::BlockSize { saved, now } => write!(
                f,
                "the change-tracking block size is {now}, the backup's was {saved}"
            ),
            Self::Capacity { saved, now } => {
                write!(f, "the device has {now} bytes, the backup has {saved}")
            }
            Self::Ahead { saved, now } => write!(
                f,
                "the backup's changes_number {saved} is past the device's {now}"
            ),
        }
    }
}

impl FullReason {
    /// Returns a short name of the reason, for JSON and scripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NotAsked => "not_asked",
            Self::NoState => "no_state",
            Self::BadState(_) => "bad_state",
            Self::NoBackupFile => "no_backup_file",
            Self::BackupSize { .. } => "backup_size",
            Self::Generation { .. } => "generation",
            Self::BlockSize { .. } => "block_size",
            Self::Capacity { .. } => "capacity",
            Self::Ahead { .. } => "ahead",
        }
    }
}

/// How a backup copies a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every byte, for this reason.
    Full(FullReason),
    /// Only the blocks whose byte in the CBT map exceeds `since`, into the
    /// previous backup file.
    Incremental {
        /// changes_number of the previous backup.
        since: u8,
    },
}

impl Mode {
    /// Returns `"full"` or `"incremental"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Full(_) => "full",
            Self::Incremental { .. } => "incremental",
        }
    }
}

/// What is known of the previous backup: its state file, read or not.
#[derive(Clone, Debug)]
pub enum Previous {
    /// There is no state file.
    Missing,
    /// The state file exists but cannot be used, for this reason.
    Unreadable(String),
    /// The state file, and the size of the backup file (`None` if missing).
    Found(BackupState, Option<u64>),
}

/// Decides how to back up a device whose CBT info after the take is `now`,
/// given whether an incremental backup was asked for and what is known of
/// the previous one.
pub fn choose_mode(incremental: bool, previous: &Previous, now: &CbtInfo) -> Mode {
    if !incremental {
        return Mode::Full(FullReason::NotAsked);
    }
    let (state, file_size) = match previous {
        Previous::Missing => return Mode::Full(FullReason::NoState),
        Previous::Unreadable(why) => return Mode::Full(FullReason::BadState(why.clone())),
        Previous::Found(state, size) => (state, *size),
    };
    let reason = if state.generation_id != now.generation_id {
        FullReason::Generation {
            saved: state.generation_id,
            now: now.generation_id,
        }
    } else if state.block_size != now.block_size {
        FullReason::BlockSize {
            saved: state.block_size,
            now: now.block_size,
        }
    } else if state.device_capacity != now.device_capacity {
        FullReason::Capacity {
            saved: state.device_capacity,
            now: now.device_capacity,
        }
    } else if state.changes_number > now.changes_number {
        FullReason::Ahead {
            saved: state.changes_number,
            now: now.changes_number,
        }
    } else {
        match file_size {
            None => FullReason::NoBackupFile,
            Some(size) if size != state.device_capacity => FullReason::BackupSize {
                file: size,
                saved: state.device_capacity,
            },
            Some(_) => {
                return Mode::Incremental {
                    since: state.changes_number,
                }
            }
        }
    };
    Mode::Full(reason)
}

/// Why a CBT map cannot be planned from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The block size is 0.
    ZeroBlockSize,
    /// The map does not have one byte per block of the capacity.
    MapLength {
        /// Bytes in the map.
        map: usize,
        /// Blocks of the capacity.
        blocks: u64,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroBlockSize => f.write_str("the CBT block size is 0"),
            Self::MapLength { map, blocks } => write!(
                f,
                "the CBT map has {map} bytes, but the device has {blocks} blocks"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Returns the number of blocks of `block_size` bytes that cover
/// `capacity` bytes, the last one possibly partial.
pub fn block_count(capacity: u64, block_size: u32) -> Option<u64> {
    (block_size > 0).then(|| capacity.div_ceil(u64::from(block_size)))
}

/// Returns the byte ranges a full copy of `capacity` bytes copies: one, or
/// none for an empty device.
pub fn full_ranges(capacity: u64) -> Vec<ByteRange> {
    if capacity == 0 {
        Vec::new()
    } else {
        vec![ByteRange::new(0, capacity)]
    }
}

/// Returns the byte ranges of the blocks changed since snapshot `since`:
/// those whose byte in `map` is greater, blocks of `block_size` bytes,
/// adjacent ones merged, the last block cut at `capacity`. Sorted, not
/// empty, not touching each other.
pub fn changed_ranges(
    map: &[u8],
    since: u8,
    block_size: u32,
    capacity: u64,
) -> Result<Vec<ByteRange>, PlanError> {
    let blocks = block_count(capacity, block_size).ok_or(PlanError::ZeroBlockSize)?;
    if map.len() as u64 != blocks {
        return Err(PlanError::MapLength {
            map: map.len(),
            blocks,
        });
    }
    let size = u64::from(block_size);
    let mut ranges: Vec<ByteRange> = Vec::new();
    for (block, _) in map.iter().enumerate().filter(|(_, &n)| n > since) {
        let start = block as u64 * size;
        let end = (start + size).min(capacity);
        match ranges.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => ranges.push(ByteRange::new(start, end)),
        }
    }
    Ok(ranges)
}

/// Returns the union of `a` and `b` cut at `capacity`: sorted, without
/// empty ranges, overlapping and touching ones merged.
pub fn merge_ranges(a: &[ByteRange], b: &[ByteRange], capacity: u64) -> Vec<ByteRange> {
    let mut all: Vec<ByteRange> = a
        .iter()
        .chain(b)
        .map(|r| ByteRange::new(r.start, r.end.min(capacity)))
        .filter(|r| !r.is_empty())
        .collect();
    all.sort_unstable();
    let mut out: Vec<ByteRange> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merged_ranges_are_sorted_cut_and_joined() {
        let r = ByteRange::new;
        assert_eq!(merge_ranges(&[], &[], 100), []);
        assert_eq!(
            merge_ranges(
                &[r(50, 60), r(0, 10)],
                &[r(10, 20), r(55, 70), r(90, 200)],
                100
            ),
            [r(0, 20), r(50, 70), r(90, 100)]
        );
        assert_eq!(
            merge_ranges(&[r(5, 5), r(120, 130)], &[r(3, 4)], 100),
            [r(3, 4)]
        );
    }

    const GEN: Uuid = Uuid::from_bytes([7; 16]);

    fn info(changes_number: u8) -> CbtInfo {
        CbtInfo {
            device_capacity: 64 << 20,
            block_size: 65536,
            block_count: 1024,
            generation_id: GEN,
            changes_number,
        }
    }

    fn state(changes_number: u8) -> BackupState {
        BackupState::new(
            Path::new("/dev/loop0"),
            &info(changes_number),
            "ab".repeat(32),
        )
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = state(3);
        let text = s.to_json();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 1);
        assert_eq!(BackupState::from_json(&text).unwrap(), s);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["device"], "/dev/loop0");
        assert_eq!(
            value["generation_id"],
            "07070707-0707-0707-0707-070707070707"
        );
        assert_eq!(value["changes_number"], 3);
        assert_eq!(value["block_size"], 65536);
        assert_eq!(value["device_capacity"], 64 << 20);
        let max = BackupState {
            device: PathBuf::from("/dev/disk/by-label/a \"b\""),
            generation_id: Uuid::from_bytes([0xff; 16]),
            changes_number: 255,
            block_size: u32::MAX,
            device_capacity: u64::MAX,
            sha256: String::new(),
        };
        assert_eq!(BackupState::from_json(&max.to_json()).unwrap(), max);
    }

    #[test]
    fn bad_state_files_are_refused() {
        let good = state(1).to_json();
        for (text, want) in [
            ("", "not a state"),
            ("{}", "not a state"),
            ("[1,2]", "not a state"),
            (&good.replace("\"version\":1", "\"version\":2"), "version 2"),
            (
                &good.replace("07070707-0707", "0707070-70707"),
                "generation_id",
            ),
            (
                &good.replace("\"changes_number\":1", "\"changes_number\":256"),
                "not a state",
            ),
            (
                &good.replace("\"block_size\":65536", "\"block_size\":-1"),
                "not a state",
            ),
            (&good.replace('}', ",\"x\":1}"), "not a state"),
        ] {
            let err = BackupState::from_json(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    fn found(s: BackupState) -> Previous {
        let size = s.device_capacity;
        Previous::Found(s, Some(size))
    }

    #[test]
    fn incremental_when_everything_matches() {
        assert_eq!(
            choose_mode(true, &found(state(1)), &info(2)),
            Mode::Incremental { since: 1 }
        );
        // Other backups in between: still the blocks changed since 1.
        assert_eq!(
            choose_mode(true, &found(state(1)), &info(9)),
            Mode::Incremental { since: 1 }
        );
        // The same number: nothing changed since (the map has nothing > n).
        assert_eq!(
            choose_mode(true, &found(state(4)), &info(4)),
            Mode::Incremental { since: 4 }
        );
    }

    #[test]
    fn full_unless_asked() {
        assert_eq!(
            choose_mode(false, &found(state(1)), &info(2)),
            Mode::Full(FullReason::NotAsked)
        );
    }

    #[test]
    fn generation_mismatch_falls_back_to_full() {
        let now = CbtInfo {
            generation_id: Uuid::from_bytes([9; 16]),
            ..info(1)
        };
        let mode = choose_mode(true, &found(state(5)), &now);
        assert_eq!(
            mode,
            Mode::Full(FullReason::Generation {
                saved: GEN,
                now: Uuid::from_bytes([9; 16])
            })
        );
        let Mode::Full(reason) = mode else {
            unreachable!()
        };
        assert_eq!(reason.name(), "generation");
        let text = reason.to_string();
        assert!(text.contains("new generation"), "{text}");
        assert!(text.contains("09090909-0909"), "{text}");
    }

    #[test]
    fn other_mismatches_fall_back_to_full() {
        let cases = [
            (Previous::Missing, info(1), FullReason::NoState),
            (
                Previous::Unreadable("garbage".into()),
                info(1),
                FullReason::BadState("garbage".into()),
            ),
            (
                Previous::Found(state(1), None),
                info(2),
                FullReason::NoBackupFile,
            ),
            (
                Previous::Found(state(1), Some(4096)),
                info(2),
                FullReason::BackupSize {
                    file: 4096,
                    saved: 64 << 20,
                },
            ),
            (
                found(state(1)),
                CbtInfo {
                    block_size: 131072,
                    ..info(2)
                },
                FullReason::BlockSize {
                    saved: 65536,
                    now: 131072,
                },
            ),
            (
                found(state(1)),
                CbtInfo {
                    device_capacity: 128 << 20,
                    ..info(2)
                },
                FullReason::Capacity {
                    saved: 64 << 20,
                    now: 128 << 20,
                },
            ),
            (
                found(state(7)),
                info(2),
                FullReason::Ahead { saved: 7, now: 2 },
            ),
        ];
        for (previous, now, want) in cases {
            assert_eq!(
                choose_mode(true, &previous, &now),
                Mode::Full(want.clone()),
                "{previous:?}"
            );
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn changed_ranges_merge_and_cut_the_last_block() {
        // 10 blocks of 4 KiB, the last one 100 bytes.
        let cap = 9 * 4096 + 100;
        let map = [0, 2, 2, 1, 3, 0, 0, 2, 0, 5];
        assert_eq!(
            changed_ranges(&map, 1, 4096, cap).unwrap(),
            [
                ByteRange::new(4096, 3 * 4096),
                ByteRange::new(4 * 4096, 5 * 4096),
                ByteRange::new(7 * 4096, 8 * 4096),
                ByteRange::new(9 * 4096, cap),
            ]
        );
        assert_eq!(
            changed_ranges(&map, 0, 4096, cap).unwrap(),
            [
                ByteRange::new(4096, 5 * 4096),
                ByteRange::new(7 * 4096, 8 * 4096),
                ByteRange::new(9 * 4096, cap),
            ]
        );
        assert!(changed_ranges(&map, 5, 4096, cap).unwrap().is_empty());
        assert!(changed_ranges(&[], 0, 4096, 0).unwrap().is_empty());
        assert_eq!(
            changed_ranges(&[1; 3], 0, 4096, 3 * 4096).unwrap(),
            full_ranges(3 * 4096)
        );
    }

    #[test]
    fn changed_ranges_refuse_a_map_of_the_wrong_length() {
        assert_eq!(
            changed_ranges(&[0; 9], 0, 4096, 9 * 4096 + 1),
            Err(PlanError::MapLength { map: 9, blocks: 10 })
        );
        assert_eq!(
            changed_ranges(&[0; 11], 0, 4096, 10 * 4096),
            Err(PlanError::MapLength {
                map: 11,
                blocks: 10
            })
        );
        assert_eq!(
            changed_ranges(&[0; 1], 0, 0, 10),
            Err(PlanError::ZeroBlockSize)
        );
    }

    #[test]
    fn full_ranges_cover_the_device() {
        assert_eq!(full_ranges(0), []);
        assert_eq!(full_ranges(5), [ByteRange::new(0, 5)]);
        assert_eq!(total_len(&full_ranges(1 << 40)), 1 << 40);
    }

    /// The reference: whether byte `b` of the device is to be copied.
    fn model_changed(map: &[u8], since: u8, block_size: u32, b: u64) -> bool {
        map[(b / u64::from(block_size)) as usize] > since
    }

    proptest! {
        #[test]
        fn changed_ranges_match_a_byte_model(
            block_shift in 0u32..8,
            blocks in 0u64..40,
            cut in 0u64..256,
            seed in proptest::collection::vec(0u8..6, 40),
            since in 0u8..6,
        ) {
            let block_size = 1u32 << block_shift;
            // A partial last block of 1..block_size bytes, or none.
            let capacity = if blocks == 0 {
                0
            } else {
                (blocks - 1) * u64::from(block_size) + 1 + cut % u64::from(block_size)
            };
            let map = &seed[..blocks as usize];
            let ranges = changed_ranges(map, since, block_size, capacity).unwrap();
            // Sorted, not empty, not touching, within the device.
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].end < pair[1].start);
            }
            for r in &ranges {
                prop_assert!(!r.is_empty());
                prop_assert!(r.end <= capacity);
            }
            // Exactly the bytes the model picks.
            let mut covered = vec![false; capacity as usize];
            for r in &ranges {
                for b in r.start..r.end {
                    covered[b as usize] = true;
                }
            }
            for b in 0..capacity {
                prop_assert_eq!(covered[b as usize], model_changed(map, since, block_size, b), "byte {}", b);
            }
            let want = (0..capacity).filter(|&b| model_changed(map, since, block_size, b)).count();
            prop_assert_eq!(total_len(&ranges), want as u64);
        }

        #[test]
        fn a_wrong_map_length_is_an_error(
            block_size in 1u32..5000,
            capacity in 0u64..100_000,
            delta in 1usize..3,
            longer: bool,
        ) {
            let blocks = block_count(capacity, block_size).unwrap() as usize;
            let len = if longer { blocks + delta } else { blocks.saturating_sub(delta) };
            prop_assume!(len != blocks);
            let is_map_length = matches!(
                changed_ranges(&vec![1; len], 0, block_size, capacity),
                Err(PlanError::MapLength { .. })
            );
            prop_assert!(is_map_length);
        }
    }
}
