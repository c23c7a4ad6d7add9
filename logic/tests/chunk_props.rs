//! Property tests of the chunk geometry against plain reference arithmetic,
//! and of the chunk state machine driven by a simulated caller.

use blksnap_logic::chunk::{
    chunk_buffer_bytes, chunk_count, chunk_sectors, chunk_shift, on_event, sectors_to_chunks,
    Action, ChunkParams, ChunkState, Event, MAX_CHUNK_SHIFT, MIN_CHUNK_SHIFT,
};
use proptest::prelude::*;

// --- reference arithmetic in u128, where nothing can overflow ----------------

/// Log2 of the chunk size in sectors, as the module documents it.
fn per_chunk(shift: u32) -> u32 {
    shift.saturating_sub(9)
}

/// `ceil(capacity / 2^per_chunk)`.
fn ref_chunk_count(capacity: u64, shift: u32) -> u64 {
    let s = per_chunk(shift);
    let capacity = u128::from(capacity);
    let count = if s >= 128 {
        u128::from(capacity > 0)
    } else {
        (capacity >> s) + u128::from(capacity & ((1u128 << s) - 1) != 0)
    };
    u64::try_from(count).unwrap()
}

/// The chunks touched by the sectors `[sector, min(sector + count, 2^64))`.
fn ref_sectors_to_chunks(
    sector: u64,
    count: u64,
    shift: u32,
    chunks: u64,
) -> Option<std::ops::Range<u64>> {
    let end_sector = (u128::from(sector) + u128::from(count)).min(1u128 << 64);
    if end_sector <= u128::from(sector) {
        return None;
    }
    let s = per_chunk(shift);
    let chunk_of = |sector: u128| if s >= 128 { 0 } else { sector >> s };
    let first = chunk_of(u128::from(sector));
    let last = chunk_of(end_sector - 1);
    if first >= u128::from(chunks) {
        return None;
    }
    let end = (last + 1).min(u128::from(chunks));
    Some(u64::try_from(first).unwrap()..u64::try_from(end).unwrap())
}

/// The sectors of `chunk`, clipped to the capacity.
fn ref_chunk_sectors(chunk: u64, shift: u32, capacity: u64) -> Option<(u64, u64)> {
    let s = per_chunk(shift);
    let (start, size) = if s >= 128 {
        (if chunk == 0 { 0 } else { u128::MAX }, u128::MAX)
    } else {
        (u128::from(chunk) << s, 1u128 << s)
    };
    let capacity = u128::from(capacity);
    if start >= capacity {
        return None;
    }
    let count = size.min(capacity - start);
    Some((u64::try_from(start).unwrap(), u64::try_from(count).unwrap()))
}

fn shift_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..80, 9u32..=31, any::<u32>()]
}

proptest! {
    #[test]
    fn chunk_count_matches_reference(capacity in any::<u64>(), shift in shift_strategy()) {
        prop_assert_eq!(chunk_count(capacity, shift), ref_chunk_count(capacity, shift));
    }

    #[test]
    fn chunk_count_matches_reference_small(capacity in 0u64..100_000, shift in 0u32..30) {
        prop_assert_eq!(chunk_count(capacity, shift), ref_chunk_count(capacity, shift));
    }

    #[test]
    fn sectors_to_chunks_matches_reference(
        sector in prop_oneof![any::<u64>(), (u64::MAX - 1_000)..=u64::MAX, 0u64..1_000_000],
        count in prop_oneof![any::<u64>(), 0u64..2_000],
        shift in shift_strategy(),
        chunks in prop_oneof![any::<u64>(), 0u64..1_000],
    ) {
        prop_assert_eq!(
            sectors_to_chunks(sector, count, shift, chunks),
            ref_sectors_to_chunks(sector, count, shift, chunks)
        );
    }

    #[test]
    fn chunk_sectors_matches_reference(
        chunk in prop_oneof![any::<u64>(), 0u64..1_000, (u64::MAX - 10)..=u64::MAX],
        shift in shift_strategy(),
        capacity in prop_oneof![any::<u64>(), 0u64..1_000_000],
    ) {
        prop_assert_eq!(
            chunk_sectors(chunk, shift, capacity),
            ref_chunk_sectors(chunk, shift, capacity)
        );
    }

    #[test]
    fn chunks_tile_the_device(capacity in 0u64..20_000, shift in 9u32..=15) {
        let count = chunk_count(capacity, shift);
        let mut next = 0;
        for chunk in 0..count {
            let (start, len) = chunk_sectors(chunk, shift, capacity).unwrap();
            prop_assert_eq!(start, next);
            prop_assert!(len >= 1);
            // A chunk's sectors touch that chunk only.
            prop_assert_eq!(sectors_to_chunks(start, len, shift, count), Some(chunk..chunk + 1));
            next = start + len;
        }
        prop_assert_eq!(next, capacity);
        prop_assert_eq!(chunk_sectors(count, shift, capacity), None);
    }

    #[test]
    fn buffers_hold_every_chunk_and_no_more_than_the_device(
        capacity in prop_oneof![0u64..20_000, any::<u64>()],
        shift in shift_strategy(),
    ) {
        let one = chunk_buffer_bytes(capacity, shift);
        let device = capacity.saturating_mul(512);
        prop_assert!(one <= device);
        // The largest chunk (the first) fits both, in bytes.
        if let Some((_, len)) = chunk_sectors(0, shift, capacity) {
            prop_assert!(len.saturating_mul(512) <= one);
        }
    }

    #[test]
    fn chunk_shift_obeys_the_rule(
        capacity in prop_oneof![any::<u64>(), 0u64..(1 << 40)],
        min_io in prop_oneof![Just(512u32), Just(4096u32), 0u32..(1 << 22), any::<u32>()],
        minimum_shift in prop_oneof![0u32..40, any::<u32>()],
        maximum_count_shift in prop_oneof![0u32..70, any::<u32>()],
        maximum_shift in prop_oneof![0u32..40, any::<u32>()],
    ) {
        let p = ChunkParams { minimum_shift, maximum_count_shift, maximum_shift };
        let shift = chunk_shift(capacity, min_io, &p);
        let lowest = minimum_shift.clamp(MIN_CHUNK_SHIFT, MAX_CHUNK_SHIFT);
        let highest = maximum_shift.clamp(lowest, MAX_CHUNK_SHIFT);
        prop_assert!((MIN_CHUNK_SHIFT..=MAX_CHUNK_SHIFT).contains(&shift));
        // Never below the minimum I/O size, unless that exceeds the largest chunk.
        let io = u64::from(min_io).max(512).next_power_of_two();
        prop_assert!(1u64 << shift >= io || shift == MAX_CHUNK_SHIFT);
        // The count rule alone (a minimum I/O size of 0 never raises the
        // shift), then the minimum I/O size.
        let by_count = chunk_shift(capacity, 0, &p);
        prop_assert!((lowest..=highest).contains(&by_count));
        let max_count = 1u128.checked_shl(maximum_count_shift);
        let too_many = |s: u32| {
            max_count.is_some_and(|m| u128::from(chunk_count(capacity, s)) > m)
        };
        prop_assert!(!too_many(by_count) || by_count == highest);
        if by_count > lowest {
            prop_assert!(too_many(by_count - 1));
        }
        prop_assert_eq!(shift, by_count.max(io.trailing_zeros().min(MAX_CHUNK_SHIFT)));
    }
}

// --- the state machine driven by a simulated caller ---------------------------

/// A bio held on the chunk.
#[derive(Clone, Copy, Debug)]
enum Bio {
    Write(usize),
    ImageRead(usize),
}

/// What the simulated world does next.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// A new write to the original arrives.
    Write,
    /// A new read of the image arrives.
    ImageRead,
    /// One of the image reads sent to the original completes.
    OriginalReadDone(usize),
    /// The copy-on-write read completes (or a bogus completion is reported).
    ReadDone(bool),
    /// The store worker takes the chunk (or bogusly claims to).
    StoreBegins,
    /// The store completes (or a bogus completion is reported).
    StoreDone(bool),
    /// The snapshot is destroyed: its area closes, as `DiffArea::close`.
    Destroy,
}

/// The chunk, the devices and the caller's bookkeeping.
///
/// Data is modelled by versions: the original holds version 0 at the TAKE
/// and each write that reaches it makes a new version. Writes reach the
/// original at once when passed, and reads see the device when they
/// complete, the worst order the block layer may choose.
#[derive(Default)]
struct World {
    state: ChunkState,
    original: u32,
    buffer: Option<u32>,
    storage: Option<u32>,
    held: Vec<Bio>,
    reading: bool,
    queued: bool,
    storing: bool,
    corrupted: bool,
    /// The area is closed (destroy): from now on writes pass without a
    /// copy and image reads fail, whatever the chunk's state; the chunk's
    /// I/O in flight still completes.
    closed: bool,
    original_reads: Vec<usize>,
    /// How often each write was passed.
    passed: Vec<u32>,
    /// The outcomes of each image read: `Some(version)` or `None` for EIO.
    reads: Vec<Vec<Option<u32>>>,
}

impl World {
    fn state(&self) -> ChunkState {
        self.state
    }

    fn step(&mut self, event: Event) -> Result<Action, TestCaseError> {
        let (next, action) = on_event(self.state(), event)
            .map_err(|e| TestCaseError::fail(format!("{e:?} from a correct caller")))?;
        self.state = next;
        Ok(action)
    }

    fn finish_read(&mut self, id: usize, data: Option<u32>) {
        self.reads[id].push(data);
    }

    /// Dispatches a new or released bio.
    fn dispatch(&mut self, bio: Bio) -> Result<(), TestCaseError> {
        if self.closed {
            // The chunk is not asked any more.
            match bio {
                Bio::Write(id) => {
                    self.passed[id] += 1;
                    self.original += 1;
                }
                Bio::ImageRead(id) => self.finish_read(id, None),
            }
            return Ok(());
        }
        let event = match bio {
            Bio::Write(_) => Event::WriteArrives,
            Bio::ImageRead(_) => Event::ImageReadArrives,
        };
        let action = self.step(event)?;
        match (bio, action) {
            (_, Action::StartRead) => {
                prop_assert!(!self.reading, "a second copy-on-write read");
                prop_assert!(matches!(bio, Bio::Write(_)));
                self.reading = true;
                self.buffer = None;
                self.held.push(bio);
            }
            (_, Action::HoldBio) => self.held.push(bio),
            (Bio::Write(id), Action::PassWrite) => {
                self.passed[id] += 1;
                self.original += 1;
            }
            (Bio::ImageRead(id), Action::ServeFromOriginal) => self.original_reads.push(id),
            (Bio::ImageRead(id), Action::ServeFromMemory) => {
                prop_assert!(self.buffer.is_some(), "served from a missing buffer");
                self.finish_read(id, self.buffer);
            }
            (Bio::ImageRead(id), Action::ServeFromStorage) => {
                prop_assert!(self.storage.is_some(), "served from missing storage");
                self.finish_read(id, self.storage);
            }
            (Bio::ImageRead(id), Action::FailBio) => self.finish_read(id, None),
            _ => prop_assert!(false, "{:?} cannot handle {:?}", bio, action),
        }
        Ok(())
    }

    /// Dispatches the held bios again, as [`Action::ReleaseHeld`] says.
    fn release(&mut self) -> Result<(), TestCaseError> {
        for bio in std::mem::take(&mut self.held) {
            self.dispatch(bio)?;
        }
        prop_assert!(self.held.is_empty(), "a released bio was held again");
        Ok(())
    }

    fn new_bio(&mut self, write: bool) -> Result<(), TestCaseError> {
        let bio = if write {
            self.passed.push(0);
            Bio::Write(self.passed.len() - 1)
        } else {
            self.reads.push(Vec::new());
            Bio::ImageRead(self.reads.len() - 1)
        };
        self.dispatch(bio)
    }

    fn original_read_done(&mut self, pick: usize) -> Result<(), TestCaseError> {
        if self.original_reads.is_empty() {
            return Ok(());
        }
        let id = self
            .original_reads
            .swap_remove(pick % self.original_reads.len());
        if self.closed {
            // Its data is not trusted once the area closed: served again,
            // it fails.
            self.finish_read(id, None);
            return Ok(());
        }
        match self.step(Event::OriginalReadDone)? {
            Action::CompleteBio => self.finish_read(id, Some(self.original)),
            Action::ServeFromMemory => {
                prop_assert!(self.buffer.is_some());
                self.finish_read(id, self.buffer);
            }
            Action::ServeFromStorage => {
                prop_assert!(self.storage.is_some());
                self.finish_read(id, self.storage);
            }
            Action::FailBio => self.finish_read(id, None),
            action => prop_assert!(false, "cannot handle {:?} for a read", action),
        }
        Ok(())
    }

    /// Reports a completion or `StoreBegins`; one for I/O never started must
    /// be rejected and leave the state alone.
    fn chunk_event(&mut self, event: Event) -> Result<(), TestCaseError> {
        let legit = match event {
            Event::ReadDone { .. } => self.reading,
            Event::StoreBegins => self.queued,
            Event::StoreDone { .. } => self.storing,
            _ => unreachable!(),
        };
        if !legit {
            let before = self.state();
            let err = on_event(before, event);
            prop_assert!(err.is_err(), "{:?} accepted in {:?}", event, before);
            prop_assert_eq!(err.unwrap_err().state, before);
            return Ok(());
        }
        let action = self.step(event)?;
        match (event, action) {
            (Event::ReadDone { ok: true }, Action::ReleaseHeld) => {
                self.reading = false;
                self.buffer = Some(self.original);
                self.queued = true;
                self.release()?;
            }
            (Event::ReadDone { ok: false }, Action::ReleaseHeldAndCorrupt) => {
                self.reading = false;
                self.corrupted = true;
                self.release()?;
            }
            (Event::StoreBegins, Action::StartStore) => {
                self.queued = false;
                self.storing = true;
            }
            (Event::StoreDone { ok: true }, Action::FreeBuffer) => {
                self.storing = false;
                self.storage = self.buffer.take();
            }
            (Event::StoreDone { ok: false }, Action::FreeBufferAndCorrupt) => {
                self.storing = false;
                self.buffer = None;
                self.corrupted = true;
            }
            _ => prop_assert!(false, "{:?} cannot handle {:?}", event, action),
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Write => self.new_bio(true),
            Op::ImageRead => self.new_bio(false),
            Op::OriginalReadDone(pick) => self.original_read_done(pick),
            Op::ReadDone(ok) => self.chunk_event(Event::ReadDone { ok }),
            Op::StoreBegins => self.chunk_event(Event::StoreBegins),
            Op::StoreDone(ok) => self.chunk_event(Event::StoreDone { ok }),
            Op::Destroy => {
                self.closed = true;
                Ok(())
            }
        }
    }

    /// Checks what must hold between any two events.
    fn check(&self) -> Result<(), TestCaseError> {
        let state = self.state();
        prop_assert_eq!(self.reading, state == ChunkState::Reading);
        prop_assert_eq!(self.queued, state == ChunkState::InMemory);
        prop_assert_eq!(self.storing, state == ChunkState::Storing);
        prop_assert_eq!(self.corrupted, state == ChunkState::Failed);
        prop_assert!(self.held.is_empty() || state == ChunkState::Reading);
        // Nothing reached the original before the copy was taken, until
        // the snapshot was destroyed.
        if !self.closed && matches!(state, ChunkState::Untouched | ChunkState::Reading) {
            prop_assert_eq!(self.original, 0);
        }
        for outcomes in &self.reads {
            prop_assert!(outcomes.len() <= 1, "an image read finished twice");
            for outcome in outcomes {
                // An image read returns the snapshot's data or an error.
                prop_assert!(
                    outcome.is_none_or(|v| v == 0),
                    "image read saw {:?}",
                    outcome
                );
                prop_assert!(outcome.is_some() || self.corrupted || self.closed);
            }
        }
        for &passed in &self.passed {
            prop_assert!(passed <= 1, "a write passed twice");
        }
        Ok(())
    }

    /// Completes all I/O in flight, successfully.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while !self.original_reads.is_empty() {
            self.original_read_done(0)?;
        }
        if self.reading {
            self.chunk_event(Event::ReadDone { ok: true })?;
        }
        if self.queued {
            self.chunk_event(Event::StoreBegins)?;
        }
        if self.storing {
            self.chunk_event(Event::StoreDone { ok: true })?;
        }
        self.check()
    }
}

/// Runs `ops` then completes the I/O in flight, checking the invariants
/// after each step, and checks the end: every write reached the original
/// once, every image read finished once.
fn run_world(ops: Vec<Op>) -> Result<World, TestCaseError> {
    let mut world = World::default();
    for op in ops {
        world.apply(op)?;
        world.check()?;
    }
    world.drain()?;
    prop_assert!(world.held.is_empty());
    prop_assert!(world.original_reads.is_empty());
    // Every write reached the original exactly once, in the end.
    prop_assert!(world.passed.iter().all(|&n| n == 1), "{:?}", world.passed);
    prop_assert_eq!(world.original as usize, world.passed.len());
    // Every image read finished exactly once.
    prop_assert!(
        world.reads.iter().all(|r| r.len() == 1),
        "{:?}",
        world.reads
    );
    Ok(world)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => Just(Op::Write),
        20 => Just(Op::ImageRead),
        10 => any::<usize>().prop_map(Op::OriginalReadDone),
        6 => Just(Op::ReadDone(true)),
        1 => Just(Op::ReadDone(false)),
        6 => Just(Op::StoreBegins),
        6 => Just(Op::StoreDone(true)),
        1 => Just(Op::StoreDone(false)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_events_are_handled_and_release_each_bio_once(
        ops in prop::collection::vec(op_strategy(), 0..200),
    ) {
        let world = run_world(ops)?;
        let end = world.state();
        prop_assert!(
            matches!(end, ChunkState::Untouched | ChunkState::Stored | ChunkState::Failed),
            "ended in {:?}",
            end
        );
        // Without failures every image read got the snapshot's data.
        if !world.corrupted {
            prop_assert!(world.reads.iter().all(|r| r == &[Some(0)]));
        }
    }

    /// A destroy at any point: the bios held or in flight then still end
    /// once each, and no image read returns anything but the snapshot's
    /// data or an error (`check`).
    #[test]
    fn a_destroy_at_any_point_releases_each_bio_once(
        before in prop::collection::vec(op_strategy(), 0..120),
        after in prop::collection::vec(op_strategy(), 0..80),
    ) {
        let mut ops = before;
        ops.push(Op::Destroy);
        ops.extend(after);
        run_world(ops)?;
    }

    #[test]
    fn arbitrary_events_never_panic_and_errors_keep_the_state(
        events in prop::collection::vec(
            prop_oneof![
                Just(Event::WriteArrives),
                Just(Event::ImageReadArrives),
                Just(Event::OriginalReadDone),
                any::<bool>().prop_map(|ok| Event::ReadDone { ok }),
                Just(Event::StoreBegins),
                any::<bool>().prop_map(|ok| Event::StoreDone { ok }),
            ],
            0..100,
        ),
    ) {
        let mut state = ChunkState::Untouched;
        for event in events {
            match on_event(state, event) {
                Ok((next, _)) => state = next,
                Err(e) => {
                    prop_assert_eq!(e.state, state);
                    prop_assert_eq!(e.event, event);
                }
            }
        }
    }
}
