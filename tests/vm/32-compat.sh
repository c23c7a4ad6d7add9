# 32-bit tasks on the 64-bit kernel: every ioctl issued by compat32
# (tests/vm/compat32.c, an i386 program built here from the project's
# headers) must do what the same ioctl of the 64-bit CLI does, including
# the three structures whose i386 layout differs (blkfilter_attach,
# blksnap_cbtdirty, blksnap_snapshot_collect) and CBTINFO, whose i386 size
# is 36 bytes, not 40.
# Uses the ft_* helpers of 10-filter.sh and the sn_* ones of 30-snapshot.sh.
# shellcheck shell=bash

# cp_build: builds compat32 into the scratch directory -> $REPLY. Skips
# only when this compiler cannot target i386 at all; compat32.c itself must
# build.
cp_build() {
	REPLY=$FT_DIR/compat32
	local multiarch flags=(-m32 -ffreestanding -nostdlib -static -fno-pic
		-fno-stack-protector -fno-builtin -O2)
	multiarch=$(gcc -print-multiarch 2>/dev/null) || skip "no gcc"
	echo 'void _start(void) { for (;;); }' >"$FT_DIR/probe.c"
	gcc "${flags[@]}" -o "$FT_DIR/probe" "$FT_DIR/probe.c" 2>/dev/null ||
		skip "gcc cannot build i386 programs here"
	gcc "${flags[@]}" -Wall -Wextra -Werror \
		-I "$BLKSNAP_ROOT/include/uapi" -idirafter "/usr/include/$multiarch" \
		-o "$REPLY" "$BLKSNAP_ROOT/tests/vm/compat32.c" || fail "compat32.c does not build"
	# ELF class 1 (32-bit) at byte 4, machine 3 (i386) at byte 18.
	expect_eq "ELF class and machine of compat32" "1 3" \
		"$(od -An -tu1 -j4 -N1 "$REPLY" | xargs) $(od -An -tu2 -j18 -N2 "$REPLY" | xargs)"
}

test_compat_filter_and_cbt_ioctls() {
	ft_begin
	local c32 dev out want
	cp_build
	c32=$REPLY
	ft_loop 64M
	dev=$REPLY

	expect_eq "version of a 32-bit task" "$("$BLKSNAP" version)" "$("$c32" version)"
	# Block-device ioctls other than BLKFILTER_* still reach the kernel.
	expect_eq "BLKGETSIZE64 of a 32-bit task" "$(blockdev --getsize64 "$dev")" \
		"$("$c32" getsize64 "$dev")"

	# ATTACH with its i386 number (a 44-byte structure).
	FT_ATTACHED+=("$dev")
	expect_eq "compat32 attach" "Attached successfully" "$("$c32" attach "$dev")"
	"$BLKSNAP" cbtinfo -d "$dev" >/dev/null || fail "no tracker after a 32-bit attach"
	expect_eq "a second 32-bit attach" "error: EALREADY" "$("$c32" attach "$dev")"

	# CBTINFO: the same answer as the 64-bit CLI, 36 bytes are enough and
	# nothing is written past them (compat32 exits 3 if it is).
	want=$("$BLKSNAP" cbtinfo -d "$dev")
	expect_eq "cbtinfo of a 32-bit task" "$want" "$("$c32" cbtinfo "$dev")"
	expect_eq "cbtinfo with optlen 36" "$want" "$("$c32" cbtinfo "$dev" 36)"
	expect_eq "cbtinfo with optlen 40" "$want" "$("$c32" cbtinfo "$dev" 40)"
	expect_eq "cbtinfo with optlen 35" "error: EINVAL" "$("$c32" cbtinfo "$dev" 35)"

	# CBTDIRTY with the i386 layout (the range pointer at offset 4), then
	# CBTMAP: blocks 0 and 16 (64 KiB blocks) are marked, and both
	# tools read the same map.
	"$c32" markdirtyblock "$dev" 0:1 2048:1
	"$c32" readcbtmap "$dev" "$FT_DIR/map32"
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/map64"
	cmp "$FT_DIR/map32" "$FT_DIR/map64" || fail "the two tools read different maps"
	out=$(od -An -v -tu1 -w1 "$FT_DIR/map64" | awk '$1 != 0 { print NR - 1 }' | xargs)
	expect_eq "blocks marked by a 32-bit CBTDIRTY" "0 16" "$out"
	expect_eq "a range past the end" "error: ERANGE" \
		"$("$c32" markdirtyblock "$dev" 131072:1)"

	out=$("$c32" detach "$dev")
	expect_eq "compat32 detach" "" "$out"
	! "$BLKSNAP" cbtinfo -d "$dev" 2>/dev/null || fail "still attached after a 32-bit detach"
	expect_eq "detach again" "error: ENOENT" "$("$c32" detach "$dev")"
}

test_compat_snapshot_ioctls() {
	sn_begin
	local c32 dev id image out storage
	cp_build
	c32=$REPLY
	ft_loop 32M
	dev=$REPLY
	sn_fill "$dev" 1
	sn_tmpfs 64M
	storage=$REPLY

	# CREATE passes the storage path by pointer; COLLECT has the i386
	# layout (the array pointer at offset 4) and number.
	id=$("$c32" snapshot_create "$storage" 65536)
	sn_uuid_ok "$id" || fail "compat32 snapshot_create printed '$id'"
	SN_IDS+=("$id")
	expect_eq "collect of a 32-bit task" "$("$BLKSNAP" snapshot_collect | awk 'NF { print $1 }')" \
		"$("$c32" snapshot_collect)"
	expect_eq "collect" "$id" "$("$c32" snapshot_collect)"

	FT_ATTACHED+=("$dev")
	"$c32" attach "$dev" >/dev/null
	"$c32" snapshot_add "$id" "$dev"
	"$c32" snapshot_take "$id"
	"$TAGBLK" write "$dev" --gen 2 --offset 4M --len 4M --jobs 2 >/dev/null
	expect_eq "snapshot_info of a 32-bit task" "$("$BLKSNAP" snapshot_info -d "$dev")" \
		"$("$c32" snapshot_info "$dev")"
	sn_image "$dev"
	image=$REPLY
	sn_verify "$image" 1 "the image taken by a 32-bit task"
	# A limit below half of diff_storage_minimum queues no_space at the
	# take: one event of the 4096-byte structure, then a timeout.
	out=$("$c32" snapshot_waitevent "$id" 10000 | xargs)
	[[ $out =~ ^result=ok\ time=([0-9]+)\ event=no_space\ requested_nr_sect=([0-9]+)$ ]] ||
		fail "wait_event of a 32-bit task printed '$out'"
	# The monotonic clock of the event, and the size the storage was asked
	# to grow to: the whole 65536-sector limit, in one step at the take.
	[ "${BASH_REMATCH[1]}" -gt 0 ] || fail "wait_event: time_label is 0"
	expect_eq "wait_event: requested_nr_sect" 65536 "${BASH_REMATCH[2]}"
	expect_eq "wait_event timeout" "error: ENOENT" \
		"$("$c32" snapshot_waitevent "$id" 50)"

	"$c32" snapshot_destroy "$id"
	SN_IDS=()
	expect_eq "collect after destroy" "" "$("$c32" snapshot_collect)"
	expect_eq "destroy again" "error: ESRCH" "$("$c32" snapshot_destroy "$id")"
}
