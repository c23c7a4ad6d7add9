// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of blksnap (uapi.md section 4). They are declared in C
 * because the 6.12 module! macro has no parameter support; the Rust side
 * reads them through src/params.rs.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "blksnap_glue.h"

#define BLKSNAP_PARAM(name, value, desc)				\
	unsigned int blksnap_param_##name = (value);		\
	module_param_named(name, blksnap_param_##name, uint, 0644);	\
	MODULE_PARM_DESC(name, desc)

BLKSNAP_PARAM(tracking_block_minimum_shift, 16,
	      "Smallest change-tracking block, as a power of two in bytes");
BLKSNAP_PARAM(tracking_block_maximum_count, 2097152,
	      "Most change-tracking blocks per device");
BLKSNAP_PARAM(tracking_block_maximum_shift, 26,
	      "Largest change-tracking block, as a power of two in bytes");
BLKSNAP_PARAM(chunk_minimum_shift, 18,
	      "Smallest copy-on-write chunk, as a power of two in bytes");
BLKSNAP_PARAM(chunk_maximum_count_shift, 40,
	      "At most 2^N copy-on-write chunks per device");
BLKSNAP_PARAM(chunk_maximum_shift, 26,
	      "Largest copy-on-write chunk, as a power of two in bytes");
BLKSNAP_PARAM(chunk_maximum_in_queue, 256,
	      "Most chunks waiting to be written to the difference storage");
BLKSNAP_PARAM(diff_storage_minimum, 2097152,
	      "Growth step of a difference storage file, in sectors");
