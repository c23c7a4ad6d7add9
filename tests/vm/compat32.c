// SPDX-License-Identifier: GPL-2.0
/*
 * compat32: a 32-bit x86 client of the blksnap interface, for the tests of
 * the compat ioctl paths (tests/vm/32-compat.sh).
 *
 * It is built with `gcc -m32 -ffreestanding -nostdlib` against the
 * project's own headers, so every structure has the layout a 32-bit tool
 * built from those headers sees, and it needs no 32-bit C library: system
 * calls go through int $0x80. Its output has the format of the blksnap
 * CLI's commands of the same names, so the tests compare the two.
 *
 *   compat32 version
 *   compat32 attach DEV | detach DEV
 *   compat32 cbtinfo DEV [OPTLEN]        checks that at most the i386
 *                                         size of the structure is written
 *   compat32 readcbtmap DEV FILE
 *   compat32 markdirtyblock DEV S:C...
 *   compat32 snapshot_create FILE LIMIT_SECTORS
 *   compat32 snapshot_add ID DEV | snapshot_take ID | snapshot_destroy ID
 *   compat32 snapshot_collect
 *   compat32 snapshot_info DEV
 *   compat32 snapshot_waitevent ID TIMEOUT_MS
 *   compat32 getsize64 DEV                BLKGETSIZE64, an ioctl blksnap
 *                                         must leave to the kernel
 *
 * Exit status: 0 done, 1 the ioctl failed (its errno is printed as
 * `error: EINVAL`), 2 bad
 * usage, 3 the kernel wrote past the structure.
 */
#include <linux/blk-filter.h>
#include <linux/blksnap.h>
#include <linux/fs.h>
#include <stddef.h> /* size_t, in the number of BLKGETSIZE64 */

#define NR_READ 3
#define NR_WRITE 4
#define NR_OPEN 5
#define NR_CLOSE 6
#define NR_IOCTL 54
#define NR_EXIT_GROUP 252

#define O_RDONLY 0
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000

static long syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory");
	return ret;
}

/* The compiler may emit calls to these for structure copies. */
void *memset(void *dst, int c, unsigned int n)
{
	unsigned char *d = dst;

	while (n--)
		*d++ = (unsigned char)c;
	return dst;
}

void *memcpy(void *dst, const void *src, unsigned int n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

static unsigned int str_len(const char *s)
{
	unsigned int n = 0;

	while (s[n])
		n++;
	return n;
}

static int str_eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static void out(int fd, const char *s)
{
	syscall3(NR_WRITE, fd, (long)s, str_len(s));
}

static void __attribute__((noreturn)) quit(int status)
{
	syscall3(NR_EXIT_GROUP, status, 0, 0);
	for (;;)
		;
}

/* Decimal without 64-bit division, which would need libgcc. */
static void out_u64(unsigned long long v)
{
	static const unsigned long long tens[] = {
		10000000000000000000ull, 1000000000000000000ull,
		100000000000000000ull, 10000000000000000ull,
		1000000000000000ull, 100000000000000ull, 10000000000000ull,
		1000000000000ull, 100000000000ull, 10000000000ull,
		1000000000ull, 100000000ull, 10000000ull, 1000000ull,
		100000ull, 10000ull, 1000ull, 100ull, 10ull, 1ull,
	};
	char buf[24];
	unsigned int i, n = 0;

	for (i = 0; i < sizeof(tens) / sizeof(tens[0]); i++) {
		char digit = '0';

		while (v >= tens[i]) {
			v -= tens[i];
			digit++;
		}
		if (digit != '0' || n || tens[i] == 1)
			buf[n++] = digit;
	}
	buf[n] = 0;
	out(1, buf);
}

static void out_s32(int v)
{
	if (v < 0) {
		out(1, "-");
		out_u64((unsigned long long)-(long long)v);
	} else {
		out_u64(v);
	}
}

static void out_uuid(const __u8 *b)
{
	static const char hex[] = "0123456789abcdef";
	char buf[37];
	unsigned int i, n = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[n++] = '-';
		buf[n++] = hex[b[i] >> 4];
		buf[n++] = hex[b[i] & 15];
	}
	buf[n] = 0;
	out(1, buf);
}

static void __attribute__((noreturn)) usage(void)
{
	out(2, "compat32: bad usage, see tests/vm/compat32.c\n");
	quit(2);
}

static unsigned long long parse_u64(const char *s, const char **end)
{
	unsigned long long v = 0;

	if (*s < '0' || *s > '9')
		usage();
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (unsigned long long)(*s++ - '0');
	*end = s;
	return v;
}

static unsigned long long parse_number(const char *s)
{
	unsigned long long v = parse_u64(s, &s);

	if (*s)
		usage();
	return v;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	usage();
}

static struct blksnap_uuid parse_uuid(const char *s)
{
	struct blksnap_uuid id;
	unsigned int i = 0;

	while (*s && i < 16) {
		if (*s == '-') {
			s++;
			continue;
		}
		if (!s[1])
			usage();
		id.b[i++] = (__u8)(hex_digit(s[0]) << 4 | hex_digit(s[1]));
		s += 2;
	}
	if (i != 16 || *s)
		usage();
	return id;
}

static int open_path(const char *path, int flags)
{
	long fd = syscall3(NR_OPEN, (long)path, flags, 0644);

	if (fd < 0) {
		out(2, "compat32: cannot open ");
		out(2, path);
		out(2, "\n");
		quit(1);
	}
	return (int)fd;
}

static const struct {
	int number;
	const char *name;
} errnos[] = {
	{ 1, "EPERM" }, { 2, "ENOENT" }, { 3, "ESRCH" }, { 13, "EACCES" },
	{ 14, "EFAULT" }, { 16, "EBUSY" }, { 19, "ENODEV" }, { 22, "EINVAL" },
	{ 25, "ENOTTY" }, { 34, "ERANGE" }, { 61, "ENODATA" },
	{ 114, "EALREADY" },
};

/*
 * Issues an ioctl; on failure prints `error: NAME` (or the number) and
 * exits 1.
 */
static void do_ioctl(int fd, unsigned int cmd, void *arg)
{
	long ret = syscall3(NR_IOCTL, fd, cmd, (long)arg);
	unsigned int i;

	if (ret >= 0)
		return;
	out(1, "error: ");
	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (errnos[i].number == -ret) {
			out(1, errnos[i].name);
			break;
		}
	}
	if (i == sizeof(errnos) / sizeof(errnos[0]))
		out_s32((int)-ret);
	out(1, "\n");
	quit(1);
}

static void set_name(char *name)
{
	memset(name, 0, BLKFILTER_NAME_LENGTH);
	memcpy(name, "blksnap", 7);
}

static void ctl(const char *dev, unsigned int cmd, void *opt, unsigned int optlen)
{
	struct blkfilter_ctl arg;

	set_name(arg.name);
	arg.cmd = cmd;
	arg.optlen = optlen;
	arg.opt = (__u64)(unsigned long)opt;
	do_ioctl(open_path(dev, O_RDONLY), BLKFILTER_CTL, &arg);
}

static int control(void)
{
	return open_path("/dev/blksnap-control", O_RDONLY);
}

static void cmd_version(void)
{
	struct blksnap_version v;

	do_ioctl(control(), IOCTL_BLKSNAP_VERSION, &v);
	out_u64(v.major);
	out(1, ".");
	out_u64(v.minor);
	out(1, ".");
	out_u64(v.revision);
	out(1, ".");
	out_u64(v.build);
	out(1, "\n");
}

static void cmd_attach(const char *dev)
{
	struct blkfilter_attach arg;

	set_name(arg.name);
	arg.opt = 0;
	arg.optlen = 0;
	do_ioctl(open_path(dev, O_RDONLY), BLKFILTER_ATTACH, &arg);
	out(1, "Attached successfully\n");
}

static void cmd_detach(const char *dev)
{
	struct blkfilter_detach arg;

	set_name(arg.name);
	do_ioctl(open_path(dev, O_RDONLY), BLKFILTER_DETACH, &arg);
}

static void cmd_cbtinfo(const char *dev, unsigned int optlen)
{
	/* A canary after the structure shows any byte written past it. */
	union {
		struct blksnap_cbtinfo info;
		__u8 bytes[sizeof(struct blksnap_cbtinfo) + 16];
	} u;
	unsigned int i;

	memset(&u, 0xa5, sizeof(u));
	ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTINFO, &u.info, optlen);
	for (i = sizeof(u.info); i < sizeof(u.bytes); i++) {
		if (u.bytes[i] != 0xa5) {
			out(2, "compat32: CBTINFO wrote past its structure\n");
			quit(3);
		}
	}
	out(1, "block_size=");
	out_u64(u.info.block_size);
	out(1, "\ndevice_capacity=");
	out_u64(u.info.device_capacity);
	out(1, "\nblock_count=");
	out_u64(u.info.block_count);
	out(1, "\ngeneration_id=");
	out_uuid(u.info.generation_id.b);
	out(1, "\nchanges_number=");
	out_u64(u.info.changes_number);
	out(1, "\n");
}

static void cmd_readcbtmap(const char *dev, const char *file)
{
	static __u8 map[1 << 20];
	struct blksnap_cbtinfo info;
	struct blksnap_cbtmap arg;
	int fd;

	ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTINFO, &info, sizeof(info));
	if (info.block_count > sizeof(map)) {
		out(2, "compat32: map too large for this test tool\n");
		quit(2);
	}
	arg.offset = 0;
	arg.length = info.block_count;
	arg.buffer = (__u64)(unsigned long)map;
	ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTMAP, &arg, sizeof(arg));
	fd = open_path(file, O_WRONLY | O_CREAT | O_TRUNC);
	if (syscall3(NR_WRITE, fd, (long)map, info.block_count) != (long)info.block_count)
		quit(1);
	syscall3(NR_CLOSE, fd, 0, 0);
}

static void cmd_markdirtyblock(const char *dev, int n, char **ranges)
{
	static struct blksnap_sectors sectors[64];
	struct blksnap_cbtdirty arg;
	int i;

	if (n > 64)
		usage();
	for (i = 0; i < n; i++) {
		const char *s = ranges[i];

		sectors[i].offset = parse_u64(s, &s);
		if (*s++ != ':')
			usage();
		sectors[i].count = parse_number(s);
	}
	arg.count = n;
	arg.dirty_sectors = (__u64)(unsigned long)sectors;
	ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTDIRTY, &arg, sizeof(arg));
}

static void cmd_snapshot_create(const char *file, const char *limit)
{
	struct blksnap_snapshot_create arg;

	arg.diff_storage_limit_sect = parse_number(limit);
	arg.diff_storage_filename = (__u64)(unsigned long)file;
	do_ioctl(control(), IOCTL_BLKSNAP_SNAPSHOT_CREATE, &arg);
	out_uuid(arg.id.b);
	out(1, "\n");
}

static void cmd_snapshot_add(const char *id, const char *dev)
{
	struct blksnap_snapshotadd arg;

	arg.id = parse_uuid(id);
	ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &arg, sizeof(arg));
}

static void cmd_snapshot_uuid(unsigned int cmd, const char *id)
{
	struct blksnap_uuid arg = parse_uuid(id);

	do_ioctl(control(), cmd, &arg);
}

static void cmd_snapshot_collect(void)
{
	static struct blksnap_uuid ids[256];
	struct blksnap_snapshot_collect arg;
	unsigned int i;

	arg.count = 256;
	arg.ids = (__u64)(unsigned long)ids;
	do_ioctl(control(), IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &arg);
	for (i = 0; i < arg.count; i++) {
		out_uuid(ids[i].b);
		out(1, "\n");
	}
}

static void cmd_snapshot_info(const char *dev)
{
	struct blksnap_snapshotinfo arg;

	ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO, &arg, sizeof(arg));
	arg.image[IMAGE_DISK_NAME_LEN - 1] = 0;
	out(1, "error_code=");
	out_s32(arg.error_code);
	out(1, "\nimage=");
	if (arg.image[0]) {
		out(1, "/dev/");
		out(1, (const char *)arg.image);
	}
	out(1, "\n");
}

static void cmd_snapshot_waitevent(const char *id, const char *timeout)
{
	static struct blksnap_snapshot_event arg;

	arg.id = parse_uuid(id);
	arg.timeout_ms = (__u32)parse_number(timeout);
	do_ioctl(control(), IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, &arg);
	out(1, "result=ok\ntime=");
	out_u64((unsigned long long)arg.time_label);
	if (arg.code == blksnap_event_code_corrupted) {
		const struct blksnap_event_corrupted *c = (const void *)arg.data;

		out(1, "\nevent=corrupted\ndev_id=");
		out_u64(c->dev_id_mj);
		out(1, ":");
		out_u64(c->dev_id_mn);
		out(1, "\nerr_code=");
		out_s32(c->err_code);
	} else if (arg.code == blksnap_event_code_no_space) {
		const struct blksnap_event_no_space *n = (const void *)arg.data;

		out(1, "\nevent=no_space\nrequested_nr_sect=");
		out_u64(n->requested_nr_sect);
	} else {
		out(1, "\nevent=unknown");
	}
	out(1, "\n");
}

static void cmd_getsize64(const char *dev)
{
	unsigned long long size = 0;

	do_ioctl(open_path(dev, O_RDONLY), BLKGETSIZE64, &size);
	out_u64(size);
	out(1, "\n");
}

static int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (str_eq(cmd, "version") && argc == 2)
		cmd_version();
	else if (str_eq(cmd, "attach") && argc == 3)
		cmd_attach(argv[2]);
	else if (str_eq(cmd, "detach") && argc == 3)
		cmd_detach(argv[2]);
	else if (str_eq(cmd, "cbtinfo") && (argc == 3 || argc == 4))
		cmd_cbtinfo(argv[2], argc == 4 ? (unsigned int)parse_number(argv[3]) :
				     sizeof(struct blksnap_cbtinfo));
	else if (str_eq(cmd, "readcbtmap") && argc == 4)
		cmd_readcbtmap(argv[2], argv[3]);
	else if (str_eq(cmd, "markdirtyblock") && argc >= 4)
		cmd_markdirtyblock(argv[2], argc - 3, argv + 3);
	else if (str_eq(cmd, "snapshot_create") && argc == 4)
		cmd_snapshot_create(argv[2], argv[3]);
	else if (str_eq(cmd, "snapshot_add") && argc == 4)
		cmd_snapshot_add(argv[2], argv[3]);
	else if (str_eq(cmd, "snapshot_take") && argc == 3)
		cmd_snapshot_uuid(IOCTL_BLKSNAP_SNAPSHOT_TAKE, argv[2]);
	else if (str_eq(cmd, "snapshot_destroy") && argc == 3)
		cmd_snapshot_uuid(IOCTL_BLKSNAP_SNAPSHOT_DESTROY, argv[2]);
	else if (str_eq(cmd, "snapshot_collect") && argc == 2)
		cmd_snapshot_collect();
	else if (str_eq(cmd, "snapshot_info") && argc == 3)
		cmd_snapshot_info(argv[2]);
	else if (str_eq(cmd, "snapshot_waitevent") && argc == 4)
		cmd_snapshot_waitevent(argv[2], argv[3]);
	else if (str_eq(cmd, "getsize64") && argc == 3)
		cmd_getsize64(argv[2]);
	else
		usage();
	return 0;
}

void __attribute__((used)) start_c(long *sp)
{
	quit(main((int)sp[0], (char **)(sp + 1)));
}

/* The stack holds argc, then argv; align it and call start_c(sp). */
__asm__(".globl _start\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movl %esp, %eax\n"
	"	andl $-16, %esp\n"
	"	subl $12, %esp\n"
	"	pushl %eax\n"
	"	call start_c\n"
	"	hlt\n");
