#!/usr/bin/env bash
# `make demo`: what blksnap is for, end to end, told step by step in the
# test VM. A live ext4 filesystem on a disk is snapshotted, changed under
# fio load while its point-in-time image is mounted and copied out, the
# copy is proved to hold exactly the files as they were at the take, and
# the change tracker then turns that full copy into the next backup by
# copying only the blocks it marked as changed.
#
#   scripts/demo.sh           on the host: builds the CLI, boots the VM,
#                             prints the story as it happens
#   scripts/demo.sh --in-vm   the story itself (run inside the VM)
#
# Exits non-zero if any check of the story fails.
set -euo pipefail

if [ "${1:-}" != --in-vm ]; then
	# shellcheck source=scripts/lib.sh
	source "$(dirname "$0")/lib.sh"
	cd "$BLKSNAP_ROOT"
	[ -f blksnap.ko ] || die "blksnap.ko is not built: run make demo"
	msg "building the blksnap CLI"
	cargo build -q -p blksnap
	mkdir -p build
	out=build/demo.txt rcfile=build/demo.rc console=build/demo.console
	rm -f "$rcfile"
	: >"$out"
	msg "booting the test VM; the demo follows"
	scripts/vm.sh run "$console" \
		"BLKSNAP_ROOT=$BLKSNAP_ROOT bash scripts/demo.sh --in-vm >$BLKSNAP_ROOT/$out 2>&1; echo \$? >$BLKSNAP_ROOT/$rcfile" &
	vm=$!
	tail -n +1 -F --pid="$vm" "$out" 2>/dev/null || true
	vm_rc=0
	wait "$vm" || vm_rc=$?
	status=$(cat "$rcfile" 2>/dev/null || echo none)
	if [ "$status" != 0 ]; then
		echo "---- tail of the VM console ($console) ----"
		tail -n 40 "$console"
		die "the demo failed (demo status $status, VM status $vm_rc)"
	fi
	msg "demo passed (the story is in $out)"
	exit 0
fi

# --- In the VM ---------------------------------------------------------------

ROOT=${BLKSNAP_ROOT:-$(pwd)}
BLKSNAP=$ROOT/target/debug/blksnap
WORK=/tmp/blksnap-demo
SIZE=256M
LIMIT=192M
DEV='' ID='' FIO_PID=''
MOUNTS=()
LOOPS=()
n=0

# step TITLE LINE...: starts a numbered step, with a few lines saying why.
step() {
	n=$((n + 1))
	printf '\n[%d] %s\n' "$n" "$1"
	shift
	local line
	for line in "$@"; do
		printf '    %s\n' "$line"
	done
}

# note TEXT: one line of commentary.
note() {
	printf '    %s\n' "$*"
}

# show CMD...: prints the command, then runs it with its output indented.
show() {
	printf '  $ %s\n' "$*"
	"$@" 2>&1 | sed 's/^/      /'
	return "${PIPESTATUS[0]}"
}

# check WHAT CMD...: a claim of the story; the demo stops if it is false.
check() {
	local what=$1
	shift
	if "$@"; then
		printf '  ok: %s\n' "$what"
	else
		printf '  FAILED: %s\n' "$what"
		exit 1
	fi
}

# Reports the command that failed when set -e ends the story.
trap 'printf "  FAILED: %s (line %d)\n" "$BASH_COMMAND" "$LINENO"' ERR

same() { [ "$1" = "$2" ]; }
uuid_ok() { [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; }
differ() { [ "$1" != "$2" ]; }
at_least() { [ "$1" -ge "$2" ]; }

# The first field of sha256sum's output for a file or device.
sha() { sha256sum "$1" | cut -d' ' -f1; }

cleanup() {
	set +e
	[ -n "$FIO_PID" ] && kill "$FIO_PID" && wait "$FIO_PID"
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[i]}" || umount -l "${MOUNTS[i]}"
	done
	for i in $("$BLKSNAP" snapshot_collect); do
		"$BLKSNAP" snapshot_destroy -i "$i"
	done
	[ -n "$DEV" ] && "$BLKSNAP" detach -d "$DEV"
	for i in "${LOOPS[@]}"; do
		losetup -d "$i"
	done
	[ -d /sys/module/blksnap ] && rmmod blksnap
	rm -rf "$WORK"
} >/dev/null 2>&1
trap cleanup EXIT

mountit() {
	mkdir -p "$2"
	mount "${@:3}" "$1" "$2"
	MOUNTS+=("$2")
}

unmountit() {
	local m keep=()
	umount "$1"
	for m in "${MOUNTS[@]}"; do
		[ "$m" = "$1" ] || keep+=("$m")
	done
	MOUNTS=("${keep[@]}")
}

cbt_field() { "$BLKSNAP" cbtinfo -d "$DEV" | sed -n "s/^$1=//p"; }

# marked MAP VALUE: how many blocks of the CBT map file hold VALUE.
marked() { od -An -v -tu1 -w1 "$1" | awk -v v="$2" '$1 == v { n++ } END { print n + 0 }'; }

command -v fio >/dev/null || { echo "fio is not installed"; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
orig=$WORK/original image=$WORK/image copy=$WORK/copy store=$WORK/storage

echo "blksnap demo: a point-in-time snapshot of a live filesystem, and an"
echo "incremental backup from the change tracker"

step "Load the module" \
	"blksnap.ko goes into this unpatched 6.12 kernel; the CLI talks to it" \
	"through /dev/blksnap-control."
show insmod "$ROOT/blksnap.ko"
show "$BLKSNAP" version

step "A disk with a filesystem" \
	"A $SIZE loop device with ext4, mounted: this is the disk to back up."
truncate -s "$SIZE" "$WORK/disk.img"
DEV=$(losetup -f --show "$WORK/disk.img")
LOOPS+=("$DEV")
note "the disk is $DEV"
show mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$DEV"
mountit "$DEV" "$orig" -o noatime

step "Attach the blksnap filter" \
	"From now on every write to $DEV is tracked, block by block."
show "$BLKSNAP" attach -d "$DEV"
show "$BLKSNAP" cbtinfo -d "$DEV"

step "Put data on the disk" \
	"Some documents, pictures and a database file, as a user would."
mkdir -p "$orig/docs" "$orig/pictures" "$orig/db"
for i in 1 2 3 4 5; do
	{
		echo "Quarterly report $i"
		seq 1 $((i * 2000)) | sed "s/^/line $i./"
	} >"$orig/docs/report-$i.txt"
done
for i in 1 2 3; do
	head -c $((i * 1024 * 1024 + i * 777)) /dev/urandom >"$orig/pictures/img-$i.raw"
done
head -c $((8 * 1024 * 1024)) /dev/urandom >"$orig/db/ledger.dat"
sync
show ls -l "$orig/docs" "$orig/pictures" "$orig/db"

step "Record what the files hold right now" \
	"Their SHA-256 sums, kept outside the disk; the snapshot taken next" \
	"must give back exactly these files."
(cd "$orig" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$WORK/at-take.sha256"
show head -n 3 "$WORK/at-take.sha256"
note "... $(wc -l <"$WORK/at-take.sha256") files in all"

step "Create a snapshot" \
	"Its difference storage, where the old contents of overwritten blocks go," \
	"is an unnamed file in a tmpfs directory, allowed to grow to $LIMIT."
mountit tmpfs "$store" -t tmpfs -o size=256M
printf '  $ %s\n' "$BLKSNAP snapshot_create -f $store -l $LIMIT -d $DEV"
ID=$("$BLKSNAP" snapshot_create -f "$store" -l "$LIMIT" -d "$DEV")
note "$ID"
check "snapshot_create printed one UUID" uuid_ok "$ID"

step "Take it" \
	"The filesystem is frozen for a moment, copy-on-write starts, and the" \
	"snapshot image of the disk appears as a read-only block device."
show "$BLKSNAP" snapshot_take -i "$ID"
show "$BLKSNAP" snapshot_info -d "$DEV"
img=$("$BLKSNAP" snapshot_info -d "$DEV" -f image)
for _ in $(seq 50); do [ -b "$img" ] && break; sleep 0.1; done
check "the image $img is a block device" test -b "$img"
check "the image is as large as the disk" same "$(blockdev --getsize64 "$img")" "$(blockdev --getsize64 "$DEV")"

step "Keep changing the original, under load" \
	"fio writes at random into new files on the disk, and the documents are" \
	"edited: one appended to, one deleted, the database partly overwritten," \
	"a new file created."
# shellcheck disable=SC2016 # $jobnum is fio's
fio --name=load --directory="$orig" --filename_format='load.$jobnum' --rw=randwrite \
	--bs=4k --size=24M --numjobs=2 --direct=1 --ioengine=psync --time_based \
	--runtime=900 --group_reporting >"$WORK/fio.log" 2>&1 &
FIO_PID=$!
echo "appended after the take" >>"$orig/docs/report-1.txt"
rm "$orig/docs/report-2.txt"
dd if=/dev/urandom of="$orig/db/ledger.dat" bs=1M count=1 seek=2 conv=notrunc status=none
echo "written after the take" >"$orig/docs/new-after-take.txt"
sync
sleep 3
check "fio is writing" kill -0 "$FIO_PID"
changed=$( (cd "$orig" && sha256sum -c --quiet "$WORK/at-take.sha256" 2>/dev/null) | wc -l || true)
note "$changed of the recorded files differ on the original now"
check "the original has moved on (at least 3 files changed)" at_least "$changed" 3

step "Mount the image, read-only" \
	"It shows the disk as it was at the take, while the original keeps changing."
mountit "$img" "$image" -t ext4 -o ro,noload
show ls -l "$image/docs"
check "report-2.txt, deleted after the take, is in the image" test -f "$image/docs/report-2.txt"
check "new-after-take.txt is not in the image" test ! -e "$image/docs/new-after-take.txt"
check "every file in the image matches the sums recorded before the take" \
	sh -c "cd '$image' && sha256sum -c --quiet '$WORK/at-take.sha256'"

step "Copy the image out, as a backup agent would" \
	"dd reads the image while fio keeps writing to the original."
show dd if="$img" of="$WORK/backup.img" bs=1M iflag=direct status=none
c1=$(sha "$WORK/backup.img")
c2=$(sha "$img")
d2=$(sha "$DEV")
note "sha256 of the copy:            $c1"
note "sha256 of the image, read again: $c2"
note "sha256 of the live original:   $d2"
check "the copy equals the image, which did not change while it was read" same "$c1" "$c2"
check "the original disk is no longer what the image holds" differ "$c1" "$d2"
check "the copy is a clean ext4 filesystem (e2fsck -fn)" show e2fsck -fn "$WORK/backup.img"
mountit "$WORK/backup.img" "$copy" -t ext4 -o ro,noload,loop
check "every file in the copy matches the sums recorded before the take" \
	sh -c "cd '$copy' && sha256sum -c --quiet '$WORK/at-take.sha256'"
unmountit "$copy"

step "Stop the load"
kill -INT "$FIO_PID"
wait "$FIO_PID" || true
FIO_PID=
grep -E '^ +WRITE:' "$WORK/fio.log" | sed 's/^ */    fio: /' || true
sync

step "What the change tracker says" \
	"At the take, the tracker's map was fixed: each 64 KiB block written since" \
	"the filter was attached holds 1. A backup agent reads it with readcbtmap."
show "$BLKSNAP" cbtinfo -d "$DEV"
bs=$(cbt_field block_size)
blocks=$(cbt_field block_count)
check "changes_number is 1 after the first take" same "$(cbt_field changes_number)" 1
"$BLKSNAP" readcbtmap -d "$DEV" -f "$WORK/map1"
m1=$(marked "$WORK/map1" 1)
note "$m1 of $blocks blocks marked as changed before the first snapshot"
check "the files written before the take are marked" at_least "$m1" 1

step "Destroy the snapshot" \
	"The image goes away and its difference storage is released; the tracker" \
	"stays, still counting the changes made since the take."
unmountit "$image"
show df -h "$store"
show "$BLKSNAP" snapshot_destroy -i "$ID"
for _ in $(seq 50); do [ -e "$img" ] || break; sleep 0.1; done
check "the image is gone" test ! -e "$img"
show df -h "$store"

step "The next backup: a second snapshot, and only what changed" \
	"A new snapshot is taken; its map marks with 2 the blocks changed since the" \
	"first one. Copying just those blocks from the new image onto the first" \
	"backup must give exactly the new image."
printf '  $ %s\n' "$BLKSNAP snapshot_create -f $store -l $LIMIT -d $DEV"
ID=$("$BLKSNAP" snapshot_create -f "$store" -l "$LIMIT" -d "$DEV")
note "$ID"
show "$BLKSNAP" snapshot_take -i "$ID"
img=$("$BLKSNAP" snapshot_info -d "$DEV" -f image)
for _ in $(seq 50); do [ -b "$img" ] && break; sleep 0.1; done
check "the second image $img is there" test -b "$img"
check "changes_number is 2 after the second take" same "$(cbt_field changes_number)" 2
"$BLKSNAP" readcbtmap -d "$DEV" -f "$WORK/map2"
m2=$(marked "$WORK/map2" 2)
note "$m2 of $blocks blocks ($((m2 * bs / 1048576)) MiB) changed between the two snapshots"
check "the changes made under load are marked" at_least "$m2" 1
read -r differing unmarked < <(python3 - "$WORK/backup.img" "$img" "$WORK/map2" "$bs" <<'EOF'
import sys
old, new, mapfile, bs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
marks = open(mapfile, "rb").read()
differing = unmarked = 0
with open(old, "rb") as a, open(new, "rb") as b:
    for mark in marks:
        if a.read(bs) != b.read(bs):
            differing += 1
            unmarked += mark != 2
print(differing, unmarked)
EOF
)
note "$differing blocks differ between the first backup and the second image"
check "every block that differs is marked as changed" same "$unmarked" 0
python3 - "$WORK/backup.img" "$img" "$WORK/map2" "$bs" <<'EOF'
import sys
old, new, mapfile, bs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(old, "r+b") as a, open(new, "rb") as b:
    for i, mark in enumerate(open(mapfile, "rb").read()):
        if mark == 2:
            b.seek(i * bs)
            a.seek(i * bs)
            a.write(b.read(bs))
EOF
note "copied the $m2 marked blocks onto the first backup"
check "the first backup plus the marked blocks equals the second image" \
	same "$(sha "$WORK/backup.img")" "$(sha "$img")"
mountit "$WORK/backup.img" "$copy" -t ext4 -o ro,noload,loop
check "the updated backup holds the files edited after the first take" \
	test -f "$copy/docs/new-after-take.txt"
unmountit "$copy"

step "Clean up" \
	"Destroy the snapshot, detach the filter, unload the module."
show "$BLKSNAP" snapshot_destroy -i "$ID"
show "$BLKSNAP" detach -d "$DEV"
DEV_DETACHED=$DEV
DEV=
unmountit "$orig"
losetup -d "$DEV_DETACHED"
LOOPS=()
for _ in $(seq 50); do [ "$(cat /sys/module/blksnap/refcnt)" = 0 ] && break; sleep 0.1; done
show rmmod blksnap
check "the module unloaded" test ! -d /sys/module/blksnap

printf '\nDemo passed: the image held the disk exactly as it was at the take,\n'
printf 'and the change tracker named every block that changed after it.\n'
