//! Unit tests of the chunk geometry and of the chunk state machine.

use blksnap_logic::chunk::{
    chunk_buffer_bytes, chunk_count, chunk_sectors, chunk_shift, on_event, sectors_to_chunks,
    Action, ChunkParams, ChunkState, Event, Invalid, MAX_CHUNK_SHIFT, MIN_CHUNK_SHIFT,
};

/// Sectors in a 256 KiB chunk, the default minimum.
const S256K: u64 = 512;

fn params(minimum_shift: u32, maximum_count_shift: u32, maximum_shift: u32) -> ChunkParams {
    ChunkParams {
        minimum_shift,
        maximum_count_shift,
        maximum_shift,
    }
}

// --- chunk_count -----------------------------------------------------------

#[test]
fn chunk_count_of_empty_device_is_zero_for_any_shift() {
    for shift in [0, 8, 9, 18, 31, 72, 73, 200, u32::MAX] {
        assert_eq!(chunk_count(0, shift), 0, "shift {shift}");
    }
}

#[test]
fn chunk_count_rounds_up_partial_last_chunk() {
    assert_eq!(chunk_count(1, 18), 1);
    assert_eq!(chunk_count(S256K - 1, 18), 1);
    assert_eq!(chunk_count(S256K, 18), 1);
    assert_eq!(chunk_count(S256K + 1, 18), 2);
    assert_eq!(chunk_count(2 * S256K, 18), 2);
    assert_eq!(chunk_count(2 * S256K + 1, 18), 3);
    assert_eq!(chunk_count(1000, 9), 1000);
}

#[test]
fn chunk_count_with_chunks_below_a_sector_counts_sectors() {
    assert_eq!(chunk_count(7, 0), 7);
    assert_eq!(chunk_count(7, 8), 7);
    assert_eq!(chunk_count(u64::MAX, 0), u64::MAX);
}

#[test]
fn chunk_count_of_the_whole_sector_space() {
    assert_eq!(chunk_count(u64::MAX, 9), u64::MAX);
    assert_eq!(chunk_count(u64::MAX, 18), 1 << 55);
    assert_eq!(chunk_count(u64::MAX, 72), 2);
    assert_eq!(chunk_count(u64::MAX, 73), 1);
    assert_eq!(chunk_count(u64::MAX, u32::MAX), 1);
}

// --- chunk_shift -----------------------------------------------------------

#[test]
fn chunk_shift_defaults() {
    let p = ChunkParams::default();
    assert_eq!(p, ChunkParams::DEFAULT);
    assert_eq!(
        (p.minimum_shift, p.maximum_count_shift, p.maximum_shift),
        (18, 40, 26)
    );
    assert_eq!(chunk_shift(0, 512, &p), 18);
    assert_eq!(chunk_shift(1, 512, &p), 18);
    // 2^40 chunks of 256 KiB exactly (2^58 bytes): no doubling yet.
    assert_eq!(chunk_shift(1 << 49, 512, &p), 18);
    assert_eq!(chunk_shift((1 << 49) + 1, 512, &p), 19);
    // 2^62 bytes: 2^40 chunks of 4 MiB.
    assert_eq!(chunk_shift(1 << 53, 512, &p), 22);
    // Too large even for 64 MiB chunks: stops at the maximum.
    assert_eq!(chunk_shift(u64::MAX, 512, &p), 26);
}

#[test]
fn chunk_shift_doubles_while_too_many_chunks() {
    // At most 2^4 = 16 chunks, from 512 B to 1 MiB.
    let p = params(9, 4, 20);
    assert_eq!(chunk_shift(16, 512, &p), 9);
    assert_eq!(chunk_shift(17, 512, &p), 10);
    assert_eq!(chunk_shift(32, 512, &p), 10);
    assert_eq!(chunk_shift(33, 512, &p), 11);
    assert_eq!(chunk_shift(16 << 11, 512, &p), 20);
    assert_eq!(chunk_shift((16 << 11) + 1, 512, &p), 20);
}

#[test]
fn chunk_shift_is_never_below_the_minimum_io_size() {
    let p = params(9, 63, 26);
    assert_eq!(chunk_shift(1, 0, &p), 9);
    assert_eq!(chunk_shift(1, 1, &p), 9);
    assert_eq!(chunk_shift(1, 512, &p), 9);
    assert_eq!(chunk_shift(1, 513, &p), 10);
    assert_eq!(chunk_shift(1, 4096, &p), 12);
    assert_eq!(chunk_shift(1, 4097, &p), 13);
    assert_eq!(chunk_shift(1, 3 << 20, &p), 22);
    // The minimum I/O size wins over the maximum shift.
    assert_eq!(chunk_shift(1, 1 << 30, &p), 30);
    // With the defaults, only a minimum I/O size above 256 KiB matters.
    let d = ChunkParams::DEFAULT;
    assert_eq!(chunk_shift(1, 4096, &d), 18);
    assert_eq!(chunk_shift(1, 1 << 20, &d), 20);
    assert_eq!(chunk_shift(u64::MAX, 1 << 27, &d), 27);
    assert_eq!(chunk_shift(u64::MAX, 4096, &d), 26);
}

#[test]
fn chunk_shift_clamps_absurd_minimum_io_sizes() {
    let p = ChunkParams::DEFAULT;
    assert_eq!(chunk_shift(1, 1 << 31, &p), MAX_CHUNK_SHIFT);
    assert_eq!(chunk_shift(1, (1 << 31) + 1, &p), MAX_CHUNK_SHIFT);
    assert_eq!(chunk_shift(1, u32::MAX, &p), MAX_CHUNK_SHIFT);
}

#[test]
fn chunk_shift_never_exceeds_what_kvmalloc_holds() {
    assert_eq!(MAX_CHUNK_SHIFT, 30);
    assert!(1u64 << MAX_CHUNK_SHIFT <= i32::MAX as u64);
    assert!(1u64 << (MAX_CHUNK_SHIFT + 1) > i32::MAX as u64);
    assert_eq!(chunk_shift(1, 512, &params(31, 40, 31)), 30);
    assert_eq!(chunk_shift(1, 512, &params(255, 40, 255)), 30);
}

// --- buffers ---------------------------------------------------------------

#[test]
fn chunk_buffer_is_one_chunk_but_never_more_than_the_device() {
    // 64 MiB device.
    let cap = 131_072;
    assert_eq!(chunk_buffer_bytes(cap, 18), 256 << 10);
    assert_eq!(chunk_buffer_bytes(cap, 26), 64 << 20);
    // chunk_minimum_shift 30 on a 64 MiB device: 64 MiB, not 1 GiB.
    assert_eq!(chunk_buffer_bytes(cap, 30), 64 << 20);
    assert_eq!(chunk_buffer_bytes(cap, 200), 64 << 20);
    assert_eq!(chunk_buffer_bytes(cap, 0), 512);
    assert_eq!(chunk_buffer_bytes(0, 18), 0);
    assert_eq!(chunk_buffer_bytes(u64::MAX, 30), 1 << 30);
    assert_eq!(chunk_buffer_bytes(u64::MAX, u32::MAX), u64::MAX);
}

#[test]
fn chunk_shift_with_maximum_below_minimum_returns_minimum() {
    assert_eq!(chunk_shift(u64::MAX, 512, &params(20, 0, 10)), 20);
    assert_eq!(chunk_shift(0, 512, &params(20, 0, 10)), 20);
}

#[test]
fn chunk_shift_clamps_absurd_shifts() {
    assert_eq!(chunk_shift(1, 512, &params(0, 63, 0)), MIN_CHUNK_SHIFT);
    assert_eq!(
        chunk_shift(u64::MAX, 512, &params(0, 0, 0)),
        MIN_CHUNK_SHIFT
    );
    assert_eq!(chunk_shift(1, 512, &params(200, 0, 300)), MAX_CHUNK_SHIFT);
    assert_eq!(
        chunk_shift(u64::MAX, 512, &params(18, 0, u32::MAX)),
        MAX_CHUNK_SHIFT
    );
    assert_eq!(
        chunk_shift(1, 0, &params(u32::MAX, u32::MAX, u32::MAX)),
        MAX_CHUNK_SHIFT
    );
}

#[test]
fn chunk_shift_with_extreme_count_shifts() {
    // 2^0 = 1 chunk at most: grows to the maximum unless one chunk fits.
    assert_eq!(chunk_shift(0, 512, &params(18, 0, 26)), 18);
    assert_eq!(chunk_shift(S256K, 512, &params(18, 0, 26)), 18);
    assert_eq!(chunk_shift(S256K + 1, 512, &params(18, 0, 26)), 19);
    assert_eq!(chunk_shift(u64::MAX, 512, &params(18, 0, 26)), 26);
    // 2^63 chunks: only sector-sized chunks on a huge device exceed it.
    assert_eq!(chunk_shift(u64::MAX, 512, &params(9, 63, 26)), 10);
    // 2^64 and more: no limit.
    for count_shift in [64, 65, 100, u32::MAX] {
        assert_eq!(chunk_shift(u64::MAX, 512, &params(9, count_shift, 26)), 9);
    }
}

// --- sectors_to_chunks -----------------------------------------------------

#[test]
fn sectors_to_chunks_empty_range_is_none() {
    assert_eq!(sectors_to_chunks(0, 0, 18, 10), None);
    assert_eq!(sectors_to_chunks(5, 0, 18, 10), None);
    assert_eq!(sectors_to_chunks(u64::MAX, 0, 18, 10), None);
}

#[test]
fn sectors_to_chunks_within_one_chunk() {
    assert_eq!(sectors_to_chunks(0, 1, 18, 10), Some(0..1));
    assert_eq!(sectors_to_chunks(0, S256K, 18, 10), Some(0..1));
    assert_eq!(sectors_to_chunks(S256K, S256K, 18, 10), Some(1..2));
    assert_eq!(sectors_to_chunks(S256K + 5, 3, 18, 10), Some(1..2));
}

#[test]
fn sectors_to_chunks_spanning_chunks() {
    assert_eq!(sectors_to_chunks(0, S256K + 1, 18, 10), Some(0..2));
    assert_eq!(sectors_to_chunks(S256K - 1, 2, 18, 10), Some(0..2));
    assert_eq!(sectors_to_chunks(S256K - 1, S256K + 2, 18, 10), Some(0..3));
}

#[test]
fn sectors_to_chunks_at_and_past_the_last_chunk() {
    assert_eq!(sectors_to_chunks(9 * S256K, 1, 18, 10), Some(9..10));
    assert_eq!(sectors_to_chunks(10 * S256K - 1, 1, 18, 10), Some(9..10));
    assert_eq!(sectors_to_chunks(10 * S256K, 1, 18, 10), None);
    assert_eq!(sectors_to_chunks(9 * S256K, 10_000, 18, 10), Some(9..10));
    assert_eq!(sectors_to_chunks(0, 100_000, 18, 10), Some(0..10));
    assert_eq!(sectors_to_chunks(0, 1, 18, 0), None);
}

#[test]
fn sectors_to_chunks_near_u64_max() {
    assert_eq!(sectors_to_chunks(0, u64::MAX, 18, 10), Some(0..10));
    assert_eq!(sectors_to_chunks(u64::MAX, 1, 18, 10), None);
    assert_eq!(sectors_to_chunks(u64::MAX, u64::MAX, 9, u64::MAX), None);
    assert_eq!(
        sectors_to_chunks(u64::MAX - 1, u64::MAX, 9, u64::MAX),
        Some(u64::MAX - 1..u64::MAX)
    );
    assert_eq!(
        sectors_to_chunks(u64::MAX, 1, 18, 1 << 55),
        Some((1 << 55) - 1..1 << 55)
    );
    // Chunks as large as the sector space.
    assert_eq!(sectors_to_chunks(u64::MAX, 1, 73, 1), Some(0..1));
    assert_eq!(sectors_to_chunks(u64::MAX, 1, 72, 2), Some(1..2));
    assert_eq!(sectors_to_chunks(u64::MAX, u64::MAX, 200, 5), Some(0..1));
}

#[test]
fn sectors_to_chunks_with_chunks_below_a_sector_counts_sectors() {
    assert_eq!(sectors_to_chunks(3, 2, 0, 10), Some(3..5));
    assert_eq!(sectors_to_chunks(3, 2, 8, 10), Some(3..5));
}

// --- chunk_sectors ---------------------------------------------------------

#[test]
fn chunk_sectors_of_full_chunks() {
    assert_eq!(chunk_sectors(0, 18, 10 * S256K), Some((0, S256K)));
    assert_eq!(chunk_sectors(1, 18, 10 * S256K), Some((S256K, S256K)));
    assert_eq!(chunk_sectors(9, 18, 10 * S256K), Some((9 * S256K, S256K)));
    assert_eq!(chunk_sectors(10, 18, 10 * S256K), None);
}

#[test]
fn chunk_sectors_of_partial_last_chunk() {
    assert_eq!(chunk_count(1000, 18), 2);
    assert_eq!(chunk_sectors(1, 18, 1000), Some((512, 488)));
    assert_eq!(chunk_sectors(2, 18, 1000), None);
    assert_eq!(chunk_sectors(0, 18, 1), Some((0, 1)));
    assert_eq!(chunk_sectors(0, 73, u64::MAX), Some((0, u64::MAX)));
    assert_eq!(
        chunk_sectors(1, 72, u64::MAX),
        Some((1 << 63, (1 << 63) - 1))
    );
}

#[test]
fn chunk_sectors_past_the_end() {
    assert_eq!(chunk_sectors(0, 18, 0), None);
    assert_eq!(chunk_sectors(1, 73, u64::MAX), None);
    assert_eq!(chunk_sectors(2, 72, u64::MAX), None);
    assert_eq!(chunk_sectors(1 << 55, 18, u64::MAX), None);
    assert_eq!(chunk_sectors(u64::MAX, 18, u64::MAX), None);
    assert_eq!(chunk_sectors(u64::MAX, 9, u64::MAX), None);
    assert_eq!(chunk_sectors(u64::MAX, u32::MAX, u64::MAX), None);
}

#[test]
fn chunk_sectors_at_the_end_of_the_sector_space() {
    assert_eq!(
        chunk_sectors((1 << 55) - 1, 18, u64::MAX),
        Some((u64::MAX - 511, 511))
    );
    assert_eq!(
        chunk_sectors(u64::MAX - 1, 9, u64::MAX),
        Some((u64::MAX - 1, 1))
    );
    assert_eq!(chunk_sectors(5, 0, 10), Some((5, 1)));
}

// --- the state machine -----------------------------------------------------

const STATES: [ChunkState; 6] = [
    ChunkState::Untouched,
    ChunkState::Reading,
    ChunkState::InMemory,
    ChunkState::Storing,
    ChunkState::Stored,
    ChunkState::Failed,
];

const EVENTS: [Event; 8] = [
    Event::WriteArrives,
    Event::ImageReadArrives,
    Event::OriginalReadDone,
    Event::ReadDone { ok: true },
    Event::ReadDone { ok: false },
    Event::StoreBegins,
    Event::StoreDone { ok: true },
    Event::StoreDone { ok: false },
];

/// The table of the module documentation, written out once more.
fn expected(state: ChunkState, event: Event) -> Option<(ChunkState, Action)> {
    use Action as A;
    use ChunkState as S;
    use Event as E;
    Some(match (state, event) {
        (S::Untouched, E::WriteArrives) => (S::Reading, A::StartRead),
        (S::Untouched, E::ImageReadArrives) => (S::Untouched, A::ServeFromOriginal),
        (S::Untouched, E::OriginalReadDone) => (S::Untouched, A::CompleteBio),
        (S::Reading, E::WriteArrives) => (S::Reading, A::HoldBio),
        (S::Reading, E::ImageReadArrives) => (S::Reading, A::HoldBio),
        (S::Reading, E::OriginalReadDone) => (S::Reading, A::CompleteBio),
        (S::Reading, E::ReadDone { ok: true }) => (S::InMemory, A::ReleaseHeld),
        (S::Reading, E::ReadDone { ok: false }) => (S::Failed, A::ReleaseHeldAndCorrupt),
        (S::InMemory, E::WriteArrives) => (S::InMemory, A::PassWrite),
        (S::InMemory, E::ImageReadArrives) => (S::InMemory, A::ServeFromMemory),
        (S::InMemory, E::OriginalReadDone) => (S::InMemory, A::ServeFromMemory),
        (S::InMemory, E::StoreBegins) => (S::Storing, A::StartStore),
        (S::Storing, E::WriteArrives) => (S::Storing, A::PassWrite),
        (S::Storing, E::ImageReadArrives) => (S::Storing, A::ServeFromMemory),
        (S::Storing, E::OriginalReadDone) => (S::Storing, A::ServeFromMemory),
        (S::Storing, E::StoreDone { ok: true }) => (S::Stored, A::FreeBuffer),
        (S::Storing, E::StoreDone { ok: false }) => (S::Failed, A::FreeBufferAndCorrupt),
        (S::Stored, E::WriteArrives) => (S::Stored, A::PassWrite),
        (S::Stored, E::ImageReadArrives) => (S::Stored, A::ServeFromStorage),
        (S::Stored, E::OriginalReadDone) => (S::Stored, A::ServeFromStorage),
        (S::Failed, E::WriteArrives) => (S::Failed, A::PassWrite),
        (S::Failed, E::ImageReadArrives) => (S::Failed, A::FailBio),
        (S::Failed, E::OriginalReadDone) => (S::Failed, A::FailBio),
        _ => return None,
    })
}

#[test]
fn every_transition_matches_the_table() {
    let mut valid = 0;
    let mut invalid = 0;
    for state in STATES {
        for event in EVENTS {
            match expected(state, event) {
                Some(next) => {
                    assert_eq!(on_event(state, event), Ok(next), "{state:?} {event:?}");
                    valid += 1;
                }
                None => {
                    assert_eq!(
                        on_event(state, event),
                        Err(Invalid { state, event }),
                        "{state:?} {event:?}"
                    );
                    invalid += 1;
                }
            }
        }
    }
    assert_eq!((valid, invalid), (23, 25));
}

#[test]
fn chunks_start_untouched() {
    assert_eq!(ChunkState::default(), ChunkState::Untouched);
}

#[test]
fn only_completions_can_be_invalid() {
    for state in STATES {
        for event in [
            Event::WriteArrives,
            Event::ImageReadArrives,
            Event::OriginalReadDone,
        ] {
            assert!(on_event(state, event).is_ok(), "{state:?} {event:?}");
        }
    }
}

#[test]
fn completions_are_valid_only_where_their_io_is_in_flight() {
    for state in STATES {
        let read = matches!(state, ChunkState::Reading);
        let queued = matches!(state, ChunkState::InMemory);
        let storing = matches!(state, ChunkState::Storing);
        for ok in [true, false] {
            assert_eq!(on_event(state, Event::ReadDone { ok }).is_ok(), read);
            assert_eq!(on_event(state, Event::StoreDone { ok }).is_ok(), storing);
        }
        assert_eq!(on_event(state, Event::StoreBegins).is_ok(), queued);
    }
}

#[test]
fn only_reading_holds_and_only_untouched_starts_a_read() {
    for state in STATES {
        for event in EVENTS {
            let Ok((next, action)) = on_event(state, event) else {
                continue;
            };
            if action == Action::HoldBio {
                assert_eq!((state, next), (ChunkState::Reading, ChunkState::Reading));
            }
            if action == Action::StartRead {
                assert_eq!((state, next), (ChunkState::Untouched, ChunkState::Reading));
            }
            if next == ChunkState::Reading {
                assert!(matches!(state, ChunkState::Untouched | ChunkState::Reading));
            }
        }
    }
}

#[test]
fn writes_never_fail_and_image_reads_never_pass() {
    for state in STATES {
        let (_, write) = on_event(state, Event::WriteArrives).expect("valid");
        assert!(
            matches!(
                write,
                Action::StartRead | Action::HoldBio | Action::PassWrite
            ),
            "{state:?}: {write:?}"
        );
        let (_, read) = on_event(state, Event::ImageReadArrives).expect("valid");
        assert!(
            !matches!(
                read,
                Action::StartRead | Action::PassWrite | Action::CompleteBio
            ),
            "{state:?}: {read:?}"
        );
    }
}

/// Runs `events` from `Untouched` and returns the actions.
fn run(events: &[Event]) -> (ChunkState, Vec<Action>) {
    let mut state = ChunkState::Untouched;
    let mut actions = Vec::new();
    for &event in events {
        let (next, action) = on_event(state, event).expect("valid");
        state = next;
        actions.push(action);
    }
    (state, actions)
}

#[test]
fn first_write_copies_the_chunk_then_writes_pass() {
    let (state, actions) = run(&[
        Event::WriteArrives,
        Event::WriteArrives,
        Event::ImageReadArrives,
        Event::ReadDone { ok: true },
        // The held bios are dispatched again.
        Event::WriteArrives,
        Event::WriteArrives,
        Event::ImageReadArrives,
        Event::StoreBegins,
        Event::WriteArrives,
        Event::ImageReadArrives,
        Event::StoreDone { ok: true },
        Event::WriteArrives,
        Event::ImageReadArrives,
    ]);
    assert_eq!(state, ChunkState::Stored);
    assert_eq!(
        actions,
        [
            Action::StartRead,
            Action::HoldBio,
            Action::HoldBio,
            Action::ReleaseHeld,
            Action::PassWrite,
            Action::PassWrite,
            Action::ServeFromMemory,
            Action::StartStore,
            Action::PassWrite,
            Action::ServeFromMemory,
            Action::FreeBuffer,
            Action::PassWrite,
            Action::ServeFromStorage,
        ]
    );
}

#[test]
fn overtaken_original_read_is_served_again_from_the_copy() {
    // The image read goes to the original, a write overtakes it.
    let (state, actions) = run(&[
        Event::ImageReadArrives,
        Event::WriteArrives,
        Event::ReadDone { ok: true },
        Event::WriteArrives,
        Event::OriginalReadDone,
    ]);
    assert_eq!(state, ChunkState::InMemory);
    assert_eq!(
        actions,
        [
            Action::ServeFromOriginal,
            Action::StartRead,
            Action::ReleaseHeld,
            Action::PassWrite,
            Action::ServeFromMemory,
        ]
    );
    // Completed while the write was still held: the data is good.
    let (_, actions) = run(&[
        Event::ImageReadArrives,
        Event::WriteArrives,
        Event::OriginalReadDone,
    ]);
    assert_eq!(actions.last(), Some(&Action::CompleteBio));
}

#[test]
fn failed_read_releases_writes_and_fails_image_reads() {
    let (state, actions) = run(&[
        Event::ImageReadArrives,
        Event::WriteArrives,
        Event::ImageReadArrives,
        Event::ReadDone { ok: false },
        Event::WriteArrives,
        Event::ImageReadArrives,
        Event::OriginalReadDone,
    ]);
    assert_eq!(state, ChunkState::Failed);
    assert_eq!(
        actions,
        [
            Action::ServeFromOriginal,
            Action::StartRead,
            Action::HoldBio,
            Action::ReleaseHeldAndCorrupt,
            Action::PassWrite,
            Action::FailBio,
            Action::FailBio,
        ]
    );
}

#[test]
fn failed_store_corrupts_and_later_writes_pass() {
    let (state, actions) = run(&[
        Event::WriteArrives,
        Event::ReadDone { ok: true },
        Event::WriteArrives,
        Event::StoreBegins,
        Event::StoreDone { ok: false },
        Event::WriteArrives,
        Event::ImageReadArrives,
    ]);
    assert_eq!(state, ChunkState::Failed);
    assert_eq!(
        &actions[4..],
        [
            Action::FreeBufferAndCorrupt,
            Action::PassWrite,
            Action::FailBio
        ]
    );
}

#[test]
fn invalid_event_reports_state_and_event() {
    let err = on_event(ChunkState::Stored, Event::ReadDone { ok: true }).unwrap_err();
    assert_eq!(err.state, ChunkState::Stored);
    assert_eq!(err.event, Event::ReadDone { ok: true });
}
