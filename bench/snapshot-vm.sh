#!/usr/bin/env bash
# Runs inside the test VM (see bench/run.sh): what a snapshot costs, as
# named figures (bench/figures.py prints them).
#
# The member is a 256 MiB loop device (on tmpfs). Each round runs three
# conditions, in an order that rotates from round to round:
#   base     the member alone, no filter, no snapshot: the control;
#   blksnap  the member attached and snapshotted by this module;
#   dm       the member under dm-snapshot (snapshot-origin + persistent
#            snapshot, chunk 256 KiB), if the kernel has it.
# In each, the same work:
#   1. a snapshot whose storage is a block device (a loop device on tmpfs;
#      dm: its exception store on the same device): the image read while
#      untouched; 1 MiB sequential writes over the first half (first touch),
#      then again (rewrite of copied chunks); 4 KiB random writes, 16 in
#      flight, one in each chunk of the second half, in a random order
#      (first touch), then 4 KiB random writes over that half (rewrite);
#      each first touch followed by a timed fsync of the written device and
#      the storage; caches dropped, the whole image read (every chunk is
#      stored);
#   2. a fresh snapshot, same storage: the image read while the member takes
#      4 KiB random writes at a fixed rate;
#   3. blksnap: 1 and 2 again with the storage a directory on ext4 on a loop
#      device of its own (so an unnamed file in it), every figure named with
#      _dir; dm: a snapshot whose exception store is a loop device on a file
#      of that ext4, the first half written, caches dropped, the first half
#      of the image read (image_read_stored_dir);
#   4. blksnap: TAKE of a snapshot of four sparse 1 GiB members, storage the
#      directory on ext4 (take_4_devices_ms);
#   5. blksnap and base: on a disk whose first partition is an ext4 holding
#      a preallocated file, the in-volume storage, and 64 MiB more, the
#      sequential first touch of those 64 MiB and the cold read of them
#      (cow_first_touch_seq_in_volume, image_read_stored_in_volume).
# The base condition runs the same jobs on the member itself (reads of the
# original instead of the image).
# Before the rounds, MEM_ROUNDS times: the memory the module holds
# (unreclaimable slab plus vmalloc, from /proc/meminfo, whole-system figures)
# before CREATE, after TAKE and after touching chunks, on a sparse 1 TiB
# member.
# All times are the guest's clock: under TCG with VM_ICOUNT they count
# instructions (see bench/run.sh).
set -euo pipefail
ROOT=${BLKSNAP_ROOT:-$(pwd)}
ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-3}
BLKSNAP=$ROOT/target/debug/blksnap
# Rate of the random writes that run under the image reads.
UNDER_IOPS=${UNDER_IOPS:-1000}
# Chunks touched on the sparse member of the memory figures.
MEM_CHUNKS=${MEM_CHUNKS:-1024}
# Times the memory figures are measured (each takes about a minute).
MEM_ROUNDS=${MEM_ROUNDS:-1}
# 4 KiB writes of each cow_rewrite_rand run.
REWRITE_IOS=${REWRITE_IOS:-4096}

MIB=$((1 << 20))
SIZE=$((256 * MIB))
HALF=$((SIZE / 2))
CHUNK=$((256 * 1024))
SECTORS=$((SIZE / 512))
OUT=$(mktemp /tmp/bench-results.XXXXXX)
work=$(mktemp -d /tmp/bench-snap.XXXXXX)
mount -t tmpfs -o size=1300M tmpfs "$work"

# Holds every figure as "ROUND KEY CONDITION VALUE" lines for figures.py.
record() {
	echo "$round $1 $2 $3" >>"$OUT"
}

now_ns() {
	date +%s%N
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# sync_ms PATH...: fsyncs each file or device (the written device and the
# storage) and syncs the file system of each directory (storage that is a
# directory), and prints how long that took, process start-up not counted.
# Not a global sync: only the write-back the engine left behind counts.
sync_ms() {
	python3 - "$@" <<'EOF'
import ctypes, os, stat, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fds = [os.open(f, os.O_RDONLY) for f in sys.argv[1:]]
t0 = time.monotonic_ns()
for fd in fds:
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
    else:
        os.fsync(fd)
print((time.monotonic_ns() - t0) / 1e6)
EOF
}

# fio_stats FIO-ARGS...: prints "MiB/s runtime_ms IOPS I/Os" of the last job,
# for its direction (read or write, the one that did I/O).
fio_stats() {
	fio --output-format=json "$@" | python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][-1]
d = job["read"] if job["read"]["io_bytes"] else job["write"]
print(d["bw"] / 1024, d["runtime"], d["iops"], d["total_ios"])'
}

# Options shared by every job: direct I/O, 16 in flight.
FIO=(--direct=1 --ioengine=libaio --iodepth=16)
# Where seq_read and first_touch_seq start on the device, in bytes.
OFF=0

# fio files split names at colons unless they are escaped.
esc() {
	echo "${1//:/\\:}"
}

# seq_read NAME DEV SIZE [timed]: prints MiB/s of 1 MiB sequential reads.
seq_read() {
	local timed=()
	[ "${4:-}" = timed ] && timed=(--time_based --runtime="$RUNTIME")
	fio_stats --name="$1" --filename="$(esc "$2")" --rw=read --bs=1M --size="$3" \
		--offset="$OFF" --readonly "${timed[@]}" "${FIO[@]}" | cut -d' ' -f1
}

# first_touch_seq COND DEV KEY [SUFFIX]: 1 MiB sequential writes over the
# first half; records KEY (MiB/s) and KEY_synced (the same, the sync of DEV
# and $sync_store after it counted), each name followed by SUFFIX.
first_touch_seq() {
	local bw ms ios iops s
	sync
	read -r bw ms iops ios < <(fio_stats --name=seq --filename="$2" --rw=write --bs=1M \
		--offset="$OFF" --size="$HALF" "${FIO[@]}")
	s=$(sync_ms "$2" "$sync_store")
	record "$3${4:-}" "$1" "$bw"
	record "$3_synced${4:-}" "$1" "$(python3 -c "print($HALF / $MIB / (($ms + $s) / 1000))")"
	record "sync_ms_after_$3${4:-}" "$1" "$s"
}

# rewrite_seq COND DEV [SUFFIX]: the 1 MiB sequential writes of the first
# half again, over copied chunks; records cow_rewrite_seq (MiB/s).
rewrite_seq() {
	record "cow_rewrite_seq${3:-}" "$1" "$(fio_stats --name=re --filename="$2" --rw=write \
		--bs=1M --size="$HALF" "${FIO[@]}" | cut -d' ' -f1)"
}

# rewrite_rand COND DEV [SUFFIX]: 4 KiB random writes, 16 in flight, over the
# second half (every chunk of it copied by then), REWRITE_IOS of them;
# records cow_rewrite_rand (IOPS).
rewrite_rand() {
	record "cow_rewrite_rand${3:-}" "$1" "$(fio_stats --name=rerand --filename="$2" \
		--rw=randwrite --bs=4k --offset="$HALF" --size="$HALF" \
		--io_size="$((REWRITE_IOS * 4096))" --randseed=7 "${FIO[@]}" | cut -d' ' -f3)"
}

# iolog DEV: a replay log of one 4 KiB write in every chunk of the second
# half of DEV, in a random order that is the same for every device.
iolog() {
	python3 - "$1" "$HALF" "$SIZE" "$CHUNK" <<'EOF'
import random, sys
dev, start, end, chunk = sys.argv[1], *map(int, sys.argv[2:])
offsets = list(range(start, end, chunk))
random.Random(12).shuffle(offsets)
print("fio version 2 iolog")
print(f"{dev} add\n{dev} open")
for off in offsets:
    print(f"{dev} write {off} 4096")
print(f"{dev} close")
EOF
}

# first_touch_rand COND DEV KEY [SUFFIX]: the iolog replayed, 16 in flight;
# records KEY (IOPS) and KEY_synced, each name followed by SUFFIX.
first_touch_rand() {
	local bw ms ios iops s log=$work/iolog
	iolog "$2" >"$log"
	sync
	read -r bw ms iops ios < <(fio_stats --name=rand --filename="$2" --read_iolog="$log" \
		"${FIO[@]}")
	s=$(sync_ms "$2" "$sync_store")
	record "$3${4:-}" "$1" "$iops"
	record "$3_synced${4:-}" "$1" "$(python3 -c "print($ios / (($ms + $s) / 1000))")"
	record "sync_ms_after_$3${4:-}" "$1" "$s"
}

# read_under_writes COND KEY WRITTEN READ: records KEY, the MiB/s of 1 MiB
# sequential reads of READ while WRITTEN takes 4 KiB random writes at
# UNDER_IOPS, and KEY_writer_iops, the rate the writes reached (two fio
# processes: --readonly, which keeps fio from opening the image for
# writing, is global).
read_under_writes() {
	local writer bw
	fio_stats --name=writes --filename="$3" --rw=randwrite --bs=4k \
		--rate_iops="$UNDER_IOPS" --time_based --runtime="$((RUNTIME + 1))" \
		"${FIO[@]}" >"$work/writer" &
	writer=$!
	sleep 0.5
	bw=$(seq_read reads "$4" "$SIZE" timed)
	wait "$writer"
	record "$2" "$1" "$bw"
	record "$2_writer_iops" "$1" "$(cut -d' ' -f3 "$work/writer")"
}

# held_bytes: caches dropped, prints in bytes the unreclaimable slab plus
# vmalloc, then the free memory (which also sees pages the module takes
# straight from the page allocator, and everything else the system does).
held_bytes() {
	drop_caches
	awk '/^SUnreclaim:|^VmallocUsed:/ { kb += $2 } /^MemFree:/ { free = $2 }
		END { print kb * 1024, free * 1024 }' /proc/meminfo
}

# take_ms ID: the SNAPSHOT_TAKE ioctl alone, timed around the call.
take_ms() {
	python3 - "$1" <<'EOF'
import fcntl, os, sys, time, uuid
fd = os.open("/dev/blksnap-control", os.O_RDWR)
arg = uuid.UUID(sys.argv[1]).bytes
t0 = time.monotonic_ns()
fcntl.ioctl(fd, 0x40105603, arg)
print((time.monotonic_ns() - t0) / 1e6)
EOF
}

# snap_take COND STORAGE LIMIT [KEY]: attach-free create + timed take of a
# blksnap snapshot of $dev; sets $id and $img.
snap_take() {
	local ms
	id=$("$BLKSNAP" snapshot_create -f "$2" -l "$3" -d "$dev")
	ms=$(take_ms "$id")
	[ -z "${4:-}" ] || record "$4" "$1" "$ms"
	img=$("$BLKSNAP" snapshot_info -d "$dev" -f image)
}

# dmsetup creates the device nodes itself instead of waiting for udev: while
# the guest idles waiting, the icount clock runs on, and the waits are long.
export DM_DISABLE_UDEV=1

# dm ARGS...: dmsetup, without its notice that udev is bypassed.
dm() {
	local rc=0
	dmsetup "$@" 2>"$work/dm.err" || rc=$?
	grep -v DM_DISABLE_UDEV "$work/dm.err" >&2 || true
	return "$rc"
}

# dm_zero COW: a new persistent exception store starts with a zeroed header.
dm_zero() {
	dd if=/dev/zero of="$1" bs=256k count=1 oflag=direct status=none
}

# dm_take COW [KEY]: dm-snapshot of $dev with the exception store on COW, the
# origin as bench-origin and the snapshot as bench-snap; KEY records the
# time of the three dmsetup runs (suspend, create, resume) less that of
# three runs that do nothing, so process start-up is not counted; one run
# before both loads dmsetup into the page cache again (caches are dropped
# between the cases), as a load from the host would count the host's time.
dm_take() {
	local t0 t1 t2
	dm_zero "$1"
	dm create bench-origin --table "0 $SECTORS snapshot-origin $dev"
	dm version >/dev/null
	t0=$(now_ns)
	dm version >/dev/null
	dm version >/dev/null
	dm version >/dev/null
	t1=$(now_ns)
	dm suspend bench-origin
	dm create bench-snap --table "0 $SECTORS snapshot $dev $1 P $((CHUNK / 512))"
	dm resume bench-origin
	t2=$(now_ns)
	[ -z "${2:-}" ] || record "$2" dm "$(python3 -c "print(($t2 - $t1 - ($t1 - $t0)) / 1e6)")"
}

dm_remove() {
	dm remove bench-snap
	dm remove bench-origin
}

base_round() {
	sync_store=$store
	drop_caches
	record image_read_untouched base "$(seq_read orig "$dev" "$SIZE")"
	first_touch_seq base "$dev" cow_first_touch_seq
	rewrite_seq base "$dev"
	first_touch_rand base "$dev" cow_first_touch_rand
	rewrite_rand base "$dev"
	drop_caches
	record image_read_stored base "$(seq_read orig "$dev" "$SIZE")"
	read_under_writes base image_read_under_writes "$dev" "$dev"
	in_volume_set base
}

# in_volume_set COND: on the raw part of $ivdisk, whose first partition
# holds an ext4 with the preallocated file $ivmnt/diff: the 1 MiB
# sequential first touch of its first 64 MiB and the cold read of them
# from the image (every chunk stored); for blksnap with the storage
# in-volume (that file), for base on the disk alone. (64 MiB, not half the
# member, so that everything the benchmark keeps fits the VM's memory.)
in_volume_set() {
	# first_touch_seq writes $HALF bytes: a quarter of the member here.
	local dev=$ivdisk HALF=$((SIZE / 4))
	sync_store=$ivdisk
	OFF=$IV_OFF
	if [ "$1" = blksnap ]; then
		"$BLKSNAP" attach -d "$dev" >/dev/null
		snap_take blksnap "$ivmnt/diff" 0
	else
		img=$dev
	fi
	first_touch_seq "$1" "$dev" cow_first_touch_seq _in_volume
	drop_caches
	record image_read_stored_in_volume "$1" "$(seq_read image "$img" "$HALF")"
	if [ "$1" = blksnap ]; then
		"$BLKSNAP" snapshot_destroy -i "$id"
		"$BLKSNAP" detach -d "$dev"
	fi
	OFF=0
}

# blksnap_set STORAGE SUFFIX TAKE-KEY: on a fresh snapshot of $dev with
# STORAGE, the first touches, the rewrites and the cold read of the image
# with every chunk stored; then on another fresh one the image read under
# writes. Every name is followed by SUFFIX.
blksnap_set() {
	sync_store=$1
	snap_take blksnap "$1" 320M "$3"
	if [ -z "$2" ]; then
		drop_caches
		record image_read_untouched blksnap "$(seq_read image "$img" "$SIZE")"
	fi
	first_touch_seq blksnap "$dev" cow_first_touch_seq "$2"
	rewrite_seq blksnap "$dev" "$2"
	first_touch_rand blksnap "$dev" cow_first_touch_rand "$2"
	rewrite_rand blksnap "$dev" "$2"
	drop_caches
	record "image_read_stored$2" blksnap "$(seq_read image "$img" "$SIZE")"
	"$BLKSNAP" snapshot_destroy -i "$id"

	snap_take blksnap "$1" 320M
	read_under_writes blksnap "image_read_under_writes$2" "$dev" "$img"
	"$BLKSNAP" snapshot_destroy -i "$id"
}

blksnap_round() {
	"$BLKSNAP" attach -d "$dev" >/dev/null
	blksnap_set "$store" "" take_ms
	blksnap_set "$ext4/dir" _dir take_ms_dir

	snap_take blksnap "$work/dir" 320M take_ms_tmpfs_dir
	"$BLKSNAP" snapshot_destroy -i "$id"
	"$BLKSNAP" detach -d "$dev"
	in_volume_set blksnap

	# Four members of 1 GiB, storage a directory on ext4: TAKE alone.
	id=$("$BLKSNAP" snapshot_create -f "$ext4/dir" -l 320M -d "${four[@]}")
	record take_4_devices_ms blksnap "$(take_ms "$id")"
	"$BLKSNAP" snapshot_destroy -i "$id"
}

dm_round() {
	local origin=/dev/mapper/bench-origin snap=/dev/mapper/bench-snap
	sync_store=$store
	dm_take "$store" take_ms
	drop_caches
	record image_read_untouched dm "$(seq_read image "$snap" "$SIZE")"
	first_touch_seq dm "$origin" cow_first_touch_seq
	rewrite_seq dm "$origin"
	first_touch_rand dm "$origin" cow_first_touch_rand
	rewrite_rand dm "$origin"
	drop_caches
	record image_read_stored dm "$(seq_read image "$snap" "$SIZE")"
	dm_remove

	dm_take "$store"
	read_under_writes dm image_read_under_writes "$origin" "$snap"
	dm_remove

	# File storage: the exception store a loop device on a file of ext4;
	# the first half written, then read (every chunk read is stored).
	dm_take "$cow_file" take_ms_dir
	fio_stats --name=fill --filename="$origin" --rw=write --bs=1M --size="$HALF" "${FIO[@]}" >/dev/null
	drop_caches
	record image_read_stored_dir dm "$(seq_read image "$snap" "$HALF")"
	dm_remove
}

insmod "$ROOT/blksnap.ko"
# Grow file storage in 64 MiB steps, not the default 1 GiB.
echo 131072 >/sys/module/blksnap/parameters/diff_storage_minimum

# Block-device storage: a loop device on tmpfs, used by both engines.
truncate -s 320M "$work/store"
store=$(losetup -f --show "$work/store")
dd if=/dev/zero of="$store" bs=1M count=320 oflag=direct status=none

# memory_round: on a sparse 1 TiB member, storage the block device above,
# what the module holds before CREATE, after TAKE, after touching MEM_CHUNKS
# chunks (one 4 KiB write each) and after DESTROY; and how much the free
# memory fell over the take.
memory_round() {
	local m0 m1 m2 m3 f0 f1
	truncate -s 1T "$work/big"
	dev=$(losetup -f --show "$work/big")
	"$BLKSNAP" attach -d "$dev" >/dev/null
	read -r m0 f0 < <(held_bytes)
	snap_take blksnap "$store" 320M take_ms_1tib_bdev
	read -r m1 f1 < <(held_bytes)
	python3 - "$dev" "$CHUNK" "$MEM_CHUNKS" >"$work/iolog" <<'EOF'
import sys
dev, chunk, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("fio version 2 iolog")
print(f"{dev} add\n{dev} open")
for i in range(n):
    print(f"{dev} write {i * chunk} 4096")
print(f"{dev} close")
EOF
	fio_stats --name=touch --filename="$dev" --read_iolog="$work/iolog" "${FIO[@]}" >/dev/null
	read -r m2 _ < <(held_bytes)
	"$BLKSNAP" snapshot_destroy -i "$id"
	read -r m3 _ < <(held_bytes)
	"$BLKSNAP" detach -d "$dev"
	losetup -d "$dev"
	rm "$work/big"
	record take_bytes_1tib blksnap $((m1 - m0))
	record memory_take_bytes_per_gib blksnap $(((m1 - m0) / 1024))
	record memory_take_memfree_drop_1tib blksnap $((f0 - f1))
	record memory_bytes_per_touched_chunk blksnap $(((m2 - m1) / MEM_CHUNKS))
	record memory_not_freed_after_destroy blksnap $((m3 - m0))
}
for round in $(seq "$MEM_ROUNDS"); do
	memory_round
done

# The member, filled once so no run pays for tmpfs allocation.
truncate -s "$SIZE" "$work/member"
dev=$(losetup -f --show "$work/member")
dd if=/dev/zero of="$dev" bs=1M count=256 oflag=direct status=none

# File storage: ext4 on its own loop device. That device is backed by tmpfs
# too: on a file of the host's disk (build/, over 9p) the guest waits for
# the host, and the icount clock runs on while it waits, so times would
# count the host's disk, not the guest's work.
truncate -s 640M "$work/disk"
disk_dev=$(losetup -f --show "$work/disk")
mkfs.ext4 -q "$disk_dev"
ext4=$work/ext4
mkdir "$ext4"
mount "$disk_dev" "$ext4"
mkdir "$ext4/dir" "$work/dir"
fallocate -l 160M "$ext4/dm-cow"
cow_file=$(losetup -f --show "$ext4/dm-cow")

# In-volume storage: a disk with an ext4 partition of 100 MiB from sector
# 2048, holding the preallocated storage file, then the 64 MiB the work
# runs on.
IV_OFF=$(((2048 + 204800) * 512))
truncate -s $((IV_OFF + SIZE / 4)) "$work/ivdisk"
python3 - "$work/ivdisk" <<'EOF'
import struct, sys
entry = struct.pack("<B3sB3sII", 0, b"\0\2\0", 0x83, b"\xfe\xff\xff", 2048, 204800)
with open(sys.argv[1], "r+b") as f:
    f.seek(446)
    f.write(entry)
    f.seek(510)
    f.write(b"\x55\xaa")
EOF
ivdisk=$(losetup -f --show -P "$work/ivdisk")
udevadm settle --timeout=10 2>/dev/null || sleep 1
mkfs.ext4 -q "${ivdisk}p1"
ivmnt=$work/iv
mkdir "$ivmnt"
mount "${ivdisk}p1" "$ivmnt"
fallocate -l 80M "$ivmnt/diff"
dd if=/dev/zero of="$ivdisk" bs=1M seek=$((IV_OFF / MIB)) count=64 oflag=direct status=none

# The four sparse members of take_4_devices_ms, attached once.
four=()
for i in 1 2 3 4; do
	truncate -s 1G "$work/four$i"
	four+=("$(losetup -f --show "$work/four$i")")
	"$BLKSNAP" attach -d "${four[-1]}" >/dev/null
done

conds=(base blksnap)
if dmsetup targets | grep -q '^snapshot '; then
	conds+=(dm)
fi
for round in $(seq "$ROUNDS"); do
	# Rotate the order, so no condition always runs first or last.
	n=${#conds[@]}
	for i in $(seq 0 $((n - 1))); do
		"${conds[(i + round) % n]}_round"
		# Give the blocks the storage files freed back to tmpfs, so the
		# rounds fit the VM's memory.
		fstrim "$ext4"
	done
done

for d in "${four[@]}"; do
	"$BLKSNAP" detach -d "$d"
	losetup -d "$d"
done
losetup -d "$cow_file"
umount "$ext4" "$ivmnt"
losetup -d "$ivdisk"
losetup -d "$disk_dev"
rmmod blksnap
losetup -d "$dev" "$store"
umount "$work"
if [ -n "${BENCH_OUT:-}" ]; then
	cp "$OUT" "$BENCH_OUT"
else
	python3 "$ROOT/bench/figures.py" <"$OUT"
fi
rm -f "$OUT"
