// SPDX-License-Identifier: GPL-2.0
/*
 * In-volume difference storage: a preallocated regular file on the file
 * system of a snapshot's member, written and read below that file system.
 *
 * The file is pinned the way swap files are (S_SWAPFILE): from then on the
 * file system refuses to write, shrink, fallocate, reflink, defragment,
 * unlink or rename it, so the blocks it has keep belonging to it. Making
 * it longer with truncate(2) is not refused (the kernel refuses only to
 * shrink a swap file); it adds a hole and moves no block. Its
 * extents are then read once with the file system's fiemap, and copies go
 * to those sectors of the file system's block device in bios from this
 * file's own bio_set. The submit_bio hook lets those bios pass without
 * offering them to a filter (even after the block layer splits them), so
 * they are neither copied on write nor marked in a change map.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/fiemap.h>
#include <linux/fileattr.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/pagemap.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#include "blksnap_glue.h"

struct bio_set blksnap_volume_bios;
/* Pieces cut off image reads that cover an in-volume storage's sectors. */
static struct bio_set split_bios;

/* A piece of the file: count sectors from file_sector, at dev_sector. */
struct blksnap_extent {
	u64 file_sector;
	u64 dev_sector;
	u64 count;
};

struct blksnap_volume {
	struct inode *inode;
	/* The block device of the file's file system. */
	struct block_device *bdev;
	/* The file's size in sectors: the sum of the counts. */
	u64 sectors;
	unsigned int nr;
	unsigned int room;
	/* In file order. */
	struct blksnap_extent *ext;
	/* The same, in device order. */
	struct blksnap_extent *by_dev;
};

int blksnap_volume_init(void)
{
	int ret = bioset_init(&blksnap_volume_bios, BIO_POOL_SIZE, 0,
			      BIOSET_NEED_BVECS);

	if (ret)
		return ret;
	ret = bioset_init(&split_bios, BIO_POOL_SIZE, 0, 0);
	if (ret)
		bioset_exit(&blksnap_volume_bios);
	return ret;
}

void blksnap_volume_exit(void)
{
	bioset_exit(&split_bios);
	bioset_exit(&blksnap_volume_bios);
}

/* Flags of extents whose sectors do not hold the file's bytes as they are. */
#define VOLUME_BAD_FLAGS (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | \
			  FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_ENCRYPTED | \
			  FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE | \
			  FIEMAP_EXTENT_DATA_TAIL | FIEMAP_EXTENT_SHARED)

static int volume_append(struct blksnap_volume *v, u64 file_sector,
			 u64 dev_sector, u64 count)
{
	struct blksnap_extent *last = v->nr ? &v->ext[v->nr - 1] : NULL;

	if (last && last->dev_sector + last->count == dev_sector) {
		last->count += count;
		return 0;
	}
	if (v->nr == v->room) {
		unsigned int room = v->room ? v->room * 2 : 16;
		struct blksnap_extent *ext;

		ext = kvmalloc_array(room, sizeof(*ext), GFP_KERNEL);
		if (!ext)
			return -ENOMEM;
		if (v->nr)
			memcpy(ext, v->ext, v->nr * sizeof(*ext));
		kvfree(v->ext);
		v->ext = ext;
		v->room = room;
	}
	v->ext[v->nr++] = (struct blksnap_extent) {
		.file_sector = file_sector,
		.dev_sector = dev_sector,
		.count = count,
	};
	return 0;
}

/*
 * Adds the extents fiemap reported in fe[0..n) to v; *pos is the byte of
 * the file mapped so far, size the file's size in bytes. Sets *last at the
 * file's last extent.
 */
static int volume_add_extents(struct blksnap_volume *v,
			      const struct fiemap_extent *fe, unsigned int n,
			      u64 *pos, u64 size, bool *last)
{
	u64 dev_bytes = bdev_nr_bytes(v->bdev);
	unsigned int i;
	int ret;

	for (i = 0; i < n && *pos < size; i++) {
		u64 logical = fe[i].fe_logical;
		u64 physical = fe[i].fe_physical;
		u64 length = fe[i].fe_length;

		if (fe[i].fe_flags & FIEMAP_EXTENT_LAST)
			*last = true;
		if (logical > *pos) {
			pr_err("in-volume storage: the file has a hole at byte %llu; it must be fully allocated\n",
			       *pos);
			return -EINVAL;
		}
		if (fe[i].fe_flags & VOLUME_BAD_FLAGS) {
			pr_err("in-volume storage: the extent at byte %llu is not plain data on the device (fiemap flags %#x)\n",
			       logical, fe[i].fe_flags);
			return -EINVAL;
		}
		/* The first extent may begin before the range asked for. */
		if (logical + length <= *pos)
			continue;
		physical += *pos - logical;
		length -= *pos - logical;
		length = min(length, size - *pos);
		if ((physical | length) & (SECTOR_SIZE - 1) ||
		    physical + length > dev_bytes) {
			pr_err("in-volume storage: the extent at byte %llu is not whole sectors of the device\n",
			       *pos);
			return -EINVAL;
		}
		ret = volume_append(v, *pos >> SECTOR_SHIFT,
				    physical >> SECTOR_SHIFT,
				    length >> SECTOR_SHIFT);
		if (ret)
			return ret;
		*pos += length;
	}
	return 0;
}

#define VOLUME_BATCH 128

/*
 * Reads the extents of the file's first size bytes. fiemap copies them to
 * user memory, so they are asked into a mapping of the calling task's own
 * and copied from there.
 */
static int volume_map(struct blksnap_volume *v, u64 size)
{
	const size_t bytes = VOLUME_BATCH * sizeof(struct fiemap_extent);
	struct inode *inode = v->inode;
	struct fiemap_extent *fe;
	unsigned long ubuf;
	u32 flags = FIEMAP_FLAG_SYNC;
	bool last = false;
	u64 pos = 0;
	int ret = 0;

	if (!current->mm || (current->flags & PF_KTHREAD))
		return -EOPNOTSUPP;
	fe = kmalloc(bytes, GFP_KERNEL);
	if (!fe)
		return -ENOMEM;
	ubuf = vm_mmap(NULL, 0, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, 0);
	if (IS_ERR_VALUE(ubuf)) {
		kfree(fe);
		return (int)ubuf;
	}
	while (!ret && pos < size) {
		struct fiemap_extent_info fi = {
			.fi_flags = flags,
			.fi_extents_max = VOLUME_BATCH,
			.fi_extents_start = (struct fiemap_extent __user *)ubuf,
		};

		ret = inode->i_op->fiemap(inode, &fi, pos, size - pos);
		if (ret)
			break;
		if (!fi.fi_extents_mapped || last) {
			pr_err("in-volume storage: the file has a hole at byte %llu; it must be fully allocated\n",
			       pos);
			ret = -EINVAL;
			break;
		}
		if (copy_from_user(fe, (const void __user *)ubuf,
				   fi.fi_extents_mapped * sizeof(*fe))) {
			ret = -EFAULT;
			break;
		}
		ret = volume_add_extents(v, fe, fi.fi_extents_mapped, &pos,
					 size, &last);
		flags = 0;
	}
	vm_munmap(ubuf, bytes);
	kfree(fe);
	return ret;
}

/*
 * Whether file is a regular file on the file system of block device dev,
 * or of a partition of dev: then *offset is where that file system starts
 * on dev, in sectors.
 */
bool blksnap_file_lives_on(struct file *file, dev_t dev, u64 *offset)
{
	struct inode *inode = file_inode(file);
	struct block_device *bdev = inode->i_sb->s_bdev;

	if (!S_ISREG(inode->i_mode) || !bdev)
		return false;
	if (bdev->bd_dev == dev) {
		*offset = 0;
		return true;
	}
	if (bdev_is_partition(bdev) && bdev_whole(bdev)->bd_dev == dev) {
		*offset = bdev->bd_start_sect;
		return true;
	}
	return false;
}

/*
 * ext4 and xfs keep a pinned file's blocks where they are; the data of an
 * xfs realtime file is on another device than the file system's.
 */
static bool volume_fs_supported(struct file *file)
{
	struct super_block *sb = file_inode(file)->i_sb;
	/* 6.17: struct fileattr is named struct file_kattr. */
#ifdef BLKSNAP_FILE_KATTR
	struct file_kattr fa = {};
#else
	struct fileattr fa = {};
#endif

	if (!sb->s_bdev || !file_inode(file)->i_op->fiemap ||
	    IS_DAX(file_inode(file)))
		return false;
	if (!strcmp(sb->s_type->name, "ext4"))
		return true;
	return !strcmp(sb->s_type->name, "xfs") &&
	       !vfs_fileattr_get(file->f_path.dentry, &fa) &&
	       !(fa.fsx_xflags & FS_XFLAG_REALTIME);
}

static int cmp_dev_sector(const void *a, const void *b)
{
	const struct blksnap_extent *x = a, *y = b;

	if (x->dev_sector == y->dev_sector)
		return 0;
	return x->dev_sector < y->dev_sector ? -1 : 1;
}

static int volume_sort(struct blksnap_volume *v)
{
	v->by_dev = kvmalloc_array(v->nr, sizeof(*v->by_dev), GFP_KERNEL);
	if (!v->by_dev)
		return -ENOMEM;
	memcpy(v->by_dev, v->ext, v->nr * sizeof(*v->by_dev));
	sort(v->by_dev, v->nr, sizeof(*v->by_dev), cmp_dev_sector, NULL);
	return 0;
}

static void volume_free(struct blksnap_volume *v)
{
	kvfree(v->by_dev);
	kvfree(v->ext);
	kfree(v);
}

static void volume_unpin(struct inode *inode)
{
	inode_lock(inode);
	inode->i_flags &= ~S_SWAPFILE;
	inode_unlock(inode);
}

/*
 * Pins the regular file and maps its extents; an ERR_PTR on failure
 * (-EOPNOTSUPP for a file system whose extents cannot be pinned, -EBUSY for
 * a file already pinned as swap or storage, -EINVAL for a file that is not
 * fully allocated plain data).
 */
struct blksnap_volume *blksnap_volume_map(struct file *file)
{
	struct inode *inode = file_inode(file);
	struct super_block *sb = inode->i_sb;
	struct blksnap_volume *v;
	u64 size;
	int ret;

	if (!S_ISREG(inode->i_mode))
		return ERR_PTR(-EINVAL);
	if (!volume_fs_supported(file)) {
		pr_err("in-volume storage: the file's extents cannot be pinned on file system type %s\n",
		       sb->s_type->name);
		return ERR_PTR(-EOPNOTSUPP);
	}
	v = kzalloc(sizeof(*v), GFP_KERNEL);
	if (!v)
		return ERR_PTR(-ENOMEM);
	v->inode = inode;
	v->bdev = sb->s_bdev;

	inode_lock(inode);
	if (IS_SWAPFILE(inode)) {
		inode_unlock(inode);
		kfree(v);
		pr_err("in-volume storage: the file is in use as swap or as another snapshot's storage\n");
		return ERR_PTR(-EBUSY);
	}
	inode->i_flags |= S_SWAPFILE;
	inode_unlock(inode);
	/* Writes that passed their checks before the pin end first. */
	inode_dio_wait(inode);

	size = round_down(i_size_read(inode), SECTOR_SIZE);
	ret = size ? volume_map(v, size) : -EINVAL;
	if (!ret)
		ret = volume_sort(v);
	if (!ret) {
		/* The file system's view of the file is no longer its bytes. */
		invalidate_mapping_pages(inode->i_mapping, 0, -1);
		v->sectors = size >> SECTOR_SHIFT;
		return v;
	}
	volume_unpin(inode);
	volume_free(v);
	return ERR_PTR(ret);
}

/*
 * Unpins the file: it is an ordinary file again. The pin refuses to shrink
 * the file but not to make it longer (truncate(2) to a larger size): the
 * part added is a hole that never held copies, and the copies stayed in
 * the extents mapped at the pin. Said in the log, since the file's size no
 * longer tells the storage's.
 */
void blksnap_volume_unmap(struct blksnap_volume *v)
{
	loff_t size = i_size_read(v->inode);

	if (size > (loff_t)(v->sectors << SECTOR_SHIFT))
		pr_warn("in-volume storage: the file was made longer while pinned, from %llu to %lld bytes; the copies used only its first %llu bytes\n",
			v->sectors << SECTOR_SHIFT, size, v->sectors << SECTOR_SHIFT);
	invalidate_mapping_pages(v->inode->i_mapping, 0, -1);
	volume_unpin(v->inode);
	volume_free(v);
}

u64 blksnap_volume_sectors(const struct blksnap_volume *v)
{
	return v->sectors;
}

dev_t blksnap_volume_dev(const struct blksnap_volume *v)
{
	return v->bdev->bd_dev;
}

unsigned int blksnap_volume_nr(const struct blksnap_volume *v)
{
	return v->nr;
}

/*
 * Extent i, in sectors of the file system's device, in file order or, if
 * by_dev, in the order of the device; false past the last.
 */
bool blksnap_volume_extent(const struct blksnap_volume *v, unsigned int i,
			   bool by_dev, u64 *dev_sector, u64 *count)
{
	const struct blksnap_extent *e = by_dev ? v->by_dev : v->ext;

	if (i >= v->nr)
		return false;
	*dev_sector = e[i].dev_sector;
	*count = e[i].count;
	return true;
}

/* The extent holding file sector, or NULL past the end. */
static const struct blksnap_extent *volume_find(const struct blksnap_volume *v,
						u64 sector)
{
	unsigned int lo = 0, hi = v->nr;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		const struct blksnap_extent *e = &v->ext[mid];

		if (sector < e->file_sector)
			hi = mid;
		else if (sector >= e->file_sector + e->count)
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

/*
 * The device sector of file sectors [sector, sector + count) if they lie
 * in one extent: a single bio can read them.
 */
bool blksnap_volume_locate(const struct blksnap_volume *v, u64 sector,
			   u64 count, u64 *dev_sector)
{
	const struct blksnap_extent *e = volume_find(v, sector);

	if (!e || sector + count > e->file_sector + e->count)
		return false;
	*dev_sector = e->dev_sector + (sector - e->file_sector);
	return true;
}

struct block_device *blksnap_volume_bdev(const struct blksnap_volume *v)
{
	return v->bdev;
}

/*
 * Calls submit(ctx, dev_sector, offset, len) for each piece of the file's
 * bytes [sector, sector + bytes), offset counting from the first; -EIO if
 * they run past the file's end (then nothing is submitted).
 */
int blksnap_volume_pieces(const struct blksnap_volume *v, u64 sector,
			  size_t bytes,
			  void (*submit)(void *ctx, u64 dev_sector,
					 size_t offset, size_t len),
			  void *ctx)
{
	size_t offset = 0;

	if (sector > v->sectors || bytes > (v->sectors - sector) << SECTOR_SHIFT)
		return -EIO;
	while (offset < bytes) {
		/* Found: the file's sectors are all mapped, checked above. */
		const struct blksnap_extent *e = volume_find(v, sector);
		u64 within;
		size_t len;

		if (!e)
			return -EIO;
		within = sector - e->file_sector;
		len = min_t(u64, bytes - offset,
			    (e->count - within) << SECTOR_SHIFT);
		submit(ctx, e->dev_sector + within, offset, len);
		offset += len;
		sector += len >> SECTOR_SHIFT;
	}
	return 0;
}

/*
 * Cuts the first sectors off bio and returns them as a bio of their own,
 * chained to bio, which keeps the rest; NULL (nothing cut) unless sectors
 * is within the bio.
 */
struct bio *blksnap_bio_split_front(struct bio *bio, unsigned int sectors)
{
	struct bio *front;

	if (!sectors || sectors >= bio_sectors(bio))
		return NULL;
	front = bio_split(bio, sectors, GFP_NOIO, &split_bios);
	if (front)
		bio_chain(front, bio);
	return front;
}

/* Completes a read with zeros. */
void blksnap_bio_zero_end(struct bio *bio)
{
	zero_fill_bio(bio);
	bio_endio(bio);
}
