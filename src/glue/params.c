// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of blksnap (uapi.md section 4). They are declared in C
 * because the 6.12 module! macro has no parameter support; the Rust side
 * reads them through src/glue/params.rs.
 *
 * Every parameter has a valid range, checked when the module is loaded
 * (insmod fails with EINVAL) and on every write to its file under
 * /sys/module/blksnap/parameters/ (the write fails with EINVAL and the value
 * stays). Documentation/blksnap.rst gives the ranges and their reasons.
 * Relations between two parameters (a minimum above its maximum) cannot be
 * checked here, since each is written on its own; the code that reads them
 * resolves those when it uses them.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "blksnap_glue.h"

unsigned int blksnap_param_tracking_block_minimum_shift = 16;
unsigned int blksnap_param_tracking_block_maximum_count = 2097152;
unsigned int blksnap_param_tracking_block_maximum_shift = 26;
unsigned int blksnap_param_chunk_minimum_shift = 18;
unsigned int blksnap_param_chunk_maximum_count_shift = 40;
unsigned int blksnap_param_chunk_maximum_shift = 26;
unsigned int blksnap_param_chunk_maximum_in_queue = 256;
unsigned int blksnap_param_diff_storage_minimum = 2097152;
unsigned int blksnap_param_image_writable;

/* A tracking block: a sector to 2 GiB, the most CBTINFO's u32 can say. */
#define TRACKING_SHIFT_MIN	9
#define TRACKING_SHIFT_MAX	31
/* Blocks per map: the map is one byte per block, twice over, in kvmalloc. */
#define TRACKING_COUNT_MAX	BIT(30)
/* A chunk: a sector to 1 GiB, the largest power of two kvmalloc holds. */
#define CHUNK_SHIFT_MIN		9
#define CHUNK_SHIFT_MAX		30
/* At most 2^N chunks: N is a shift of a 64-bit count. */
#define CHUNK_COUNT_SHIFT_MAX	63
#define CHUNK_QUEUE_MAX		65536
/* A growth step of the storage: 1 MiB to 1 TiB, in sectors. */
#define STORAGE_STEP_MIN	2048
#define STORAGE_STEP_MAX	BIT(31)

/* The range of one parameter, found by the address of its value. */
struct blksnap_param_range {
	const unsigned int *value;
	unsigned int min;
	unsigned int max;
};

static const struct blksnap_param_range blksnap_param_ranges[] = {
	{ &blksnap_param_tracking_block_minimum_shift,
	  TRACKING_SHIFT_MIN, TRACKING_SHIFT_MAX },
	{ &blksnap_param_tracking_block_maximum_count, 1, TRACKING_COUNT_MAX },
	{ &blksnap_param_tracking_block_maximum_shift,
	  TRACKING_SHIFT_MIN, TRACKING_SHIFT_MAX },
	{ &blksnap_param_chunk_minimum_shift, CHUNK_SHIFT_MIN, CHUNK_SHIFT_MAX },
	{ &blksnap_param_chunk_maximum_count_shift, 0, CHUNK_COUNT_SHIFT_MAX },
	{ &blksnap_param_chunk_maximum_shift, CHUNK_SHIFT_MIN, CHUNK_SHIFT_MAX },
	{ &blksnap_param_chunk_maximum_in_queue, 1, CHUNK_QUEUE_MAX },
	{ &blksnap_param_diff_storage_minimum,
	  STORAGE_STEP_MIN, STORAGE_STEP_MAX },
	{ &blksnap_param_image_writable, 0, 1 },
};

/*
 * Parses a decimal (or 0x-prefixed) value and stores it if it lies in the
 * parameter's range. The module's parameter lock serialises the writers;
 * the store is a single one, so readers see the old or the new value.
 */
static int blksnap_param_set(const char *val, const struct kernel_param *kp)
{
	const struct blksnap_param_range *r;

	for (r = blksnap_param_ranges;
	     r < blksnap_param_ranges + ARRAY_SIZE(blksnap_param_ranges); r++) {
		if (r->value != kp->arg)
			continue;
		if (param_set_uint_minmax(val, kp, r->min, r->max)) {
			pr_warn("%s must be a number from %u to %u\n",
				kp->name, r->min, r->max);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

static const struct kernel_param_ops blksnap_param_ops = {
	.set = blksnap_param_set,
	.get = param_get_uint,
};

module_param_cb(tracking_block_minimum_shift, &blksnap_param_ops,
		&blksnap_param_tracking_block_minimum_shift, 0644);
MODULE_PARM_DESC(tracking_block_minimum_shift,
		 "Smallest change-tracking block, as a power of two in bytes (9-31)");

module_param_cb(tracking_block_maximum_count, &blksnap_param_ops,
		&blksnap_param_tracking_block_maximum_count, 0644);
MODULE_PARM_DESC(tracking_block_maximum_count,
		 "Most change-tracking blocks per device (1-1073741824)");

module_param_cb(tracking_block_maximum_shift, &blksnap_param_ops,
		&blksnap_param_tracking_block_maximum_shift, 0644);
MODULE_PARM_DESC(tracking_block_maximum_shift,
		 "Largest change-tracking block, as a power of two in bytes (9-31)");

module_param_cb(chunk_minimum_shift, &blksnap_param_ops,
		&blksnap_param_chunk_minimum_shift, 0644);
MODULE_PARM_DESC(chunk_minimum_shift,
		 "Smallest copy-on-write chunk, as a power of two in bytes (9-30)");

module_param_cb(chunk_maximum_count_shift, &blksnap_param_ops,
		&blksnap_param_chunk_maximum_count_shift, 0644);
MODULE_PARM_DESC(chunk_maximum_count_shift,
		 "At most 2^N copy-on-write chunks per device (0-63)");

module_param_cb(chunk_maximum_shift, &blksnap_param_ops,
		&blksnap_param_chunk_maximum_shift, 0644);
MODULE_PARM_DESC(chunk_maximum_shift,
		 "Largest copy-on-write chunk, as a power of two in bytes (9-30)");

module_param_cb(chunk_maximum_in_queue, &blksnap_param_ops,
		&blksnap_param_chunk_maximum_in_queue, 0644);
MODULE_PARM_DESC(chunk_maximum_in_queue,
		 "Most chunks of a device in memory at once, read and not yet stored (1-65536)");

module_param_cb(diff_storage_minimum, &blksnap_param_ops,
		&blksnap_param_diff_storage_minimum, 0644);
MODULE_PARM_DESC(diff_storage_minimum,
		 "Growth step of a difference storage file, in sectors (2048-2147483648)");

module_param_cb(image_writable, &blksnap_param_ops,
		&blksnap_param_image_writable, 0644);
MODULE_PARM_DESC(image_writable,
		 "1: snapshot images taken from now on accept writes, kept in the difference storage (0-1)");

/*
 * Whether the tables and buffers of @bytes that the parameters make one
 * device need (at a take, or when its change tracking starts) may be
 * allocated: they must leave at least half of the memory available now to
 * the rest of the system. Larger ones fail with ENOMEM before they are
 * tried, instead of waking the OOM killer.
 */
bool blksnap_memory_allows(u64 bytes)
{
	long pages = si_mem_available();

	return pages > 0 && bytes <= ((u64)pages << PAGE_SHIFT) / 2;
}
