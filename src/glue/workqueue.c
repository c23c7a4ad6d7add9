// SPDX-License-Identifier: GPL-2.0
/*
 * The module's work queues, for the Rust side (workqueue.rs), and what its
 * workers need of their task: allocations that start no I/O, short sleeps.
 * Made at load with the other I/O resources (the clones of image reads,
 * the page pool of copies).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>

#include "blksnap_glue.h"

/*
 * Copy-on-write and image reads; may be needed to free memory. The stores
 * of copies to the difference storage have a queue of their own, since
 * the copy-on-write worker may wait for the memory a store frees, and the
 * growth of storage files another, since a store may wait for a growth.
 */
static struct workqueue_struct *snapshot_wq;
static struct workqueue_struct *store_wq;
static struct workqueue_struct *grow_wq;

int blksnap_wq_create(void)
{
	int ret = blksnap_remap_init();

	if (ret)
		return ret;
	ret = blksnap_cowio_init();
	if (ret)
		goto err_remap;
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
err_remap:
	blksnap_remap_exit();
	return ret;
}

void blksnap_wq_destroy(void)
{
	destroy_workqueue(grow_wq);
	destroy_workqueue(store_wq);
	destroy_workqueue(snapshot_wq);
	blksnap_cowio_exit();
	blksnap_remap_exit();
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

void blksnap_msleep(unsigned int ms)
{
	msleep(ms);
}
