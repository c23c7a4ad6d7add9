/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the Rust side of blksnap needs from the kernel beyond the kernel
 * crate's own bindings. bindgen reads this header during the module build
 * (see Kbuild) and src/glue/bindings.rs includes the result; the C files in
 * src/glue/ implement the helpers declared here.
 */
#ifndef BLKSNAP_GLUE_H
#define BLKSNAP_GLUE_H

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

#endif /* BLKSNAP_GLUE_H */
