/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the Rust side of blksnap needs from the kernel beyond the kernel
 * crate's own bindings. bindgen reads this header during the module build
 * (see Kbuild) and src/glue/bindings.rs includes the result; the C files in
 * src/glue/ implement the helpers declared here.
 */
#ifndef BLKSNAP_GLUE_H
#define BLKSNAP_GLUE_H

#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>

/* Module parameters (uapi.md section 4), defined in src/glue/params.c. */
extern unsigned int blksnap_param_tracking_block_minimum_shift;
extern unsigned int blksnap_param_tracking_block_maximum_count;
extern unsigned int blksnap_param_tracking_block_maximum_shift;
extern unsigned int blksnap_param_chunk_minimum_shift;
extern unsigned int blksnap_param_chunk_maximum_count_shift;
extern unsigned int blksnap_param_chunk_maximum_shift;
extern unsigned int blksnap_param_chunk_maximum_in_queue;
extern unsigned int blksnap_param_diff_storage_minimum;

/* src/glue/hooks.c: the ftrace interposer. */
int blksnap_hooks_register(void);
void blksnap_hooks_unregister(void);
void blksnap_schedule_reap(void);
void blksnap_flush_reap(void);

/* src/glue/helpers.c: inline functions and macros as functions. */
void blksnap_registry_lock(void);
void blksnap_registry_unlock(void);
void blksnap_mutex_lock(struct mutex *lock);
void blksnap_rcu_read_lock(void);
void blksnap_rcu_read_unlock(void);
bool blksnap_module_get(void);
void blksnap_module_put(void);
enum req_op blksnap_bio_op(struct bio *bio);
sector_t blksnap_bio_sector(struct bio *bio);
unsigned int blksnap_bio_sectors(struct bio *bio);
sector_t blksnap_bdev_nr_sectors(struct block_device *bdev);

#ifndef __BINDGEN__
/*
 * Implemented in Rust (src/glue/entry.rs), called by the hooks. Hidden from
 * bindgen: Rust defines them, it must not also declare them.
 */
bool blksnap_bdev_filtered(struct block_device *bdev);
bool blksnap_filter_bio(struct bio *bio);
long blksnap_blkfilter_ioctl(struct block_device *bdev, unsigned int cmd,
			     unsigned long arg);
void blksnap_disk_gone(struct gendisk *disk, struct block_device *part);
void blksnap_reap_filters(void);
#endif

#endif /* BLKSNAP_GLUE_H */
