/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Block-device filter ioctls, issued on an open block device node.
 *
 * Layouts are those of the upstream blkfilter proposal; blksnap-rs provides
 * them on kernels without a native block-device filter.
 */
#ifndef _UAPI_LINUX_BLK_FILTER_H
#define _UAPI_LINUX_BLK_FILTER_H

#include <linux/types.h>

#define BLKFILTER_NAME_LENGTH	32

/**
 * struct blkfilter_attach - argument of BLKFILTER_ATTACH
 * @name: NUL-padded name of the filter to attach
 * @opt: user pointer to the filter's options, may be 0
 * @optlen: length of the options
 */
struct blkfilter_attach {
	char name[BLKFILTER_NAME_LENGTH];
	__u64 opt;
	__u32 optlen;
};

/**
 * struct blkfilter_detach - argument of BLKFILTER_DETACH
 * @name: NUL-padded name of the attached filter
 */
struct blkfilter_detach {
	char name[BLKFILTER_NAME_LENGTH];
};

/**
 * struct blkfilter_ctl - argument of BLKFILTER_CTL
 * @name: NUL-padded name of the attached filter
 * @cmd: filter-specific sub-command
 * @optlen: length of the sub-command's structure
 * @opt: user pointer to the sub-command's structure
 */
struct blkfilter_ctl {
	char name[BLKFILTER_NAME_LENGTH];
	__u32 cmd;
	__u32 optlen;
	__u64 opt;
};

#define BLKFILTER_ATTACH	_IOWR(0x12, 142, struct blkfilter_attach)
#define BLKFILTER_DETACH	_IOWR(0x12, 143, struct blkfilter_detach)
#define BLKFILTER_CTL		_IOWR(0x12, 144, struct blkfilter_ctl)

#endif /* _UAPI_LINUX_BLK_FILTER_H */
