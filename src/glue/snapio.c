// SPDX-License-Identifier: GPL-2.0
/*
 * The I/O of snapshots, for the Rust side: synchronous reads and writes of
 * block devices that bypass the filter, kernel file I/O on the difference
 * storage, where the storage and the members lie (read from sysfs),
 * copying into bios, held-bio lists, and the bio-based gendisk of a
 * snapshot image.
 *
 * Everything that may run on the copy-on-write path (bio and page
 * allocation) uses GFP_NOIO, and the workers that call it also run under
 * memalloc_noio_save(), so memory reclaim never waits for I/O of a device
 * whose writes are being held.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/delay.h>
#include <linux/blk-integrity.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/pagemap.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uio.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include "blksnap_glue.h"
#include "uapi/linux/blksnap.h"

/*
 * Copy-on-write and image reads; may be needed to free memory. The stores
 * of copies to the difference storage have a queue of their own, since
 * the copy-on-write worker may wait for the memory a store frees, and the
 * growth of storage files another, since a store may wait for a growth.
 */
static struct workqueue_struct *snapshot_wq;
static struct workqueue_struct *store_wq;
static struct workqueue_struct *grow_wq;
/* Clones of image reads sent to the original device or the storage. */
static struct bio_set remap_bioset;

int blksnap_wq_create(void)
{
	int ret = bioset_init(&remap_bioset, BIO_POOL_SIZE, 0, 0);

	if (ret)
		return ret;
	ret = blksnap_cowio_init();
	if (ret)
		goto err_bioset;
	ret = -ENOMEM;
	snapshot_wq = alloc_workqueue("blksnap", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!snapshot_wq)
		goto err_cowio;
	store_wq = alloc_workqueue("blksnap-store", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!store_wq)
		goto err_wq;
	grow_wq = alloc_workqueue("blksnap-grow", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!grow_wq)
		goto err_store;
	return 0;
err_store:
	destroy_workqueue(store_wq);
err_wq:
	destroy_workqueue(snapshot_wq);
err_cowio:
	blksnap_cowio_exit();
err_bioset:
	bioset_exit(&remap_bioset);
	return ret;
}

void blksnap_wq_destroy(void)
{
	destroy_workqueue(grow_wq);
	destroy_workqueue(store_wq);
	destroy_workqueue(snapshot_wq);
	blksnap_cowio_exit();
	bioset_exit(&remap_bioset);
}

struct workqueue_struct *blksnap_wq(void)
{
	return snapshot_wq;
}

struct workqueue_struct *blksnap_store_wq(void)
{
	return store_wq;
}

struct workqueue_struct *blksnap_grow_wq(void)
{
	return grow_wq;
}

void blksnap_wq_flush(void)
{
	flush_workqueue(grow_wq);
	flush_workqueue(store_wq);
	flush_workqueue(snapshot_wq);
}

unsigned int blksnap_noio_save(void)
{
	return memalloc_noio_save();
}

void blksnap_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}

char *blksnap_strndup_user(const char __user *s, long n)
{
	return strndup_user(s, n);
}

void blksnap_kfree(const void *p)
{
	kfree(p);
}

bool blksnap_is_err(const void *p)
{
	return IS_ERR_OR_NULL(p);
}

int blksnap_ptr_err(const void *p)
{
	return p ? PTR_ERR(p) : -ENOMEM;
}

/* ---- Block devices ---------------------------------------------------- */

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

/* ---- Difference storage ------------------------------------------------ */

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

/* ---- Where bytes end up ------------------------------------------------- */

static void place_of_inode(struct inode *inode, struct blksnap_place *out)
{
	struct super_block *sb = inode->i_sb;

	memset(out, 0, sizeof(*out));
	if (S_ISBLK(inode->i_mode)) {
		out->dev = inode->i_rdev;
		return;
	}
	out->is_file = true;
	out->dev = sb->s_dev;
	out->ino = inode->i_ino;
	out->generation = inode->i_generation;
	if (sb->s_bdev)
		out->fs_bdev = sb->s_bdev->bd_dev;
}

/* The place of the storage itself: its block device, or its inode. */
void blksnap_storage_place(struct file *file, struct blksnap_place *out)
{
	if (storage_is_bdev(file)) {
		memset(out, 0, sizeof(*out));
		out->dev = file_bdev(file)->bd_dev;
		return;
	}
	place_of_inode(file_inode(file), out);
}

/*
 * What lies below a block device is read from sysfs, the only place where
 * the kernel tells a module about it: the whole disk of a partition, the
 * "slaves" links of a dm or md device (bd_link_disk_holder) and the
 * backing file of a loop device, whose own structure is private. sysfs is
 * mounted privately for the look-up, so that neither the caller's /sys nor
 * its mount namespace matters.
 */
struct vfsmount *blksnap_topology_open(void)
{
	/* Built in, so get_fs_type() takes no module reference to put. */
	struct file_system_type *type = get_fs_type("sysfs");

	if (!type)
		return ERR_PTR(-ENODEV);
	return kern_mount(type);
}

void blksnap_topology_close(struct vfsmount *mnt)
{
	kern_unmount(mnt);
}

/* Reads the sysfs attribute at path into buf; its length, or -errno. */
static int topo_read(struct vfsmount *mnt, const char *path, char *buf,
		     size_t size)
{
	struct file *file = file_open_root_mnt(mnt, path, O_RDONLY, 0);
	loff_t pos = 0;
	ssize_t n;

	if (IS_ERR(file))
		return PTR_ERR(file);
	n = kernel_read(file, buf, size - 1, &pos);
	fput(file);
	if (n < 0)
		return n;
	buf[n] = 0;
	return n;
}

/* Reads a "major:minor" attribute. */
static int topo_read_dev(struct vfsmount *mnt, const char *path, char *buf,
			 size_t size, u32 *dev)
{
	unsigned int major, minor;
	int ret = topo_read(mnt, path, buf, size);

	if (ret < 0)
		return ret;
	if (sscanf(buf, "%u:%u", &major, &minor) != 2)
		return -EINVAL;
	*dev = MKDEV(major, minor);
	return 0;
}

struct topo_names {
	struct dir_context ctx;
	char *buf;
	size_t size;
	size_t used;
	bool overflow;
};

/* Collects the entries of a directory as NUL-terminated names. */
static bool topo_name_actor(struct dir_context *ctx, const char *name,
			    int len, loff_t pos, u64 ino, unsigned int type)
{
	struct topo_names *names = container_of(ctx, struct topo_names, ctx);

	if (name[0] == '.')
		return true;
	if (names->used + len + 1 > names->size) {
		names->overflow = true;
		return false;
	}
	memcpy(names->buf + names->used, name, len);
	names->buf[names->used + len] = 0;
	names->used += len + 1;
	return true;
}

struct topo_below {
	struct vfsmount *mnt;
	u32 dev;
	struct blksnap_place *out;
	unsigned int max;
	unsigned int n;
	char *path;
	char *buf;
};

static int topo_add_dev(struct topo_below *b, u32 dev)
{
	if (b->n == b->max)
		return -E2BIG;
	memset(&b->out[b->n], 0, sizeof(b->out[b->n]));
	b->out[b->n++].dev = dev;
	return 0;
}

/* Sets b->path to fmt below the sysfs directory of b->dev. */
static __printf(2, 3) void topo_path(struct topo_below *b, const char *fmt, ...)
{
	int n = snprintf(b->path, PATH_MAX, "dev/block/%u:%u/", MAJOR(b->dev),
			 MINOR(b->dev));
	va_list args;

	va_start(args, fmt);
	vsnprintf(b->path + n, PATH_MAX - n, fmt, args);
	va_end(args);
}

static int topo_partition(struct topo_below *b)
{
	u32 whole;
	int ret;

	topo_path(b, "partition");
	ret = topo_read(b->mnt, b->path, b->buf, PATH_MAX);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	topo_path(b, "../dev");
	ret = topo_read_dev(b->mnt, b->path, b->buf, PATH_MAX, &whole);
	return ret ? ret : topo_add_dev(b, whole);
}

static int topo_slaves(struct topo_below *b)
{
	struct topo_names names = {
		.ctx.actor = topo_name_actor,
		.size = PAGE_SIZE,
	};
	struct file *dir;
	const char *name;
	u32 dev;
	int ret;

	topo_path(b, "slaves");
	dir = file_open_root_mnt(b->mnt, b->path, O_RDONLY | O_DIRECTORY, 0);
	if (IS_ERR(dir))
		return PTR_ERR(dir) == -ENOENT ? 0 : PTR_ERR(dir);
	names.buf = kmalloc(names.size, GFP_KERNEL);
	if (!names.buf) {
		fput(dir);
		return -ENOMEM;
	}
	ret = iterate_dir(dir, &names.ctx);
	fput(dir);
	if (!ret && names.overflow)
		ret = -E2BIG;
	for (name = names.buf; !ret && name < names.buf + names.used;
	     name += strlen(name) + 1) {
		topo_path(b, "slaves/%s/dev", name);
		ret = topo_read_dev(b->mnt, b->path, b->buf, PATH_MAX, &dev);
		/* A slave that went away meanwhile holds nothing any more. */
		if (ret == -ENOENT)
			ret = 0;
		else if (!ret)
			ret = topo_add_dev(b, dev);
	}
	kfree(names.buf);
	return ret;
}

/*
 * The backing file of a loop device: sysfs gives its path as seen from the
 * caller's root, which is looked up again. A file that cannot be found that
 * way (deleted, or out of the caller's sight) is not followed.
 */
static int topo_loop(struct topo_below *b)
{
	struct path path;
	int ret;

	topo_path(b, "loop/backing_file");
	ret = topo_read(b->mnt, b->path, b->buf, PATH_MAX);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	if (ret && b->buf[ret - 1] == '\n')
		b->buf[--ret] = 0;
	if (!ret)
		return 0;
	if (kern_path(b->buf, LOOKUP_FOLLOW, &path)) {
		pr_notice("the backing file of loop device %u:%u is not found, what lies below it is not checked\n",
			  MAJOR(b->dev), MINOR(b->dev));
		return 0;
	}
	if (b->n == b->max) {
		ret = -E2BIG;
	} else {
		place_of_inode(d_inode(path.dentry), &b->out[b->n++]);
		ret = 0;
	}
	path_put(&path);
	return ret;
}

/*
 * Writes the places directly below block device dev to out (at most max)
 * and returns how many, or -E2BIG when there are more, or another -errno.
 */
int blksnap_dev_below(struct vfsmount *mnt, u32 dev, struct blksnap_place *out,
		      unsigned int max)
{
	struct topo_below b = {
		.mnt = mnt,
		.dev = dev,
		.out = out,
		.max = max,
	};
	int ret = -ENOMEM;

	b.path = kmalloc(PATH_MAX, GFP_KERNEL);
	b.buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (b.path && b.buf) {
		ret = topo_partition(&b);
		if (!ret)
			ret = topo_slaves(&b);
		if (!ret)
			ret = topo_loop(&b);
	}
	kfree(b.path);
	kfree(b.buf);
	return ret ? ret : b.n;
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

/* ---- Bios -------------------------------------------------------------- */

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

/* ---- Snapshot images --------------------------------------------------- */

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
		queue_work(snapshot_wq, &ctx->work);
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
	} else if (storage_is_bdev(storage)) {
		bdev = file_bdev(storage);
	} else {
		return false;
	}
	mask = bdev_logical_block_size(bdev) - 1;
	if (((sector << SECTOR_SHIFT) | bio->bi_iter.bi_size) & mask)
		return false;
	return remap(bio, bdev, sector, owner, false);
}

void blksnap_msleep(unsigned int ms)
{
	msleep(ms);
}

/*
 * Reads and writes come whole, up to the disk's limits: the area cuts them
 * where its chunks differ (a run of chunks never copied is one read of
 * the original).
 */
static void image_submit_bio(struct bio *bio)
{
	void *owner = bio->bi_bdev->bd_disk->private_data;

	if (bio_op(bio) == REQ_OP_READ || bio_op(bio) == REQ_OP_WRITE) {
		bio = bio_split_to_limits(bio);
		if (!bio)
			return;
	}
	blksnap_image_submit_bio(owner, bio);
}

static const struct block_device_operations image_fops = {
	.owner = THIS_MODULE,
	.submit_bio = image_submit_bio,
};

/* The largest bio of an image, 1280 KiB: the block layer's default cap. */
#define IMAGE_MAX_HW_SECTORS 2560u

/*
 * Creates and adds the image disk of original: same block sizes, no
 * partitions, read-only unless writable. Its capacity is 0 until
 * blksnap_image_publish(), so a take can add its disks (the step that may
 * fail) before anything else changes, and nobody reads an image before the
 * take is complete. Its bios go to blksnap_image_submit_bio(owner, bio)
 * until blksnap_image_remove().
 */
struct gendisk *blksnap_image_add(struct block_device *original, void *owner,
				  bool writable)
{
	struct queue_limits lim = {
		.logical_block_size = bdev_logical_block_size(original),
		.physical_block_size = bdev_physical_block_size(original),
		.io_min = bdev_io_min(original),
		.max_hw_sectors = IMAGE_MAX_HW_SECTORS,
	};
	struct gendisk *disk;
	int ret;

	disk = blk_alloc_disk(&lim, NUMA_NO_NODE);
	if (IS_ERR(disk))
		return disk;
	disk->flags |= GENHD_FL_NO_PART;
	disk->fops = &image_fops;
	disk->private_data = owner;
	/*
	 * The name is also the node in /dev; a '-', not a ':', separates the
	 * numbers, since colons in device names trouble tools.
	 */
	snprintf(disk->disk_name, DISK_NAME_LEN, BLKSNAP_IMAGE_NAME "-%u-%u",
		 MAJOR(original->bd_dev), MINOR(original->bd_dev));
	set_disk_ro(disk, !writable);
	ret = add_disk(disk);
	if (ret) {
		put_disk(disk);
		return ERR_PTR(ret);
	}
	return disk;
}

/* Gives the image its capacity and tells user space (udev) it changed. */
void blksnap_image_publish(struct gendisk *disk, u64 sectors)
{
	set_capacity(disk, sectors);
	kobject_uevent(&disk_to_dev(disk)->kobj, KOBJ_CHANGE);
}

/*
 * Removes the image even while it is open or mounted: once del_gendisk()
 * returns no new bio reaches the driver and later I/O fails in the block
 * layer.
 */
void blksnap_image_remove(struct gendisk *disk)
{
	del_gendisk(disk);
	put_disk(disk);
}

const char *blksnap_disk_name(struct gendisk *disk)
{
	return disk->disk_name;
}
