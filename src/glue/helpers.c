// SPDX-License-Identifier: GPL-2.0
/*
 * Inline functions and macros of the kernel that Rust cannot call
 * directly, as real functions. notrace: some are used from ftrace hooks.
 */
#include <linux/blkdev.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>

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

enum req_op blksnap_bio_op(struct bio *bio)
{
	return bio_op(bio);
}
