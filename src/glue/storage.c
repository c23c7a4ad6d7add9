// SPDX-License-Identifier: GPL-2.0
/*
 * The difference storage as a file, for the Rust side (storage.rs):
 * opening a regular file, an unnamed temporary file or a block device, its
 * size and growth, write-back errors, reads straight into bios. Every
 * allocation on the copy-on-write path is GFP_NOIO, and its workers run
 * under memalloc_noio_save(), so reclaim never waits for held writes.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/namei.h>
#include <linux/pagemap.h>
#include <linux/uio.h>

#include "blksnap_glue.h"

/*
 * Opens a regular file, or an unnamed temporary file in a directory, for
 * direct I/O if its file system has it, so copies never wait in its page
 * cache; through the page cache otherwise (a file system that refuses
 * O_DIRECT).
 */
static struct file *storage_open_file(const char *path, int flags)
{
	struct file *file = filp_open(path, flags | O_DIRECT, 0600);

	if (IS_ERR(file) && PTR_ERR(file) == -EINVAL)
		file = filp_open(path, flags, 0600);
	return file;
}

/*
 * Opens the difference storage named by path: an existing regular file, an
 * unnamed temporary file in a directory, or a block device opened
 * exclusively by holder. Anything else is -EINVAL.
 */
struct file *blksnap_storage_open(const char *path, void *holder)
{
	const int flags = O_RDWR | O_LARGEFILE | O_NOATIME;
	struct path p;
	umode_t mode;
	int ret;

	ret = kern_path(path, LOOKUP_FOLLOW, &p);
	if (ret)
		return ERR_PTR(ret);
	mode = d_inode(p.dentry)->i_mode;
	path_put(&p);

	if (S_ISDIR(mode))
		return storage_open_file(path, O_TMPFILE | O_EXCL | flags);
	if (S_ISREG(mode))
		return storage_open_file(path, flags);
	if (S_ISBLK(mode))
		return bdev_file_open_by_path(path, BLK_OPEN_READ | BLK_OPEN_WRITE,
					      holder, NULL);
	return ERR_PTR(-EINVAL);
}

static bool storage_is_bdev(struct file *file)
{
	return S_ISBLK(file_inode(file)->i_mode);
}

void blksnap_storage_close(struct file *file)
{
	if (storage_is_bdev(file))
		bdev_fput(file);
	else
		fput(file);
}

bool blksnap_storage_is_bdev(struct file *file)
{
	return storage_is_bdev(file);
}

/* The device numbers of a storage block device and of its whole disk. */
void blksnap_storage_bdev_devs(struct file *file, u32 *dev, u32 *whole)
{
	struct block_device *bdev = file_bdev(file);

	*dev = bdev->bd_dev;
	*whole = bdev_whole(bdev)->bd_dev;
}

u64 blksnap_storage_sectors(struct file *file)
{
	if (storage_is_bdev(file))
		return bdev_nr_sectors(file_bdev(file));
	return i_size_read(file_inode(file)) >> SECTOR_SHIFT;
}

/*
 * The storage is written through the page cache, so a failed write-back
 * shows only later, in the error state of the file's mapping: sample it at
 * open, and check it since then. An error from before the open (a block
 * device's mapping outlives its opens) is not this snapshot's: it is marked
 * seen, so that only a later failure changes the state.
 */
u32 blksnap_storage_wb_sample(struct file *file)
{
	errseq_t since = filemap_sample_wb_err(file->f_mapping);

	errseq_check_and_advance(&file->f_mapping->wb_err, &since);
	return since;
}

int blksnap_storage_wb_check(struct file *file, u32 since)
{
	return filemap_check_wb_err(file->f_mapping, since);
}

/* Extends a storage file to new_sectors. */
int blksnap_storage_grow(struct file *file, u64 old_sectors, u64 new_sectors)
{
	return vfs_fallocate(file, 0, old_sectors << SECTOR_SHIFT,
			     (new_sectors - old_sectors) << SECTOR_SHIFT);
}

/*
 * Reads len bytes of the storage at sector straight into the data of bio,
 * from byte offset of its data on: no bounce buffer. The bio may be a
 * clone, so its vectors are counted through its own iterator.
 */
int blksnap_storage_read_bio(struct file *file, u64 sector, struct bio *bio,
			     size_t offset, size_t len)
{
	const struct bio_vec *first = __bvec_iter_bvec(bio->bi_io_vec, bio->bi_iter);
	/* The bytes of the first vector that the iterator is past. */
	unsigned int done = mp_bvec_iter_offset(bio->bi_io_vec, bio->bi_iter) -
			    first->bv_offset;
	struct bvec_iter it;
	struct bio_vec bv;
	struct iov_iter iter;
	unsigned int nr = 0;
	loff_t pos = sector << SECTOR_SHIFT;

	if (offset > bio->bi_iter.bi_size || len > bio->bi_iter.bi_size - offset)
		return -EINVAL;
	bio_for_each_bvec(bv, bio, it)
		nr++;
	iov_iter_bvec(&iter, ITER_DEST, first, nr, bio->bi_iter.bi_size + done);
	iov_iter_advance(&iter, done + offset);
	iov_iter_truncate(&iter, len);
	while (iov_iter_count(&iter)) {
		ssize_t n = vfs_iter_read(file, &iter, &pos, 0);

		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;
	}
	return 0;
}
