// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters of blksnap (uapi.md section 4). They are declared in C
 * because the 6.12 module! macro has no parameter support; the Rust side
 * reads them through src/params.rs.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "blksnap_glue.h"

unsigned int blksnap_param_tracking_block_minimum_shift = 16;
module_param_named(tracking_block_minimum_shift,
		   blksnap_param_tracking_block_minimum_shift, uint, 0644);
MODULE_PARM_DESC(tracking_block_minimum_shift, "Smallest change-tracking block, as a power of two in bytes");

unsigned int blksnap_param_tracking_block_maximum_count = 2097152;
module_param_named(tracking_block_maximum_count,
		   blksnap_param_tracking_block_maximum_count, uint, 0644);
MODULE_PARM_DESC(tracking_block_maximum_count, "Most change-tracking blocks per device");

unsigned int blksnap_param_tracking_block_maximum_shift = 26;
module_param_named(tracking_block_maximum_shift,
		   blksnap_param_tracking_block_maximum_shift, uint, 0644);
MODULE_PARM_DESC(tracking_block_maximum_shift, "Largest change-tracking block, as a power of two in bytes");

unsigned int blksnap_param_chunk_minimum_shift = 18;
module_param_named(chunk_minimum_shift,
		   blksnap_param_chunk_minimum_shift, uint, 0644);
MODULE_PARM_DESC(chunk_minimum_shift, "Smallest copy-on-write chunk, as a power of two in bytes");

unsigned int blksnap_param_chunk_maximum_count_shift = 40;
module_param_named(chunk_maximum_count_shift,
		   blksnap_param_chunk_maximum_count_shift, uint, 0644);
MODULE_PARM_DESC(chunk_maximum_count_shift, "At most 2^N copy-on-write chunks per device");

unsigned int blksnap_param_chunk_maximum_shift = 26;
module_param_named(chunk_maximum_shift,
		   blksnap_param_chunk_maximum_shift, uint, 0644);
MODULE_PARM_DESC(chunk_maximum_shift, "Largest copy-on-write chunk, as a power of two in bytes");

unsigned int blksnap_param_chunk_maximum_in_queue = 256;
module_param_named(chunk_maximum_in_queue,
		   blksnap_param_chunk_maximum_in_queue, uint, 0644);
MODULE_PARM_DESC(chunk_maximum_in_queue, "Most chunks waiting to be written to the difference storage");

unsigned int blksnap_param_diff_storage_minimum = 2097152;
module_param_named(diff_storage_minimum,
		   blksnap_param_diff_storage_minimum, uint, 0644);
MODULE_PARM_DESC(diff_storage_minimum, "Growth step of a difference storage file, in sectors");

unsigned int blksnap_param_image_writable;
module_param_named(image_writable, blksnap_param_image_writable, uint, 0644);
MODULE_PARM_DESC(image_writable, "Nonzero: snapshot images taken from now on accept writes, kept in the difference storage");
