// SPDX-License-Identifier: GPL-2.0
/*
 * Where bytes end up, for the Rust side (topology.rs): the device and
 * file system of a storage file, and what lies below a block device (its
 * whole disk, the members of a dm or md device, a loop device's file).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "blksnap_glue.h"

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
	if (blksnap_storage_is_bdev(file)) {
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
