/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the Rust side of blksnap needs from the kernel beyond the kernel
 * crate's own bindings. bindgen reads this header during the module build
 * (see Kbuild) and src/glue/bindings.rs includes the result; the C files in
 * src/glue/ implement the helpers declared here.
 */
#ifndef BLKSNAP_GLUE_H
#define BLKSNAP_GLUE_H

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/mempool.h>
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
extern unsigned int blksnap_param_image_writable;
bool blksnap_memory_allows(u64 bytes);

/* src/glue/hooks.c: the ftrace interposer. */
int blksnap_hooks_register(void);
void blksnap_hooks_unregister(void);
void blksnap_schedule_reap(void);
void blksnap_flush_reap(void);
void blksnap_sync_submitters(void);
void blksnap_drain_start(struct block_device *bdev);
int blksnap_drain_wait(struct block_device *bdev, unsigned int timeout_ms);
void blksnap_drain_end(struct block_device *bdev);
int blksnap_wait_bio_writes(struct block_device *bdev, unsigned int timeout_ms);
int blksnap_wait_passed_writes(unsigned int timeout_ms);
bool blksnap_bdev_is_bio_based(struct block_device *bdev);

/* What a bio is to the filters, by who submitted it (src/glue/hooks.c). */
enum blksnap_bio_origin {
	BLKSNAP_BIO_FOREIGN,
	BLKSNAP_BIO_OWN,
	BLKSNAP_BIO_STORE,
};

enum blksnap_bio_origin blksnap_bio_origin(struct bio *bio, unsigned long ip);

/*
 * src/glue/percpu.c: counters kept per CPU, summed when read. The pointers
 * are per-CPU pointers (__percpu), opaque to the Rust side.
 */
u64 *blksnap_pcpu_alloc(unsigned int count);
void blksnap_pcpu_free(u64 *counters);
void blksnap_pcpu_add(u64 *counters, unsigned int index, s64 delta);
u64 blksnap_pcpu_sum(u64 *counters, unsigned int index);
void blksnap_pcpu_debugfs(const char *name, struct dentry *parent,
			  u64 *counters, unsigned int index);

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
sector_t blksnap_bdev_start_sect(struct block_device *bdev);
struct block_device *blksnap_bdev_whole(struct block_device *bdev);
bool blksnap_bdev_is_zoned(struct block_device *bdev);
bool blksnap_in_ia32_syscall(void);
unsigned long blksnap_spin_lock_irqsave(spinlock_t *lock);
void blksnap_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);
bool blksnap_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);
void blksnap_spin_assert_held(spinlock_t *lock);
struct dentry *blksnap_debugfs_create_file(const char *name, umode_t mode,
					   struct dentry *parent, void *data,
					   const struct file_operations *fops);
void blksnap_debugfs_give_up_name(struct dentry *parent, struct dentry *dir);

/* src/glue/workqueue.c: the work queues, and the workers' task. */
int blksnap_wq_create(void);
void blksnap_wq_destroy(void);
struct workqueue_struct *blksnap_wq(void);
struct workqueue_struct *blksnap_store_wq(void);
struct workqueue_struct *blksnap_grow_wq(void);
void blksnap_wq_flush(void);
unsigned int blksnap_noio_save(void);
void blksnap_noio_restore(unsigned int flags);
void blksnap_msleep(unsigned int ms);

/* src/glue/helpers.c (continued): user strings, memory, error pointers. */
char *blksnap_strndup_user(const char __user *s, long n);
void blksnap_kfree(const void *p);
bool blksnap_is_err(const void *p);
int blksnap_ptr_err(const void *p);

/* src/glue/block.c: block devices, their opens, freezes and plain I/O. */
unsigned int blksnap_bdev_io_min(struct block_device *bdev);
dev_t blksnap_bdev_dev(struct block_device *bdev);
dev_t blksnap_bdev_whole_dev(struct block_device *bdev);
struct file *blksnap_bdev_open(struct block_device *bdev);
void blksnap_bdev_close(struct file *file);
bool blksnap_bdev_unsupported(struct block_device *bdev);
struct blksnap_parts;
struct blksnap_parts *blksnap_freeze_parts(struct block_device *bdev);
void blksnap_thaw_parts(struct blksnap_parts *parts);
int blksnap_bdev_rw(struct block_device *bdev, u64 sector, void *buf,
		    size_t len, bool write);

/* src/glue/storage.c: the difference storage as a file. */
struct file *blksnap_storage_open(const char *path, void *holder);
void blksnap_storage_close(struct file *file);
bool blksnap_storage_is_bdev(struct file *file);
void blksnap_storage_bdev_devs(struct file *file, u32 *dev, u32 *whole);
u64 blksnap_storage_sectors(struct file *file);
int blksnap_storage_grow(struct file *file, u64 old_sectors, u64 new_sectors);
u32 blksnap_storage_wb_sample(struct file *file);
int blksnap_storage_wb_check(struct file *file, u32 since);
int blksnap_storage_read_bio(struct file *file, u64 sector, struct bio *bio,
			     size_t offset, size_t len);

/* src/glue/topology.c: where bytes end up, what lies below a device. */
/*
 * A place bytes are kept (logic/src/placement.rs): a block device, or a
 * file named by its file system, inode number and generation.
 */
struct blksnap_place {
	u64 ino;
	/* The block device, or the file's file system (s_dev). */
	u32 dev;
	u32 generation;
	/* For a file: the block device of its file system, 0 for none. */
	u32 fs_bdev;
	bool is_file;
};

struct vfsmount;
struct vfsmount *blksnap_topology_open(void);
void blksnap_topology_close(struct vfsmount *mnt);
int blksnap_dev_below(struct vfsmount *mnt, u32 dev, struct blksnap_place *out,
		      unsigned int max);
void blksnap_storage_place(struct file *file, struct blksnap_place *out);

/* src/glue/bio.c: bios, held lists, clones of image reads. */
int blksnap_remap_init(void);
void blksnap_remap_exit(void);
void blksnap_bio_copy_to(struct bio *bio, size_t offset, const void *buf,
			 size_t len);
void blksnap_bio_copy_from(struct bio *bio, size_t offset, void *buf,
			   size_t len);
void blksnap_bio_end(struct bio *bio, int err);
void blksnap_bio_resubmit(struct bio *bio);
bool blksnap_bio_nowait(struct bio *bio);
void blksnap_bio_wouldblock(struct bio *bio);
void blksnap_bio_list_add(struct bio_list *list, struct bio *bio);
void blksnap_bio_list_add_head(struct bio_list *list, struct bio *bio);
struct bio *blksnap_bio_list_pop(struct bio_list *list);
bool blksnap_image_remap_read(struct bio *bio, struct block_device *original,
			      void *owner);
struct blksnap_volume;
bool blksnap_image_remap_storage(struct bio *bio, struct file *storage,
				 const struct blksnap_volume *volume,
				 u64 sector, void *owner);

/* src/glue/gendisk.c: the image disks. */
struct gendisk *blksnap_image_add(struct block_device *original, void *owner,
				  bool writable);
void blksnap_image_publish(struct gendisk *disk, u64 sectors);
void blksnap_image_remove(struct gendisk *disk);
const char *blksnap_disk_name(struct gendisk *disk);

/* src/glue/cowio.c: the I/O of copy-on-write and the table of chunks. */
struct blksnap_buf;
struct xarray;
/* Told of the end of a chunk buffer's I/O, maybe in interrupt context. */
typedef void (*blksnap_io_end_t)(void *owner, const void *cookie, u64 index,
				 int error);
int blksnap_cowio_init(void);
void blksnap_cowio_exit(void);
mempool_t *blksnap_pool_create(unsigned int pages);
void blksnap_pool_destroy(mempool_t *pool);
struct blksnap_buf *blksnap_buf_alloc(mempool_t *pool, size_t bytes);
void blksnap_buf_free(struct blksnap_buf *buf);
void blksnap_buf_to_bio(struct blksnap_buf *buf, size_t buf_off,
			struct bio *bio, size_t bio_off, size_t len);
void blksnap_buf_from_bio(struct blksnap_buf *buf, size_t buf_off,
			  struct bio *bio, size_t bio_off, size_t len);
void blksnap_buf_start(struct blksnap_buf *buf,
		       struct block_device *original, struct file *storage,
		       const struct blksnap_volume *volume, u64 sector,
		       size_t bytes, blksnap_io_end_t end, void *owner,
		       const void *cookie, u64 index);
int blksnap_buf_storage_rw(struct blksnap_buf *buf, struct file *storage,
			   const struct blksnap_volume *volume, u64 sector,
			   size_t bytes, bool write);
struct xarray *blksnap_xa_create(void);
void *blksnap_xa_load(struct xarray *xa, u64 index);
int blksnap_xa_insert(struct xarray *xa, u64 index, void *entry);
void *blksnap_xa_take_next(struct xarray *xa, u64 *index);
void blksnap_xa_destroy(struct xarray *xa);

/* src/glue/volume.c: difference storage in a file on a member's file system. */
int blksnap_volume_init(void);
void blksnap_volume_exit(void);
bool blksnap_file_lives_on(struct file *file, dev_t dev, u64 *offset);
struct blksnap_volume *blksnap_volume_map(struct file *file);
void blksnap_volume_unmap(struct blksnap_volume *v);
u64 blksnap_volume_sectors(const struct blksnap_volume *v);
dev_t blksnap_volume_dev(const struct blksnap_volume *v);
unsigned int blksnap_volume_nr(const struct blksnap_volume *v);
bool blksnap_volume_extent(const struct blksnap_volume *v, unsigned int i,
			   bool by_dev, u64 *dev_sector, u64 *count);
bool blksnap_volume_locate(const struct blksnap_volume *v, u64 sector,
			   u64 count, u64 *dev_sector);
struct block_device *blksnap_volume_bdev(const struct blksnap_volume *v);
int blksnap_volume_pieces(const struct blksnap_volume *v, u64 sector,
			  size_t bytes,
			  void (*submit)(void *ctx, u64 dev_sector,
					 size_t offset, size_t len),
			  void *ctx);
struct bio *blksnap_bio_split_front(struct bio *bio, unsigned int sectors);
void blksnap_bio_zero_end(struct bio *bio);

#ifndef __BINDGEN__
/* The bios of in-volume storages, which no filter is offered. */
extern struct bio_set blksnap_volume_bios;
/* The bios of storages that are block devices, whose writes are recorded. */
extern struct bio_set blksnap_store_bios;

/*
 * Implemented in Rust (src/glue/entry.rs), called by the hooks. Hidden from
 * bindgen: Rust defines them, it must not also declare them.
 */
bool blksnap_bio_wanted(struct bio *bio, struct block_device *bdev,
			struct block_device *whole, unsigned long parent_ip);
bool blksnap_filter_bio(struct bio *bio);
long blksnap_blkfilter_ioctl(struct block_device *bdev, unsigned int cmd,
			     unsigned long arg, bool compat);
void blksnap_disk_gone(struct gendisk *disk, struct block_device *part);
void blksnap_disk_changed(struct gendisk *disk, struct block_device *part);
void blksnap_reap_filters(void);
void blksnap_image_submit_bio(void *owner, struct bio *bio);
bool blksnap_image_read_valid(void *owner, struct bio *bio, bool original);
void blksnap_image_read_done(void *owner);
void blksnap_image_read_retry(void *owner, struct bio *bio);
#endif

#endif /* BLKSNAP_GLUE_H */
