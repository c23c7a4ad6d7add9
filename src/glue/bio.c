// SPDX-License-Identifier: GPL-2.0
/*
 * Bios, for the Rust side (bio.rs): copying into and out of their data,
 * ending and resubmitting them, held-bio lists, and the clones that image
 * reads are sent as, to the original or to the storage.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "blksnap_glue.h"

/* Clones of image reads sent to the original device or the storage. */
static struct bio_set remap_bioset;

int blksnap_remap_init(void)
{
	return bioset_init(&remap_bioset, BIO_POOL_SIZE, 0, 0);
}

void blksnap_remap_exit(void)
{
	bioset_exit(&remap_bioset);
}

/*
 * Copies len bytes between buf and the data of bio, from byte offset of the
 * data on: into the bio if to_bio, out of it otherwise.
 */
static void bio_copy(struct bio *bio, size_t offset, void *buf, size_t len,
		     bool to_bio)
{
	struct bvec_iter iter;
	struct bio_vec bv;
	size_t pos = 0;

	bio_for_each_segment(bv, bio, iter) {
		struct bio_vec part;
		size_t skip;

		/* The iterator advances by bv.bv_len: copy through a part. */
		if (pos + bv.bv_len > offset && len) {
			skip = offset - pos;
			part.bv_page = bv.bv_page;
			part.bv_offset = bv.bv_offset + skip;
			part.bv_len = min_t(size_t, bv.bv_len - skip, len);
			if (to_bio)
				memcpy_to_bvec(&part, buf);
			else
				memcpy_from_bvec(buf, &part);
			buf += part.bv_len;
			len -= part.bv_len;
			offset += part.bv_len;
		}
		pos += bv.bv_len;
		if (!len)
			break;
	}
}

void blksnap_bio_copy_to(struct bio *bio, size_t offset, const void *buf,
			 size_t len)
{
	bio_copy(bio, offset, (void *)buf, len, true);
}

void blksnap_bio_copy_from(struct bio *bio, size_t offset, void *buf,
			   size_t len)
{
	bio_copy(bio, offset, buf, len, false);
}

void blksnap_bio_end(struct bio *bio, int err)
{
	bio->bi_status = errno_to_blk_status(err);
	bio_endio(bio);
}

/* Passes a held bio on; from this module, so it is not filtered again. */
void blksnap_bio_resubmit(struct bio *bio)
{
	submit_bio_noacct(bio);
}

bool blksnap_bio_nowait(struct bio *bio)
{
	return bio->bi_opf & REQ_NOWAIT;
}

void blksnap_bio_wouldblock(struct bio *bio)
{
	bio_wouldblock_error(bio);
}

void blksnap_bio_list_add(struct bio_list *list, struct bio *bio)
{
	bio_list_add(list, bio);
}

void blksnap_bio_list_add_head(struct bio_list *list, struct bio *bio)
{
	bio_list_add_head(list, bio);
}

struct bio *blksnap_bio_list_pop(struct bio_list *list)
{
	return bio_list_pop(list);
}

/*
 * An image read of chunks never copied goes to the original as a clone that
 * fills the image bio's own pages. When the clone completes, the Rust side
 * checks that no write can have reached those chunks meanwhile; if one may
 * have, the image bio is handed back (from a work item: completions may run
 * in interrupt context) to be served from the difference storage.
 */
struct remap_ctx {
	struct work_struct work;
	struct bio *parent;
	void *owner;
	/* Whether it reads the original (or the storage). */
	bool check;
};

static void remap_retry_fn(struct work_struct *work)
{
	struct remap_ctx *ctx = container_of(work, struct remap_ctx, work);

	blksnap_image_read_retry(ctx->owner, ctx->parent);
	kfree(ctx);
}

/*
 * Runs in an RCU read section, so a synchronize_rcu() after the owner saw
 * its last clone end also waits until this has returned.
 */
static void remap_end_io(struct bio *clone)
{
	struct remap_ctx *ctx = clone->bi_private;
	void *owner = ctx->owner;
	blk_status_t status = clone->bi_status;

	bio_put(clone);
	rcu_read_lock();
	if (status == BLK_STS_OK &&
	    !blksnap_image_read_valid(ctx->owner, ctx->parent, ctx->check)) {
		INIT_WORK(&ctx->work, remap_retry_fn);
		queue_work(blksnap_wq(), &ctx->work);
		rcu_read_unlock();
		return;
	}
	ctx->parent->bi_status = status;
	bio_endio(ctx->parent);
	kfree(ctx);
	blksnap_image_read_done(owner);
	rcu_read_unlock();
}

static bool remap(struct bio *bio, struct block_device *bdev, u64 sector,
		  void *owner, bool check)
{
	struct remap_ctx *ctx = kmalloc(sizeof(*ctx), GFP_NOIO);
	struct bio *clone;

	if (!ctx)
		return false;
	clone = bio_alloc_clone(bdev, bio, GFP_NOIO, &remap_bioset);
	if (!clone) {
		kfree(ctx);
		return false;
	}
	ctx->parent = bio;
	ctx->owner = owner;
	ctx->check = check;
	clone->bi_iter.bi_sector = sector;
	clone->bi_private = ctx;
	clone->bi_end_io = remap_end_io;
	submit_bio_noacct(clone);
	return true;
}

/*
 * Sends image read bio to original as a clone; false (nothing sent) if
 * memory is short. The owner learns the outcome through
 * blksnap_image_read_valid() and then _done() or _retry().
 */
bool blksnap_image_remap_read(struct bio *bio, struct block_device *original,
			      void *owner)
{
	return remap(bio, original, bio->bi_iter.bi_sector, owner, true);
}

/*
 * Sends image read bio, which lies in one stored chunk, to sector of a
 * storage that is a block device, or to the sectors of an in-volume
 * storage's device that hold it; false if it is neither, if those sectors
 * are not contiguous, if the read is not aligned to the device's logical
 * blocks, or if memory is short. The
 * owner learns its outcome like that of blksnap_image_remap_read().
 */
bool blksnap_image_remap_storage(struct bio *bio, struct file *storage,
				 const struct blksnap_volume *volume,
				 u64 sector, void *owner)
{
	struct block_device *bdev;
	unsigned int mask;

	if (volume) {
		bdev = blksnap_volume_bdev(volume);
		if (!blksnap_volume_locate(volume, sector, bio_sectors(bio),
					   &sector))
			return false;
	} else if (blksnap_storage_is_bdev(storage)) {
		bdev = file_bdev(storage);
	} else {
		return false;
	}
	mask = bdev_logical_block_size(bdev) - 1;
	if (((sector << SECTOR_SHIFT) | bio->bi_iter.bi_size) & mask)
		return false;
	return remap(bio, bdev, sector, owner, false);
}
