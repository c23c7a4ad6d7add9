// SPDX-License-Identifier: GPL-2.0
/*
 * A user-space client written only with the names of the upstream blksnap
 * proposal's headers (linux/blk-filter.h, linux/blksnap.h), the way a tool
 * built for that proposal spells them. tests/upstream_names.rs compiles it
 * against this project's headers: if a name is missing or renamed, or a
 * size or number differs from the proposal (docs: uapi.md sections 1 and 2),
 * the build fails. It is compiled and linked, never run.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/blk-filter.h>
#include <linux/blksnap.h>

/* The sizes of the proposal, which its users copy into buffers. */
_Static_assert(sizeof(struct blkfilter_attach) == 48, "blkfilter_attach");
_Static_assert(sizeof(struct blkfilter_detach) == 32, "blkfilter_detach");
_Static_assert(sizeof(struct blkfilter_ctl) == 48, "blkfilter_ctl");
_Static_assert(sizeof(struct blksnap_uuid) == 16, "blksnap_uuid");
_Static_assert(sizeof(struct blksnap_cbtinfo) == 40, "blksnap_cbtinfo");
_Static_assert(sizeof(struct blksnap_cbtmap) == 16, "blksnap_cbtmap");
_Static_assert(sizeof(struct blksnap_sectors) == 16, "blksnap_sectors");
_Static_assert(sizeof(struct blksnap_cbtdirty) == 16, "blksnap_cbtdirty");
_Static_assert(sizeof(struct blksnap_snapshotadd) == 16, "blksnap_snapshotadd");
_Static_assert(sizeof(struct blksnap_snapshotinfo) == 36, "blksnap_snapshotinfo");
_Static_assert(sizeof(struct blksnap_version) == 8, "blksnap_version");
_Static_assert(sizeof(struct blksnap_snapshot_create) == 32,
	       "blksnap_snapshot_create");
_Static_assert(sizeof(struct blksnap_snapshot_collect) == 16,
	       "blksnap_snapshot_collect");
_Static_assert(sizeof(struct blksnap_snapshot_event) == 4096,
	       "blksnap_snapshot_event");
_Static_assert(sizeof(struct blksnap_event_corrupted) == 12,
	       "blksnap_event_corrupted");
_Static_assert(sizeof(struct blksnap_event_no_space) == 8,
	       "blksnap_event_no_space");
_Static_assert(BLKFILTER_NAME_LENGTH == 32, "BLKFILTER_NAME_LENGTH");
_Static_assert(IMAGE_DISK_NAME_LEN == 32, "IMAGE_DISK_NAME_LEN");

/* The request numbers and the values of the enumerations. */
_Static_assert(BLKFILTER_ATTACH == 0xc030128eu, "BLKFILTER_ATTACH");
_Static_assert(BLKFILTER_DETACH == 0xc020128fu, "BLKFILTER_DETACH");
_Static_assert(BLKFILTER_CTL == 0xc0301290u, "BLKFILTER_CTL");
_Static_assert(IOCTL_BLKSNAP_VERSION == 0x80085600u, "VERSION");
_Static_assert(IOCTL_BLKSNAP_SNAPSHOT_CREATE == 0xc0205601u, "CREATE");
_Static_assert(IOCTL_BLKSNAP_SNAPSHOT_DESTROY == 0x40105602u, "DESTROY");
_Static_assert(IOCTL_BLKSNAP_SNAPSHOT_TAKE == 0x40105603u, "TAKE");
_Static_assert(IOCTL_BLKSNAP_SNAPSHOT_COLLECT == 0x80105604u, "COLLECT");
_Static_assert(IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT == 0x90005605u, "WAIT_EVENT");
_Static_assert(BLKSNAP_IOCTL_VERSION == 0 && BLKSNAP_IOCTL_SNAPSHOT_CREATE == 1 &&
	       BLKSNAP_IOCTL_SNAPSHOT_DESTROY == 2 && BLKSNAP_IOCTL_SNAPSHOT_TAKE == 3 &&
	       BLKSNAP_IOCTL_SNAPSHOT_COLLECT == 4 &&
	       BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT == 5, "enum blksnap_ioctl");
_Static_assert(BLKFILTER_CTL_BLKSNAP_CBTINFO == 0 && BLKFILTER_CTL_BLKSNAP_CBTMAP == 1 &&
	       BLKFILTER_CTL_BLKSNAP_CBTDIRTY == 2 &&
	       BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD == 3 &&
	       BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO == 4, "enum blkfilter_ctl_blksnap");
_Static_assert(blksnap_event_code_corrupted == 0 && blksnap_event_code_no_space == 1,
	       "enum blksnap_event_codes");

static int filter_ctl(int dev, enum blkfilter_ctl_blksnap cmd, void *opt,
		      uint32_t optlen)
{
	struct blkfilter_ctl ctl;

	memset(&ctl, 0, sizeof(ctl));
	strncpy((char *)ctl.name, "blksnap", sizeof(ctl.name));
	ctl.cmd = cmd;
	ctl.optlen = optlen;
	ctl.opt = (uintptr_t)opt;
	return ioctl(dev, BLKFILTER_CTL, &ctl);
}

int attach(int dev)
{
	struct blkfilter_attach arg;

	memset(&arg, 0, sizeof(arg));
	strncpy((char *)arg.name, "blksnap", sizeof(arg.name));
	return ioctl(dev, BLKFILTER_ATTACH, &arg);
}

int detach(int dev)
{
	struct blkfilter_detach arg;

	memset(&arg, 0, sizeof(arg));
	strncpy((char *)arg.name, "blksnap", sizeof(arg.name));
	return ioctl(dev, BLKFILTER_DETACH, &arg);
}

int cbt_info(int dev, struct blksnap_cbtinfo *info)
{
	return filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTINFO, info, sizeof(*info));
}

int cbt_map(int dev, uint32_t offset, uint8_t *buf, uint32_t len)
{
	struct blksnap_cbtmap arg = {
		.offset = offset,
		.length = len,
		.buffer = (uintptr_t)buf,
	};

	return filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTMAP, &arg, sizeof(arg));
}

int cbt_dirty(int dev, struct blksnap_sectors *ranges, uint32_t count)
{
	struct blksnap_cbtdirty arg = {
		.count = count,
		.dirty_sectors = (uintptr_t)ranges,
	};

	return filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTDIRTY, &arg, sizeof(arg));
}

int snapshot_add(int dev, const struct blksnap_uuid *id)
{
	struct blksnap_snapshotadd arg = { .id = *id };

	return filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &arg, sizeof(arg));
}

int snapshot_info(int dev, struct blksnap_snapshotinfo *info)
{
	return filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO, info,
			  sizeof(*info));
}

int version(int ctl, struct blksnap_version *v)
{
	return ioctl(ctl, IOCTL_BLKSNAP_VERSION, v);
}

int snapshot_create(int ctl, const char *storage, uint64_t limit_sect,
		    struct blksnap_uuid *id)
{
	struct blksnap_snapshot_create arg = {
		.diff_storage_limit_sect = limit_sect,
		.diff_storage_filename = (uintptr_t)storage,
	};
	int ret = ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_CREATE, &arg);

	if (!ret)
		*id = arg.id;
	return ret;
}

int snapshot_take(int ctl, struct blksnap_uuid *id)
{
	return ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, id);
}

int snapshot_destroy(int ctl, struct blksnap_uuid *id)
{
	return ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, id);
}

int snapshot_collect(int ctl, struct blksnap_uuid *ids, uint32_t *count)
{
	struct blksnap_snapshot_collect arg = {
		.count = *count,
		.ids = (uintptr_t)ids,
	};
	int ret = ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &arg);

	*count = arg.count;
	return ret;
}

/*
 * Waits for an event; returns its code and, for the two known ones, fills
 * the device and error, or the sectors asked for.
 */
int wait_event(int ctl, const struct blksnap_uuid *id, uint32_t timeout_ms,
	       uint32_t *dev_mj, uint32_t *dev_mn, int32_t *err,
	       uint64_t *requested)
{
	static struct blksnap_snapshot_event ev;
	const struct blksnap_event_corrupted *corrupted;
	const struct blksnap_event_no_space *no_space;

	memset(&ev, 0, sizeof(ev));
	ev.id = *id;
	ev.timeout_ms = timeout_ms;
	if (ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, &ev))
		return -1;
	switch (ev.code) {
	case blksnap_event_code_corrupted:
		corrupted = (const void *)ev.data;
		*dev_mj = corrupted->dev_id_mj;
		*dev_mn = corrupted->dev_id_mn;
		*err = corrupted->err_code;
		break;
	case blksnap_event_code_no_space:
		no_space = (const void *)ev.data;
		*requested = no_space->requested_nr_sect;
		break;
	default:
		break;
	}
	return (int)ev.code;
}

int main(void)
{
	return 0;
}
