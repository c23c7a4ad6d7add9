// SPDX-License-Identifier: GPL-2.0
/*
 * The I/O of copy-on-write, for the Rust side: chunk buffers made of pages
 * from a per-device reserve, their asynchronous reads from the original and
 * writes to the difference storage, and the sparse table of touched chunks.
 *
 * Everything here may run while writes of a member are held, so it never
 * waits for memory that only those writes could free: bios come from this
 * file's own bio_sets, pages from a mempool that keeps one chunk in
 * reserve, and the difference storage is written below the page cache
 * (bios to a block device, direct I/O to a file), so the writer is never
 * throttled for dirty pages.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/mempool.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/xarray.h>

#include "blksnap_glue.h"

/* Reads of the originals' chunks. */
static struct bio_set read_bioset;
/*
 * Reads and writes of difference storages that are block devices; the
 * submit_bio hook knows the writes by this pool (src/glue/hooks.c).
 */
struct bio_set blksnap_store_bios;

int blksnap_cowio_init(void)
{
	int ret = bioset_init(&read_bioset, BIO_POOL_SIZE, 0, BIOSET_NEED_BVECS);

	if (ret)
		return ret;
	ret = bioset_init(&blksnap_store_bios, BIO_POOL_SIZE, 0, BIOSET_NEED_BVECS);
	if (ret)
		goto err_read;
	ret = blksnap_volume_init();
	if (ret)
		goto err_store;
	return 0;
err_store:
	bioset_exit(&blksnap_store_bios);
err_read:
	bioset_exit(&read_bioset);
	return ret;
}

void blksnap_cowio_exit(void)
{
	blksnap_volume_exit();
	bioset_exit(&blksnap_store_bios);
	bioset_exit(&read_bioset);
}

/* ---- Chunk buffers ----------------------------------------------------- */

/*
 * The memory of one chunk's copy: whole pages, each its own vector, and
 * the state of the one I/O of the buffer that may be in flight.
 */
struct blksnap_buf {
	mempool_t *pool;
	/* I/Os not yet completed, plus one for the submitter. */
	atomic_t pending;
	int error;
	/* Reported to end(owner, cookie, index, error), or to a waiter. */
	blksnap_io_end_t end;
	void *owner;
	const void *cookie;
	u64 index;
	struct completion *done;
	bool write;
	size_t bytes;
	struct kiocb iocb;
	unsigned int nr;
	struct bio_vec bv[] __counted_by(nr);
};

mempool_t *blksnap_pool_create(unsigned int pages)
{
	return mempool_create_page_pool(pages, 0);
}

void blksnap_pool_destroy(mempool_t *pool)
{
	mempool_destroy(pool);
}

/*
 * A buffer of bytes (rounded up to pages), or NULL if the memory for its
 * page vectors is short. Its pages come from pool, which may wait until
 * another buffer of the pool is freed: the caller allocates from one
 * thread only, so the reserve is never split between two buffers.
 */
struct blksnap_buf *blksnap_buf_alloc(mempool_t *pool, size_t bytes)
{
	unsigned int nr = DIV_ROUND_UP(bytes, PAGE_SIZE);
	struct blksnap_buf *buf;
	unsigned int i;

	buf = kvzalloc(struct_size(buf, bv, nr), GFP_NOIO | __GFP_NOWARN);
	if (!buf)
		return NULL;
	buf->pool = pool;
	buf->nr = nr;
	for (i = 0; i < nr; i++)
		bvec_set_page(&buf->bv[i], mempool_alloc(pool, GFP_NOIO),
			      PAGE_SIZE, 0);
	return buf;
}

void blksnap_buf_free(struct blksnap_buf *buf)
{
	unsigned int i;

	for (i = 0; i < buf->nr; i++)
		mempool_free(buf->bv[i].bv_page, buf->pool);
	kvfree(buf);
}

/*
 * Copies len bytes between the buffer, from byte buf_off on, and the data
 * of bio, from byte bio_off on: into the bio if to_bio.
 */
static void buf_copy(struct blksnap_buf *buf, size_t buf_off, struct bio *bio,
		     size_t bio_off, size_t len, bool to_bio)
{
	while (len) {
		unsigned int i = buf_off >> PAGE_SHIFT;
		size_t in_page = offset_in_page(buf_off);
		size_t n = min_t(size_t, len, PAGE_SIZE - in_page);
		void *p;

		if (i >= buf->nr)
			return;
		p = kmap_local_page(buf->bv[i].bv_page) + in_page;
		if (to_bio)
			blksnap_bio_copy_to(bio, bio_off, p, n);
		else
			blksnap_bio_copy_from(bio, bio_off, p, n);
		kunmap_local(p);
		buf_off += n;
		bio_off += n;
		len -= n;
	}
}

void blksnap_buf_to_bio(struct blksnap_buf *buf, size_t buf_off,
			struct bio *bio, size_t bio_off, size_t len)
{
	buf_copy(buf, buf_off, bio, bio_off, len, true);
}

void blksnap_buf_from_bio(struct blksnap_buf *buf, size_t buf_off,
			  struct bio *bio, size_t bio_off, size_t len)
{
	buf_copy(buf, buf_off, bio, bio_off, len, false);
}

/* ---- I/O of chunk buffers ----------------------------------------------- */

/*
 * The end of the buffer's I/O. The owner's callback runs in an RCU read
 * section, so a synchronize_rcu() after the owner saw its last I/O end
 * also waits until that callback has returned.
 */
static void buf_io_put(struct blksnap_buf *buf)
{
	if (!atomic_dec_and_test(&buf->pending))
		return;
	if (buf->done) {
		complete(buf->done);
		return;
	}
	rcu_read_lock();
	buf->end(buf->owner, buf->cookie, buf->index, buf->error);
	rcu_read_unlock();
}

static void buf_io_error(struct blksnap_buf *buf, int err)
{
	cmpxchg(&buf->error, 0, err);
}

static void buf_bio_end(struct bio *bio)
{
	struct blksnap_buf *buf = bio->bi_private;

	if (bio->bi_status)
		buf_io_error(buf, blk_status_to_errno(bio->bi_status));
	bio_put(bio);
	buf_io_put(buf);
}

/*
 * Sends len bytes of the buffer, from byte offset on, to or from sector of
 * bdev, in as many bios as needed.
 */
static void buf_submit_range(struct blksnap_buf *buf, struct block_device *bdev,
			     u64 sector, size_t offset, size_t len,
			     struct bio_set *bs)
{
	blk_opf_t opf = buf->write ? REQ_OP_WRITE : REQ_OP_READ;

	while (len) {
		unsigned int first = offset >> PAGE_SHIFT;
		unsigned int nr = min_t(unsigned int, BIO_MAX_VECS,
					DIV_ROUND_UP(offset_in_page(offset) + len,
						     PAGE_SIZE));
		struct bio *bio = bio_alloc_bioset(bdev, nr, opf, GFP_NOIO, bs);

		bio->bi_iter.bi_sector = sector;
		bio->bi_private = buf;
		bio->bi_end_io = buf_bio_end;
		while (len && first < buf->nr) {
			size_t in_page = offset_in_page(offset);
			size_t n = min_t(size_t, len, PAGE_SIZE - in_page);

			if (bio_add_page(bio, buf->bv[first].bv_page, n,
					 in_page) != n)
				break;
			offset += n;
			len -= n;
			sector += n >> SECTOR_SHIFT;
			first = offset >> PAGE_SHIFT;
		}
		atomic_inc(&buf->pending);
		submit_bio_noacct(bio);
		if (first >= buf->nr)
			break;
	}
}

static void buf_submit_bios(struct blksnap_buf *buf, struct block_device *bdev,
			    u64 sector, struct bio_set *bs)
{
	buf_submit_range(buf, bdev, sector, 0, buf->bytes, bs);
}

struct volume_submit {
	struct blksnap_buf *buf;
	const struct blksnap_volume *volume;
};

static void volume_submit_piece(void *ctx, u64 dev_sector, size_t offset,
				size_t len)
{
	struct volume_submit *s = ctx;

	buf_submit_range(s->buf, blksnap_volume_bdev(s->volume), dev_sector,
			 offset, len, &blksnap_volume_bios);
}

/* Sends the buffer's bytes to or from sector of an in-volume storage. */
static void buf_submit_volume(struct blksnap_buf *buf,
			      const struct blksnap_volume *volume, u64 sector)
{
	struct volume_submit s = { .buf = buf, .volume = volume };
	int ret = blksnap_volume_pieces(volume, sector, buf->bytes,
					volume_submit_piece, &s);

	if (ret)
		buf_io_error(buf, ret);
}

static void buf_kiocb_end(struct kiocb *iocb, long ret)
{
	struct blksnap_buf *buf = container_of(iocb, struct blksnap_buf, iocb);

	if (buf->write)
		kiocb_end_write(iocb);
	if (ret < 0)
		buf_io_error(buf, ret);
	else if (ret != buf->bytes)
		buf_io_error(buf, -EIO);
	buf_io_put(buf);
}

/*
 * Reads or writes the buffer's bytes at sector of a storage file: direct
 * I/O, asynchronous, when the file was opened for it; otherwise (a file
 * system that refuses O_DIRECT) through its page cache, here and now.
 */
static void buf_submit_file(struct blksnap_buf *buf, struct file *file,
			    u64 sector)
{
	struct iov_iter iter;
	long ret;

	iov_iter_bvec(&iter, buf->write ? ITER_SOURCE : ITER_DEST, buf->bv,
		      buf->nr, buf->bytes);
	buf->iocb = (struct kiocb) {
		.ki_filp = file,
		.ki_pos = sector << SECTOR_SHIFT,
	};
	atomic_inc(&buf->pending);
	if (file->f_flags & O_DIRECT) {
		buf->iocb.ki_flags = IOCB_DIRECT;
		buf->iocb.ki_complete = buf_kiocb_end;
	}
	if (buf->write) {
		kiocb_start_write(&buf->iocb);
		ret = file->f_op->write_iter(&buf->iocb, &iter);
	} else {
		ret = file->f_op->read_iter(&buf->iocb, &iter);
	}
	if (ret != -EIOCBQUEUED)
		buf_kiocb_end(&buf->iocb, ret);
}

static void buf_start(struct blksnap_buf *buf, size_t bytes, bool write)
{
	atomic_set(&buf->pending, 1);
	buf->error = 0;
	buf->write = write;
	buf->bytes = min_t(size_t, bytes, (size_t)buf->nr << PAGE_SHIFT);
}

static bool storage_is_bdev(struct file *file)
{
	return S_ISBLK(file_inode(file)->i_mode);
}

static void buf_storage_submit(struct blksnap_buf *buf, struct file *storage,
			       const struct blksnap_volume *volume, u64 sector)
{
	if (volume)
		buf_submit_volume(buf, volume, sector);
	else if (storage_is_bdev(storage))
		buf_submit_bios(buf, file_bdev(storage), sector, &blksnap_store_bios);
	else
		buf_submit_file(buf, storage, sector);
}

/* Zeroes the buffer from byte bytes to the end of its page. */
static void buf_zero_tail(struct blksnap_buf *buf, size_t bytes)
{
	unsigned int i = bytes >> PAGE_SHIFT;

	if (i < buf->nr && offset_in_page(bytes))
		memzero_page(buf->bv[i].bv_page, offset_in_page(bytes),
			     PAGE_SIZE - offset_in_page(bytes));
}

/*
 * Reads bytes at sector of the original device into the buffer (the
 * filter does not see the read), if original; otherwise writes bytes of
 * the buffer (rounded up to whole pages, the rest of the last page zeroed)
 * at sector of the storage (through its extents, for in-volume storage).
 * On completion, maybe in interrupt context,
 * end(owner, cookie, index, error) is called.
 */
void blksnap_buf_start(struct blksnap_buf *buf,
		       struct block_device *original, struct file *storage,
		       const struct blksnap_volume *volume, u64 sector,
		       size_t bytes, blksnap_io_end_t end, void *owner,
		       const void *cookie, u64 index)
{
	if (original) {
		buf_start(buf, bytes, false);
	} else {
		buf_zero_tail(buf, bytes);
		buf_start(buf, round_up(bytes, PAGE_SIZE), true);
	}
	buf->end = end;
	buf->owner = owner;
	buf->cookie = cookie;
	buf->index = index;
	buf->done = NULL;
	if (original)
		buf_submit_bios(buf, original, sector, &read_bioset);
	else
		buf_storage_submit(buf, storage, volume, sector);
	buf_io_put(buf);
}

/* Reads or writes bytes (rounded up to pages) at sector of the storage, and waits. */
int blksnap_buf_storage_rw(struct blksnap_buf *buf, struct file *storage,
			   const struct blksnap_volume *volume, u64 sector,
			   size_t bytes, bool write)
{
	DECLARE_COMPLETION_ONSTACK(done);

	buf_start(buf, round_up(bytes, PAGE_SIZE), write);
	buf->done = &done;
	buf_storage_submit(buf, storage, volume, sector);
	buf_io_put(buf);
	wait_for_completion_io(&done);
	return buf->error;
}

/* ---- The table of touched chunks ----------------------------------------- */

struct xarray *blksnap_xa_create(void)
{
	struct xarray *xa = kmalloc(sizeof(*xa), GFP_KERNEL);

	if (xa)
		xa_init(xa);
	return xa;
}

/* The entry at index, or NULL; may run in any context. */
void *blksnap_xa_load(struct xarray *xa, u64 index)
{
	return xa_load(xa, index);
}

/* Stores entry at an empty index: -EBUSY if taken, -ENOMEM. */
int blksnap_xa_insert(struct xarray *xa, u64 index, void *entry)
{
	return xa_insert(xa, index, entry, GFP_NOIO | __GFP_NOWARN);
}

/*
 * Takes out the first entry at or after *index, and sets *index to its
 * index; NULL when there is none.
 */
void *blksnap_xa_take_next(struct xarray *xa, u64 *index)
{
	unsigned long i = *index;
	void *entry = xa_find(xa, &i, ULONG_MAX, XA_PRESENT);

	if (entry) {
		xa_erase(xa, i);
		*index = i;
	}
	return entry;
}

void blksnap_xa_destroy(struct xarray *xa)
{
	xa_destroy(xa);
	kfree(xa);
}
