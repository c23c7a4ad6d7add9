// SPDX-License-Identifier: GPL-2.0

//! The diff area of one member device of a taken snapshot: copy-on-write of
//! its chunks and the reads of its image.
//!
//! Every chunk has a state byte and, once stored, its place in the
//! difference storage. Only the device's copy-on-write worker changes the
//! states, in this order: `Untouched` → `Reading` → `Stored` (or `Failed`).
//! The worker runs one item at a time per device (a work item never runs
//! concurrently with itself), so each chunk is copied at most once with no
//! lock around the copy.
//!
//! The write path ([`DiffArea::on_write`], under RCU, must not sleep) lets a
//! write pass at once when every chunk it touches is `Stored` or `Failed`,
//! and otherwise holds it on the worker's list. The worker copies the
//! untouched chunks of the held write (read from the original, write to the
//! storage, then the state becomes `Stored`) and only then passes the write
//! on: no write reaches a chunk of the original before its copy is safe.
//!
//! An image read of a chunk that is not stored is read from the original
//! and trusted only if the chunk is still `Untouched` or `Reading` after the
//! read completed: a write is released only after its chunks became
//! `Stored`, so in those states no write has reached the chunk since the
//! take. Otherwise the piece is read again, now from the storage. This is a
//! sequence-lock check with the state as the sequence (see
//! `logic/src/chunk.rs`); image reads never block copy-on-write.
//!
//! An area is published to the write path while the take is still waiting
//! for the writes in flight; until [`DiffArea::start`] it only holds writes
//! and copies nothing, so no copy reads a chunk that an earlier write may
//! still change. Held writes are marked in the change map again when they
//! are released: they land after the take's switch of the map.
//!
//! If a copy fails, the chunk is `Failed`, the snapshot is corrupted (its
//! image reads fail from then on) and the write still goes on to the
//! original: a broken snapshot never harms the original device.

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use kernel::new_mutex;
use kernel::new_work;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::workqueue::{Work, WorkItem};

use crate::blkfilter;
use crate::cbt_map::CbtMap;
use crate::chunk::{self, ChunkParams};
use crate::glue::block::{BdevRef, Bio, BioOp};
use crate::glue::irqlock::{new_irq_spinlock, IrqSpinLock};
use crate::glue::snapio::{self, BioList, HeldWrites, NoIo, OwnedBio};
use crate::params;
use crate::snapshot::Shared;

const SECTOR_SHIFT: u32 = chunk::SECTOR_SHIFT;

const UNTOUCHED: u8 = 0;
const READING: u8 = 1;
const STORED: u8 = 2;
const FAILED: u8 = 3;

/// The size of the copy-on-write buffer, at least one chunk.
const COW_RUN_BYTES: usize = 2 << 20;

const COW_WORK: u64 = 0;
const READ_WORK: u64 = 1;

/// Copy-on-write state of one member device while its snapshot is taken.
#[pin_data]
pub(crate) struct DiffArea {
    original: BdevRef,
    capacity: u64,
    shift: u32,
    chunk_count: u64,
    states: KVVec<AtomicU8>,
    /// The first storage sector of each stored chunk.
    places: KVVec<AtomicU64>,
    shared: Arc<Shared>,
    /// The device's change tracking, which writes to the image mark.
    cbt: Arc<IrqSpinLock<CbtMap>>,
    /// Whether the image accepts writes (the `image_writable` parameter at
    /// the take).
    writable: bool,
    /// Set at destroy: held writes pass without a copy, image reads fail.
    closing: AtomicBool,
    /// Set once the take is complete: until then writes are only held.
    started: AtomicBool,
    /// Image reads sent to the original as clones, not yet completed.
    remapped: AtomicUsize,
    #[pin]
    held: IrqSpinLock<HeldWrites>,
    #[pin]
    cow_work: Work<DiffArea, COW_WORK>,
    /// Writes to the image, done by the copy-on-write worker, which alone
    /// changes chunk states.
    #[pin]
    image_writes: IrqSpinLock<BioList>,
    #[pin]
    reads: IrqSpinLock<BioList>,
    #[pin]
    read_work: Work<DiffArea, READ_WORK>,
    /// The copy-on-write worker's buffer, a whole number of chunks.
    #[pin]
    cow_buf: Mutex<KVVec<u8>>,
    /// The image worker's buffer.
    #[pin]
    read_buf: Mutex<KVVec<u8>>,
}

kernel::impl_has_work! {
    impl HasWork<Self, COW_WORK> for DiffArea { self.cow_work }
    impl HasWork<Self, READ_WORK> for DiffArea { self.read_work }
}

/// The largest single allocation of a diff area, a per-chunk table or a
/// buffer: 1 GiB. `kvmalloc` refuses more than `INT_MAX` bytes with a
/// warning; a larger need fails the take with `ENOMEM` before it is tried.
const MAX_ALLOCATION: u64 = 1 << 30;

/// The flags of the allocations at the take: a failure is the take's
/// `ENOMEM`, not a warning in the kernel log.
fn take_gfp() -> kernel::alloc::Flags {
    GFP_KERNEL | __GFP_NOWARN
}

fn atomic_vec<T>(len: u64, new: impl Fn() -> T) -> Result<KVVec<T>> {
    let len = usize::try_from(len).map_err(|_| ENOMEM)?;
    let mut v = KVVec::with_capacity(len, take_gfp())?;
    for _ in 0..len {
        v.push(new(), take_gfp())?;
    }
    Ok(v)
}

fn chunk_params() -> ChunkParams {
    ChunkParams {
        minimum_shift: params::chunk_minimum_shift(),
        maximum_count_shift: params::chunk_maximum_count_shift(),
        maximum_shift: params::chunk_maximum_shift(),
    }
}

impl DiffArea {
    pub(crate) fn new(
        original: BdevRef,
        shared: Arc<Shared>,
        cbt: Arc<IrqSpinLock<CbtMap>>,
    ) -> Result<Arc<Self>> {
        let capacity = original.nr_sectors();
        let shift = chunk::chunk_shift(capacity, original.io_min(), &chunk_params());
        let chunk_count = chunk::chunk_count(capacity, shift);
        // Image reads and writes go piece by piece within one chunk;
        // copy-on-write reads runs of chunks, room for a large write's
        // worth. Neither needs more than the device holds.
        let read_bytes = chunk::chunk_buffer_bytes(capacity, shift);
        let cow_bytes = chunk::run_buffer_bytes(capacity, shift, COW_RUN_BYTES as u64);
        let sizes = [
            chunk_count.saturating_mul(core::mem::size_of::<AtomicU8>() as u64),
            chunk_count.saturating_mul(core::mem::size_of::<AtomicU64>() as u64),
            cow_bytes,
            read_bytes,
        ];
        let total = sizes.iter().fold(0u64, |sum, &b| sum.saturating_add(b));
        if sizes.iter().any(|&b| b > MAX_ALLOCATION) || !params::memory_allows(total) {
            pr_warn!(
                "a take of {} sectors in chunks of 2^{} bytes needs {} MiB: refused\n",
                capacity,
                shift,
                total >> 20
            );
            return Err(ENOMEM);
        }
        let read_bytes = usize::try_from(read_bytes).map_err(|_| ENOMEM)?;
        let cow_bytes = usize::try_from(cow_bytes).map_err(|_| ENOMEM)?;
        Arc::pin_init(
            try_pin_init!(Self {
                states: atomic_vec(chunk_count, || AtomicU8::new(UNTOUCHED))?,
                places: atomic_vec(chunk_count, || AtomicU64::new(0))?,
                original,
                capacity,
                shift,
                chunk_count,
                shared,
                cbt,
                writable: params::image_writable() != 0,
                closing: AtomicBool::new(false),
                started: AtomicBool::new(false),
                remapped: AtomicUsize::new(0),
                held <- new_irq_spinlock!(HeldWrites::new(), "blksnap:held"),
                cow_work <- new_work!("blksnap:cow"),
                image_writes <- new_irq_spinlock!(BioList::new(), "blksnap:image_writes"),
                reads <- new_irq_spinlock!(BioList::new(), "blksnap:reads"),
                read_work <- new_work!("blksnap:image"),
                cow_buf <- new_mutex!(KVVec::from_elem(0u8, cow_bytes, take_gfp())?),
                read_buf <- new_mutex!(KVVec::from_elem(0u8, read_bytes, take_gfp())?),
            }),
            GFP_KERNEL,
        )
    }

    /// The state of `chunk`; a chunk past the end (which callers never
    /// ask for) counts as failed: writes pass, image reads fail.
    fn state(&self, chunk: u64) -> u8 {
        self.states
            .get(chunk as usize)
            .map_or(FAILED, |s| s.load(Ordering::Acquire))
    }

    fn set_state(&self, chunk: u64, state: u8) {
        if let Some(s) = self.states.get(chunk as usize) {
            s.store(state, Ordering::Release);
        }
    }

    /// Where the copy of a stored chunk is in the storage.
    fn place(&self, chunk: u64) -> Result<u64> {
        let place = self.places.get(chunk as usize).ok_or(EIO)?;
        Ok(place.load(Ordering::Relaxed))
    }

    fn set_place(&self, chunk: u64, place: u64) {
        if let Some(p) = self.places.get(chunk as usize) {
            p.store(place, Ordering::Relaxed);
        }
    }

    /// Offers a write of the original device, or of one of its partitions
    /// (its sectors plus `offset` are those of the original). Returns the
    /// bio if it may pass at once; otherwise the area keeps it until its
    /// chunks are copied. Runs under RCU: must not sleep.
    pub(crate) fn on_write(self: &Arc<Self>, bio: OwnedBio, offset: u64) -> Option<OwnedBio> {
        let (sector, count) = bio.sectors();
        let sector = sector.saturating_add(offset);
        let Some(chunks) = chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count)
        else {
            return Some(bio);
        };
        if self.shared.is_corrupted() || chunks.clone().all(|c| self.state(c) >= STORED) {
            return Some(bio);
        }
        if bio.is_nowait() {
            bio.would_block();
            return None;
        }
        self.held.lock().push(bio);
        let _ = snapio::queue().enqueue::<Arc<Self>, COW_WORK>(self.clone());
        None
    }

    /// The size of the original at the take, in sectors.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the image disk should accept writes.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// Takes a bio of the snapshot image.
    ///
    /// A read of chunks never copied goes straight to the original as a
    /// clone (see [`DiffArea::remapped_read_valid`]); other reads go to the
    /// image worker, writes of a writable image to the copy-on-write worker.
    pub(crate) fn on_image_bio(self: &Arc<Self>, bio: OwnedBio) {
        if self.writable && bio.op() == BioOp::Write {
            self.image_writes.lock().push(bio);
            let _ = snapio::queue().enqueue::<Arc<Self>, COW_WORK>(self.clone());
            return;
        }
        let bio = if bio.op() == BioOp::Read && self.reads_original(&bio) {
            self.remapped.fetch_add(1, Ordering::AcqRel);
            // SAFETY: `self` stays valid until the outcome is reported: the
            // snapshot keeps its reference to the area until `remapped` fell
            // to zero (`wait_remapped`, at destroy).
            match unsafe { bio.remap_read(&self.original, (&**self as *const Self).cast()) } {
                Ok(()) => return,
                Err(bio) => {
                    self.remapped.fetch_sub(1, Ordering::AcqRel);
                    bio
                }
            }
        } else {
            bio
        };
        self.queue_read(bio);
    }

    fn queue_read(self: &Arc<Self>, bio: OwnedBio) {
        self.reads.lock().push(bio);
        let _ = snapio::queue().enqueue::<Arc<Self>, READ_WORK>(self.clone());
    }

    /// Whether an image read may be served by the original: the snapshot is
    /// intact and no chunk it touches was copied, so no write reached them
    /// since the take (writes are released only after their chunks are
    /// stored). Checked before a clone is sent, and again when it
    /// completed, which is what makes its data trustworthy. Must not sleep.
    fn reads_original(&self, bio: &Bio) -> bool {
        if self.closing.load(Ordering::Acquire) || self.shared.is_corrupted() {
            return false;
        }
        let (sector, count) = bio.sectors();
        if !sector
            .checked_add(count)
            .is_some_and(|end| end <= self.capacity)
        {
            return false;
        }
        chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count)
            .is_some_and(|mut chunks| chunks.all(|c| self.state(c) <= READING))
    }

    /// A clone of an image read completed: may its data be trusted?
    pub(crate) fn remapped_read_valid(&self, bio: &Bio) -> bool {
        self.reads_original(bio)
    }

    /// A clone's image read was completed.
    pub(crate) fn remapped_read_done(&self) {
        self.remapped.fetch_sub(1, Ordering::AcqRel);
    }

    /// A clone's data could not be trusted: serve the read again.
    pub(crate) fn retry_read(self: &Arc<Self>, bio: OwnedBio) {
        self.queue_read(bio);
        self.remapped.fetch_sub(1, Ordering::AcqRel);
    }

    /// Waits until no clone of an image read is in flight.
    pub(crate) fn wait_remapped(&self) {
        while self.remapped.load(Ordering::Acquire) != 0 {
            snapio::msleep(1);
        }
    }

    /// The original is going away and its writes will no longer be seen:
    /// the snapshot is corrupted, so the image never shows data written
    /// later (a device set up again, a partition created in its place).
    /// Must not sleep.
    pub(crate) fn device_gone(&self) {
        self.shared.corrupt_atomic(self.original.devs().0, ENODEV);
    }

    /// Stops copy-on-write: held writes pass, image reads fail.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Starts copy-on-write, once the take is complete: the writes held
    /// since the area was published are copied for and released.
    pub(crate) fn start(self: &Arc<Self>) {
        self.started.store(true, Ordering::Release);
        let _ = snapio::queue().enqueue::<Arc<Self>, COW_WORK>(self.clone());
    }

    /// Copies the untouched chunks among those of `[sector, sector + count)`.
    ///
    /// Consecutive untouched chunks are copied together, as many as the
    /// buffer holds: one read of the original and one write to the storage
    /// for the run.
    fn copy_chunks(&self, sector: u64, count: u64) {
        let Some(chunks) = chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count)
        else {
            return;
        };
        let mut buf = self.cow_buf.lock();
        let per_run = (buf.len() >> self.shift).max(1) as u64;
        let mut c = chunks.start;
        while c < chunks.end {
            if self.state(c) != UNTOUCHED {
                c += 1;
                continue;
            }
            if self.closing.load(Ordering::Acquire) || self.shared.is_corrupted() {
                return;
            }
            let mut end = c + 1;
            while end < chunks.end && end - c < per_run && self.state(end) == UNTOUCHED {
                end += 1;
            }
            for r in c..end {
                self.set_state(r, READING);
            }
            match self.copy_run(c..end, &mut buf) {
                Ok(places) => {
                    for (r, place) in (c..end).zip(places) {
                        self.set_place(r, place);
                        self.set_state(r, STORED);
                    }
                }
                Err(e) => {
                    for r in c..end {
                        self.set_state(r, FAILED);
                    }
                    self.shared.corrupt(self.original.devs().0, e);
                }
            }
            c = end;
        }
    }

    /// Reads the chunks `run` from the original and stores them; returns an
    /// iterator over the first storage sector of each chunk.
    fn copy_run(&self, run: Range<u64>, buf: &mut [u8]) -> Result<impl Iterator<Item = u64>> {
        let shift = self.shift;
        let capacity = self.capacity;
        let first = chunk::chunk_sectors(run.start, shift, capacity)
            .ok_or(EINVAL)?
            .0;
        let (last, last_count) =
            chunk::chunk_sectors(run.end - 1, shift, capacity).ok_or(EINVAL)?;
        let sectors = last + last_count - first;
        let data = buf
            .get_mut(..(sectors << SECTOR_SHIFT) as usize)
            .ok_or(EINVAL)?;
        self.original.read_sync(first, data)?;
        let place = self.shared.store(data)?;
        Ok(run.map(move |c| place + (c << (shift - SECTOR_SHIFT)) - first))
    }

    fn run_cow(&self) {
        if !self.started.load(Ordering::Acquire) {
            return;
        }
        let _noio = NoIo::enter();
        loop {
            // Popped in statements of their own: a guard in an `if let`
            // would stay locked for the whole block.
            let held = self.held.lock().pop();
            if let Some(bio) = held {
                let (sector, count) = bio.sectors();
                let sector = sector.saturating_add(bio.offset_in(&self.original));
                self.copy_chunks(sector, count);
                // A write held during the take was marked in the change map
                // before its switch; it lands after the take, so it belongs
                // to the next backup too.
                self.cbt.lock().mark_write(sector, count);
                blkfilter::pass_on(bio, &self.original);
                continue;
            }
            let write = self.image_writes.lock().pop();
            let Some(bio) = write else {
                break;
            };
            let result = self.write_image(&bio);
            bio.end(result);
        }
    }

    /// Writes an image bio into the stored copies of its chunks, copying
    /// the chunks first where needed; the original is never written.
    fn write_image(&self, bio: &OwnedBio) -> Result {
        let (mut sector, count) = bio.sectors();
        let end = sector
            .checked_add(count)
            .filter(|&e| e <= self.capacity)
            .ok_or(EIO)?;
        if count == 0 {
            return Ok(());
        }
        self.copy_chunks(sector, count);
        let mut buf = self.read_buf.lock();
        let per_chunk = 1u64 << (self.shift - SECTOR_SHIFT);
        let mut offset = 0usize;
        while sector < end {
            if self.closing.load(Ordering::Acquire) || self.shared.is_corrupted() {
                return Err(EIO);
            }
            let chunk = sector >> (self.shift - SECTOR_SHIFT);
            if self.state(chunk) != STORED {
                return Err(EIO);
            }
            let within = sector & (per_chunk - 1);
            let n = (per_chunk - within).min(end - sector);
            let piece = buf.get_mut(..(n << SECTOR_SHIFT) as usize).ok_or(EIO)?;
            bio.copy_from(offset, piece);
            let place = self.place(chunk)?;
            self.shared.write_stored(place + within, piece)?;
            offset += piece.len();
            sector += n;
        }
        self.cbt.lock().mark_dirty(end - count, count);
        Ok(())
    }

    /// Fills `len` bytes of `bio`'s data, from byte `offset` on, with the
    /// image's data at `sector` (within one chunk). A stored chunk is read
    /// from the storage straight into the bio; the original is read into
    /// `buf` first, since its data is trusted only once the chunk's state
    /// shows no write could have reached it.
    fn read_piece(&self, sector: u64, bio: &mut OwnedBio, offset: usize, buf: &mut [u8]) -> Result {
        let chunk = sector >> (self.shift - SECTOR_SHIFT);
        let chunk_start = chunk << (self.shift - SECTOR_SHIFT);
        loop {
            if self.closing.load(Ordering::Acquire) || self.shared.is_corrupted() {
                return Err(EIO);
            }
            match self.state(chunk) {
                STORED => {
                    let place = self.place(chunk)? + (sector - chunk_start);
                    let read = self.shared.load_into_bio(place, bio, offset, buf.len());
                    // Checked after the read: a page whose write-back failed
                    // leaves the page cache only after the failure was
                    // recorded, so data read from the disk instead is caught.
                    // A copy that did not reach the disk, or cannot be read
                    // back from it, is lost: the snapshot is corrupted.
                    // Other errors (memory) fail this read alone.
                    let lost = match (self.shared.check_written(), read) {
                        (Err(e), _) => e,
                        (Ok(()), Err(e)) if e == EIO => e,
                        (Ok(()), read) => return read,
                    };
                    self.shared.corrupt(self.original.devs().0, lost);
                    return Err(lost);
                }
                FAILED => return Err(EIO),
                _ => {
                    self.original.read_sync(sector, buf)?;
                    // Once the snapshot is corrupted or closing, writes
                    // pass without a copy: the data read may be theirs.
                    if self.closing.load(Ordering::Acquire) || self.shared.is_corrupted() {
                        return Err(EIO);
                    }
                    if self.state(chunk) <= READING {
                        bio.copy_to(offset, buf);
                        return Ok(());
                    }
                }
            }
        }
    }

    fn serve_image_bio(&self, mut bio: OwnedBio) {
        match bio.op() {
            BioOp::Read => {}
            // A read-only image; a writable one sends writes elsewhere.
            BioOp::Write => return bio.end(Err(EIO)),
            BioOp::Other => return bio.end(Ok(())),
        }
        let (mut sector, count) = bio.sectors();
        let end = sector.saturating_add(count).min(self.capacity);
        if sector.saturating_add(count) > self.capacity {
            return bio.end(Err(EIO));
        }
        let mut buf = self.read_buf.lock();
        let mut offset = 0usize;
        let per_chunk = 1u64 << (self.shift - SECTOR_SHIFT);
        while sector < end {
            let n = (per_chunk - (sector & (per_chunk - 1))).min(end - sector);
            let Some(piece) = buf.get_mut(..(n << SECTOR_SHIFT) as usize) else {
                return bio.end(Err(EIO));
            };
            let len = piece.len();
            if let Err(e) = self.read_piece(sector, &mut bio, offset, piece) {
                return bio.end(Err(e));
            }
            offset += len;
            sector += n;
        }
        bio.end(Ok(()));
    }

    fn run_reads(&self) {
        let _noio = NoIo::enter();
        loop {
            let Some(bio) = self.reads.lock().pop() else {
                break;
            };
            self.serve_image_bio(bio);
        }
    }
}

impl WorkItem<COW_WORK> for DiffArea {
    type Pointer = Arc<DiffArea>;

    fn run(this: Arc<DiffArea>) {
        this.run_cow();
    }
}

impl WorkItem<READ_WORK> for DiffArea {
    type Pointer = Arc<DiffArea>;

    fn run(this: Arc<DiffArea>) {
        this.run_reads();
    }
}
