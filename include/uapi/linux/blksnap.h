/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * blksnap: block-device snapshots and change-block tracking.
 *
 * The control device /dev/blksnap-control takes the IOCTL_BLKSNAP_*
 * requests; the per-device commands are BLKFILTER_CTL sub-commands of the
 * "blksnap" filter (see linux/blk-filter.h).
 */
#ifndef _UAPI_LINUX_BLKSNAP_H
#define _UAPI_LINUX_BLKSNAP_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define BLKSNAP_CTL		"blksnap-control"
/* An image is the disk BLKSNAP_IMAGE_NAME-<major>-<minor> of its original. */
#define BLKSNAP_IMAGE_NAME	"blksnap"
#define BLKSNAP			'V'

/**
 * enum blkfilter_ctl_blksnap - BLKFILTER_CTL sub-commands of "blksnap"
 * @BLKFILTER_CTL_BLKSNAP_CBTINFO: read struct blksnap_cbtinfo
 * @BLKFILTER_CTL_BLKSNAP_CBTMAP: read a slice of the CBT map
 * @BLKFILTER_CTL_BLKSNAP_CBTDIRTY: mark sector ranges as changed
 * @BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD: add the device to a snapshot
 * @BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO: read struct blksnap_snapshotinfo
 */
enum blkfilter_ctl_blksnap {
	BLKFILTER_CTL_BLKSNAP_CBTINFO = 0,
	BLKFILTER_CTL_BLKSNAP_CBTMAP = 1,
	BLKFILTER_CTL_BLKSNAP_CBTDIRTY = 2,
	BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD = 3,
	BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO = 4,
};

/**
 * struct blksnap_uuid - identifier of a snapshot or of a CBT generation
 * @b: the 16 bytes
 */
struct blksnap_uuid {
	__u8 b[16];
};

/**
 * struct blksnap_cbtinfo - output of the CBTINFO sub-command
 * @device_capacity: capacity of the device in bytes
 * @block_size: size of one tracking block in bytes
 * @block_count: number of tracking blocks
 * @generation_id: generation of the change tracker
 * @changes_number: snapshot number of the read copy of the map
 */
struct blksnap_cbtinfo {
	__u64 device_capacity;
	__u32 block_size;
	__u32 block_count;
	struct blksnap_uuid generation_id;
	__u8 changes_number;
};

/**
 * struct blksnap_cbtmap - argument of the CBTMAP sub-command
 * @offset: first byte of the map to copy
 * @length: number of bytes to copy
 * @buffer: user pointer to the destination
 */
struct blksnap_cbtmap {
	__u32 offset;
	__u32 length;
	__u64 buffer;
};

/**
 * struct blksnap_sectors - a range of 512-byte sectors
 * @offset: first sector
 * @count: number of sectors
 */
struct blksnap_sectors {
	__u64 offset;
	__u64 count;
};

/**
 * struct blksnap_cbtdirty - argument of the CBTDIRTY sub-command
 * @count: number of ranges
 * @dirty_sectors: user pointer to an array of struct blksnap_sectors
 */
struct blksnap_cbtdirty {
	__u32 count;
	__u64 dirty_sectors;
};

/**
 * struct blksnap_snapshotadd - argument of the SNAPSHOTADD sub-command
 * @id: the snapshot to add the device to
 */
struct blksnap_snapshotadd {
	struct blksnap_uuid id;
};

#define IMAGE_DISK_NAME_LEN	32

/**
 * struct blksnap_snapshotinfo - output of the SNAPSHOTINFO sub-command
 * @error_code: 0, or the negative errno that broke the snapshot
 * @image: NUL-terminated disk name of the image, empty before the take
 */
struct blksnap_snapshotinfo {
	__s32 error_code;
	__u8 image[IMAGE_DISK_NAME_LEN];
};

/**
 * enum blksnap_ioctl - command numbers of the control device's ioctls
 * @BLKSNAP_IOCTL_VERSION: number of IOCTL_BLKSNAP_VERSION
 * @BLKSNAP_IOCTL_SNAPSHOT_CREATE: number of IOCTL_BLKSNAP_SNAPSHOT_CREATE
 * @BLKSNAP_IOCTL_SNAPSHOT_DESTROY: number of IOCTL_BLKSNAP_SNAPSHOT_DESTROY
 * @BLKSNAP_IOCTL_SNAPSHOT_TAKE: number of IOCTL_BLKSNAP_SNAPSHOT_TAKE
 * @BLKSNAP_IOCTL_SNAPSHOT_COLLECT: number of IOCTL_BLKSNAP_SNAPSHOT_COLLECT
 * @BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT: number of
 *	IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT
 *
 * The requests themselves, to pass to ioctl(2), are the IOCTL_BLKSNAP_*
 * macros below.
 */
enum blksnap_ioctl {
	BLKSNAP_IOCTL_VERSION = 0,
	BLKSNAP_IOCTL_SNAPSHOT_CREATE = 1,
	BLKSNAP_IOCTL_SNAPSHOT_DESTROY = 2,
	BLKSNAP_IOCTL_SNAPSHOT_TAKE = 3,
	BLKSNAP_IOCTL_SNAPSHOT_COLLECT = 4,
	BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT = 5,
};

/**
 * struct blksnap_version - output of IOCTL_BLKSNAP_VERSION
 * @major: interface major level
 * @minor: interface minor level
 * @revision: revision of the implementation
 * @build: build number of the implementation
 */
struct blksnap_version {
	__u16 major;
	__u16 minor;
	__u16 revision;
	__u16 build;
};

#define IOCTL_BLKSNAP_VERSION \
	_IOR(BLKSNAP, BLKSNAP_IOCTL_VERSION, struct blksnap_version)

/**
 * struct blksnap_snapshot_create - argument of IOCTL_BLKSNAP_SNAPSHOT_CREATE
 * @diff_storage_limit_sect: most sectors the difference storage may grow to
 * @diff_storage_filename: user pointer to the NUL-terminated storage path
 * @id: output, the identifier of the new snapshot
 */
struct blksnap_snapshot_create {
	__u64 diff_storage_limit_sect;
	__u64 diff_storage_filename;
	struct blksnap_uuid id;
};

#define IOCTL_BLKSNAP_SNAPSHOT_CREATE \
	_IOWR(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_CREATE, struct blksnap_snapshot_create)
#define IOCTL_BLKSNAP_SNAPSHOT_DESTROY \
	_IOW(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_DESTROY, struct blksnap_uuid)
#define IOCTL_BLKSNAP_SNAPSHOT_TAKE \
	_IOW(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_TAKE, struct blksnap_uuid)

/**
 * struct blksnap_snapshot_collect - argument of IOCTL_BLKSNAP_SNAPSHOT_COLLECT
 * @count: in, room in @ids; out, number of snapshots
 * @ids: user pointer to an array of struct blksnap_uuid, or 0 for the count
 */
struct blksnap_snapshot_collect {
	__u32 count;
	__u64 ids;
};

#define IOCTL_BLKSNAP_SNAPSHOT_COLLECT \
	_IOR(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_COLLECT, struct blksnap_snapshot_collect)

/**
 * enum blksnap_event_codes - codes of snapshot events
 * @blksnap_event_code_corrupted: payload struct blksnap_event_corrupted
 * @blksnap_event_code_no_space: payload struct blksnap_event_no_space
 */
enum blksnap_event_codes {
	blksnap_event_code_corrupted,
	blksnap_event_code_no_space,
};

/**
 * struct blksnap_snapshot_event - argument of IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT
 * @id: the snapshot whose events to wait for
 * @timeout_ms: how long to wait, in milliseconds
 * @code: output, one of enum blksnap_event_codes
 * @time_label: output, when the event happened, monotonic nanoseconds
 * @data: output, the event's payload
 */
struct blksnap_snapshot_event {
	struct blksnap_uuid id;
	__u32 timeout_ms;
	__u32 code;
	__s64 time_label;
	__u8 data[4096 - 32];
};

#define IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT \
	_IOR(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT, struct blksnap_snapshot_event)

/**
 * struct blksnap_event_corrupted - payload of the corrupted event
 * @dev_id_mj: major number of the device whose copy failed
 * @dev_id_mn: minor number of the device whose copy failed
 * @err_code: positive errno of the failure
 */
struct blksnap_event_corrupted {
	__u32 dev_id_mj;
	__u32 dev_id_mn;
	__s32 err_code;
};

/**
 * struct blksnap_event_no_space - payload of the no_space event
 * @requested_nr_sect: total size in sectors the storage was asked to grow to
 */
struct blksnap_event_no_space {
	__u64 requested_nr_sect;
};

#endif /* _UAPI_LINUX_BLKSNAP_H */
