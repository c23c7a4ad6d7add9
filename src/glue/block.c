// SPDX-License-Identifier: GPL-2.0
/*
 * Block devices, for the Rust side (block.rs): their numbers and limits,
 * opens that hold them, freezing their file systems, and synchronous reads
 * and writes that bypass the filter.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blk-integrity.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "blksnap_glue.h"

unsigned int blksnap_bdev_io_min(struct block_device *bdev)
{
	return bdev_io_min(bdev);
}

dev_t blksnap_bdev_dev(struct block_device *bdev)
{
	return bdev->bd_dev;
}

dev_t blksnap_bdev_whole_dev(struct block_device *bdev)
{
	return disk_devt(bdev->bd_disk);
}

/*
 * Opens bdev for reading, without claiming it, so that the device stays
 * set up while the module sends it bios: a loop device detached meanwhile
 * (LOOP_CLR_FD) is then only marked for autoclear at its last close, a
 * device-mapper or md device refuses its removal (EBUSY), and a partition
 * cannot be deleted or re-read away. A disk removed by its driver
 * (del_gendisk) still goes, and its queue then fails every bio. -ENODEV if
 * the number now names another device than bdev.
 */
struct file *blksnap_bdev_open(struct block_device *bdev)
{
	struct file *file;

	file = bdev_file_open_by_dev(bdev->bd_dev, BLK_OPEN_READ, NULL, NULL);
	if (IS_ERR(file))
		return file;
	if (file_bdev(file) != bdev) {
		fput(file);
		return ERR_PTR(-ENODEV);
	}
	return file;
}

/* Lets go of an open of blksnap_bdev_open(); any context. */
void blksnap_bdev_close(struct file *file)
{
	fput(file);
}

/* Devices whose bios carry more than data, which a chunk copy would lose. */
bool blksnap_bdev_unsupported(struct block_device *bdev)
{
	if (blk_get_integrity(bdev->bd_disk))
		return true;
#ifdef CONFIG_BLK_INLINE_ENCRYPTION
	if (bdev_get_queue(bdev)->crypto_profile)
		return true;
#endif
	return false;
}

/*
 * The partitions of a whole disk, each referenced and frozen: freezing a
 * whole disk (bdev_freeze) does not reach the file systems of its
 * partitions.
 */
struct blksnap_parts {
	unsigned int nr;
	struct block_device *part[];
};

static void parts_thaw(struct blksnap_parts *parts, unsigned int frozen)
{
	unsigned int i;

	for (i = 0; i < parts->nr; i++) {
		if (i < frozen)
			bdev_thaw(parts->part[i]);
		put_device(&parts->part[i]->bd_device);
	}
	kfree(parts);
}

/*
 * Freezes the partitions of bdev, a whole disk; NULL if it is a partition
 * or has none, an ERR_PTR if one cannot be frozen (then none is).
 */
struct blksnap_parts *blksnap_freeze_parts(struct block_device *bdev)
{
	struct xarray *tbl = &bdev->bd_disk->part_tbl;
	struct blksnap_parts *parts;
	struct block_device *part;
	unsigned int n = 0, i;
	unsigned long idx;
	int ret;

	if (bdev_is_partition(bdev))
		return NULL;
	rcu_read_lock();
	xa_for_each_start(tbl, idx, part, 1)
		n++;
	rcu_read_unlock();
	if (!n)
		return NULL;
	parts = kzalloc(struct_size(parts, part, n), GFP_KERNEL);
	if (!parts)
		return ERR_PTR(-ENOMEM);
	rcu_read_lock();
	xa_for_each_start(tbl, idx, part, 1) {
		if (parts->nr < n && kobject_get_unless_zero(&part->bd_device.kobj))
			parts->part[parts->nr++] = part;
	}
	rcu_read_unlock();
	for (i = 0; i < parts->nr; i++) {
		ret = bdev_freeze(parts->part[i]);
		if (ret) {
			parts_thaw(parts, i);
			return ERR_PTR(ret);
		}
	}
	return parts;
}

/* Thaws and lets go of what blksnap_freeze_parts() froze. */
void blksnap_thaw_parts(struct blksnap_parts *parts)
{
	parts_thaw(parts, parts->nr);
}

static void sync_end_io(struct bio *bio)
{
	complete(bio->bi_private);
}

static struct page *buf_page(void *p)
{
	return is_vmalloc_addr(p) ? vmalloc_to_page(p) : virt_to_page(p);
}

/*
 * Reads or writes len bytes at sector of bdev into or from buf (kmalloc or
 * vmalloc memory, len a multiple of the logical block size) and waits.
 * Submitted from this module, so the filter never sees these bios.
 */
int blksnap_bdev_rw(struct block_device *bdev, u64 sector, void *buf,
		    size_t len, bool write)
{
	blk_opf_t opf = write ? REQ_OP_WRITE | REQ_SYNC : REQ_OP_READ;

	while (len) {
		DECLARE_COMPLETION_ONSTACK(done);
		unsigned int nr = min_t(size_t, BIO_MAX_VECS,
					DIV_ROUND_UP(offset_in_page(buf) + len, PAGE_SIZE));
		struct bio *bio = bio_alloc(bdev, nr, opf, GFP_NOIO);
		size_t done_len = 0;
		int ret;

		bio->bi_iter.bi_sector = sector;
		while (len) {
			size_t off = offset_in_page(buf);
			size_t n = min_t(size_t, len, PAGE_SIZE - off);

			if (bio_add_page(bio, buf_page(buf), n, off) != n)
				break;
			buf += n;
			len -= n;
			done_len += n;
		}
		bio->bi_private = &done;
		bio->bi_end_io = sync_end_io;
		submit_bio_noacct(bio);
		wait_for_completion_io(&done);
		ret = blk_status_to_errno(bio->bi_status);
		bio_put(bio);
		if (ret)
			return ret;
		sector += done_len >> SECTOR_SHIFT;
	}
	return 0;
}
