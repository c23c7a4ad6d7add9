// SPDX-License-Identifier: GPL-2.0
/*
 * The image disks, for the Rust side (gendisk.rs): a bio-based gendisk per
 * member of a snapshot, whose bios go to the image's server.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/module.h>

#include "blksnap_glue.h"
#include "uapi/linux/blksnap.h"

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
