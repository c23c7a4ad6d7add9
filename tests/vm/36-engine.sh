# The copy-on-write engine under the conditions it was redesigned for: a
# member whose file system dirties pages faster than a tiny dirty limit
# allows, with the storage on a disk-backed file system; the bound on
# chunks in memory at its smallest; a member of 100 TiB on a small machine;
# and the memory a touched chunk costs.
# Uses the ft_* helpers of 10-filter.sh and the sn_* helpers of
# 30-snapshot.sh.
# shellcheck shell=bash

EN_RATIOS=

# en_dirty_limit BYTES BACKGROUND-BYTES: sets the dirty limits in bytes;
# en_restore_dirty_limit (and en_cleanup) restore the ratios they replace
# (a limit in bytes cannot be set back to 0: setting a ratio clears it).
en_dirty_limit() {
	EN_RATIOS="$(cat /proc/sys/vm/dirty_ratio) $(cat /proc/sys/vm/dirty_background_ratio)"
	echo "$1" >/proc/sys/vm/dirty_bytes
	echo "$2" >/proc/sys/vm/dirty_background_bytes
}

en_restore_dirty_limit() {
	[ -n "$EN_RATIOS" ] || return 0
	echo "${EN_RATIOS% *}" >/proc/sys/vm/dirty_ratio
	echo "${EN_RATIOS#* }" >/proc/sys/vm/dirty_background_ratio
	EN_RATIOS=
}

en_begin() {
	EN_RATIOS=
	sn_begin
	trap en_cleanup EXIT
}

en_cleanup() {
	set +e
	en_restore_dirty_limit
	sn_cleanup
	echo 256 >/sys/module/blksnap/parameters/chunk_maximum_in_queue 2>/dev/null
	return 0
}

# en_ext4 SIZE DIR: a loop device of SIZE with a fresh ext4 mounted on DIR
# -> $REPLY (the device).
en_ext4() {
	ft_loop "$1"
	mkfs.ext4 -q -F "$REPLY"
	mkdir -p "$2"
	mount "$REPLY" "$2"
	FT_MOUNTS+=("$2")
}

# en_slab_kib: the kernel's slab and vmalloc use, in KiB.
en_slab_kib() {
	awk '/^(Slab|VmallocUsed):/ { kib += $2 } END { print kib }' /proc/meminfo
}

# en_table_bytes: the bytes of the slab caches the chunk table lives in:
# its entries (kmalloc-64, or larger with lock debugging) and the nodes of
# its xarray.
en_table_bytes() {
	awk '$1 ~ /^(kmalloc-(64|96|128)|radix_tree_node)$/ { b += $2 * $4 } END { print b }' /proc/slabinfo
}

# en_ext4_taken BEFORE: an ext4 member (EN_MEMBER mounted, EN_DEV) holding
# the file "before" of BEFORE random bytes (EN_BEFORE its checksum), in a
# taken snapshot (EN_ID, image EN_IMG) whose storage is a directory on ext4
# over a loop device: a disk-backed file system with a page cache and
# write-back of its own, with room for the storage's limit.
en_ext4_taken() {
	EN_MEMBER=$FT_DIR/member
	en_ext4 512M "$FT_DIR/store"
	en_ext4 192M "$EN_MEMBER"
	EN_DEV=$REPLY
	head -c "$1" /dev/urandom >"$EN_MEMBER/before"
	sync
	EN_BEFORE=$(sha256sum <"$EN_MEMBER/before")
	ft_attach "$EN_DEV"
	sn_create "$FT_DIR/store" 256M "$EN_DEV"
	EN_ID=$REPLY
	sn_take "$EN_ID"
	sn_image "$EN_DEV"
	EN_IMG=$REPLY
}

# en_ext4_image_ok: the image of en_ext4_taken still holds "before" as it
# was and no "after", checks clean, and the snapshot is intact; destroys it.
en_ext4_image_ok() {
	sn_mount ext4 "$EN_IMG" "$FT_DIR/image" ro,noload
	[ -f "$FT_DIR/image/before" ] || fail "the image lost the file from before the take"
	expect_eq "checksum of the image's file from before the take" "$EN_BEFORE" \
		"$(sha256sum <"$FT_DIR/image/before")"
	[ ! -e "$FT_DIR/image/after" ] || fail "the image shows a file written after the take"
	sn_umount "$FT_DIR/image"
	fsck.ext4 -fn "$EN_IMG" >/dev/null || fail "fsck of the image failed"
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$EN_DEV" -f error_code)"
	sn_destroy "$EN_ID"
}

test_engine_member_dirty_pages_under_a_tiny_dirty_limit() {
	en_begin
	local pid
	en_ext4_taken 32M
	# Every dirty page of the member waits for copy-on-write before it can
	# be written back; with a dirty limit this small, a copy-on-write that
	# went through the storage's page cache is throttled by the member's
	# own dirty pages.
	en_dirty_limit 1048576 524288
	(
		dd if=/dev/urandom of="$EN_MEMBER/after" bs=1M count=96 status=none &&
			rm "$EN_MEMBER/before" && sync
	) &
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 240 sn_exited "$pid" || fail "buffered writes to the member did not finish within 240 s"
	wait "$pid" || fail "buffered writes to the member failed"
	en_restore_dirty_limit
	en_ext4_image_ok
}

test_engine_one_chunk_in_memory_keeps_the_image_exact() {
	en_begin
	local dev store id img pids=() p
	echo 1 >/sys/module/blksnap/parameters/chunk_maximum_in_queue
	ft_loop 96M
	dev=$REPLY
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 160M
	store=$REPLY
	sn_create "$store" 128M "$dev"
	id=$REPLY
	sn_take "$id"
	echo 256 >/sys/module/blksnap/parameters/chunk_maximum_in_queue
	sn_image "$dev"
	img=$REPLY
	# Writers across the whole device at once, and image readers among
	# them: every copy waits for the one before it to be stored.
	"$TAGBLK" write "$dev" --gen 2 --offset 0 --len 48M --order random --jobs 4 >/dev/null &
	pids+=($!)
	"$TAGBLK" write "$dev" --gen 2 --offset 48M --len 48M --order seq --jobs 2 >/dev/null &
	pids+=($!)
	"$TAGBLK" verify "$img" --gen 1 >"$FT_DIR/verify-during.log" 2>&1 &
	pids+=($!)
	for p in "${pids[@]}"; do
		SN_PIDS+=("$p")
	done
	for p in "${pids[@]}"; do
		wait "$p" || {
			cat "$FT_DIR/verify-during.log"
			fail "a writer or the reader of the image failed"
		}
	done
	sn_verify "$img" 1 "the image after the writes"
	sn_verify "$dev" 2 "the original after the writes"
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	sn_destroy "$id"
}

test_engine_take_of_a_100_tib_member_and_memory_per_chunk() {
	en_begin
	local xfsdir backing dev store id img mem_before mem_taken mem_table mem_touched n=512 i per_chunk
	# A 100 TiB member: a sparse file on xfs (whose files may be that large)
	# over a loop device.
	ft_loop 1G
	mkfs.xfs -q -f "$REPLY"
	xfsdir=$FT_DIR/xfs
	mkdir -p "$xfsdir"
	mount "$REPLY" "$xfsdir"
	FT_MOUNTS+=("$xfsdir")
	backing=$xfsdir/big
	truncate -s 100T "$backing"
	# Direct I/O: no page cache of the backing file in the figures below.
	ft_loop_file "$backing" --direct-io=on
	dev=$REPLY
	expect_eq "size of the member" $((100 << 40)) "$(blockdev --getsize64 "$dev")"
	ft_attach "$dev"
	# The storage on zram: its stores leave no page cache (whose xarray
	# nodes would count below).
	# Room for the 2 x 512 chunks copied below (256 MiB).
	ft_zram 384M
	store=$REPLY
	sn_create "$store" 384M "$dev"
	id=$REPLY
	sync
	mem_before=$(en_slab_kib)
	sn_take "$id"
	mem_taken=$(en_slab_kib)
	echo "slab and vmalloc: $((mem_taken - mem_before)) KiB more after the take of 100 TiB"
	[ $((mem_taken - mem_before)) -lt 32768 ] ||
		fail "the take of a 100 TiB member took $((mem_taken - mem_before)) KiB"
	sn_image "$dev"
	img=$REPLY
	mem_table=$(en_table_bytes)
	# One 4 KiB write in each of $n chunks spread over the device.
	for ((i = 0; i < n; i++)); do
		echo $((i * (100 << 40) / n / 4096))
	done >"$FT_DIR/blocks"
	while read -r i; do
		dd if=/dev/urandom of="$dev" bs=4k seek="$i" count=1 oflag=direct conv=notrunc status=none
	done <"$FT_DIR/blocks"
	sync
	mem_touched=$(en_table_bytes)
	per_chunk=$(((mem_touched - mem_table) / n))
	echo "chunk table per touched chunk: $per_chunk bytes ($n chunks far apart)"
	[ "$per_chunk" -lt 4096 ] || fail "a touched chunk costs $per_chunk bytes"
	# Chunks next to each other share the nodes of the chunk table.
	mem_table=$(en_table_bytes)
	dd if=/dev/urandom of="$dev" bs=256k seek=4096 count="$n" oflag=direct conv=notrunc status=none
	sync
	mem_touched=$(en_table_bytes)
	per_chunk=$(((mem_touched - mem_table) / n))
	echo "chunk table per touched chunk: $per_chunk bytes ($n chunks in a row)"
	# An upper bound: these caches also hold what the loop device, xfs and
	# zram allocate for the same writes.
	[ "$per_chunk" -lt 1024 ] || fail "a touched chunk costs $per_chunk bytes"
	# The image still reads the zeroes of the take there, the original not.
	for i in 0 $(((100 << 40) / 2 / 4096)) $(((100 << 40) / 4096 - 1)); do
		sn_block_written "$img" "$i" && fail "image block $i is not the zeroes of the take"
	done
	sn_block_written "$dev" "$(sed -n 2p "$FT_DIR/blocks")" || fail "the original lost a write"
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	sn_destroy "$id"
}

# en_peak DEV: the most chunks of DEV's snapshot in memory at once so far,
# from the module's debugfs list.
en_peak() {
	local want
	want="member $(sn_devnum "$1") "
	grep -F "$want" /sys/kernel/debug/blksnap/snapshots/list |
		sed -nE 's/.* chunks_in_memory_peak=([0-9]+).*/\1/p'
}

test_engine_many_chunks_in_flight_at_once() {
	en_begin
	local dev store id img peak
	ft_loop 128M
	dev=$REPLY
	sn_fill "$dev" 1
	ft_attach "$dev"
	# The storage a block device: stores are bios too.
	ft_loop 160M
	store=$REPLY
	sn_create "$store" 160M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	expect_eq "chunks in memory at the take" 0 "$(en_peak "$dev")"
	# Four writers at once, each on chunks of its own.
	"$TAGBLK" write "$dev" --gen 2 --len 96M --order random --jobs 4 >/dev/null ||
		fail "writes to the original failed"
	peak=$(en_peak "$dev")
	echo "chunks in memory at once, at most: $peak"
	[ -n "$peak" ] && [ "$peak" -gt 1 ] || fail "copy-on-write never had more than one chunk in memory ($peak)"
	sn_verify "$img" 1 "the image after the writes"
	sn_verify "$dev" 2 "the written part of the original" --len 96M
	sn_verify "$dev" 1 "the rest of the original" --offset 96M
	sn_destroy "$id"
}

test_engine_writes_under_memory_pressure() {
	en_begin
	local hog avail src want
	sn_tmpfs 128M
	src=$REPLY/src
	head -c 96M /dev/urandom >"$src"
	want=$(sha256sum <"$src")
	en_ext4_taken 16M
	# Memory that cannot be reclaimed (tmpfs without swap), until about
	# 384 MiB are left, of which the loop devices' backing files (tmpfs
	# too) take up to 200 MiB more: the writes below are written back under
	# memory pressure while copy-on-write holds them.
	avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
	[ "$avail" -gt $((512 * 1024)) ] || skip "only $((avail / 1024)) MiB available"
	sn_tmpfs $(((avail - 384 * 1024) * 1024))
	hog=$REPLY
	head -c $(((avail - 384 * 1024) * 1024)) /dev/zero >"$hog/hog" 2>/dev/null || true
	en_dirty_limit 4194304 2097152
	timeout 300 dd if="$src" of="$EN_MEMBER/after" bs=1M status=none conv=fsync ||
		fail "buffered writes under memory pressure did not finish within 300 s"
	rm -f "$hog/hog"
	en_restore_dirty_limit
	expect_eq "checksum of the file written under pressure" "$want" "$(sha256sum <"$EN_MEMBER/after")"
	en_ext4_image_ok
}
