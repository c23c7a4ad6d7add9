// SPDX-License-Identifier: GPL-2.0

//! Difference storage: the accounting of its space (uapi.md §6).
//!
//! This file owns the numbers of one snapshot's difference storage and the
//! rules that change them, and nothing else: where the next stored chunk
//! goes, when the storage file must grow and by how much, and when the
//! `no_space` event is due. The kernel module's diff storage owns the file or
//! block device, the lock around a [`StorageAccount`], the work item that
//! calls `fallocate` and the event queue; the diff area calls
//! [`StorageAccount::allocate`] for every chunk it stores. It uses only
//! `core`, no allocation and no `unsafe`, never panics and never overflows,
//! so it is compiled unchanged into the module
//! (`#[path = "../logic/src/storage.rs"] mod storage;`) and tested on the
//! host by the `blksnap-logic` crate.
//!
//! # Allocation
//!
//! Space is handed out by a bump allocator: chunks are stored one after the
//! other from sector 0 and never freed, since a snapshot only accumulates
//! copies until it is destroyed. So the used sectors are a prefix of the
//! storage, and allocations never overlap.
//!
//! # Growth
//!
//! A storage file starts with its size on disk as capacity. When the free
//! space falls to half of the growth step (`diff_storage_minimum`), it must
//! grow by the step, or by what is left up to the limit
//! (`diff_storage_limit_sect` of SNAPSHOT_CREATE) if that is less; the same
//! holds after an allocation failed for lack of space, whatever the free
//! space. [`StorageAccount::start_growth`] says so and to what size, at most
//! once at a time; the caller extends the file with `fallocate` in the
//! background and reports [`StorageAccount::grown`] or
//! [`StorageAccount::growth_failed`]. A block device never grows: its
//! capacity is its limit.
//!
//! # Running out
//!
//! The limit is reached when the space is low (as above) and the storage
//! cannot grow any more: the capacity is at the limit, the storage is a block
//! device, or the file system refused to grow the file. Then one `no_space`
//! event is due, carrying the size the storage was last asked to have (its
//! `requested_nr_sect`, as in the upstream proposal): the limit once the
//! file grew to it, the size of the growth the file system refused, or the
//! capacity of a block device or of a file that was never asked to grow.
//! It is not the space used so far.
//! [`StorageAccount::no_space_event`] hands out its data the first time only.
//! A failed allocation is also the caller's cue to mark the snapshot
//! corrupted, which is a separate event.
//!
//! # Invariants
//!
//! `used <= capacity <= requested <= limit <= MAX_STORAGE_SECTORS` at all
//! times, and the growth step is at least one sector. A file already larger than the limit
//! raises the limit to its size, so it is used whole and never grown.

/// The largest capacity or limit, in sectors, of a difference storage.
///
/// It is `i64::MAX >> 9`, so any size or offset in bytes fits the kernel's
/// `loff_t`; larger capacities and limits are clipped to it.
pub const MAX_STORAGE_SECTORS: u64 = u64::MAX >> 10;

/// The error of [`StorageAccount::allocate`]: the free space is too small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSpace;

/// The space accounting of one difference storage.
///
/// The caller serialises the calls (the diff storage's lock).
///
/// # Invariants
///
/// `used <= capacity <= requested <= limit <= MAX_STORAGE_SECTORS` and
/// `step >= 1`; a storage that is not `growable` has no growth in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageAccount {
    /// Sectors the storage has, allocated or not.
    capacity: u64,
    /// Sectors handed out, from sector 0.
    used: u64,
    /// Sectors the storage may grow to.
    limit: u64,
    /// Growth step, also twice the low-space threshold.
    step: u64,
    /// The size the storage was last asked to have: its capacity, or the
    /// size of the last growth started, whether it succeeded or not.
    requested: u64,
    /// Whether the storage may still grow (a file the file system grew so far).
    growable: bool,
    /// Whether a growth was started and not yet reported.
    growing: bool,
    /// Whether an allocation failed since the last growth.
    short: bool,
    /// Whether the `no_space` event was handed out.
    no_space_reported: bool,
}

impl StorageAccount {
    /// Returns the accounting of a storage file.
    ///
    /// `capacity_sectors` is the file's current size, `limit_sectors` the
    /// size it may grow to and `step_sectors` the growth step. A file larger
    /// than the limit is used whole and never grown; a step of 0 counts as
    /// one sector; sizes above [`MAX_STORAGE_SECTORS`] are clipped to it.
    pub fn for_file(capacity_sectors: u64, limit_sectors: u64, step_sectors: u64) -> Self {
        let capacity = capacity_sectors.min(MAX_STORAGE_SECTORS);
        // INVARIANT: `capacity == requested <= limit <= MAX_STORAGE_SECTORS`,
        // `step >= 1`.
        Self {
            capacity,
            used: 0,
            // Not `clamp(capacity, ..)`, whose check of its bounds could panic.
            limit: limit_sectors.min(MAX_STORAGE_SECTORS).max(capacity),
            step: step_sectors.max(1),
            requested: capacity,
            growable: true,
            growing: false,
            short: false,
            no_space_reported: false,
        }
    }

    /// Returns the accounting of a storage block device, which never grows.
    ///
    /// `step_sectors` still sets the low-space threshold (half of it) at
    /// which the `no_space` event is due; a step of 0 counts as one sector.
    pub fn for_block_device(capacity_sectors: u64, step_sectors: u64) -> Self {
        let capacity = capacity_sectors.min(MAX_STORAGE_SECTORS);
        // INVARIANT: `capacity == requested == limit <= MAX_STORAGE_SECTORS`,
        // `step >= 1`, not growable and no growth in flight.
        Self {
            capacity,
            used: 0,
            limit: capacity,
            step: step_sectors.max(1),
            requested: capacity,
            growable: false,
            growing: false,
            short: false,
            no_space_reported: false,
        }
    }

    /// Returns the sectors the storage has now, allocated or not.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity
    }

    /// Returns the sectors handed out so far.
    pub fn used_sectors(&self) -> u64 {
        self.used
    }

    /// Returns the sectors not yet handed out.
    pub fn free_sectors(&self) -> u64 {
        // Never saturates: `used <= capacity`.
        self.capacity.saturating_sub(self.used)
    }

    /// Returns the size the storage may grow to, in sectors.
    pub fn limit_sectors(&self) -> u64 {
        self.limit
    }

    /// Returns the growth step, in sectors.
    pub fn step_sectors(&self) -> u64 {
        self.step
    }

    /// Returns the size, in sectors, the storage was last asked to have.
    ///
    /// That is the capacity until a growth is started, then the size the
    /// growth asked for, kept when the growth fails; never less than the
    /// capacity nor more than the limit. This is the `requested_nr_sect` of
    /// the `no_space` event.
    pub fn requested_sectors(&self) -> u64 {
        self.requested
    }

    /// Returns whether the storage may still grow beyond its capacity.
    pub fn is_growable(&self) -> bool {
        self.growable && self.capacity < self.limit
    }

    /// Returns whether a growth was started and not yet reported.
    pub fn is_growing(&self) -> bool {
        self.growing
    }

    /// Hands out `sectors` sectors and returns the first one.
    ///
    /// The space follows the previous allocation. Fails with [`NoSpace`] when
    /// the free space is smaller, which also makes the space low (see
    /// [`StorageAccount::start_growth`]). An allocation of 0 sectors
    /// succeeds and hands out nothing.
    ///
    /// # Errors
    ///
    /// [`NoSpace`] when fewer than `sectors` sectors are free; nothing is
    /// handed out then.
    pub fn allocate(&mut self, sectors: u64) -> Result<u64, NoSpace> {
        match self
            .used
            .checked_add(sectors)
            .filter(|&end| end <= self.capacity)
        {
            Some(end) => {
                let start = self.used;
                // INVARIANT: `end <= capacity`.
                self.used = end;
                Ok(start)
            }
            None => {
                self.short = true;
                Err(NoSpace)
            }
        }
    }

    /// Returns whether the space is low: at most half a step free, or an
    /// allocation failed since the last growth.
    fn is_low(&self) -> bool {
        self.short || self.free_sectors() <= self.step >> 1
    }

    /// Returns the size to grow the storage to, if it should grow now.
    ///
    /// That is when the space is low, the storage may grow and no growth is
    /// in flight. The new size is the capacity plus the step, or the limit if
    /// that is less, so it is always above the capacity and at most the
    /// limit.
    pub fn needs_growth(&self) -> Option<u64> {
        if self.growing || !self.is_growable() || !self.is_low() {
            return None;
        }
        // Never saturates: `capacity < limit`, so the sum is at most `limit`.
        let room = self.limit.saturating_sub(self.capacity);
        Some(self.capacity.saturating_add(self.step.min(room)))
    }

    /// Returns [`StorageAccount::needs_growth`] and, if it is `Some`, records
    /// that a growth to that size is in flight and that this size is now
    /// the one requested ([`StorageAccount::requested_sectors`]).
    ///
    /// Until [`StorageAccount::grown`] or [`StorageAccount::growth_failed`]
    /// is called, no other growth is started.
    #[must_use = "a growth recorded as started must be done and reported"]
    pub fn start_growth(&mut self) -> Option<u64> {
        let size = self.needs_growth()?;
        // INVARIANT: only reached when growable; `capacity < size <= limit`.
        self.growing = true;
        self.requested = size;
        Some(size)
    }

    /// Records that the storage was grown to `new_capacity` sectors.
    ///
    /// Ends the growth in flight. The capacity is clipped to the limit (the
    /// space beyond it is not used); a report that does not make the storage
    /// larger counts as [`StorageAccount::growth_failed`], so a file system
    /// that ignores the growth cannot make the caller try again forever.
    pub fn grown(&mut self, new_capacity: u64) {
        let capacity = new_capacity.min(self.limit);
        if capacity > self.capacity {
            // INVARIANT: `used <= old capacity < capacity <= limit`, and
            // `capacity <= requested <= limit` (a file grown beyond the size
            // asked for counts as asked to have its new size).
            self.capacity = capacity;
            self.requested = self.requested.max(capacity);
            self.growing = false;
            self.short = false;
        } else {
            self.growth_failed();
        }
    }

    /// Records that growing the storage failed; it will not grow any more.
    ///
    /// Ends the growth in flight. Once the space is low the limit counts as
    /// reached.
    pub fn growth_failed(&mut self) {
        self.growing = false;
        self.growable = false;
    }

    /// Returns whether the space is low and the storage cannot grow any more.
    pub fn limit_reached(&self) -> bool {
        self.is_low() && !self.is_growable()
    }

    /// Returns the data of the `no_space` event the first time it is due.
    ///
    /// The event is due when [`StorageAccount::limit_reached`] is true; its
    /// data is [`StorageAccount::requested_sectors`], the size the storage
    /// was last asked to have. Returns `None` before
    /// and after that first time, so the caller queues the event once.
    #[must_use = "the event is handed out only once"]
    pub fn no_space_event(&mut self) -> Option<u64> {
        if self.no_space_reported || !self.limit_reached() {
            return None;
        }
        self.no_space_reported = true;
        Some(self.requested)
    }
}
