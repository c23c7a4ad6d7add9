// SPDX-License-Identifier: GPL-2.0

//! Copy-on-write chunks: their geometry and the state machine of one chunk.
//!
//! While a snapshot is held, every original device is cut into chunks, the
//! unit that copy-on-write preserves. This file owns the arithmetic of that
//! cut and the rules that say, for one chunk, what happens to each bio that
//! touches it and to each I/O of the chunk that completes; nothing else. The
//! kernel module's diff area owns the chunk table, the chunk buffers, the
//! lists of held bios and the locks, and calls in here on every write to the
//! original, every read of the image and every completion. It uses only
//! `core`, no allocation and no `unsafe`, never panics and never overflows,
//! so it is compiled unchanged into the module
//! (`#[path = "../logic/src/chunk.rs"] mod chunk;`) and tested on the host by
//! the `blksnap-logic` crate.
//!
//! # Geometry
//!
//! A device of `capacity_sectors` 512-byte sectors is cut into chunks of
//! `1 << shift` bytes; [`chunk_shift`] picks the shift from the module
//! parameters ([`ChunkParams`]) and the device's minimum I/O size,
//! [`chunk_count`] gives the number of chunks (the last one may be partial),
//! [`sectors_to_chunks`] turns the sector range of a bio into the range of
//! chunks it touches, and [`chunk_sectors`] gives the sectors of one chunk,
//! which is what the copy-on-write read and the store cover;
//! [`chunk_buffer_bytes`] sizes the buffer they go through, never larger
//! than the device. A chunk is never smaller than a
//! sector: the geometry functions take any `shift` and treat one below
//! [`SECTOR_SHIFT`] as [`SECTOR_SHIFT`].
//!
//! # The state of a chunk
//!
//! Each chunk is in one [`ChunkState`]; [`on_event`] takes the state and an
//! [`Event`] and returns the new state and the [`Action`] the caller must
//! take, or [`Invalid`] for an event that cannot happen in that state (a
//! completion of an I/O that was never started), leaving the state as it was.
//! The caller serialises the calls for one chunk (the chunk's lock) and does
//! the I/O; at most one copy-on-write read or store of a chunk is in flight.
//!
//! The rules follow from what the original device holds. A chunk that was
//! never copied (`Untouched`) has the snapshot's data on the original, so an
//! image read is sent there. The first write to it must not reach the
//! original before the chunk's data has been read from it, and the block
//! layer may reorder a read and a later write, so the write is held and the
//! copy-on-write read started (`Reading`); further writes and image reads are
//! held too. When the read completes the chunk is `InMemory`, the held bios
//! are released and the chunk waits in the store queue (whose length
//! `chunk_maximum_in_queue` bounds); from now on writes pass at once and
//! image reads are served from the buffer, also while it is being written to
//! the difference storage (`Storing`), and from the storage once it is there
//! (`Stored`).
//!
//! Releasing held bios means taking them off the chunk and dispatching each
//! again, as a new [`Event::WriteArrives`] or [`Event::ImageReadArrives`], in
//! the new state. A released bio is never held again, because only
//! `Reading` holds bios and no state leads back to it; so each held bio is
//! released exactly once.
//!
//! A bio is asked about every chunk it touches ([`sectors_to_chunks`]). A
//! write covering several chunks goes on to the original once each of them
//! has answered [`Action::PassWrite`], at once or on the release that
//! dispatches it again; a chunk that held it holds nothing else of it, so a
//! count of the chunks still holding the write is enough. An image read is
//! cut at chunk boundaries and each piece served as its chunk says.
//!
//! An image read sent to the original can be overtaken: it is submitted
//! while the chunk is `Untouched`, a write arrives, the chunk is copied, the
//! write is released and reaches the device before the image read does. So
//! the caller reports its completion ([`Event::OriginalReadDone`]) and the
//! data it brought back is trusted only if the chunk is still `Untouched` or
//! `Reading`, states in which no write has reached the original since the
//! snapshot was taken; otherwise the read is served again from the copy. This
//! is the check of a sequence lock, with the state as the sequence, and needs
//! no counter of reads in flight.
//!
//! A failed copy-on-write read or store makes the chunk `Failed`, for good,
//! and the snapshot corrupted: the caller queues the corrupted event and
//! image reads of the chunk fail, but writes to the original still pass, so
//! the original never suffers from a broken snapshot. Failures elsewhere
//! (another chunk, a full storage) are the snapshot's business: once it is
//! corrupted the caller fails image I/O before asking the chunk.
//!
//! | state       | event                     | new state   | action                  |
//! |-------------|---------------------------|-------------|-------------------------|
//! | `Untouched` | `WriteArrives`            | `Reading`   | `StartRead`             |
//! | `Untouched` | `ImageReadArrives`        | `Untouched` | `ServeFromOriginal`     |
//! | `Untouched` | `OriginalReadDone`        | `Untouched` | `CompleteBio`           |
//! | `Reading`   | `WriteArrives`            | `Reading`   | `HoldBio`               |
//! | `Reading`   | `ImageReadArrives`        | `Reading`   | `HoldBio`               |
//! | `Reading`   | `OriginalReadDone`        | `Reading`   | `CompleteBio`           |
//! | `Reading`   | `ReadDone { ok: true }`   | `InMemory`  | `ReleaseHeld`           |
//! | `Reading`   | `ReadDone { ok: false }`  | `Failed`    | `ReleaseHeldAndCorrupt` |
//! | `InMemory`  | `WriteArrives`            | `InMemory`  | `PassWrite`             |
//! | `InMemory`  | `ImageReadArrives`        | `InMemory`  | `ServeFromMemory`       |
//! | `InMemory`  | `OriginalReadDone`        | `InMemory`  | `ServeFromMemory`       |
//! | `InMemory`  | `StoreBegins`             | `Storing`   | `StartStore`            |
//! | `Storing`   | `WriteArrives`            | `Storing`   | `PassWrite`             |
//! | `Storing`   | `ImageReadArrives`        | `Storing`   | `ServeFromMemory`       |
//! | `Storing`   | `OriginalReadDone`        | `Storing`   | `ServeFromMemory`       |
//! | `Storing`   | `StoreDone { ok: true }`  | `Stored`    | `FreeBuffer`            |
//! | `Storing`   | `StoreDone { ok: false }` | `Failed`    | `FreeBufferAndCorrupt`  |
//! | `Stored`    | `WriteArrives`            | `Stored`    | `PassWrite`             |
//! | `Stored`    | `ImageReadArrives`        | `Stored`    | `ServeFromStorage`      |
//! | `Stored`    | `OriginalReadDone`        | `Stored`    | `ServeFromStorage`      |
//! | `Failed`    | `WriteArrives`            | `Failed`    | `PassWrite`             |
//! | `Failed`    | `ImageReadArrives`        | `Failed`    | `FailBio`               |
//! | `Failed`    | `OriginalReadDone`        | `Failed`    | `FailBio`               |
//!
//! Every other pair is [`Invalid`]: `ReadDone` outside `Reading`,
//! `StoreBegins` outside `InMemory` and `StoreDone` outside `Storing`.
//!
//! Writes to a snapshot image (a non-default module parameter) are not
//! modelled here: they would need the chunk loaded into memory from the
//! storage and stored again.

use core::ops::Range;

/// Log2 of the size of a sector, the unit of block-layer addresses.
pub const SECTOR_SHIFT: u32 = 9;

/// The smallest chunk shift [`chunk_shift`] returns: one sector.
pub const MIN_CHUNK_SHIFT: u32 = SECTOR_SHIFT;

/// The largest chunk shift [`chunk_shift`] returns: 1 GiB, the largest power
/// of two a kernel `kvmalloc` can hold (at most `INT_MAX` bytes), so a chunk
/// buffer can always be allocated, or refused, without a warning.
pub const MAX_CHUNK_SHIFT: u32 = 30;

/// The module parameters that size the copy-on-write chunks (uapi.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    /// `chunk_minimum_shift`: log2 of the smallest chunk, in bytes.
    pub minimum_shift: u32,
    /// `chunk_maximum_count_shift`: a device should have at most `2^N` chunks.
    pub maximum_count_shift: u32,
    /// `chunk_maximum_shift`: log2 of the largest chunk, in bytes.
    pub maximum_shift: u32,
}

impl ChunkParams {
    /// The parameters' default values: 256 KiB to 64 MiB chunks, at most 2^40.
    pub const DEFAULT: Self = Self {
        minimum_shift: 18,
        maximum_count_shift: 40,
        maximum_shift: 26,
    };
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Returns the log2 of the chunk size, in bytes, for a device.
///
/// Starts at the minimum shift and doubles the chunk while the device would
/// have more than `2^maximum_count_shift` chunks and the shift is below the
/// maximum. Then raises the shift to at least the log2 of the device's
/// minimum I/O size `min_io_bytes`, rounded up to a power of two and taken as
/// at least one sector, so a chunk is never read or written in pieces smaller
/// than the device can do; this rule wins over the maximum shift.
///
/// Absurd parameters give a usable answer instead of an error: both shifts
/// are first clamped to [`MIN_CHUNK_SHIFT`]`..=`[`MAX_CHUNK_SHIFT`], a
/// maximum below the minimum counts as equal to it, a `maximum_count_shift`
/// of 64 or more sets no limit, and a minimum I/O size above `1 <<`
/// [`MAX_CHUNK_SHIFT`] (no device has one) counts as that. So the result is
/// always in that range.
pub fn chunk_shift(capacity_sectors: u64, min_io_bytes: u32, p: &ChunkParams) -> u32 {
    let min = p.minimum_shift.clamp(MIN_CHUNK_SHIFT, MAX_CHUNK_SHIFT);
    // Not `clamp(min, ..)`, whose check that `min <= MAX_CHUNK_SHIFT` could panic.
    let max = p.maximum_shift.min(MAX_CHUNK_SHIFT).max(min);
    let mut shift = min;
    // `None` when `2^maximum_count_shift` does not fit: no `u64` count exceeds it.
    if let Some(max_count) = 1u64.checked_shl(p.maximum_count_shift) {
        while shift < max && chunk_count(capacity_sectors, shift) > max_count {
            // Never saturates: `shift < max <= MAX_CHUNK_SHIFT`.
            shift = shift.saturating_add(1);
        }
    }
    shift.max(min_io_shift(min_io_bytes))
}

/// Returns the log2 of `bytes` rounded up to a power of two, clamped to
/// [`MIN_CHUNK_SHIFT`]`..=`[`MAX_CHUNK_SHIFT`].
fn min_io_shift(bytes: u32) -> u32 {
    let log2 = match bytes.checked_sub(1) {
        None => 0,
        // The bits needed for `bytes - 1`: `2^log2 >= bytes > 2^(log2 - 1)`.
        Some(below) => u32::BITS.saturating_sub(below.leading_zeros()),
    };
    log2.clamp(MIN_CHUNK_SHIFT, MAX_CHUNK_SHIFT)
}

/// Returns the log2 of the chunk size in sectors for a chunk shift in bytes.
fn sector_shift(shift: u32) -> u32 {
    shift.saturating_sub(SECTOR_SHIFT)
}

/// Returns the index of the chunk holding `sector`.
fn chunk_of_sector(sector: u64, shift: u32) -> u64 {
    // `checked_shr` fails only for chunks of 2^64 sectors and more, where
    // every sector lies in chunk 0.
    sector.checked_shr(sector_shift(shift)).unwrap_or(0)
}

/// Returns the number of `1 << shift`-byte chunks covering the device.
///
/// This is the capacity divided by the chunk size, rounded up, so a partial
/// last chunk counts; 0 for an empty device. Any `shift` is accepted: one
/// below [`SECTOR_SHIFT`] counts as a chunk of one sector, and a chunk at
/// least as large as the whole sector space (shift of 73 and more) gives one
/// chunk.
pub fn chunk_count(capacity_sectors: u64, shift: u32) -> u64 {
    match capacity_sectors.checked_sub(1) {
        None => 0,
        // Never saturates: the index of the last chunk is at most
        // `capacity_sectors - 1`.
        Some(last_sector) => chunk_of_sector(last_sector, shift).saturating_add(1),
    }
}

/// Returns the chunks touched by the sectors `[sector, sector + count)`.
///
/// The range is clipped to the `chunk_count` chunks of the device. Returns
/// `None` when `count` is 0 or the whole range lies past the last chunk.
/// Sectors past `u64::MAX` do not exist, so a range running past the end of
/// the sector space is cut there instead of wrapping. `shift` is the chunk
/// shift in bytes; any value is accepted, as in [`chunk_count`].
pub fn sectors_to_chunks(
    sector: u64,
    count: u64,
    shift: u32,
    chunk_count: u64,
) -> Option<Range<u64>> {
    let last_sector = sector.saturating_add(count.checked_sub(1)?);
    let first = chunk_of_sector(sector, shift);
    if first >= chunk_count {
        return None;
    }
    let last = chunk_of_sector(last_sector, shift);
    let end = if last < chunk_count {
        // Never saturates: `last < chunk_count <= u64::MAX`.
        last.saturating_add(1)
    } else {
        chunk_count
    };
    Some(first..end)
}

/// Returns the first sector and the number of sectors of chunk `chunk`.
///
/// The last chunk of a device whose capacity is not a multiple of the chunk
/// size is partial: it ends at `capacity_sectors`. Returns `None` for a chunk
/// past the end of the device. `shift` is the chunk shift in bytes; any value
/// is accepted, as in [`chunk_count`].
pub fn chunk_sectors(chunk: u64, shift: u32, capacity_sectors: u64) -> Option<(u64, u64)> {
    let per_chunk = sector_shift(shift);
    // `None` when the first sector does not fit a `u64`, so lies past the end.
    let start = if chunk == 0 {
        0
    } else if per_chunk >= u64::BITS || chunk > u64::MAX >> per_chunk {
        return None;
    } else {
        chunk.checked_shl(per_chunk)?
    };
    let left = capacity_sectors
        .checked_sub(start)
        .filter(|&left| left > 0)?;
    // A chunk of 2^64 sectors or more is larger than any device.
    let size = 1u64.checked_shl(per_chunk).unwrap_or(u64::MAX);
    Some((start, size.min(left)))
}

/// Returns the size in bytes of a buffer for the pieces of one chunk.
///
/// That is the chunk size, but no more than the device: no piece of a chunk
/// lies past the device's end, so a chunk larger than the device (a large
/// `chunk_minimum_shift` on a small device) needs only the device's size.
/// Any `shift` is accepted, as in [`chunk_count`]; the result saturates at
/// `u64::MAX`.
pub fn chunk_buffer_bytes(capacity_sectors: u64, shift: u32) -> u64 {
    chunk_bytes(shift).min(device_bytes(capacity_sectors))
}

/// Returns the size of a chunk in bytes, at least a sector; saturates.
fn chunk_bytes(shift: u32) -> u64 {
    1u64.checked_shl(shift.max(SECTOR_SHIFT))
        .unwrap_or(u64::MAX)
}

/// Returns the size of a device in bytes; saturates.
fn device_bytes(capacity_sectors: u64) -> u64 {
    capacity_sectors.saturating_mul(1 << SECTOR_SHIFT)
}

/// Where one chunk stands in copy-on-write; see the module documentation.
///
/// Every chunk starts `Untouched` when the snapshot is taken (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChunkState {
    /// Never copied: the original device holds the snapshot's data.
    #[default]
    Untouched,
    /// The copy-on-write read is in flight; bios touching the chunk are held.
    Reading,
    /// The copy is in the chunk's buffer, waiting in the store queue.
    InMemory,
    /// The copy is being written from the buffer to the difference storage.
    Storing,
    /// The copy is in the difference storage; the buffer is gone.
    Stored,
    /// The copy was lost: the snapshot is corrupted and image reads fail.
    Failed,
}

/// Something that happened to a chunk, reported by the caller to [`on_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A write to the original device touches the chunk.
    WriteArrives,
    /// A read of the snapshot image touches the chunk.
    ImageReadArrives,
    /// An image read sent to the original ([`Action::ServeFromOriginal`])
    /// completed; its data may have been overtaken by a write.
    OriginalReadDone,
    /// The copy-on-write read of the chunk from the original completed.
    ReadDone {
        /// Whether the read succeeded.
        ok: bool,
    },
    /// The chunk is taken off the store queue, to be written to the storage.
    StoreBegins,
    /// The write of the chunk to the difference storage completed.
    StoreDone {
        /// Whether the space was allocated and the write succeeded.
        ok: bool,
    },
}

/// What the caller must do after [`on_event`].
///
/// The bio actions apply to the bio of the event; the others to the chunk.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Hold the write and start reading the chunk from the original into a
    /// new buffer; report [`Event::ReadDone`] when the read completes.
    StartRead,
    /// Hold the bio on the chunk until the next release.
    HoldBio,
    /// Let the write go on to the original device now.
    PassWrite,
    /// Send the image read to the original device; report
    /// [`Event::OriginalReadDone`] when it completes, before completing it.
    ServeFromOriginal,
    /// Fill the image read from the chunk's buffer and complete it.
    ServeFromMemory,
    /// Read the image read's data from the chunk's place in the storage.
    ServeFromStorage,
    /// Complete the image read with the data it brought from the original.
    CompleteBio,
    /// Complete the image read with an I/O error.
    FailBio,
    /// The copy is in the buffer: release the held bios (dispatch each again
    /// in the new state) and put the chunk in the store queue.
    ReleaseHeld,
    /// The copy failed: mark the snapshot corrupted, free the buffer and
    /// release the held bios (writes pass, image reads fail).
    ReleaseHeldAndCorrupt,
    /// Allocate the chunk's space in the storage and write the buffer there;
    /// report [`Event::StoreDone`] when done, or at once if allocation fails.
    StartStore,
    /// The copy is stored: free the buffer (image reads now go to storage).
    FreeBuffer,
    /// The store failed: mark the snapshot corrupted and free the buffer.
    FreeBufferAndCorrupt,
}

/// An event that cannot happen in the chunk's state, rejected by [`on_event`].
///
/// It means the caller reported the completion of an I/O it never started;
/// the chunk keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Invalid {
    /// The state the chunk was, and stays, in.
    pub state: ChunkState,
    /// The rejected event.
    pub event: Event,
}

/// Returns the new state of a chunk and what to do, for `event` in `state`.
///
/// Implements the table of the module documentation.
///
/// # Errors
///
/// Returns [`Invalid`] for an event outside the table: a completion of an
/// I/O that is not in flight in `state`.
pub fn on_event(state: ChunkState, event: Event) -> Result<(ChunkState, Action), Invalid> {
    use Action as A;
    use ChunkState as S;
    use Event as E;
    let next = match (state, event) {
        (S::Untouched, E::WriteArrives) => (S::Reading, A::StartRead),
        (S::Untouched, E::ImageReadArrives) => (S::Untouched, A::ServeFromOriginal),
        // No write has reached the original since the snapshot: the data is good.
        (S::Untouched | S::Reading, E::OriginalReadDone) => (state, A::CompleteBio),
        (S::Reading, E::WriteArrives | E::ImageReadArrives) => (S::Reading, A::HoldBio),
        (S::Reading, E::ReadDone { ok: true }) => (S::InMemory, A::ReleaseHeld),
        (S::Reading, E::ReadDone { ok: false }) => (S::Failed, A::ReleaseHeldAndCorrupt),
        (S::InMemory | S::Storing | S::Stored | S::Failed, E::WriteArrives) => {
            (state, A::PassWrite)
        }
        // A write may have reached the original: serve the read from the copy.
        (S::InMemory | S::Storing, E::ImageReadArrives | E::OriginalReadDone) => {
            (state, A::ServeFromMemory)
        }
        (S::InMemory, E::StoreBegins) => (S::Storing, A::StartStore),
        (S::Storing, E::StoreDone { ok: true }) => (S::Stored, A::FreeBuffer),
        (S::Storing, E::StoreDone { ok: false }) => (S::Failed, A::FreeBufferAndCorrupt),
        (S::Stored, E::ImageReadArrives | E::OriginalReadDone) => (S::Stored, A::ServeFromStorage),
        (S::Failed, E::ImageReadArrives | E::OriginalReadDone) => (S::Failed, A::FailBio),
        (_, E::ReadDone { .. } | E::StoreBegins | E::StoreDone { .. }) => {
            return Err(Invalid { state, event })
        }
    };
    Ok(next)
}
