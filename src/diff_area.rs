// SPDX-License-Identifier: GPL-2.0

//! The diff area of one member device of a taken snapshot: copy-on-write of
//! its chunks and the reads of its image.
//!
//! Each chunk moves through the states of `logic/src/chunk.rs`, whose
//! [`chunk::on_event`] decides, under the chunk's lock, every step here:
//! `Untouched` → `Reading` → `InMemory` → `Storing` → `Stored` (or
//! `Failed`). A chunk that was never touched has no entry in the sparse
//! chunk table; an entry is made, in `Reading`, when the first write
//! reaches the chunk, so the memory of an area follows the chunks touched.
//!
//! The write path ([`CopyOnWrite::on_write`], under RCU, must not sleep) lets
//! a write pass at once when the copy of every chunk it touches is in
//! memory or stored (or lost); otherwise it is queued for the area's
//! copy-on-write worker. The worker starts the asynchronous reads of the
//! original for the untouched chunks of the write and holds the write on
//! the first chunk that is still being read. When a read completes, the
//! chunk is `InMemory`: the writes held on it go back to the worker, which
//! passes each on once all its chunks are in memory, and the chunk goes to
//! the store queue. The store worker (on a queue of its own) allocates the
//! chunk's place in the difference storage and writes the buffer there,
//! below the page cache; when that completes the chunk is `Stored` and its
//! buffer freed. At most `chunk_maximum_in_queue` chunks of an area are in
//! memory (being read, waiting or being stored): when the bound is reached
//! the worker leaves the writes queued until a store completes.
//! Original writes are never failed for the snapshot's sake.
//!
//! An image read of a chunk without an entry is sent to the original as a
//! clone and trusted only if, once it completed, the chunk still has no
//! entry or is still `Reading`: a write is released only once its chunks
//! are in memory, so in those states none has reached the chunk since the
//! take. Otherwise the read is served again, from the copy. Image reads of
//! a stored chunk go to the storage (as clones when it is a block device),
//! those of a chunk in memory are copied from its buffer, those of a chunk
//! being read wait on it.
//!
//! An area is published to the write path while the take is still waiting
//! for the writes in flight; until [`DiffArea::start`] it only queues
//! writes and copies nothing, so no copy reads a chunk that an earlier
//! write may still change. Queued writes are marked in the change map
//! again when they are passed on: they land after the take's switch of the
//! map.
//!
//! If a copy fails, the chunk is `Failed`, the snapshot is corrupted (its
//! image reads fail from then on) and the write still goes on to the
//! original: a broken snapshot never harms the original device.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kernel::new_condvar;
use kernel::new_mutex;
use kernel::new_work;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, CondVar, Mutex};
use kernel::time::msecs_to_jiffies;
use kernel::workqueue::{Work, WorkItem};

use crate::blkfilter;
use crate::cbt_map::Cbt;
use crate::chunk::{self, Action, ChunkParams, ChunkState, Event};
use crate::diff_storage::DiffStorage;
use crate::event_queue::Events;
use crate::glue::bio::{BioList, HeldWrites, OwnedBio};
use crate::glue::block::{BdevOpen, Bio, BioOp, BlockDevice};
use crate::glue::cowio::{ChunkBuf, ChunkIo, ChunkMap, PagePool};
use crate::glue::entry::{Above, ImageEntry, ImageServer};
use crate::glue::irqlock::{new_irq_spinlock, IrqSpinLock};
use crate::glue::percpu::PerCpuCounters;
use crate::glue::storage::StorageFile;
use crate::glue::workqueue::{self, NoIo};
use crate::params;
use crate::sectors;
use crate::tracker::CopyOnWrite;

const SECTOR_SHIFT: u32 = chunk::SECTOR_SHIFT;

/// Storage is handed out in whole pages, the unit of chunk buffers, so
/// every stored copy is aligned for direct I/O.
const PAGE_SECTORS: u64 = (kernel::page::PAGE_SIZE >> SECTOR_SHIFT) as u64;

/// How often a wait for a chunk's store looks again whether the snapshot
/// was corrupted through another member (which notifies no other area).
const STORED_RECHECK_MS: u32 = 100;

const COW_WORK: u64 = 0;
const READ_WORK: u64 = 1;
const STORE_WORK: u64 = 2;

/// One touched chunk.
#[pin_data]
struct Chunk {
    /// Whether writes to the chunk pass at once (the state machine answers
    /// [`Action::PassWrite`] to [`Event::WriteArrives`] in its state): read
    /// by the write path without the lock, so a write to a copied chunk
    /// takes no lock. Set under the lock, with release ordering, by the
    /// step into such a state; never cleared, since no step leads from
    /// such a state to one that holds writes.
    passes: AtomicBool,
    #[pin]
    inner: IrqSpinLock<ChunkInner>,
}

struct ChunkInner {
    state: ChunkState,
    /// The copy while it is read, in memory or being stored.
    buf: Option<Arc<ChunkBuf>>,
    /// The first storage sector of the copy, once its store began.
    place: u64,
    /// Writes waiting for the chunk's read; passed on if dropped.
    writes: HeldWrites,
    /// Image reads waiting for the chunk's read.
    reads: BioList,
}

impl Chunk {
    /// The state and what to do for `event`; `inner` is the chunk's,
    /// locked.
    fn step(&self, inner: &mut ChunkInner, event: Event) -> Option<Action> {
        let (next, action) = chunk::on_event(inner.state, event).ok()?;
        inner.state = next;
        if passes_writes(next) {
            // Pairs with the acquire in `DiffArea::write_passes`: a write
            // that sees the flag sees the copy in memory.
            self.passes.store(true, Ordering::Release);
        }
        Some(action)
    }
}

/// Whether a write to a chunk in `state` may reach the original now.
fn passes_writes(state: ChunkState) -> bool {
    matches!(
        chunk::on_event(state, Event::WriteArrives),
        Ok((_, Action::PassWrite))
    )
}

/// The chunks waiting for the store worker, first in first out: a ring of
/// chunk numbers allocated at the take, which never allocates again.
struct StoreQueue {
    slots: KVec<u64>,
    head: usize,
    len: usize,
}

impl StoreQueue {
    fn new(capacity: usize) -> Result<Self> {
        Ok(Self {
            slots: KVec::from_elem(0, capacity.max(1), take_gfp())?,
            head: 0,
            len: 0,
        })
    }

    /// Adds a chunk; false if the queue is full.
    fn push(&mut self, index: u64) -> bool {
        let capacity = self.slots.len();
        if self.len >= capacity {
            return false;
        }
        let tail = (self.head + self.len) % capacity;
        if let Some(slot) = self.slots.get_mut(tail) {
            *slot = index;
            self.len += 1;
        }
        true
    }

    fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let index = *self.slots.get(self.head)?;
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        Some(index)
    }
}

/// What the image worker did with a piece of an image read.
enum Piece {
    Done(OwnedBio),
    Failed(OwnedBio, Error),
    /// Held on a chunk being read.
    Held,
}

/// Where a run of an image read is served from (see
/// [`DiffArea::first_run`]).
#[derive(Clone, Copy)]
enum Source {
    /// The original: no chunk of the run was copied.
    Original,
    /// The storage device, from this sector on: the run's chunks are stored
    /// there one after the other.
    Storage(u64),
    /// Its one chunk, as the chunk's state says.
    Chunk,
}

/// What the copy-on-write worker did with a write.
enum Dispatch {
    /// Every chunk is in memory or stored: the write may go on.
    Pass(OwnedBio),
    /// Held on a chunk being read; it comes back when the read completes.
    Held,
    /// Too many chunks in memory: the write waits for a store to complete.
    Wait(OwnedBio),
}

/// Copy-on-write state of one member device while its snapshot is taken.
#[pin_data]
pub(crate) struct DiffArea {
    /// The member, held open: every bio the area sends it goes to a device
    /// the module holds.
    original: Arc<BdevOpen>,
    capacity: u64,
    shift: u32,
    chunk_count: u64,
    chunks: ChunkMap<Chunk>,
    /// Pages for chunk buffers, one chunk's worth in reserve.
    pool: Arc<PagePool>,
    storage: Arc<DiffStorage>,
    events: Arc<Events>,
    /// The device's change tracking, which writes to the image mark.
    cbt: Arc<Cbt>,
    /// Whether the image accepts writes (the `image_writable` parameter at
    /// the take).
    writable: bool,
    /// The sectors of the device that hold in-volume storage, as sorted
    /// `[start, end)` ranges: the image reads them as zeros.
    hidden: KVec<(u64, u64)>,
    /// Set at destroy: queued writes pass without a copy, image reads fail.
    closing: AtomicBool,
    /// Set once the take is complete: until then writes are only queued.
    started: AtomicBool,
    /// Image reads sent to the original or the storage as clones, not yet
    /// completed: counted per CPU, so image reads share no counter. Summed
    /// only by [`DiffArea::is_idle`], which is waited on once the image is
    /// removed: no clone starts then, the sum only falls, and a sum of 0
    /// means none is left (see [`PerCpuCounters::sum_signed`]).
    remapped: PerCpuCounters<1>,
    /// Chunks being read, waiting to be stored or being stored.
    in_memory: AtomicUsize,
    /// The most chunks in memory at once so far.
    peak_in_memory: AtomicUsize,
    /// The bound on `in_memory` (`chunk_maximum_in_queue` at the take).
    max_in_memory: usize,
    /// Writes for the copy-on-write worker.
    #[pin]
    pending: IrqSpinLock<HeldWrites>,
    #[pin]
    cow_work: Work<DiffArea, COW_WORK>,
    /// Writes to the image, done by the copy-on-write worker.
    #[pin]
    image_writes: IrqSpinLock<BioList>,
    #[pin]
    reads: IrqSpinLock<BioList>,
    #[pin]
    read_work: Work<DiffArea, READ_WORK>,
    /// Chunks in memory waiting for the store worker; never longer than
    /// `max_in_memory`, its capacity.
    #[pin]
    store_queue: IrqSpinLock<StoreQueue>,
    #[pin]
    store_work: Work<DiffArea, STORE_WORK>,
    /// The image worker's buffer for reads of the original.
    #[pin]
    read_buf: Mutex<KVVec<u8>>,
    /// One chunk's buffer for the image worker: stored chunks read through
    /// it when a direct read into the bio is not possible, and image writes.
    #[pin]
    scratch: Mutex<Arc<ChunkBuf>>,
    /// Notified when a chunk's read or store ended and when the area
    /// closes: [`DiffArea::wait_stored`] sleeps on it, under the chunk's
    /// lock.
    #[pin]
    io_ended: CondVar,
}

kernel::impl_has_work! {
    impl HasWork<Self, COW_WORK> for DiffArea { self.cow_work }
    impl HasWork<Self, READ_WORK> for DiffArea { self.read_work }
    impl HasWork<Self, STORE_WORK> for DiffArea { self.store_work }
}

/// How often, and how many milliseconds apart, a copy tries again to get
/// memory when no other copy is in flight to free some: a second at most.
const MEMORY_WAIT_TRIES: u32 = 100;
const MEMORY_WAIT_MS: u32 = 10;

/// The largest single allocation of a diff area: 1 GiB. `kvmalloc` refuses
/// more than `INT_MAX` bytes with a warning; a larger need fails the take
/// with `ENOMEM` before it is tried.
const MAX_ALLOCATION: u64 = 1 << 30;

/// The flags of the allocations at the take: a failure is the take's
/// `ENOMEM`, not a warning in the kernel log.
fn take_gfp() -> kernel::alloc::Flags {
    GFP_KERNEL | __GFP_NOWARN
}

fn chunk_params() -> ChunkParams {
    ChunkParams {
        minimum_shift: params::chunk_minimum_shift(),
        maximum_count_shift: params::chunk_maximum_count_shift(),
        maximum_shift: params::chunk_maximum_shift(),
    }
}

impl DiffArea {
    /// Prepares the area of `original`. What it allocates does not depend
    /// on the device's size: the chunk table starts empty, and the buffers
    /// are one chunk each (the reserve of the page pool, the image
    /// worker's two).
    pub(crate) fn new(
        original: Arc<BdevOpen>,
        storage: Arc<DiffStorage>,
        events: Arc<Events>,
        cbt: Arc<Cbt>,
    ) -> Result<Arc<Self>> {
        let capacity = original.nr_sectors();
        let hidden = storage.hidden_on(original.devs())?;
        let shift = chunk::chunk_shift(capacity, original.io_min(), &chunk_params());
        let chunk_count = chunk::chunk_count(capacity, shift);
        let chunk_bytes = chunk::chunk_buffer_bytes(capacity, shift);
        let max_in_memory = params::chunk_maximum_in_queue().max(1) as usize;
        let queue_bytes = (max_in_memory as u64).saturating_mul(8);
        let total = chunk_bytes.saturating_mul(4).saturating_add(queue_bytes);
        if chunk_bytes > MAX_ALLOCATION || !params::memory_allows(total) {
            pr_warn!(
                "a take of {} sectors in chunks of 2^{} bytes needs {} MiB: refused\n",
                capacity,
                shift,
                total >> 20
            );
            return Err(ENOMEM);
        }
        let chunk_bytes = usize::try_from(chunk_bytes).map_err(|_| ENOMEM)?;
        let pages = chunk_bytes.div_ceil(kernel::page::PAGE_SIZE);
        // Two chunks in reserve: the image worker's buffer may take one if
        // memory is short at the take; one is always left for copies.
        let pool = PagePool::new(u32::try_from(pages * 2).map_err(|_| ENOMEM)?)?;
        let scratch = ChunkBuf::new(&pool, chunk_bytes).ok_or(ENOMEM)?;
        // One more than the chunks of copies: an image write copies one
        // chunk beyond the bound.
        let store_queue = StoreQueue::new(max_in_memory + 1)?;
        Arc::pin_init(
            try_pin_init!(Self {
                chunks: ChunkMap::new()?,
                pool,
                original,
                capacity,
                shift,
                chunk_count,
                storage,
                events,
                cbt,
                writable: params::image_writable() != 0,
                hidden,
                closing: AtomicBool::new(false),
                started: AtomicBool::new(false),
                remapped: PerCpuCounters::new()?,
                in_memory: AtomicUsize::new(0),
                peak_in_memory: AtomicUsize::new(0),
                max_in_memory,
                pending <- new_irq_spinlock!(HeldWrites::new(), "blksnap:pending"),
                cow_work <- new_work!("blksnap:cow"),
                image_writes <- new_irq_spinlock!(BioList::new(), "blksnap:image_writes"),
                reads <- new_irq_spinlock!(BioList::new(), "blksnap:reads"),
                read_work <- new_work!("blksnap:image"),
                store_queue <- new_irq_spinlock!(store_queue, "blksnap:store_queue"),
                store_work <- new_work!("blksnap:store"),
                read_buf <- new_mutex!(KVVec::from_elem(0u8, chunk_bytes, take_gfp())?),
                scratch <- new_mutex!(scratch),
                io_ended <- new_condvar!("blksnap:io_ended"),
            }),
            GFP_KERNEL,
        )
    }

    /// The size of the original at the take, in sectors.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether an area made now, before its take, would be the same: the
    /// original kept its capacity, and the parameters that shaped the area
    /// did not change.
    pub(crate) fn still_fits(&self) -> bool {
        let capacity = self.original.nr_sectors();
        capacity == self.capacity
            && chunk::chunk_shift(capacity, self.original.io_min(), &chunk_params()) == self.shift
            && params::chunk_maximum_in_queue().max(1) as usize == self.max_in_memory
            && (params::image_writable() != 0) == self.writable
    }

    /// Whether the image disk should accept writes.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    fn is_stopped(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.events.is_corrupted()
    }

    fn kick_cow(self: &Arc<Self>) {
        let _ = workqueue::queue().enqueue::<Arc<Self>, COW_WORK>(self.clone());
    }

    fn kick_reads(self: &Arc<Self>) {
        let _ = workqueue::queue().enqueue::<Arc<Self>, READ_WORK>(self.clone());
    }

    fn kick_stores(self: &Arc<Self>) {
        let _ = workqueue::store_queue().enqueue::<Arc<Self>, STORE_WORK>(self.clone());
    }

    /// Whether a write to `chunk` may reach the original now. Takes no
    /// lock and writes nothing: a lookup in the table, a flag. Must not
    /// sleep.
    fn write_passes(&self, chunk: u64) -> bool {
        self.chunks.get(chunk).map_or_else(
            || passes_writes(ChunkState::Untouched),
            |c| c.passes.load(Ordering::Acquire),
        )
    }

    /// Offers a write of the original device, or of one of its partitions
    /// (its sectors plus `offset` are those of the original). Returns the
    /// bio if it may pass at once; otherwise the area keeps it until its
    /// chunks are in memory. Runs under RCU: must not sleep. A write that
    /// passes touches no lock, no counter and no reference count.
    fn offer_write(self: ArcBorrow<'_, Self>, bio: OwnedBio, offset: i64) -> Option<OwnedBio> {
        let Some((sector, count)) = blkfilter::sectors_on(&bio, offset) else {
            return Some(bio);
        };
        let Some(mut chunks) =
            chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count)
        else {
            return Some(bio);
        };
        if !self.events.is_corrupted() && self.overlaps_storage(sector, count) {
            // Corrupted before the write passes: no image read that
            // completes after it trusts the copies it overwrites.
            pr_err!(
                "a write to {}:{} overwrote the in-volume difference storage: snapshot corrupted\n",
                self.original.dev().0,
                self.original.dev().1
            );
            self.events.corrupt_atomic(self.original.devs().0, EIO);
            return Some(bio);
        }
        if self.events.is_corrupted() || chunks.all(|c| self.write_passes(c)) {
            return Some(bio);
        }
        if bio.is_nowait() {
            bio.would_block();
            return None;
        }
        self.pending.lock().push(bio);
        Arc::from(self).kick_cow();
        None
    }

    /// Whether sectors `[sector, sector + count)` of the original overlap
    /// the in-volume storage it holds. Must not sleep.
    fn overlaps_storage(&self, sector: u64, count: u64) -> bool {
        sectors::overlaps(&self.hidden, sector, count)
    }

    /// Makes the entry of untouched chunk `index` and starts reading it
    /// from the original. May wait for the page reserve.
    fn start_copy(self: &Arc<Self>, index: u64) -> Result<&Chunk> {
        let (first, sectors) =
            chunk::chunk_sectors(index, self.shift, self.capacity).ok_or(EINVAL)?;
        let bytes = usize::try_from(sectors << SECTOR_SHIFT).map_err(|_| EINVAL)?;
        let Ok((state, Action::StartRead)) =
            chunk::on_event(ChunkState::Untouched, Event::WriteArrives)
        else {
            return Err(EINVAL);
        };
        let buf = ChunkBuf::new(&self.pool, bytes).ok_or(ENOMEM)?;
        let kept = buf.clone();
        let chunk = self.chunks.insert(
            index,
            try_pin_init!(Chunk {
                passes: AtomicBool::new(passes_writes(state)),
                inner <- new_irq_spinlock!(
                    ChunkInner {
                        state,
                        buf: Some(kept),
                        place: 0,
                        writes: HeldWrites::new(),
                        reads: BioList::new(),
                    },
                    "blksnap:chunk"
                ),
            }? Error),
        )?;
        let now = self.in_memory.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_in_memory.fetch_max(now, Ordering::Relaxed);
        ChunkBuf::read_original(buf, self.clone(), first, bytes, index);
        Ok(chunk)
    }

    /// [`DiffArea::start_copy`] when no copy is in flight whose store
    /// would free memory: a shortage of memory is waited out for a while
    /// (the write waits too) before it costs the snapshot.
    fn start_copy_waiting(self: &Arc<Self>, index: u64) -> Result<&Chunk> {
        let mut tries = 0;
        loop {
            match self.start_copy(index) {
                Err(e) if e == ENOMEM && tries < MEMORY_WAIT_TRIES && !self.is_stopped() => {
                    tries += 1;
                    workqueue::msleep(MEMORY_WAIT_MS);
                }
                started => return started,
            }
        }
    }

    /// Brings the copies of a write's chunks into memory, or holds it.
    fn dispatch_write(self: &Arc<Self>, bio: OwnedBio) -> Dispatch {
        if self.is_stopped() {
            return Dispatch::Pass(bio);
        }
        let Some((sector, count)) = blkfilter::sectors_on(&bio, bio.offset_in(&self.original))
        else {
            return Dispatch::Pass(bio);
        };
        let Some(chunks) = chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count)
        else {
            return Dispatch::Pass(bio);
        };
        let mut bio = Some(bio);
        for index in chunks {
            let chunk = match self.chunks.get(index) {
                Some(chunk) => chunk,
                // Closed meanwhile: no new copy after destroy saw the area
                // idle.
                None if self.is_stopped() => return bio.map_or(Dispatch::Held, Dispatch::Pass),
                None => {
                    let busy = self.in_memory.load(Ordering::Acquire);
                    let started = if busy >= self.max_in_memory {
                        Err(EBUSY)
                    } else if busy == 0 {
                        self.start_copy_waiting(index)
                    } else {
                        self.start_copy(index)
                    };
                    match started {
                        Ok(chunk) => chunk,
                        // Held already: it comes back when its chunk is read.
                        Err(_) if bio.is_none() => return Dispatch::Held,
                        // Stores in flight free memory and kick the worker.
                        Err(_) if busy > 0 => return bio.map_or(Dispatch::Held, Dispatch::Wait),
                        // Nothing in flight and no memory for a while: the
                        // snapshot is lost, never the write.
                        Err(e) => {
                            self.events.corrupt(self.original.devs().0, e);
                            return bio.map_or(Dispatch::Held, Dispatch::Pass);
                        }
                    }
                }
            };
            let mut inner = chunk.inner.lock();
            if let Some(Action::HoldBio) = chunk.step(&mut inner, Event::WriteArrives) {
                if let Some(b) = bio.take() {
                    inner.writes.push(b);
                }
            }
        }
        bio.map_or(Dispatch::Held, Dispatch::Pass)
    }

    /// Passes on a write the worker had: it lands after the take's switch
    /// of the change map, so it belongs to the next backup too.
    fn pass_write(&self, bio: OwnedBio) {
        if let Some((sector, count)) = blkfilter::sectors_on(&bio, bio.offset_in(&self.original)) {
            self.cbt.mark_write(sector, count);
        }
        blkfilter::pass_on(bio, &self.original);
    }

    fn run_cow(self: &Arc<Self>) {
        let closing = self.closing.load(Ordering::Acquire);
        if !closing && !self.started.load(Ordering::Acquire) {
            return;
        }
        let _noio = NoIo::enter();
        loop {
            // Popped in statements of their own: a guard in an `if let`
            // would stay locked for the whole block.
            let next = self.pending.lock().pop();
            let Some(bio) = next else {
                break;
            };
            match self.dispatch_write(bio) {
                Dispatch::Pass(bio) => self.pass_write(bio),
                Dispatch::Held => {}
                Dispatch::Wait(bio) => {
                    self.pending.lock().push_front(bio);
                    return;
                }
            }
        }
        loop {
            let write = self.image_writes.lock().pop();
            let Some(bio) = write else {
                break;
            };
            let result = self.write_image(&bio);
            bio.end(result);
        }
    }

    /// The read or the store of chunk `index` ended. May run in interrupt
    /// context.
    fn chunk_io_done(self: &Arc<Self>, index: u64, result: Result) {
        let Some(chunk) = self.chunks.get(index) else {
            return;
        };
        let ok = result.is_ok();
        let mut inner = chunk.inner.lock();
        let event = match inner.state {
            ChunkState::Reading => Event::ReadDone { ok },
            _ => Event::StoreDone { ok },
        };
        let Some(action) = chunk.step(&mut inner, event) else {
            drop(inner);
            pr_err!("chunk {}: an I/O ended that was not in flight\n", index);
            return;
        };
        let released = match action {
            Action::ReleaseHeld | Action::ReleaseHeldAndCorrupt => Some((
                core::mem::replace(&mut inner.writes, HeldWrites::new()),
                core::mem::replace(&mut inner.reads, BioList::new()),
            )),
            _ => None,
        };
        let freed = match action {
            Action::ReleaseHeld => None,
            _ => inner.buf.take(),
        };
        drop(inner);
        // Freed outside the lock (maybe the last reference: pages go back).
        drop(freed);
        if let Some((mut writes, mut reads)) = released {
            let mut pending = self.pending.lock();
            while let Some(bio) = writes.pop() {
                pending.push(bio);
            }
            drop(pending);
            let mut queued = self.reads.lock();
            while let Some(bio) = reads.pop() {
                queued.push(bio);
            }
            drop(queued);
            self.kick_reads();
        }
        let mut error = result.err();
        if action == Action::ReleaseHeld {
            // Never full: it holds at most the chunks in memory.
            if self.store_queue.lock().push(index) {
                self.kick_stores();
            } else {
                error = Some(ENOMEM);
                self.in_memory.fetch_sub(1, Ordering::AcqRel);
            }
        } else {
            self.in_memory.fetch_sub(1, Ordering::AcqRel);
        }
        // A store given up at destroy loses nothing anybody reads.
        if let (Some(e), false) = (error, self.closing.load(Ordering::Acquire)) {
            self.events.corrupt_atomic(self.original.devs().0, e);
        }
        self.io_ended.notify_all();
    }

    fn run_stores(self: &Arc<Self>) {
        let _noio = NoIo::enter();
        loop {
            let next = self.store_queue.lock().pop();
            let Some(index) = next else {
                break;
            };
            let Some(chunk) = self.chunks.get(index) else {
                continue;
            };
            let Some((_, sectors)) = chunk::chunk_sectors(index, self.shift, self.capacity) else {
                continue;
            };
            // The store writes whole pages, past the chunk's end zeroed.
            let bytes = (sectors << SECTOR_SHIFT) as usize;
            let sectors = sectors.next_multiple_of(PAGE_SECTORS);
            let buf = {
                let mut inner = chunk.inner.lock();
                match chunk.step(&mut inner, Event::StoreBegins) {
                    Some(Action::StartStore) => inner.buf.clone(),
                    _ => None,
                }
            };
            let Some(buf) = buf else {
                continue;
            };
            // Once corrupted or closing, nothing reads the copy any more.
            let place = if self.is_stopped() {
                Err(EIO)
            } else {
                self.storage.allocate(sectors)
            };
            match place {
                Ok(place) => {
                    chunk.inner.lock().place = place;
                    ChunkBuf::store(buf, self.clone(), place, bytes, index);
                }
                Err(e) => {
                    drop(buf);
                    self.chunk_io_done(index, Err(e));
                    self.kick_cow();
                }
            }
        }
    }

    /// Reads of the sectors an in-volume storage holds on this member
    /// complete with zeros, the rest of `bio` is read as usual: the copies
    /// written there since the take are not data of the image, and a file
    /// system reads its preallocated file as zeros anyway.
    fn read_around_storage(self: ArcBorrow<'_, Self>, mut bio: OwnedBio) {
        loop {
            let (sector, count) = bio.sectors();
            let end = sector.saturating_add(count);
            let next = self
                .hidden
                .partition_point(|&(_, hidden_end)| hidden_end <= sector);
            let Some(&(start, hidden_end)) = self.hidden.get(next).filter(|h| h.0 < end) else {
                return self.read(bio);
            };
            // The pieces are at most the bio, which fits a u32 of sectors.
            let visible = start.saturating_sub(sector);
            let piece = if visible > 0 {
                visible
            } else {
                hidden_end.min(end) - sector
            };
            match bio.split_front(u32::try_from(piece).unwrap_or(u32::MAX)) {
                Some(front) if visible > 0 => self.read(front),
                Some(front) => front.end_with_zeros(),
                // The piece is the whole bio.
                None if visible > 0 => return self.read(bio),
                None => return bio.end_with_zeros(),
            }
        }
    }

    /// Marks the sectors of in-volume storage on this device changed, once
    /// the snapshot is over: the copies written there below the filter
    /// changed them, and the next backup must see it.
    pub(crate) fn mark_storage_changed(&self) {
        for &(start, end) in self.hidden.iter() {
            self.cbt.mark_dirty(start, end - start);
        }
    }

    /// Serves an image read, cut into runs: chunks never copied, read from
    /// the original with one clone; chunks stored one after the other on a
    /// storage device, read from there with one clone; any other chunk by
    /// itself.
    fn read(self: ArcBorrow<'_, Self>, mut bio: OwnedBio) {
        loop {
            let (sector, count) = bio.sectors();
            if count == 0
                || sector
                    .checked_add(count)
                    .filter(|&e| e <= self.capacity)
                    .is_none()
            {
                // The worker fails it.
                return Arc::from(self).queue_read(bio);
            }
            if self.is_stopped() {
                return bio.end(Err(EIO));
            }
            let (run, source) = self.first_run(sector, sector + count);
            // A run is at most the bio, which fits a u32 of sectors.
            match bio.split_front(u32::try_from(run).unwrap_or(u32::MAX)) {
                Some(front) => self.serve_run(front, source),
                None => return self.serve_run(bio, source),
            }
        }
    }

    /// The first run of the image sectors `[sector, end)` that one clone
    /// can serve, as its length in sectors and where it is served from.
    fn first_run(&self, sector: u64, end: u64) -> (u64, Source) {
        let cs = self.shift - SECTOR_SHIFT;
        let index = sector >> cs;
        let chunk_end = |i: u64| ((i + 1) << cs).min(end);
        let mut run_end = chunk_end(index);
        let Some(chunk) = self.chunks.get(index) else {
            // Never copied: so are the chunks after it as long as they have
            // no entry (checked again when the clone completes).
            while run_end < end && self.chunks.get(run_end >> cs).is_none() {
                run_end = chunk_end(run_end >> cs);
            }
            return (run_end - sector, Source::Original);
        };
        let stored_at = |chunk: &Chunk| {
            let inner = chunk.inner.lock();
            matches!(
                chunk::on_event(inner.state, Event::ImageReadArrives),
                Ok((_, Action::ServeFromStorage))
            )
            .then_some(inner.place)
        };
        let storage = self.storage.file();
        // A stored chunk stays stored where it is. Chunks next to each
        // other in a storage device are read together; an in-volume
        // storage's extents may break anywhere, so each is read by itself.
        let Some(place) = stored_at(chunk).filter(|_| storage.uses_bios()) else {
            return (run_end - sector, Source::Chunk);
        };
        let within = sector - (index << cs);
        if !storage.is_in_volume() {
            while run_end < end {
                let next = run_end >> cs;
                let follows = self.chunks.get(next).and_then(stored_at)
                    == Some(place + ((next - index) << cs));
                if !follows {
                    break;
                }
                run_end = chunk_end(next);
            }
        }
        (run_end - sector, Source::Storage(place + within))
    }

    /// Serves a run found by [`DiffArea::first_run`].
    fn serve_run(self: ArcBorrow<'_, Self>, bio: OwnedBio, source: Source) {
        match source {
            Source::Original => {
                match chunk::on_event(ChunkState::Untouched, Event::ImageReadArrives) {
                    Ok((_, Action::ServeFromOriginal)) => self.remap_original(bio),
                    _ => Arc::from(self).queue_read(bio),
                }
            }
            Source::Storage(place) => self.remap_storage(bio, place),
            Source::Chunk => self.read_chunk(bio),
        }
    }

    /// Serves an image read that lies in one chunk, which has an entry.
    fn read_chunk(self: ArcBorrow<'_, Self>, bio: OwnedBio) {
        let Some((index, _)) = self.single_chunk(&bio) else {
            return Arc::from(self).queue_read(bio);
        };
        let Some(chunk) = self.chunks.get(index) else {
            return Arc::from(self).queue_read(bio);
        };
        let mut inner = chunk.inner.lock();
        match chunk.step(&mut inner, Event::ImageReadArrives) {
            Some(Action::HoldBio) => inner.reads.push(bio),
            Some(Action::FailBio) => {
                drop(inner);
                bio.end(Err(EIO));
            }
            _ => {
                drop(inner);
                Arc::from(self).queue_read(bio);
            }
        }
    }

    /// The chunk of an image bio and its first sector within the chunk, if
    /// it lies in one chunk of the device.
    fn single_chunk(&self, bio: &Bio) -> Option<(u64, u64)> {
        let (sector, count) = bio.sectors();
        let end = sector.checked_add(count).filter(|&e| e <= self.capacity)?;
        let per_chunk = 1u64 << (self.shift - SECTOR_SHIFT);
        let index = sector >> (self.shift - SECTOR_SHIFT);
        let within = sector & (per_chunk - 1);
        (count > 0 && end - sector <= per_chunk - within).then_some((index, within))
    }

    fn remap_original(self: ArcBorrow<'_, Self>, bio: OwnedBio) {
        if let Err(bio) = bio.remap_read(&self.original, self) {
            Arc::from(self).queue_read(bio);
        }
    }

    fn remap_storage(self: ArcBorrow<'_, Self>, bio: OwnedBio, place: u64) {
        if let Err(bio) = bio.remap_storage(place, self.storage(), self) {
            Arc::from(self).queue_read(bio);
        }
    }

    fn queue_read(self: &Arc<Self>, bio: OwnedBio) {
        self.reads.lock().push(bio);
        self.kick_reads();
    }

    /// Whether an image read may be served by the original: the snapshot is
    /// intact and no write reached the chunks it touches since the take
    /// (they have no entry, or their copy is still being read). Checked
    /// before a clone is sent, and again when it completed, which is what
    /// makes its data trustworthy. Must not sleep.
    fn reads_original(&self, bio: &Bio) -> bool {
        if self.is_stopped() {
            return false;
        }
        let (sector, count) = bio.sectors();
        if sector
            .checked_add(count)
            .filter(|&end| end <= self.capacity)
            .is_none()
        {
            return false;
        }
        chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count).is_some_and(
            |mut chunks| {
                chunks.all(|c| {
                    let state = self
                        .chunks
                        .get(c)
                        .map_or(ChunkState::Untouched, |chunk| chunk.inner.lock().state);
                    matches!(
                        chunk::on_event(state, Event::OriginalReadDone),
                        Ok((_, Action::CompleteBio))
                    )
                })
            },
        )
    }

    /// The chunks in memory (being read, waiting or being stored) now, and
    /// the most at once so far.
    pub(crate) fn chunks_in_memory(&self) -> (usize, usize) {
        (
            self.in_memory.load(Ordering::Relaxed),
            self.peak_in_memory.load(Ordering::Relaxed),
        )
    }

    /// Whether no clone of an image read and no read or store of a chunk
    /// is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.remapped.sum_signed(0) == 0 && self.in_memory.load(Ordering::Acquire) == 0
    }

    /// Waits until [`DiffArea::is_idle`]: after [`DiffArea::close`], every
    /// held bio has then gone back to the workers.
    /// A device that never completes its I/O keeps the wait going: it says
    /// so in the kernel log every ten thousand tries (ten seconds at least).
    pub(crate) fn wait_idle(&self) {
        let mut tries = 0u32;
        while !self.is_idle() {
            workqueue::msleep(1);
            tries = tries.wrapping_add(1);
            if tries % 10_000 == 0 {
                let (major, minor) = self.original.dev();
                pr_warn!(
                    "destroy of the snapshot of {major}:{minor} still waits for I/O its devices have not completed\n"
                );
            }
        }
    }

    /// Stops copy-on-write: queued writes pass, image reads fail.
    pub(crate) fn close(self: &Arc<Self>) {
        self.closing.store(true, Ordering::Release);
        self.io_ended.notify_all();
        self.kick_cow();
        self.kick_reads();
    }

    /// Starts copy-on-write, once the take is complete: the writes queued
    /// since the area was published are copied for and released.
    pub(crate) fn start(self: &Arc<Self>) {
        self.started.store(true, Ordering::Release);
        self.kick_cow();
    }

    /// Waits until chunk `index` is stored; returns its place. Sleeps until
    /// one of the area's chunk I/Os ends, or the area closes; a corruption
    /// raised by another member of the snapshot is seen within
    /// [`STORED_RECHECK_MS`].
    fn wait_stored(self: &Arc<Self>, index: u64) -> Result<u64> {
        let chunk = match self.chunks.get(index) {
            Some(chunk) => chunk,
            None => self.start_copy(index)?,
        };
        let mut inner = chunk.inner.lock();
        loop {
            if self.is_stopped() {
                return Err(EIO);
            }
            match inner.state {
                ChunkState::Stored => return Ok(inner.place),
                ChunkState::Failed => return Err(EIO),
                // Woken, timed out or signalled alike: checked again.
                _ => {
                    let timeout = msecs_to_jiffies(STORED_RECHECK_MS);
                    let _ = self
                        .io_ended
                        .wait_interruptible_timeout(&mut inner, timeout);
                }
            }
        }
    }

    /// Writes an image bio into the stored copies of its chunks, copying
    /// the chunks first where needed; the original is never written.
    fn write_image(self: &Arc<Self>, bio: &OwnedBio) -> Result {
        let (mut sector, count) = bio.sectors();
        let end = sector
            .checked_add(count)
            .filter(|&e| e <= self.capacity)
            .ok_or(EIO)?;
        let per_chunk = 1u64 << (self.shift - SECTOR_SHIFT);
        let scratch = self.scratch.lock();
        let mut offset = 0usize;
        while sector < end {
            let index = sector >> (self.shift - SECTOR_SHIFT);
            let within = sector & (per_chunk - 1);
            let n = (per_chunk - within).min(end - sector);
            let place = self.wait_stored(index)?;
            let (_, sectors) = chunk::chunk_sectors(index, self.shift, self.capacity).ok_or(EIO)?;
            let bytes = (sectors << SECTOR_SHIFT) as usize;
            let storage = self.storage.file();
            scratch.storage_rw(storage, place, bytes, false)?;
            let len = (n << SECTOR_SHIFT) as usize;
            scratch.fill_from_bio((within << SECTOR_SHIFT) as usize, bio, offset, len);
            scratch.storage_rw(storage, place, bytes, true)?;
            offset += len;
            sector += n;
        }
        self.cbt.mark_dirty(end - count, count);
        Ok(())
    }

    /// Fills `len` bytes of `bio`'s data, from byte `offset` on, with the
    /// stored copy at `place`, `within` sectors into chunk `index`.
    fn read_stored(
        &self,
        index: u64,
        place: u64,
        within: u64,
        bio: &mut OwnedBio,
        offset: usize,
        len: usize,
    ) -> Result {
        let storage = self.storage.file();
        // A storage device is read with bios, never through its page
        // cache, which the stores (bios too) do not update.
        let direct = if storage.uses_bios() {
            Err(EINVAL)
        } else {
            storage.read_into_bio(place + within, bio, offset, len)
        };
        let read = match direct {
            // Direct I/O wants aligned pieces: read the chunk whole.
            Err(e) if e == EINVAL => {
                let (_, sectors) =
                    chunk::chunk_sectors(index, self.shift, self.capacity).ok_or(EIO)?;
                let bytes = (sectors << SECTOR_SHIFT) as usize;
                let scratch = self.scratch.lock();
                scratch.storage_rw(storage, place, bytes, false).map(|()| {
                    scratch.copy_to_bio((within << SECTOR_SHIFT) as usize, bio, offset, len)
                })
            }
            read => read,
        };
        // A copy that did not reach the storage, or cannot be read back
        // from it, is lost: the snapshot is corrupted. Other errors
        // (memory) fail this read alone.
        let lost = match (storage.check_written(), read) {
            (Err(e), _) => e,
            (Ok(()), Err(e)) if e == EIO => e,
            (Ok(()), read) => return read,
        };
        self.events.corrupt(self.original.devs().0, lost);
        Err(lost)
    }

    /// Fills `len` bytes of `bio`'s data, from byte `offset` on, with the
    /// image's data at `sector` (within one chunk).
    fn read_piece(&self, sector: u64, mut bio: OwnedBio, offset: usize, len: usize) -> Piece {
        let index = sector >> (self.shift - SECTOR_SHIFT);
        let within = sector - (index << (self.shift - SECTOR_SHIFT));
        loop {
            if self.is_stopped() {
                return Piece::Failed(bio, EIO);
            }
            let Some(chunk) = self.chunks.get(index) else {
                let mut buf = self.read_buf.lock();
                let Some(piece) = buf.get_mut(..len) else {
                    return Piece::Failed(bio, EIO);
                };
                if let Err(e) = self.original.read_sync(sector, piece) {
                    return Piece::Failed(bio, e);
                }
                // Trusted only if the chunk is still untouched: otherwise a
                // write may have reached it; serve the copy instead.
                if self.chunks.get(index).is_none() && !self.is_stopped() {
                    bio.copy_to(offset, piece);
                    return Piece::Done(bio);
                }
                continue;
            };
            let mut inner = chunk.inner.lock();
            let result = match chunk.step(&mut inner, Event::ImageReadArrives) {
                Some(Action::HoldBio) => {
                    inner.reads.push(bio);
                    return Piece::Held;
                }
                Some(Action::ServeFromMemory) => {
                    let buf = inner.buf.clone();
                    drop(inner);
                    buf.map_or(Err(EIO), |buf| {
                        buf.copy_to_bio((within << SECTOR_SHIFT) as usize, &mut bio, offset, len);
                        Ok(())
                    })
                }
                Some(Action::ServeFromStorage) => {
                    let place = inner.place;
                    drop(inner);
                    self.read_stored(index, place, within, &mut bio, offset, len)
                }
                _ => Err(EIO),
            };
            return match result {
                Ok(()) => Piece::Done(bio),
                Err(e) => Piece::Failed(bio, e),
            };
        }
    }

    fn serve_image_bio(&self, bio: OwnedBio) {
        let (mut sector, count) = bio.sectors();
        let Some(end) = sector.checked_add(count).filter(|&e| e <= self.capacity) else {
            return bio.end(Err(EIO));
        };
        let per_chunk = 1u64 << (self.shift - SECTOR_SHIFT);
        let mut offset = 0usize;
        let mut bio = bio;
        while sector < end {
            let n = (per_chunk - (sector & (per_chunk - 1))).min(end - sector);
            let len = (n << SECTOR_SHIFT) as usize;
            bio = match self.read_piece(sector, bio, offset, len) {
                Piece::Done(bio) => bio,
                Piece::Failed(bio, e) => return bio.end(Err(e)),
                // Served again, from the start, once the chunk is read.
                Piece::Held => return,
            };
            offset += len;
            sector += n;
        }
        // Once corrupted, writes pass uncopied: data just read from memory
        // or the storage may be theirs.
        let result = if self.is_stopped() { Err(EIO) } else { Ok(()) };
        bio.end(result);
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

impl CopyOnWrite for DiffArea {
    fn on_write(self: ArcBorrow<'_, Self>, bio: OwnedBio, offset: i64) -> Option<OwnedBio> {
        self.offer_write(bio, offset)
    }

    /// The original is going away and its writes will no longer be seen:
    /// the snapshot is corrupted, so the image never shows data written
    /// later (a device set up again, a partition created in its place).
    /// A discard of the original while the snapshot stands is completed
    /// here, without a copy and without reaching the device, unless every
    /// chunk it touches is copied already (then it goes on, and changes
    /// the device): the sectors it gives up may read anything afterwards,
    /// so they may as well keep the data of the take, which the image
    /// still shows from there. Sent on over an uncopied chunk, it would
    /// change the chunk under the image; copied first, a trim of a file
    /// system's free space (`fstrim`) would fill the storage with data
    /// nobody needs. Not sent later either: by the destroy, a write may
    /// have reused the sectors. A discard of in-volume storage's sectors
    /// never reaches them. Once the snapshot is closed or corrupted,
    /// discards go on to the device.
    fn on_discard(&self, bio: OwnedBio, offset: i64) -> Option<OwnedBio> {
        if self.is_stopped() {
            return Some(bio);
        }
        let copied = blkfilter::sectors_on(&bio, offset).is_some_and(|(sector, count)| {
            !self.overlaps_storage(sector, count)
                && chunk::sectors_to_chunks(sector, count, self.shift, self.chunk_count)
                    .is_some_and(|mut chunks| chunks.all(|c| self.write_passes(c)))
        });
        if copied {
            return Some(bio);
        }
        bio.end(Ok(()));
        None
    }

    fn device_gone(&self) {
        self.events.corrupt_atomic(self.original.devs().0, ENODEV);
    }
}

impl ChunkIo for DiffArea {
    fn original(&self) -> &BlockDevice {
        &self.original
    }

    fn storage(&self) -> &StorageFile {
        self.storage.file()
    }

    fn io_done(this: Arc<Self>, index: u64, buf: Arc<ChunkBuf>, result: Result) {
        drop(buf);
        this.chunk_io_done(index, result);
        // The worker has held writes to pass or copies to start, and its
        // work item takes this reference: the last one of an area must not
        // be dropped here, maybe in an interrupt (dropping the area puts
        // devices and files). A work item already queued holds one of its
        // own, so the one given back is not the last.
        let _ = workqueue::queue().enqueue::<Arc<Self>, COW_WORK>(this);
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

impl WorkItem<STORE_WORK> for DiffArea {
    type Pointer = Arc<DiffArea>;

    fn run(this: Arc<DiffArea>) {
        this.run_stores();
    }
}

/// The image disk sends its bios here.
impl ImageServer for DiffArea {
    /// Takes a bio of the snapshot image.
    ///
    /// A read of a chunk never copied goes straight to the original as a
    /// clone (see [`ImageServer::remapped_read_valid`]), a read of a stored
    /// chunk to a storage device as a clone; other reads go to the image
    /// worker, writes of a writable image to the copy-on-write worker.
    fn on_image_bio(self: ArcBorrow<'_, Self>, bio: OwnedBio) {
        match bio.op() {
            BioOp::Write if self.writable => {
                self.image_writes.lock().push(bio);
                Arc::from(self).kick_cow();
                return;
            }
            BioOp::Read if !self.hidden.is_empty() => return self.read_around_storage(bio),
            BioOp::Read => {}
            // Nothing to keep of the sectors a writable image gives up.
            BioOp::Discard if self.writable => return bio.end(Ok(())),
            // A read-only image.
            BioOp::Write | BioOp::Discard => return bio.end(Err(EIO)),
            BioOp::Other => return bio.end(Ok(())),
        }
        self.read(bio);
    }

    /// A clone of an image read completed, sent to the original or (not
    /// `original`) to the storage: may its data be trusted? Once the
    /// snapshot is corrupted or closing, no image read succeeds.
    fn remapped_read_valid(&self, bio: &Bio, original: bool) -> bool {
        if original {
            self.reads_original(bio)
        } else {
            !self.is_stopped()
        }
    }

    /// A clone of an image read is being sent (by
    /// [`OwnedBio::remap_read`] or [`OwnedBio::remap_storage`]).
    fn remapped_read_begin(&self) {
        self.remapped.add(0, 1);
    }

    /// A clone's image read was completed, or was not sent after all.
    fn remapped_read_done(&self) {
        self.remapped.add(0, -1);
    }

    /// A clone's data could not be trusted: serve the read again, cut
    /// anew, in a work item. The chunks that were written to meanwhile are
    /// copied now, and a chunk is written to only once, so a read is served
    /// again at most once per chunk it covers.
    fn retry_read(this: &Arc<Self>, bio: OwnedBio) {
        this.as_arc_borrow().read(bio);
        // After the new clone (if any) was counted: the count never falls
        // to zero while the bio is out.
        this.remapped.add(0, -1);
    }
}

impl ImageEntry for Above {
    type Server = DiffArea;
}
