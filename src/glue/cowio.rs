// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers for the I/O of copy-on-write (`cowio.c`): chunk buffers
//! from a page reserve, their asynchronous reads of the original and writes
//! to the difference storage, and the sparse table of touched chunks.

use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;

use kernel::error::to_result;
use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

use super::bindings;
use super::bio::OwnedBio;
use super::block::BlockDevice;
use super::storage::StorageFile;

/// A reserve of pages for chunk buffers: a mempool that keeps enough pages
/// for one chunk, so a copy can always start once the earlier ones are
/// stored, whatever the memory pressure.
pub(crate) struct PagePool(NonNull<bindings::mempool_t>);

// SAFETY: a mempool may be used and destroyed from any thread.
unsafe impl Send for PagePool {}
// SAFETY: mempool_alloc and mempool_free take the pool's own lock.
unsafe impl Sync for PagePool {}

impl PagePool {
    /// A pool that keeps `pages` pages in reserve.
    pub(crate) fn new(pages: u32) -> Result<Arc<Self>> {
        // SAFETY: no precondition; destroyed by drop.
        let pool = NonNull::new(unsafe { bindings::blksnap_pool_create(pages) }).ok_or(ENOMEM)?;
        Ok(Arc::new(Self(pool), GFP_KERNEL)?)
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        // SAFETY: created by `new`; every buffer holds an `Arc` of its
        // pool, so none is left.
        unsafe { bindings::blksnap_pool_destroy(self.0.as_ptr()) };
    }
}

/// The memory of one chunk's copy: pages from a [`PagePool`].
///
/// Its bytes are only reached through the C side (I/O and copies to and
/// from bios), never as a Rust slice, so an I/O that fills it while an
/// image read copies from it is a race between those callers, which the
/// chunk's state rules out, and never a Rust data race.
pub(crate) struct ChunkBuf {
    buf: NonNull<bindings::blksnap_buf>,
    _pool: Arc<PagePool>,
}

// SAFETY: the buffer's pages may be used and freed from any thread.
unsafe impl Send for ChunkBuf {}
// SAFETY: see the type's documentation: no Rust access to the bytes.
unsafe impl Sync for ChunkBuf {}

/// Whoever starts the asynchronous I/O of chunk buffers, and is told when
/// it ends.
pub(crate) trait ChunkIo: Send + Sync + Sized {
    /// The device chunks are read from.
    fn original(&self) -> &BlockDevice;
    /// The difference storage copies are written to.
    fn storage(&self) -> &StorageFile;
    /// The I/O of `buf` for chunk `index` ended. May run in interrupt
    /// context: must not sleep.
    fn io_done(this: Arc<Self>, index: u64, buf: Arc<ChunkBuf>, result: Result);
}

/// The C completion of a buffer's I/O: gives back the references taken
/// when the I/O started.
extern "C" fn io_end<T: ChunkIo>(
    owner: *mut c_void,
    cookie: *const c_void,
    index: u64,
    err: c_int,
) {
    // SAFETY: `owner` and `cookie` come from `Arc::into_raw` in `start`,
    // and C reports the end of each I/O once.
    let (owner, buf) = unsafe {
        (
            Arc::from_raw(owner.cast::<T>().cast_const()),
            Arc::from_raw(cookie.cast::<ChunkBuf>()),
        )
    };
    T::io_done(owner, index, buf, to_result(err));
}

impl ChunkBuf {
    /// A buffer of `bytes` (rounded up to pages); `None` if the memory for
    /// its bookkeeping is short. Its pages come from `pool`, which may wait
    /// for the buffers allocated before it to be freed.
    pub(crate) fn new(pool: &Arc<PagePool>, bytes: usize) -> Option<Arc<Self>> {
        // SAFETY: the pool is live; the buffer holds an `Arc` of it.
        let buf = NonNull::new(unsafe { bindings::blksnap_buf_alloc(pool.0.as_ptr(), bytes) })?;
        let this = Self {
            buf,
            _pool: pool.clone(),
        };
        Arc::new(this, GFP_KERNEL).ok()
    }

    fn as_ptr(&self) -> *mut bindings::blksnap_buf {
        self.buf.as_ptr()
    }

    /// Copies `len` bytes of the buffer, from byte `off` on, into `bio`'s
    /// data from byte `bio_off` on.
    pub(crate) fn copy_to_bio(&self, off: usize, bio: &mut OwnedBio, bio_off: usize, len: usize) {
        // SAFETY: the buffer and the owned bio are live; the C side stops
        // at the end of either.
        unsafe { bindings::blksnap_buf_to_bio(self.as_ptr(), off, bio.as_ptr(), bio_off, len) };
    }

    /// Copies `len` bytes of `bio`'s data, from byte `bio_off` on, into the
    /// buffer from byte `off` on.
    pub(crate) fn fill_from_bio(&self, off: usize, bio: &OwnedBio, bio_off: usize, len: usize) {
        // SAFETY: as in `to_bio`.
        unsafe { bindings::blksnap_buf_from_bio(self.as_ptr(), off, bio.as_ptr(), bio_off, len) };
    }

    /// Reads `bytes` at `sector` of `owner`'s original into the buffer,
    /// then calls [`ChunkIo::io_done`] with chunk `index`.
    pub(crate) fn read_original<T: ChunkIo>(
        this: Arc<Self>,
        owner: Arc<T>,
        sector: u64,
        bytes: usize,
        index: u64,
    ) {
        Self::start(this, owner, false, sector, bytes, index);
    }

    /// Writes `bytes` of the buffer (rounded up to pages) at `sector` of
    /// `owner`'s storage, then calls [`ChunkIo::io_done`] with chunk `index`.
    pub(crate) fn store<T: ChunkIo>(
        this: Arc<Self>,
        owner: Arc<T>,
        sector: u64,
        bytes: usize,
        index: u64,
    ) {
        Self::start(this, owner, true, sector, bytes, index);
    }

    fn start<T: ChunkIo>(
        this: Arc<Self>,
        owner: Arc<T>,
        store: bool,
        sector: u64,
        bytes: usize,
        index: u64,
    ) {
        let buf = this.as_ptr();
        let (dev, file, volume) = if store {
            let storage = owner.storage();
            (
                core::ptr::null_mut(),
                storage.as_ptr(),
                storage.volume_ptr(),
            )
        } else {
            (
                owner.original().as_ptr(),
                core::ptr::null_mut(),
                core::ptr::null(),
            )
        };
        let (owner, cookie) = (Arc::into_raw(owner), Arc::into_raw(this));
        // SAFETY: the buffer and the owner (which holds the original and
        // the storage open) stay alive until `io_end` gives back the
        // references taken here.
        unsafe {
            bindings::blksnap_buf_start(
                buf,
                dev,
                file,
                volume,
                sector,
                bytes,
                Some(io_end::<T>),
                owner.cast_mut().cast(),
                cookie.cast(),
                index,
            )
        };
    }

    /// Reads (or writes, if `write`) `bytes` (rounded up to pages) at
    /// `sector` of `storage`, and waits.
    pub(crate) fn storage_rw(
        &self,
        storage: &StorageFile,
        sector: u64,
        bytes: usize,
        write: bool,
    ) -> Result {
        // SAFETY: the buffer and the storage are live until we return.
        to_result(unsafe {
            bindings::blksnap_buf_storage_rw(
                self.as_ptr(),
                storage.as_ptr(),
                storage.volume_ptr(),
                sector,
                bytes,
                write,
            )
        })
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`; no I/O is in flight, since each holds
        // an `Arc` of the buffer.
        unsafe { bindings::blksnap_buf_free(self.as_ptr()) };
    }
}

/// A sparse table from chunk numbers to `T`, which only grows: an entry
/// stays where it is until the table is dropped, so a reference to it
/// lives as long as the table is borrowed. Looking up never sleeps nor
/// takes a lock.
pub(crate) struct ChunkMap<T> {
    xa: NonNull<bindings::xarray>,
    _entries: PhantomData<Pin<KBox<T>>>,
}

// SAFETY: entries are `T`s owned by the table; the xarray may be used from
// any thread.
unsafe impl<T: Send> Send for ChunkMap<T> {}
// SAFETY: lookups hand out `&T` to several threads; insertions are
// serialised by the xarray's lock.
unsafe impl<T: Send + Sync> Sync for ChunkMap<T> {}

impl<T> ChunkMap<T> {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no precondition; destroyed by drop.
        let xa = NonNull::new(unsafe { bindings::blksnap_xa_create() }).ok_or(ENOMEM)?;
        Ok(Self {
            xa,
            _entries: PhantomData,
        })
    }

    /// The entry of chunk `index`, if there is one.
    pub(crate) fn get(&self, index: u64) -> Option<&T> {
        // SAFETY: the table is live.
        let entry = unsafe { bindings::blksnap_xa_load(self.xa.as_ptr(), index) };
        // SAFETY: every entry is a `T` of a leaked box, freed only by drop,
        // which cannot run while `self` is borrowed.
        NonNull::new(entry.cast::<T>()).map(|p| unsafe { &*p.as_ptr() })
    }

    /// Adds the entry of chunk `index`, made by `init`; `EBUSY` if the
    /// chunk has one, `ENOMEM`.
    pub(crate) fn insert(&self, index: u64, init: impl PinInit<T, Error>) -> Result<&T> {
        let entry = KBox::pin_init(init, GFP_KERNEL | __GFP_NOWARN)?;
        // SAFETY: the box is leaked into the table and never moved; it is
        // taken back only by drop or below.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(entry) });
        // SAFETY: the table is live; `raw` is a valid entry.
        let ret = unsafe { bindings::blksnap_xa_insert(self.xa.as_ptr(), index, raw.cast()) };
        if let Err(e) = to_result(ret) {
            // SAFETY: not stored: the box is still ours, and still pinned.
            drop(unsafe { Pin::new_unchecked(KBox::from_raw(raw)) });
            return Err(e);
        }
        // SAFETY: stored, and freed only by drop.
        Ok(unsafe { &*raw })
    }
}

impl<T> Drop for ChunkMap<T> {
    fn drop(&mut self) {
        let mut index = 0u64;
        loop {
            // SAFETY: the table is live and no longer shared.
            let entry = unsafe { bindings::blksnap_xa_take_next(self.xa.as_ptr(), &mut index) };
            if entry.is_null() {
                break;
            }
            // SAFETY: every entry is a pinned box leaked by `insert`; taken
            // out of the table, it is ours again.
            drop(unsafe { Pin::new_unchecked(KBox::from_raw(entry.cast::<T>())) });
        }
        // SAFETY: created by `new`, now empty.
        unsafe { bindings::blksnap_xa_destroy(self.xa.as_ptr()) };
    }
}
