# The block-device filter: BLKFILTER_ATTACH/DETACH/CTL on block devices, the
# pass-through filter's bio counters in debugfs, data integrity through the
# filter, and automatic detach when a filtered device goes away.
# shellcheck shell=bash

# --- Helpers (prefixed ft_; every test calls ft_begin first) ---------------

FT_DBG=/sys/kernel/debug/blksnap
FT_DIR=
FT_LOOPS=()
FT_ATTACHED=()
FT_MOUNTS=()
FT_PIDS=()
FT_ZRAMS=()
FT_FDS=()

# Raw filter ioctls on a path, see filter_probe.py.
filter_probe() {
	python3 "$BLKSNAP_ROOT/tests/vm/filter_probe.py" "$@"
}

# Starts a test: loads the module, mounts debugfs, makes a scratch directory
# in /tmp and arranges for ft_cleanup to run when the test's subshell exits,
# whether the test passes, fails or skips.
ft_begin() {
	FT_DIR=
	FT_LOOPS=()
	FT_ATTACHED=()
	FT_MOUNTS=()
	FT_PIDS=()
	FT_ZRAMS=()
	FT_FDS=()
	trap ft_cleanup EXIT
	load_module
	mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
	FT_DIR=$(mktemp -d /tmp/blksnap-filter.XXXXXX)
}

# Undoes what the test set up, in reverse: background jobs, held devices,
# mounts, filters, loop and zram devices, the scratch directory. Silent, so
# that a skip reason stays the last line of the test's output.
ft_cleanup() {
	set +e
	local i
	for i in "${FT_PIDS[@]}"; do
		kill "$i"
		wait "$i"
	done >/dev/null 2>&1
	for i in "${FT_FDS[@]}"; do
		exec {i}<&-
	done >/dev/null 2>&1
	for ((i = ${#FT_MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${FT_MOUNTS[i]}" || umount -l "${FT_MOUNTS[i]}"
	done >/dev/null 2>&1
	for i in "${FT_ATTACHED[@]}"; do
		"$BLKSNAP" detach -d "$i"
	done >/dev/null 2>&1
	for i in "${FT_LOOPS[@]}"; do
		losetup -d "$i"
	done >/dev/null 2>&1
	for i in "${FT_ZRAMS[@]}"; do
		echo "$i" >/sys/class/zram-control/hot_remove
	done >/dev/null 2>&1
	if [ -n "${FT_DIR:-}" ] && ! grep -qF " $FT_DIR/" /proc/mounts; then
		rm -rf "$FT_DIR"
	fi
	return 0
}

# ft_wait SECONDS CMD... : polls CMD every 0.1 s until it succeeds.
ft_wait() {
	local t=$(($1 * 10))
	shift
	while ! "$@"; do
		((t-- > 0)) || return 1
		sleep 0.1
	done
}

# Lets udev finish probing, so that its reads do not land in a measurement.
# The wait ends as soon as udev's queue is empty; the bound is only for a
# udev that never gets there.
ft_settle() {
	if command -v udevadm >/dev/null; then
		udevadm settle --timeout=60 >/dev/null 2>&1 || echo "udev still busy after 60 s"
	fi
}

# ft_hold PART: keeps the partition PART open, read-only, until the test
# ends. udev re-reads a disk's partition table whenever a writer of the
# whole disk closes it (losetup among them), and a re-read recreates the
# partitions, dropping their filters; the kernel refuses it (EBUSY) while
# a partition is open. A re-read under way may have PART gone for a
# moment, so the open is tried again; then udev is let finish.
ft_hold() {
	local fd t=100
	until { exec {fd}<"$1"; } 2>/dev/null; do
		((t-- > 0)) || { fail "cannot open $1"; return 1; }
		sleep 0.1
	done
	FT_FDS+=("$fd")
	ft_settle
}

# ft_image SIZE: a sparse backing file in the scratch directory -> $REPLY.
ft_image() {
	REPLY=$(mktemp "$FT_DIR/disk.XXXXXX")
	truncate -s "$1" "$REPLY"
}

# ft_loop_file FILE [LOSETUP-OPTION...]: a new loop device -> $REPLY.
ft_loop_file() {
	local img=$1
	shift
	REPLY=$(losetup -f --show "$@" "$img")
	FT_LOOPS+=("$REPLY")
}

# ft_loop SIZE: a loop device over a new sparse file -> $REPLY.
ft_loop() {
	ft_image "$1"
	ft_loop_file "$REPLY"
}

# ft_zram SIZE: a hot-added zram device of that size -> $REPLY.
ft_zram() {
	local id
	id=$(cat /sys/class/zram-control/hot_add)
	FT_ZRAMS+=("$id")
	echo "$1" >"/sys/block/zram$id/disksize"
	REPLY=/dev/zram$id
	ft_wait 5 test -b "$REPLY" || fail "$REPLY did not appear"
}

# ft_attach DEV: attaches with the CLI, which must say it attached now.
ft_attach() {
	local out
	[[ " ${FT_ATTACHED[*]} " == *" $1 "* ]] || FT_ATTACHED+=("$1")
	out=$("$BLKSNAP" attach -d "$1")
	expect_eq "output of blksnap attach -d $1" "Attached successfully" "$out"
}

# ft_detach DEV: detaches with the CLI, which must print nothing.
ft_detach() {
	local out
	out=$("$BLKSNAP" detach -d "$1")
	expect_eq "output of blksnap detach -d $1" "" "$out"
}

# ft_devdir DEV: prints the debugfs directory of DEV's filter (which exists
# only while the filter is attached).
ft_devdir() {
	local devnum
	devnum=$(cat "/sys/class/block/${1##*/}/dev") || return 1
	echo "$FT_DBG/$devnum"
}

# ft_counter DIR NAME: prints a counter of the filter's debugfs directory.
ft_counter() {
	local v
	v=$(tr -d '[:space:]' <"$1/$2") || return 1
	if ! [[ $v =~ ^[0-9]+$ ]]; then
		echo "$1/$2 holds '$v', not a number" >&2
		return 1
	fi
	echo "$v"
}

# ft_counters DIR: prints "reads writes others" of the filter's directory.
ft_counters() {
	local r w o
	r=$(ft_counter "$1" reads) && w=$(ft_counter "$1" writes) &&
		o=$(ft_counter "$1" others) || return 1
	echo "$r $w $o"
}

ft_refcnt() {
	cat /sys/module/blksnap/refcnt
}

ft_refcnt_is() {
	[ "$(ft_refcnt)" = "$1" ]
}

# ft_expect_ge WHAT MINIMUM ACTUAL
ft_expect_ge() {
	[ "$3" -ge "$2" ] || fail "$1: expected at least $2, got $3"
}

# ft_read DEV OFFSET_MIB COUNT: COUNT direct 4 KiB reads from OFFSET_MIB.
ft_read() {
	dd if="$1" of=/dev/null bs=4k skip=$(($2 * 256)) count="$3" iflag=direct status=none
}

# ft_write DEV OFFSET_MIB COUNT: COUNT direct 4 KiB writes at OFFSET_MIB.
ft_write() {
	dd if=/dev/urandom of="$1" bs=4k seek=$(($2 * 256)) count="$3" oflag=direct status=none
}

# ft_fio LOG FIO-OPTION...: a fio job with crc32c verification, which must
# end without an error or a verify failure.
ft_fio() {
	local log=$1 rc=0
	shift
	fio --name=blksnap-filter --ioengine=psync --direct=1 --verify=crc32c \
		--verify_fatal=1 --verify_state_save=0 "$@" >"$log" 2>&1 || rc=$?
	ft_fio_check "$log" "$rc"
}

# ft_fio_check LOG STATUS
ft_fio_check() {
	if [ "$2" -ne 0 ] || grep -qE 'verify failed|bad magic|bad header|err= *[1-9]' "$1"; then
		tail -n 20 "$1"
		fail "fio exited with $2 or reported an error (log above)"
	fi
}

# ft_le32 N: N as four little-endian \xHH escapes.
ft_le32() {
	printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) \
		$(($1 >> 16 & 255)) $(($1 >> 24 & 255))
}

# ft_write_mbr FILE START SECTORS: an MS-DOS partition table with one Linux
# partition (written by hand: sfdisk is not always installed).
ft_write_mbr() {
	local entry
	entry="\\x00\\x00\\x02\\x00\\x83\\xfe\\xff\\xff$(ft_le32 "$2")$(ft_le32 "$3")"
	printf '%b' "$entry" | dd of="$1" bs=1 seek=446 conv=notrunc status=none
	printf '%b' '\x55\xaa' | dd of="$1" bs=1 seek=510 conv=notrunc status=none
}

# ft_make_tree DIR: a small tree of random files, a few large, many small.
ft_make_tree() {
	local i
	mkdir -p "$1/big" "$1/small/a/b"
	for i in 1 2 3; do
		head -c $((i * 512 * 1024 + i * 4099)) /dev/urandom >"$1/big/f$i"
	done
	for i in $(seq 1 40); do
		head -c $((i * 97)) /dev/urandom >"$1/small/a/b/s$i"
	done
	ln -s ../big/f1 "$1/small/link"
}

# ft_sums SRC PART...: sha256 sums of the files of SRC/PART..., relative to
# SRC.
ft_sums() {
	local src=$1
	shift
	(cd "$src" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum)
}

# ft_verify MNT SUMS WHAT: the files listed in SUMS match below MNT.
ft_verify() {
	(cd "$1" && sha256sum -c --quiet "$2") || fail "$3: file contents differ"
}

ft_mount() {
	mount -t "$1" "$2" "$3"
	FT_MOUNTS+=("$3")
}

ft_drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# ft_fs_integrity FSTYPE SIZE MKFS-COMMAND...: a file tree on a filesystem
# made, written and modified through the filter (attached before mkfs, then
# detached and attached again while mounted) is intact after remounts, and
# the filesystem checks clean.
ft_fs_integrity() {
	local fstype=$1 size=$2
	shift 2
	command -v "$1" >/dev/null || skip "$1 is not installed"
	ft_begin
	ft_loop "$size"
	local dev=$REPLY mnt=$FT_DIR/mnt src=$FT_DIR/src sums=$FT_DIR/sums dir w0
	dir=$(ft_devdir "$dev")
	mkdir "$mnt"
	ft_make_tree "$src/p1"
	ft_make_tree "$src/p2"
	ft_make_tree "$src/p3"

	# mkfs and the first files go through the filter.
	ft_attach "$dev"
	w0=$(ft_counter "$dir" writes)
	"$@" "$dev" >"$FT_DIR/mkfs.log" 2>&1 || { cat "$FT_DIR/mkfs.log"; fail "$1 failed"; }
	ft_mount "$fstype" "$dev" "$mnt"
	cp -a "$src/p1" "$mnt/"
	sync
	local w1
	w1=$(ft_counter "$dir" writes)
	[ "$w1" -gt "$w0" ] || fail "writes counter did not move during mkfs and copy ($w0 -> $w1)"
	umount "$mnt"

	# Without the filter, then attached while mounted (the filesystem is
	# frozen while the filter goes in).
	ft_detach "$dev"
	[ ! -e "$dir" ] || fail "$dir still present after detach"
	ft_drop_caches
	ft_mount "$fstype" "$dev" "$mnt"
	ft_sums "$src" p1 >"$sums"
	ft_verify "$mnt" "$sums" "p1 after a remount without the filter"
	cp -a "$src/p2" "$mnt/"
	ft_attach "$dev"
	w0=$(ft_counter "$dir" writes)
	cp -a "$src/p3" "$mnt/"
	sync
	w1=$(ft_counter "$dir" writes)
	[ "$w1" -gt "$w0" ] || fail "writes counter did not move while writing to the mounted fs ($w0 -> $w1)"
	umount "$mnt"
	ft_drop_caches
	ft_mount "$fstype" "$dev" "$mnt"
	ft_sums "$src" p1 p2 p3 >"$sums"
	ft_verify "$mnt" "$sums" "p1..p3 after a remount with the filter"

	# Detached while mounted, then checked from a cold cache once more.
	ft_detach "$dev"
	rm -rf "$mnt/p2"
	umount "$mnt"
	ft_drop_caches
	ft_mount "$fstype" "$dev" "$mnt"
	ft_sums "$src" p1 p3 >"$sums"
	ft_verify "$mnt" "$sums" "p1 and p3 after detach and a remount"
	[ ! -e "$mnt/p2" ] || fail "p2 is back after it was removed"
	umount "$mnt"

	local check=(e2fsck -fn "$dev")
	[ "$fstype" = ext4 ] || check=(xfs_repair -n "$dev")
	if command -v "${check[0]}" >/dev/null; then
		"${check[@]}" >"$FT_DIR/fsck.log" 2>&1 || {
			tail -n 20 "$FT_DIR/fsck.log"
			fail "${check[*]} reports problems"
		}
	fi
}

# ft_wait_auto_detach DIR REFCNT WHAT: after a filtered device went away its
# debugfs directory disappears and the module reference is dropped.
ft_wait_auto_detach() {
	ft_wait 5 test ! -e "$1" || fail "$1 still present 5 s after $3"
	ft_wait 5 ft_refcnt_is "$2" || fail "module refcnt is $(ft_refcnt), not $2, 5 s after $3"
}

# --- Tests ------------------------------------------------------------------

test_filter_attach_detach_with_cli() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir base out err rc f
	dir=$(ft_devdir "$dev")
	base=$(ft_refcnt)
	[ ! -e "$dir" ] || fail "$dir exists before attach"

	FT_ATTACHED+=("$dev")
	out=$("$BLKSNAP" attach -d "$dev")
	expect_eq "blksnap attach -d" "Attached successfully" "$out"
	[ -d "$dir" ] || fail "$dir missing after attach"
	for f in reads writes others; do
		ft_counter "$dir" "$f" >/dev/null || fail "no counter $f in $dir"
	done
	[ "$(ft_refcnt)" -gt "$base" ] || fail "module refcnt did not grow on attach ($base)"
	out=$("$BLKSNAP" attach --device "$dev")
	expect_eq "blksnap attach on an attached device" "Already was attached" "$out"
	[ -d "$dir" ] || fail "$dir missing after the second attach"

	out=$("$BLKSNAP" detach --device="$dev")
	expect_eq "stdout of blksnap detach" "" "$out"
	[ ! -e "$dir" ] || fail "$dir still present after detach"
	ft_wait 5 ft_refcnt_is "$base" || fail "module refcnt $(ft_refcnt) after detach, was $base"

	rc=0
	out=$("$BLKSNAP" detach -d "$dev" 2>"$FT_DIR/err") || rc=$?
	err=$(cat "$FT_DIR/err")
	expect_eq "exit status of detach with nothing attached" 1 "$rc"
	expect_eq "stdout of the failed detach" "" "$out"
	[ -n "$err" ] || fail "the failed detach printed nothing on stderr"
	expect_eq "stderr lines of the failed detach" 1 "$(wc -l <<<"$err")"
	[[ $err == *"$dev"* ]] || fail "the error does not name $dev: $err"

	# The same through the raw ioctls.
	out=$(filter_probe "$dev" attach attach detach detach)
	expect_eq "raw ATTACH, ATTACH, DETACH, DETACH" "OK EALREADY OK ENOENT" "$out"
	[ ! -e "$dir" ] || fail "$dir still present after the raw detach"
	ft_attach "$dev"
	ft_detach "$dev"
}

test_filter_attach_errnos() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir base out once
	dir=$(ft_devdir "$dev")
	base=$(ft_refcnt)
	out=$(filter_probe "$dev" attach,name=nosuch attach,name=blksna attach,name=blksnap2 \
		attach,nonul attach,optlen=4097 attach,optlen=0xffffffff attach,arg=0x10 attach,arg=0)
	expect_eq "ATTACH with name nosuch, blksna, blksnap2, no NUL, optlen 4097, optlen 2^32-1, arg 0x10, arg NULL" \
		"ENOENT ENOENT ENOENT EINVAL EINVAL EINVAL EFAULT EFAULT" "$out"
	# Root only: without CAP_SYS_ADMIN (the device opened before dropping it).
	expect_eq "ATTACH without CAP_SYS_ADMIN" EACCES "$(filter_probe --as-nobody "$dev" attach)"
	# Failed attaches leave nothing behind: no filter, no module reference.
	[ ! -e "$dir" ] || fail "$dir exists after failed attaches"
	expect_eq "DETACH after the failed attaches" ENOENT "$(filter_probe "$dev" detach)"
	expect_eq "module refcnt after failed attaches" "$base" "$(ft_refcnt)"

	FT_ATTACHED+=("$dev")
	expect_eq "ATTACH" OK "$(filter_probe "$dev" attach)"
	once=$(ft_refcnt)
	[ "$once" -gt "$base" ] || fail "module refcnt did not grow on attach ($base)"
	expect_eq "ATTACH twice" "EALREADY EALREADY" "$(filter_probe "$dev" attach attach)"
	expect_eq "module refcnt after EALREADY" "$once" "$(ft_refcnt)"
	[ -d "$dir" ] || fail "$dir missing while attached"
	expect_eq "DETACH" OK "$(filter_probe "$dev" detach)"
	ft_wait 5 ft_refcnt_is "$base" || fail "module refcnt $(ft_refcnt) after detach, was $base"
}

test_filter_detach_and_ctl_errnos() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir out
	dir=$(ft_devdir "$dev")
	out=$(filter_probe "$dev" detach ctl ctl,cmd=99)
	expect_eq "DETACH, CTL, CTL 99 with nothing attached" "ENOENT ENOENT ENOENT" "$out"

	FT_ATTACHED+=("$dev")
	out=$(filter_probe "$dev" attach \
		detach,name=blksnap2 detach,name=blksna detach,name=other detach,nonul detach,arg=0x10 \
		ctl,name=blksnap2 ctl,nonul ctl,arg=0x10 ctl,cmd=99 ctl,cmd=0xffffffff attach)
	expect_eq "ATTACH; DETACH with names blksnap2, blksna, other, no NUL, arg 0x10; CTL with name blksnap2, no NUL, arg 0x10, cmd 99, cmd 2^32-1; ATTACH" \
		"OK EINVAL EINVAL EINVAL EINVAL EFAULT EINVAL EINVAL EFAULT ENOTTY ENOTTY EALREADY" "$out"
	out=$(filter_probe --as-nobody "$dev" detach ctl)
	expect_eq "DETACH, CTL without CAP_SYS_ADMIN" "EACCES EACCES" "$out"
	# None of the failures detached anything.
	[ -d "$dir" ] || fail "$dir gone after failed DETACH/CTL calls"
	out=$(filter_probe "$dev" detach detach ctl ctl,cmd=99)
	expect_eq "DETACH, DETACH, CTL, CTL 99" "OK ENOENT ENOENT ENOENT" "$out"
	[ ! -e "$dir" ] || fail "$dir still present after detach"
}

test_filter_ioctls_on_non_block_files_get_enotty() {
	ft_begin
	local f=$FT_DIR/regular out
	head -c 65536 /dev/zero >"$f"
	out=$(filter_probe "$f" attach detach ctl attach,arg=0x10)
	expect_eq "filter ioctls on a regular file" "ENOTTY ENOTTY ENOTTY ENOTTY" "$out"
	out=$(filter_probe "$FT_DIR" attach detach ctl)
	expect_eq "filter ioctls on a directory" "ENOTTY ENOTTY ENOTTY" "$out"
	out=$(filter_probe /dev/null attach detach ctl)
	expect_eq "filter ioctls on /dev/null" "ENOTTY ENOTTY ENOTTY" "$out"
}

test_filter_other_ioctls_unaffected() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir before after status discard=no
	local q=(--getsize64 --getsz --getss --getpbsz --getbsz --getro --getra
		--getiomin --getioopt --getalignoff --getmaxsect)
	dir=$(ft_devdir "$dev")
	before=$(blockdev "${q[@]}" "$dev")
	status=$(losetup "$dev")
	if blkdiscard -o 0 -l 1048576 "$dev" 2>/dev/null; then
		discard=yes
	fi

	ft_attach "$dev"
	after=$(blockdev "${q[@]}" "$dev")
	expect_eq "blockdev ${q[*]} while attached" "$before" "$after"
	expect_eq "BLKGETSIZE64 through the raw ioctl" 67108864 "$(filter_probe "$dev" size)"
	expect_eq "LOOP_GET_STATUS64 (losetup DEV)" "$status" "$(losetup "$dev")"
	blockdev --setro "$dev"
	expect_eq "BLKROGET after BLKROSET 1" 1 "$(blockdev --getro "$dev")"
	blockdev --setrw "$dev"
	expect_eq "BLKROGET after BLKROSET 0" 0 "$(blockdev --getro "$dev")"
	blockdev --flushbufs "$dev"
	if [ "$discard" = yes ]; then
		blkdiscard -o 0 -l 1048576 "$dev" || fail "BLKDISCARD fails while attached"
	fi
	blkdiscard -z -o 1048576 -l 1048576 "$dev" || fail "BLKZEROOUT fails while attached"
	[ -d "$dir" ] || fail "$dir gone after the other ioctls"
	ft_detach "$dev"
	expect_eq "blockdev ${q[*]} after detach" "$before" "$(blockdev "${q[@]}" "$dev")"
}

test_filter_counts_reads_and_writes() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir r0 w0 n discard=no
	dir=$(ft_devdir "$dev")
	if blkdiscard -o 0 -l 1048576 "$dev" 2>/dev/null; then
		discard=yes
	fi
	ft_attach "$dev"
	ft_settle

	r0=$(ft_counter "$dir" reads)
	w0=$(ft_counter "$dir" writes)
	ft_read "$dev" 0 64
	n=$(ft_counter "$dir" reads)
	ft_expect_ge "reads after 64 direct reads" $((r0 + 64)) "$n"
	expect_eq "writes after reads only" "$w0" "$(ft_counter "$dir" writes)"

	ft_write "$dev" 1 32
	n=$(ft_counter "$dir" writes)
	ft_expect_ge "writes after 32 direct writes" $((w0 + 32)) "$n"

	if [ "$discard" = yes ]; then
		w0=$(ft_counter "$dir" writes)
		blkdiscard -o 2097152 -l 1048576 "$dev"
		n=$(ft_counter "$dir" writes)
		ft_expect_ge "writes after a discard" $((w0 + 1)) "$n"
	fi
	w0=$(ft_counter "$dir" writes)
	blkdiscard -z -o 3145728 -l 1048576 "$dev"
	n=$(ft_counter "$dir" writes)
	ft_expect_ge "writes after a write-zeroes" $((w0 + 1)) "$n"

	# fsync on the device sends a flush; it counts as a write or an other.
	local s0 s1
	s0=$(($(ft_counter "$dir" writes) + $(ft_counter "$dir" others)))
	sync "$dev"
	s1=$(($(ft_counter "$dir" writes) + $(ft_counter "$dir" others)))
	ft_expect_ge "writes + others after fsync of the device" $((s0 + 1)) "$s1"
	ft_detach "$dev"
}

test_filter_counters_are_per_device() {
	ft_begin
	ft_loop 64M
	local a=$REPLY
	ft_loop 64M
	local b=$REPLY adir bdir before
	adir=$(ft_devdir "$a")
	bdir=$(ft_devdir "$b")
	ft_attach "$a"
	[ ! -e "$bdir" ] || fail "$bdir exists though $b is not filtered"
	ft_settle
	before=$(ft_counters "$adir")
	ft_read "$b" 0 64
	ft_write "$b" 1 64
	sync "$b"
	ft_settle
	expect_eq "counters of $a (reads writes others) after I/O to $b" "$before" "$(ft_counters "$adir")"

	# With both filtered, each counts its own I/O only.
	ft_attach "$b"
	ft_settle
	before=$(ft_counter "$adir" reads)
	local br
	br=$(ft_counter "$bdir" reads)
	ft_read "$b" 0 64
	expect_eq "reads of $a after reading $b" "$before" "$(ft_counter "$adir" reads)"
	ft_expect_ge "reads of $b after reading $b" $((br + 64)) "$(ft_counter "$bdir" reads)"
	ft_detach "$b"
	[ -d "$adir" ] || fail "detaching $b removed $adir"
	ft_detach "$a"
}

test_filter_partition_and_whole_disk_are_independent() {
	ft_begin
	ft_image 64M
	local img=$REPLY
	# One partition: sectors 2048..34815 (MiB 1..17); MiB 40 is outside.
	ft_write_mbr "$img" 2048 32768
	ft_loop_file "$img" -P
	local disk=$REPLY part=${REPLY}p1 ddir pdir p0 d0 n
	ft_wait 5 test -b "$part" || fail "$part did not appear after losetup -P"
	# Held open, the partition stays the one the test attaches to (the
	# re-read udev makes after losetup would recreate it). Only reads
	# then: udev probes a device a writer closed, and would add its reads.
	ft_hold "$part"
	ddir=$(ft_devdir "$disk")
	pdir=$(ft_devdir "$part")

	ft_attach "$part"
	[ -d "$pdir" ] || fail "$pdir missing after attaching $part"
	[ ! -e "$ddir" ] || fail "$ddir exists though only $part is filtered"
	expect_eq "DETACH on the whole disk" ENOENT "$(filter_probe "$disk" detach)"
	p0=$(ft_counter "$pdir" reads)
	ft_read "$disk" 40 32
	expect_eq "reads of $part after reading $disk outside it" "$p0" "$(ft_counter "$pdir" reads)"
	ft_read "$part" 0 32
	n=$(ft_counter "$pdir" reads)
	ft_expect_ge "reads of $part after reading it" $((p0 + 32)) "$n"

	ft_attach "$disk"
	[ -d "$ddir" ] || fail "$ddir missing after attaching $disk"
	p0=$(ft_counter "$pdir" reads)
	d0=$(ft_counter "$ddir" reads)
	ft_read "$disk" 40 32
	ft_expect_ge "reads of $disk after reading it" $((d0 + 32)) "$(ft_counter "$ddir" reads)"
	expect_eq "reads of $part after reading $disk outside it" "$p0" "$(ft_counter "$pdir" reads)"
	# The disk's filter sees every bio of its sectors, those issued through
	# the partition as well.
	d0=$(ft_counter "$ddir" reads)
	ft_read "$part" 4 32
	ft_expect_ge "reads of $part after reading it" $((p0 + 32)) "$(ft_counter "$pdir" reads)"
	ft_expect_ge "reads of $disk after reading $part" $((d0 + 32)) "$(ft_counter "$ddir" reads)"

	# Detaching one leaves the other attached, in both orders.
	ft_detach "$disk"
	[ ! -e "$ddir" ] || fail "$ddir still present after detaching $disk"
	[ -d "$pdir" ] || fail "detaching $disk removed $pdir"
	expect_eq "ATTACH on $part after detaching $disk" EALREADY "$(filter_probe "$part" attach)"
	ft_attach "$disk"
	ft_detach "$part"
	[ ! -e "$pdir" ] || fail "$pdir still present after detaching $part"
	[ -d "$ddir" ] || fail "detaching $part removed $ddir"
	expect_eq "ATTACH on $disk after detaching $part" EALREADY "$(filter_probe "$disk" attach)"
	ft_detach "$disk"
}

test_filter_fio_verify_raw_device() {
	command -v fio >/dev/null || skip "fio is not installed"
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir r0 w0
	dir=$(ft_devdir "$dev")
	ft_attach "$dev"
	ft_settle
	r0=$(ft_counter "$dir" reads)
	w0=$(ft_counter "$dir" writes)
	local rand=(--filename="$dev" --rw=randwrite --bs=4k --size=8M)
	local seq=(--filename="$dev" --rw=write --bs=1M --offset=32M --size=16M)
	ft_fio "$FT_DIR/rand.log" "${rand[@]}" --do_verify=1
	ft_fio "$FT_DIR/seq.log" "${seq[@]}" --do_verify=1
	# 2048 4 KiB writes, then 2048 verify reads.
	ft_expect_ge "writes after fio" $((w0 + 2048)) "$(ft_counter "$dir" writes)"
	ft_expect_ge "reads after fio" $((r0 + 2048)) "$(ft_counter "$dir" reads)"
	ft_detach "$dev"
	# What went through the filter is on the device.
	ft_drop_caches
	ft_fio "$FT_DIR/rand-verify.log" "${rand[@]}" --verify_only
	ft_fio "$FT_DIR/seq-verify.log" "${seq[@]}" --verify_only
}

test_filter_ext4_data_integrity() {
	ft_fs_integrity ext4 128M mkfs.ext4 -q -F
}

test_filter_xfs_data_integrity() {
	# mkfs.xfs refuses filesystems under 300 MiB.
	ft_fs_integrity xfs 320M mkfs.xfs -q -f
}

test_filter_attach_detach_during_fio() {
	command -v fio >/dev/null || skip "fio is not installed"
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir pid rc=0 i=0 overlap=0
	dir=$(ft_devdir "$dev")
	# Rate-limited so that the write phase lasts about 2 s even with KVM.
	fio --name=blksnap-filter --ioengine=psync --direct=1 --verify=crc32c \
		--verify_fatal=1 --verify_state_save=0 --filename="$dev" --rw=randwrite --bs=4k --size=8M \
		--do_verify=1 --rate_iops=1000 >"$FT_DIR/fio.log" 2>&1 &
	pid=$!
	FT_PIDS+=("$pid")
	while [ "$i" -lt 20 ] || { kill -0 "$pid" 2>/dev/null && [ "$i" -lt 200 ]; }; do
		if kill -0 "$pid" 2>/dev/null; then
			overlap=$((overlap + 1))
		fi
		ft_attach "$dev"
		ft_detach "$dev"
		i=$((i + 1))
	done
	wait "$pid" || rc=$?
	ft_fio_check "$FT_DIR/fio.log" "$rc"
	[ "$overlap" -gt 0 ] || fail "fio ended before the first attach; nothing was tested"
	[ ! -e "$dir" ] || fail "$dir still present after the last detach"
}

test_filter_loop_detach_drops_filter() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY dir base out
	dir=$(ft_devdir "$dev")
	base=$(ft_refcnt)
	ft_attach "$dev"
	[ -d "$dir" ] || fail "$dir missing after attach"
	ft_settle
	losetup -d "$dev"
	ft_wait_auto_detach "$dir" "$base" "losetup -d $dev"
	expect_eq "DETACH on the unbound $dev" ENOENT "$(filter_probe "$dev" detach)"

	# The same loop number, bound again, starts without a filter.
	ft_image 32M
	losetup "$dev" "$REPLY"
	expect_eq "size of the rebound $dev" 33554432 "$(filter_probe "$dev" size)"
	ft_attach "$dev"
	[ -d "$dir" ] || fail "$dir missing after attaching the rebound $dev"
	ft_detach "$dev"
	[ ! -e "$dir" ] || fail "$dir still present after detach"
	ft_wait 5 ft_refcnt_is "$base" || fail "module refcnt $(ft_refcnt) after detach, was $base"
}

test_filter_zram_reset_drops_filter() {
	[ -d /sys/class/zram-control ] || skip "no /sys/class/zram-control"
	ft_begin
	ft_zram 64M
	local dev=$REPLY name=${REPLY##*/} dir base
	dir=$(ft_devdir "$dev")
	base=$(ft_refcnt)
	ft_attach "$dev"
	[ -d "$dir" ] || fail "$dir missing after attach"
	ft_settle
	echo 1 >"/sys/block/$name/reset" || fail "reset of $name failed"
	ft_wait_auto_detach "$dir" "$base" "the reset of $name"

	# Set up again, it starts without a filter.
	echo 64M >"/sys/block/$name/disksize"
	ft_attach "$dev"
	[ -d "$dir" ] || fail "$dir missing after attaching the re-initialised $dev"
	ft_detach "$dev"
}

test_filter_zram_hot_remove_drops_filter() {
	[ -d /sys/class/zram-control ] || skip "no /sys/class/zram-control"
	ft_begin
	ft_zram 64M
	local dev=$REPLY name=${REPLY##*/} dir base
	dir=$(ft_devdir "$dev")
	base=$(ft_refcnt)
	ft_attach "$dev"
	[ -d "$dir" ] || fail "$dir missing after attach"
	ft_settle
	echo "${name#zram}" >/sys/class/zram-control/hot_remove || fail "hot_remove of $name failed"
	[ ! -e "/sys/block/$name" ] || fail "/sys/block/$name still present after hot_remove"
	ft_wait_auto_detach "$dir" "$base" "hot_remove of $name"
}

# Unloads the module: keep it the last test of this file.
test_filter_blocks_module_unload() {
	ft_begin
	ft_loop 64M
	local a=$REPLY
	ft_loop 64M
	local b=$REPLY adir
	adir=$(ft_devdir "$a")
	ft_attach "$a"
	ft_attach "$b"
	[ "$(ft_refcnt)" -gt 0 ] || fail "module refcnt is 0 with two filters attached"
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded with two filters attached"
	fi
	module_loaded || fail "the module is gone"
	# The refused unload did not disturb the filters.
	local r0
	r0=$(ft_counter "$adir" reads)
	ft_read "$a" 0 16
	ft_expect_ge "reads of $a after the refused rmmod" $((r0 + 16)) "$(ft_counter "$adir" reads)"

	ft_detach "$a"
	[ "$(ft_refcnt)" -gt 0 ] || fail "module refcnt is 0 with one filter attached"
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded with one filter attached"
	fi
	ft_detach "$b"
	ft_wait 5 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) after the last detach"
	rmmod blksnap || fail "rmmod blksnap failed after the last detach"
	! module_loaded || fail "/sys/module/blksnap still present after rmmod"

	# Reloaded, the module knows of no filter on these devices.
	load_module
	expect_eq "DETACH on $a and $b after a reload" "ENOENT ENOENT" \
		"$(filter_probe "$a" detach) $(filter_probe "$b" detach)"
}
