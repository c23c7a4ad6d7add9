// SPDX-License-Identifier: GPL-2.0
/*
 * ftrace interposition: how blksnap sees block I/O and block ioctls on a
 * kernel without a native block-device filter.
 *
 * Three kinds of hooks, all found by function name with ftrace_set_filter:
 *
 * - submit_bio_noacct (IPMODIFY): when the bio's block device has a filter,
 *   or is a partition whose whole disk has one, execution is redirected to
 *   submit_bio_redirect(), which offers the bio to the filters and passes
 *   it on with submit_bio_noacct() unless a filter took it. That inner call
 *   comes from this module, and bios whose caller is inside this module
 *   are never redirected: the filters do not see their own bios, nor the
 *   ones they hand back. Only the writes to a difference storage that is a
 *   block device are shown to its filters, there in the hook, to be
 *   recorded (blksnap_bio_origin).
 * - blkdev_ioctl (IPMODIFY): only BLKFILTER_ATTACH, _DETACH and _CTL are
 *   redirected to blkdev_ioctl_redirect(); every other command runs the
 *   original function untouched. compat_blkdev_ioctl, the entry of 32-bit
 *   tasks, is hooked the same way, with the i386 number of
 *   BLKFILTER_ATTACH (its structure is 44 bytes there) as well.
 * - del_gendisk, bdev_unhash and bdev_set_nr_sectors(bdev, 0) (plain
 *   observers): the device is going away, its filter must be detached.
 *   bdev_unhash() is where every removal of a block device starts, once it
 *   is sure to happen: del_gendisk, a partition rescan (BLKRRPART) and the
 *   deletion of one partition (BLKPG), the last two past their EBUSY
 *   checks. drop_partition(), which follows, is inlined on those paths.
 * - inc_diskseq and bdev_set_nr_sectors to another nonzero size (plain
 *   observers): the data under the device changed without a write, so
 *   its filter is told, and stays. A disk's sequence number goes up for
 *   every new medium: disk_force_media_change() (loop LOOP_CHANGE_FD,
 *   LOOP_CONFIGURE/SET_FD and clear, nbd, floppy) and a media change that
 *   the disk-events machinery detects (removable SCSI disks, CD-ROMs).
 *
 * The callbacks run in ftrace context: they must not sleep and must not
 * call traced functions; everything here is notrace and the Rust functions
 * they call are not traced (Rust objects carry no fentry in 6.12).
 *
 * Every redirected bio is offered to its filter and passed on inside a read
 * section of submit_srcu, so a snapshot take can wait for the writes that
 * the filter let pass before copy-on-write began: first until they have
 * left submit_bio_noacct (blksnap_sync_submitters), then until the driver
 * has completed them (blksnap_drain_start and _wait).
 *
 * The hook of submit_bio_noacct runs for every bio of the system. For a bio
 * of an unfiltered device it costs one lookup in the table of filters; a
 * bio of a filtered device is shown to its filters in that same lookup
 * (blksnap_bio_wanted), and only those a filter must act on (writes, for
 * blksnap) leave for submit_bio_redirect: a read costs that one lookup and
 * nothing else. Nothing on this path writes memory that other CPUs write:
 * no global counter, no lock; the filters count per CPU.
 *
 * A redirected call may still be running in module text after its hook is
 * unregistered; blksnap_hooks_unregister() waits for it before the module
 * text can go away, without any count kept per call. Each redirect target
 * runs its body inside a read section (submit_srcu for bios, ioctl_srcu for
 * the ioctls, which may sleep for long and take a snapshot, whose wait on
 * submit_srcu must not wait for itself). Outside the section a target only
 * runs a few instructions that never sleep: between the hook and the lock,
 * and between the unlock and the return. A tasks-RCU grace period ends only
 * once every task has switched voluntarily, which no task does there, so:
 * once the hooks are gone, one grace period puts every task of the first
 * stretch inside its section, synchronize_srcu() waits for the sections,
 * and a second grace period for the last stretch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/compat.h>
#include <linux/ftrace.h>
#include <linux/delay.h>
#include <linux/mempool.h>
#include <linux/module.h>
#include <linux/part_stat.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/srcu.h>
#include <linux/workqueue.h>

#include "blksnap_glue.h"
#include "uapi/linux/blk-filter.h"

static struct srcu_struct submit_srcu;
static struct srcu_struct ioctl_srcu;
static bool srcu_ready;

/*
 * The writes the filters let pass to a bio-based device (device-mapper,
 * md) are each a reader of passed_srcu from their submission until their
 * completion (srcu_down_read, then srcu_up_read in the completion, which
 * may run in another context), so that a take can wait for those that
 * passed before its members' writes were held (blksnap_wait_passed_writes).
 * The driver's own accounting, which blksnap_wait_bio_writes reads, misses
 * the writes a target keeps in a worker of its own before it remaps them
 * (dm-crypt, dm-thin, dm-cache and dm-delay start the accounting only
 * then), and a request-based device's writes are covered by its queue's
 * drain. To see the completion, the bio's end_io and private are set aside
 * in a passed_write and given back before the original end_io runs, as a
 * stacking driver would.
 */
struct passed_write {
	bio_end_io_t *end_io;
	void *private;
	int idx;
};

static struct srcu_struct passed_srcu;
static struct kmem_cache *passed_cache;
static mempool_t passed_pool;
/* Writes counted at once without waiting for memory, whatever happens. */
#define PASSED_RESERVE 64

static void passed_write_end_io(struct bio *bio)
{
	struct passed_write *pw = bio->bi_private;
	int idx = pw->idx;

	/*
	 * The read section covers this function to its end but for the return:
	 * blksnap_hooks_unregister waits for passed_srcu, then for a grace
	 * period, before the module's text can go.
	 */
	rcu_read_lock();
	bio->bi_end_io = pw->end_io;
	bio->bi_private = pw->private;
	mempool_free(pw, &passed_pool);
	if (bio->bi_end_io)
		bio->bi_end_io(bio);
	srcu_up_read(&passed_srcu, idx);
	rcu_read_unlock();
}

/* Writes passed uncounted since the last take: memory was short. */
static atomic_long_t passed_missed = ATOMIC_LONG_INIT(0);

/*
 * Counts bio, which a filter lets pass, if it is a write to a bio-based
 * device. Returns false if bio was completed instead: a REQ_NOWAIT bio
 * when memory is short, which its submitter tries again. Bios may come
 * from interrupt context (a cipher's completion in dm-crypt submits to
 * the device below): then, and when memory is short past the reserve,
 * the write passes uncounted (the next take says so), never failed.
 */
static bool count_passed_write(struct bio *bio)
{
	struct passed_write *pw;

	if (!op_is_write(bio_op(bio)) || queue_is_mq(bdev_get_queue(bio->bi_bdev)))
		return true;
	pw = mempool_alloc(&passed_pool, GFP_NOWAIT | __GFP_NOWARN);
	if (!pw && (bio->bi_opf & REQ_NOWAIT)) {
		bio_wouldblock_error(bio);
		return false;
	}
	/* A submitter that may sleep: the pool's elements come back. */
	if (!pw && preemptible())
		pw = mempool_alloc(&passed_pool, GFP_NOIO);
	if (!pw) {
		atomic_long_inc(&passed_missed);
		return true;
	}
	pw->end_io = bio->bi_end_io;
	pw->private = bio->bi_private;
	pw->idx = srcu_down_read(&passed_srcu);
	bio->bi_end_io = passed_write_end_io;
	bio->bi_private = pw;
	return true;
}

/*
 * Waits, at most timeout_ms, until every write counted by
 * count_passed_write before the call has completed.
 */
int blksnap_wait_passed_writes(unsigned int timeout_ms)
{
	unsigned long cookie = start_poll_synchronize_srcu(&passed_srcu);
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);
	long missed = atomic_long_xchg(&passed_missed, 0);

	if (missed)
		pr_warn("take: %ld writes passed to device-mapper or md devices since the last take were not waited for (memory was short): one still in flight may land in the image or not\n",
			missed);
	while (!poll_state_synchronize_srcu(&passed_srcu, cookie)) {
		if (time_after(jiffies, deadline))
			return -ETIMEDOUT;
		usleep_range(100, 200);
	}
	return 0;
}

static void notrace submit_bio_redirect(struct bio *bio)
{
	int idx = srcu_read_lock(&submit_srcu);

	if (!blksnap_filter_bio(bio) && count_passed_write(bio))
		submit_bio_noacct(bio);
	/* Not a tail call, so the inner submit_bio_noacct sees our address. */
	srcu_read_unlock(&submit_srcu, idx);
}

static void notrace submit_bio_hook(unsigned long ip, unsigned long parent_ip,
				    struct ftrace_ops *ops,
				    struct ftrace_regs *fregs)
{
	struct bio *bio = (struct bio *)ftrace_regs_get_argument(fregs, 0);
	struct block_device *bdev = bio->bi_bdev;

	/*
	 * The one lookup every bio pays for. A bio of a partition also goes
	 * to the filter of its whole disk, in that same lookup.
	 */
	if (!blksnap_bio_wanted(bio, bdev, bdev_is_partition(bdev) ?
				bdev_whole(bdev) : NULL, parent_ip))
		return;
	ftrace_regs_set_instruction_pointer(fregs, (unsigned long)submit_bio_redirect);
}

/*
 * What bio, submitted by the code at ip, is to the filters:
 * - BLKSNAP_BIO_STORE, a write to a difference storage that is a block
 *   device, also the rest of one that the block layer split and submits
 *   again: it changes the device, so the filters record it, but none may
 *   hold it;
 * - BLKSNAP_BIO_OWN, any other bio of this module, one the filters hand
 *   back, or the rest of a split in-volume storage bio: the filters do
 *   not see it (an in-volume storage is marked changed as a whole when its
 *   snapshot ends);
 * - BLKSNAP_BIO_FOREIGN, everything else.
 */
enum blksnap_bio_origin notrace blksnap_bio_origin(struct bio *bio,
						   unsigned long ip)
{
	if (bio->bi_pool == &blksnap_store_bios)
		return op_is_write(bio_op(bio)) ? BLKSNAP_BIO_STORE :
						  BLKSNAP_BIO_OWN;
	if (bio->bi_pool == &blksnap_volume_bios ||
	    within_module(ip, THIS_MODULE))
		return BLKSNAP_BIO_OWN;
	return BLKSNAP_BIO_FOREIGN;
}

static long notrace blkdev_ioctl_redirect(struct file *file, unsigned int cmd,
					  unsigned long arg)
{
	int idx = srcu_read_lock(&ioctl_srcu);
	long ret = blksnap_blkfilter_ioctl(file_bdev(file), cmd, arg, false);

	srcu_read_unlock(&ioctl_srcu, idx);
	return ret;
}

static bool notrace is_blkfilter_cmd(unsigned int cmd)
{
	return cmd == BLKFILTER_ATTACH || cmd == BLKFILTER_DETACH ||
	       cmd == BLKFILTER_CTL;
}

static void notrace blkdev_ioctl_hook(unsigned long ip, unsigned long parent_ip,
				      struct ftrace_ops *ops,
				      struct ftrace_regs *fregs)
{
	/* The upper half of the register holding an unsigned int is undefined. */
	unsigned int cmd = (unsigned int)ftrace_regs_get_argument(fregs, 1);

	if (!is_blkfilter_cmd(cmd))
		return;
	ftrace_regs_set_instruction_pointer(fregs, (unsigned long)blkdev_ioctl_redirect);
}

#ifdef CONFIG_COMPAT
/* struct blkfilter_attach as i386 lays it out: no padding after optlen. */
struct blkfilter_attach_compat {
	__u8 name[BLKFILTER_NAME_LENGTH];
	compat_u64 opt;
	__u32 optlen;
};

#define BLKFILTER_ATTACH_COMPAT _IOWR(0x12, 142, struct blkfilter_attach_compat)
#ifdef CONFIG_X86_64
static_assert(BLKFILTER_ATTACH_COMPAT == 0xc02c128e);
#endif

static long notrace compat_blkdev_ioctl_redirect(struct file *file,
						 unsigned int cmd,
						 unsigned long arg)
{
	int idx = srcu_read_lock(&ioctl_srcu);
	long ret = blksnap_blkfilter_ioctl(file_bdev(file), cmd,
					   (unsigned long)compat_ptr(arg), true);

	srcu_read_unlock(&ioctl_srcu, idx);
	return ret;
}

static void notrace compat_blkdev_ioctl_hook(unsigned long ip,
					     unsigned long parent_ip,
					     struct ftrace_ops *ops,
					     struct ftrace_regs *fregs)
{
	unsigned int cmd = (unsigned int)ftrace_regs_get_argument(fregs, 1);

	if (!is_blkfilter_cmd(cmd) &&
	    !(cmd == BLKFILTER_ATTACH_COMPAT && blksnap_in_ia32_syscall()))
		return;
	ftrace_regs_set_instruction_pointer(fregs, (unsigned long)compat_blkdev_ioctl_redirect);
}
#endif

static void notrace del_gendisk_hook(unsigned long ip, unsigned long parent_ip,
				     struct ftrace_ops *ops,
				     struct ftrace_regs *fregs)
{
	blksnap_disk_gone((struct gendisk *)ftrace_regs_get_argument(fregs, 0), NULL);
}

static void notrace unhash_hook(unsigned long ip, unsigned long parent_ip,
				struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct block_device *bdev = (void *)ftrace_regs_get_argument(fregs, 0);

	blksnap_disk_gone(bdev->bd_disk, bdev_is_partition(bdev) ? bdev : NULL);
}

static void notrace set_nr_sectors_hook(unsigned long ip, unsigned long parent_ip,
					struct ftrace_ops *ops,
					struct ftrace_regs *fregs)
{
	struct block_device *bdev = (void *)ftrace_regs_get_argument(fregs, 0);
	sector_t sectors = ftrace_regs_get_argument(fregs, 1);

	/* Capacity 0: loop detach, zram reset, a disk marked dead. */
	if (!sectors) {
		blksnap_disk_gone(bdev->bd_disk,
				  bdev_is_partition(bdev) ? bdev : NULL);
		return;
	}
	/*
	 * Another capacity (LOOP_SET_CAPACITY, a resized partition, a new
	 * medium of another size): this device alone, not its partitions.
	 */
	if (sectors != bdev_nr_sectors(bdev))
		blksnap_disk_changed(bdev->bd_disk, bdev);
}

static void notrace diskseq_hook(unsigned long ip, unsigned long parent_ip,
				 struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	/* Another medium: the data of the disk and of its partitions. */
	blksnap_disk_changed((struct gendisk *)ftrace_regs_get_argument(fregs, 0),
			     NULL);
}

/*
 * Where ftrace passes arguments in struct ftrace_regs (x86-64), the light
 * trampoline, which saves only the argument registers, can already change
 * the instruction pointer; elsewhere that needs the full register save.
 */
#ifdef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
#define REDIRECT_FLAGS (FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_PERMANENT)
#else
#define REDIRECT_FLAGS \
	(FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_PERMANENT)
#endif

static struct blksnap_hook {
	const char *function;
	struct ftrace_ops ops;
	bool registered;
} hooks[] = {
	/* Observers first, so no filter can outlive its device unnoticed. */
	{ "del_gendisk", { .func = del_gendisk_hook } },
	{ "bdev_unhash", { .func = unhash_hook } },
	{ "bdev_set_nr_sectors", { .func = set_nr_sectors_hook } },
	{ "inc_diskseq", { .func = diskseq_hook } },
	{ "blkdev_ioctl", { .func = blkdev_ioctl_hook, .flags = REDIRECT_FLAGS } },
#ifdef CONFIG_COMPAT
	{ "compat_blkdev_ioctl",
	  { .func = compat_blkdev_ioctl_hook, .flags = REDIRECT_FLAGS } },
#endif
	{ "submit_bio_noacct", { .func = submit_bio_hook, .flags = REDIRECT_FLAGS } },
};

/*
 * Waits until every task that was running a redirect target outside its
 * read section, where it cannot sleep, has left that stretch of code.
 */
static void wait_outside_sections(void)
{
#ifdef CONFIG_TASKS_RCU
	synchronize_rcu_tasks();
#else
	/* Without preemption, code that does not sleep is an RCU reader. */
	synchronize_rcu();
#endif
}

static int hook_register(struct blksnap_hook *hook)
{
	char name[KSYM_NAME_LEN];
	int ret;

	strscpy(name, hook->function, sizeof(name));
	ret = ftrace_set_filter(&hook->ops, name, strlen(name), 1);
	if (ret) {
		pr_err("cannot trace %s: %d\n", hook->function, ret);
		return ret;
	}
	ret = register_ftrace_function(&hook->ops);
	if (ret) {
		pr_err("cannot hook %s: %d\n", hook->function, ret);
		ftrace_free_filter(&hook->ops);
		return ret;
	}
	hook->registered = true;
	return 0;
}

static int passed_init(void)
{
	int ret = init_srcu_struct(&passed_srcu);

	if (ret)
		return ret;
	passed_cache = KMEM_CACHE(passed_write, 0);
	if (!passed_cache) {
		ret = -ENOMEM;
		goto err_srcu;
	}
	ret = mempool_init_slab_pool(&passed_pool, PASSED_RESERVE, passed_cache);
	if (ret)
		goto err_cache;
	return 0;
err_cache:
	kmem_cache_destroy(passed_cache);
err_srcu:
	cleanup_srcu_struct(&passed_srcu);
	return ret;
}

static void passed_exit(void)
{
	mempool_exit(&passed_pool);
	kmem_cache_destroy(passed_cache);
	cleanup_srcu_struct(&passed_srcu);
}

void blksnap_hooks_unregister(void)
{
	int i;

	for (i = ARRAY_SIZE(hooks) - 1; i >= 0; i--) {
		if (!hooks[i].registered)
			continue;
		unregister_ftrace_function(&hooks[i].ops);
		ftrace_free_filter(&hooks[i].ops);
		hooks[i].registered = false;
	}
	if (!srcu_ready)
		return;
	/* No new redirect can start now; wait for the running ones. */
	wait_outside_sections();
	synchronize_srcu(&submit_srcu);
	synchronize_srcu(&ioctl_srcu);
	wait_outside_sections();
	/* The writes counted are all submitted now: wait for their ends. */
	synchronize_srcu(&passed_srcu);
	synchronize_rcu();
	passed_exit();
	cleanup_srcu_struct(&ioctl_srcu);
	cleanup_srcu_struct(&submit_srcu);
	srcu_ready = false;
}

/*
 * Waits until every bio that entered a filter before the call has left
 * submit_bio_noacct: it is then queued to its driver (or completed). A bio
 * submitted from within another driver's submit_bio is only put on that
 * task's list by submit_bio_noacct and reaches the driver later; stacked
 * devices are not covered.
 */
void blksnap_sync_submitters(void)
{
	/*
	 * Expedited: a take waits here with its members frozen. SRCU's
	 * expedited grace period only polls its own per-CPU counters sooner;
	 * it does not disturb other CPUs.
	 */
	synchronize_srcu_expedited(&submit_srcu);
}

/*
 * Draining the requests the driver of bdev holds, with a freeze of its
 * queue: once started, new bios wait for the end of the freeze, and the
 * wait ends when every request held before has completed. A bio-based
 * driver (device-mapper, md) releases the queue when its submit_bio
 * returns, so there the freeze only waits for bios being submitted; the
 * writes such a driver still holds are waited for afterwards, once every
 * freeze has ended, by its I/O accounting (blksnap_wait_bio_writes).
 * Starting the freezes of several queues first lets their RCU grace
 * periods overlap.
 */
void blksnap_drain_start(struct block_device *bdev)
{
	blk_freeze_queue_start(bdev_get_queue(bdev));
}

/* The writes accounted as in flight on one block device, on all CPUs. */
static long part_writes_in_flight(struct block_device *part)
{
	long n = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		n += part_stat_local_read_cpu(part, in_flight[WRITE], cpu);
	return n;
}

/*
 * The writes a bio-based driver has started and not yet completed on the
 * disk of bdev, as its I/O accounting counts them (bio_start_io_acct and
 * the like), on the disk and all its partitions: a bio is counted on the
 * device it was issued to, and a partition's filter also sees the bios of
 * its whole disk.
 */
static long writes_in_flight(struct block_device *bdev)
{
	struct block_device *part;
	unsigned long idx;
	long n = 0;

	rcu_read_lock();
	xa_for_each(&bdev->bd_disk->part_tbl, idx, part)
		n += part_writes_in_flight(part);
	rcu_read_unlock();
	return n;
}

/* Waits, at most timeout_ms, for a drain started on bdev. */
int blksnap_drain_wait(struct block_device *bdev, unsigned int timeout_ms)
{
	long left = blk_mq_freeze_queue_wait_timeout(bdev_get_queue(bdev),
						     msecs_to_jiffies(timeout_ms));

	return left > 0 ? 0 : -ETIMEDOUT;
}

/*
 * Waits, at most timeout_ms, until a bio-based driver (device-mapper, md)
 * has completed the writes it took on the disk of bdev; returns at once for
 * a request-based one, whose drain covered them. Called once every drain
 * has ended, so that the driver can pass the writes it holds to devices
 * below whose queues were frozen. The count only falls meanwhile: new
 * writes are held by the filter above the driver. Not covered: a driver
 * whose accounting was switched off (queue/iostats set to 0), and a
 * target that starts the accounting of a bio only when it remaps it from
 * a worker of its own (dm-crypt, dm-thin, dm-cache, dm-delay set
 * accounts_remapped_io): a write such a target still queues is not
 * counted yet (blksnap_wait_passed_writes covers those).
 */
int blksnap_wait_bio_writes(struct block_device *bdev, unsigned int timeout_ms)
{
	struct request_queue *q = bdev_get_queue(bdev);
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);

	if (queue_is_mq(q) || !blk_queue_io_stat(q))
		return 0;
	while (writes_in_flight(bdev) > 0) {
		if (time_after(jiffies, deadline))
			return -ETIMEDOUT;
		usleep_range(100, 200);
	}
	return 0;
}

bool blksnap_bdev_is_bio_based(struct block_device *bdev)
{
	return !queue_is_mq(bdev_get_queue(bdev));
}

/* Ends a drain started on bdev: the bios waiting meanwhile go on. */
void blksnap_drain_end(struct block_device *bdev)
{
	/* 6.14: blk_mq_unfreeze_queue restores what blk_mq_freeze_queue saved. */
#ifdef BLKSNAP_UNFREEZE_NOMEMRESTORE
	blk_mq_unfreeze_queue_nomemrestore(bdev_get_queue(bdev));
#else
	blk_mq_unfreeze_queue(bdev_get_queue(bdev));
#endif
}

int blksnap_hooks_register(void)
{
	int i, ret;

	ret = init_srcu_struct(&submit_srcu);
	if (ret)
		return ret;
	ret = init_srcu_struct(&ioctl_srcu);
	if (ret) {
		cleanup_srcu_struct(&submit_srcu);
		return ret;
	}
	ret = passed_init();
	if (ret) {
		cleanup_srcu_struct(&ioctl_srcu);
		cleanup_srcu_struct(&submit_srcu);
		return ret;
	}
	srcu_ready = true;
	for (i = 0; i < ARRAY_SIZE(hooks); i++) {
		ret = hook_register(&hooks[i]);
		if (ret) {
			blksnap_hooks_unregister();
			return ret;
		}
	}
	return 0;
}

static void reap_work_fn(struct work_struct *work)
{
	blksnap_reap_filters();
}

static DECLARE_WORK(reap_work, reap_work_fn);

void notrace blksnap_schedule_reap(void)
{
	schedule_work(&reap_work);
}

void blksnap_flush_reap(void)
{
	flush_work(&reap_work);
}
