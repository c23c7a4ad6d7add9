// SPDX-License-Identifier: GPL-2.0
/*
 * Inline functions and macros of the kernel that Rust cannot call
 * directly, as real functions. notrace: some are used from ftrace hooks.
 */
#include <linux/blkdev.h>
#include <linux/compat.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

#include "blksnap_glue.h"

/* Serializes changes to the table of attached filters (src/blkfilter.rs). */
static DEFINE_MUTEX(registry_mutex);

void blksnap_registry_lock(void)
{
	mutex_lock(&registry_mutex);
}

void blksnap_registry_unlock(void)
{
	mutex_unlock(&registry_mutex);
}

/* mutex_lock() is a macro when lock debugging is on. */
void blksnap_mutex_lock(struct mutex *lock)
{
	mutex_lock(lock);
}

/* The locks of the write path: see src/glue/irqlock.rs. */
unsigned long notrace blksnap_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void notrace blksnap_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

bool notrace blksnap_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	unsigned long saved;

	if (!spin_trylock_irqsave(lock, saved))
		return false;
	*flags = saved;
	return true;
}

void notrace blksnap_spin_assert_held(spinlock_t *lock)
{
	lockdep_assert_held(lock);
}

/* A macro choosing among several functions by the type of fops on newer kernels. */
struct dentry *blksnap_debugfs_create_file(const char *name, umode_t mode,
					   struct dentry *parent, void *data,
					   const struct file_operations *fops)
{
	return debugfs_create_file(name, mode, parent, data, fops);
}

/*
 * Renames dir, a directory of parent, in place (dir stays valid) to
 * ".gone-N", a name no other directory has had since the module loaded.
 * 6.14: debugfs_rename gave way to debugfs_change_name.
 */
void blksnap_debugfs_give_up_name(struct dentry *parent, struct dentry *dir)
{
	static atomic_t gone = ATOMIC_INIT(0);
	char name[24];

	snprintf(name, sizeof(name), ".gone-%u", (unsigned int)atomic_inc_return(&gone));
#ifdef BLKSNAP_DEBUGFS_CHANGE_NAME
	debugfs_change_name(dir, "%s", name);
#else
	debugfs_rename(parent, dir, parent, name);
#endif
}

void notrace blksnap_rcu_read_lock(void)
{
	rcu_read_lock();
}

void notrace blksnap_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

bool blksnap_module_get(void)
{
	return try_module_get(THIS_MODULE);
}

void blksnap_module_put(void)
{
	module_put(THIS_MODULE);
}

/* Also called from the submit_bio_noacct hook. */
enum req_op notrace blksnap_bio_op(struct bio *bio)
{
	return bio_op(bio);
}

/*
 * The first sector of the bio relative to its own block device: a bio that
 * was already remapped to the whole disk (a resubmitted split, say) carries
 * a disk-relative sector.
 */
sector_t notrace blksnap_bio_sector(struct bio *bio)
{
	sector_t sector = bio->bi_iter.bi_sector;

	if (bio_flagged(bio, BIO_REMAPPED))
		sector -= bio->bi_bdev->bd_start_sect;
	return sector;
}

unsigned int notrace blksnap_bio_sectors(struct bio *bio)
{
	return bio_sectors(bio);
}

sector_t blksnap_bdev_nr_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

/* Where a partition starts on its disk; 0 for a whole disk. */
sector_t notrace blksnap_bdev_start_sect(struct block_device *bdev)
{
	return bdev->bd_start_sect;
}

/* The whole disk of a partition; NULL for a whole disk itself. */
struct block_device *notrace blksnap_bdev_whole(struct block_device *bdev)
{
	return bdev_is_partition(bdev) ? bdev_whole(bdev) : NULL;
}

bool blksnap_bdev_is_zoned(struct block_device *bdev)
{
	return bdev_is_zoned(bdev);
}

/*
 * Whether the current task is a 32-bit x86 one, whose structures have the
 * i386 layouts. Other compat tasks (x32) lay them out as x86-64 does.
 */
bool notrace blksnap_in_ia32_syscall(void)
{
#if defined(CONFIG_X86_64) && defined(CONFIG_IA32_EMULATION)
	return in_ia32_syscall();
#else
	return false;
#endif
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
