# Change-block tracking: CBTINFO, the marking of writes, CBTMAP, CBTDIRTY.
# Uses the ft_* helpers of 10-filter.sh. The write copy of the map is read
# from debugfs (write_map): user space sees it through CBTMAP only after a
# snapshot take.
# shellcheck shell=bash

cbt_probe() {
	python3 "$BLKSNAP_ROOT/tests/vm/cbt_probe.py" "$@"
}

# cbt_marked FILE: prints "block=value" for every nonzero byte of a map.
cbt_marked() {
	od -An -v -tu1 -w1 "$1" | awk '$1 != 0 { printf "%d=%d ", NR - 1, $1 }'
}

# cbt_write_map DEV: the nonzero blocks of DEV's write copy.
cbt_write_map() {
	local dir
	dir=$(ft_devdir "$1") || return 1
	cbt_marked "$dir/write_map"
}

# cbt_read_map DEV COUNT: the nonzero blocks of DEV's read copy (CBTMAP).
cbt_read_map() {
	cbt_probe map "$1" 0 "$2" | tr ' ' '\n' | awk 'NF && $1 != 0 { printf "%d=%d ", NR - 1, $1 }'
}

# dio DEV BYTE_OFFSET BYTES: one direct write of random data.
dio() {
	[ $(($2 % 512)) -eq 0 ] && [ $(($3 % 512)) -eq 0 ] || fail "dio needs sector alignment"
	dd if=/dev/urandom of="$1" bs=512 seek=$(($2 / 512)) count=$(($3 / 512)) \
		oflag=direct conv=notrunc status=none
}

test_cbt_info_after_attach() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY info1 info2
	ft_attach "$dev"
	info1=$(cbt_probe info "$dev")
	[[ $info1 =~ ^65536\ 1024\ 67108864\ [0-9a-f-]{36}\ 0$ ]] ||
		fail "CBTINFO of a 64 MiB device: '$info1'"
	info2=$(cbt_probe info "$dev")
	expect_eq "CBTINFO read twice (same generation)" "$info1" "$info2"
	expect_eq "CBTINFO with a short optlen" EINVAL "$(cbt_probe info "$dev" optlen=39)"
	local zero
	zero=$(cbt_probe map "$dev" 0 1024 | tr ' ' '\n' | sort -u | xargs)
	expect_eq "read copy right after attach" 0 "$zero"
}

test_cbt_block_size_follows_parameters() {
	ft_begin
	local p=/sys/module/blksnap/parameters/tracking_block_maximum_count old
	old=$(cat "$p")
	echo 16 >"$p"
	ft_loop 64M
	local dev=$REPLY info
	ft_attach "$dev"
	echo "$old" >"$p"
	info=$(cbt_probe info "$dev")
	# 64 MiB in at most 16 blocks: the block grows from 64 KiB to 4 MiB.
	[[ $info == "4194304 16 67108864 "* ]] || fail "CBTINFO with maximum_count 16: '$info'"
}

test_cbt_writes_mark_exactly_their_blocks() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY
	ft_attach "$dev"
	ft_settle
	expect_eq "write copy before any write" "" "$(cbt_write_map "$dev")"
	dio "$dev" 0 4096                          # block 0
	dio "$dev" $((5 * 65536 - 512)) 1024       # spans blocks 4 and 5
	dio "$dev" $((10 * 65536 + 4096)) 4096     # inside block 10, unaligned
	dio "$dev" $((64 * 1048576 - 4096)) 4096   # the last block, 1023
	ft_read "$dev" 2 4                         # reads mark nothing
	expect_eq "marked blocks" "0=1 4=1 5=1 10=1 1023=1 " "$(cbt_write_map "$dev")"
	# Writes change the write copy only; the read copy waits for a take.
	expect_eq "read copy after writes" "" "$(cbt_read_map "$dev" 1024)"
}

test_cbt_discard_and_write_zeroes_are_marked() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY
	ft_attach "$dev"
	ft_settle
	blkdiscard -o $((20 * 65536)) -l 65536 "$dev" || fail "blkdiscard failed"
	blkdiscard -z -o $((30 * 65536)) -l 131072 "$dev" || fail "blkdiscard -z failed"
	expect_eq "blocks marked by discard and write-zeroes" "20=1 30=1 31=1 " \
		"$(cbt_write_map "$dev")"
}

test_cbt_partition_offsets() {
	ft_begin
	ft_image 64M
	local img=$REPLY
	ft_write_mbr "$img" 2048 32768
	ft_loop_file "$img" -P
	local part=${REPLY}p1
	ft_wait 5 test -b "$part" || fail "$part did not appear"
	# Open, the partition is not recreated (without its filter) by the
	# re-read of the partition table udev makes after losetup.
	ft_hold "$part"
	ft_attach "$part"
	expect_eq "CBTINFO of a 16 MiB partition" "65536 256 16777216" \
		"$(cbt_probe info "$part" | cut -d' ' -f1-3)"
	dio "$part" 0 4096                 # partition block 0, disk sector 2048
	dio "$part" $((3 * 65536)) 512     # partition block 3
	expect_eq "partition blocks marked" "0=1 3=1 " "$(cbt_write_map "$part")"
}

test_cbt_map_slices() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY
	ft_attach "$dev"
	expect_eq "CBTDIRTY" OK "$(cbt_probe dirty "$dev" 0:1 $((128 * 7)):128 $((128 * 1023)):128)"
	expect_eq "slice 0..8" "1 0 0 0 0 0 0 1" "$(cbt_probe map "$dev" 0 8)"
	expect_eq "slice 6..9" "0 1 0" "$(cbt_probe map "$dev" 6 3)"
	expect_eq "the last slice" "0 0 1" "$(cbt_probe map "$dev" 1021 3)"
	expect_eq "a slice of one" "1" "$(cbt_probe map "$dev" 1023 1)"
	expect_eq "a slice one past the end" ENODATA "$(cbt_probe map "$dev" 1022 3)"
	expect_eq "a slice starting past the end" ENODATA "$(cbt_probe map "$dev" 1024 1)"
	expect_eq "offset + length wrapping u32" ENODATA "$(cbt_probe map "$dev" 0xffffffff 2)"
	expect_eq "length wrapping u32" ENODATA "$(cbt_probe map "$dev" 2 0xffffffff)"
	expect_eq "short optlen" EINVAL "$(cbt_probe map "$dev" 0 8 optlen=15)"
	expect_eq "bad buffer" EFAULT "$(cbt_probe map "$dev" 0 8 buffer=0x10)"
}

test_cbt_dirty_ranges() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY
	ft_attach "$dev"
	ft_settle
	# Sectors 127..128 span blocks 0 and 1; 1000 sectors from block 50.
	expect_eq "CBTDIRTY, several ranges" OK \
		"$(cbt_probe dirty "$dev" 127:2 $((50 * 128)):1000)"
	local want="0=1 1=1 50=1 51=1 52=1 53=1 54=1 55=1 56=1 57=1 "
	expect_eq "read copy after CBTDIRTY" "$want" "$(cbt_read_map "$dev" 1024)"
	expect_eq "write copy after CBTDIRTY" "$want" "$(cbt_write_map "$dev")"
	# One range past the end rejects the whole call: nothing is marked.
	expect_eq "CBTDIRTY with a range past the end" ERANGE \
		"$(cbt_probe dirty "$dev" $((200 * 128)):8 $((1024 * 128 - 4)):8)"
	expect_eq "CBTDIRTY with a wrapping range" ERANGE \
		"$(cbt_probe dirty "$dev" 0xffffffffffffff00:0x200)"
	expect_eq "read copy after rejected calls" "$want" "$(cbt_read_map "$dev" 1024)"
	expect_eq "no ranges" OK "$(cbt_probe dirty "$dev")"
	expect_eq "short optlen" EINVAL "$(cbt_probe dirty "$dev" 0:1 optlen=8)"
	expect_eq "bad range array" EFAULT "$(cbt_probe dirty "$dev" 0:1 ranges=0x10)"
	expect_eq "read copy at the end" "$want" "$(cbt_read_map "$dev" 1024)"
}

test_cbt_generation_changes_with_capacity() {
	ft_begin
	ft_image 64M
	local img=$REPLY
	ft_loop_file "$img"
	local dev=$REPLY before after
	ft_attach "$dev"
	cbt_probe dirty "$dev" 0:8 >/dev/null
	before=$(cbt_probe info "$dev")
	truncate -s 128M "$img"
	losetup -c "$dev"
	after=$(cbt_probe info "$dev")
	[[ $after =~ ^65536\ 2048\ 134217728\ [0-9a-f-]{36}\ 0$ ]] ||
		fail "CBTINFO after growing to 128 MiB: '$after'"
	[ "$(cut -d' ' -f4 <<<"$before")" != "$(cut -d' ' -f4 <<<"$after")" ] ||
		fail "the generation did not change with the capacity"
	expect_eq "read copy after the reset" "" "$(cbt_read_map "$dev" 2048)"
	expect_eq "generation stable after the reset" "$after" "$(cbt_probe info "$dev")"
}

test_cbt_cli_commands() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY out uuid
	ft_attach "$dev"
	out=$("$BLKSNAP" cbtinfo -d "$dev")
	uuid=$(cbt_probe info "$dev" | cut -d' ' -f4)
	expect_eq "blksnap cbtinfo" "block_size=65536
device_capacity=67108864
block_count=1024
generation_id=$uuid
changes_number=0" "$out"
	expect_eq "blksnap markdirtyblock -r" "" "$("$BLKSNAP" markdirtyblock -d "$dev" -r 0:1 $((128 * 9)):256)"
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/map"
	expect_eq "size of the map file" 1024 "$(stat -c %s "$FT_DIR/map")"
	expect_eq "blocks in the map file" "0=1 9=1 10=1 " "$(cbt_marked "$FT_DIR/map")"
	local rc=0
	"$BLKSNAP" markdirtyblock -d "$dev" -r $((1024 * 128)):1 2>"$FT_DIR/err" || rc=$?
	expect_eq "exit status for a range past the end" 1 "$rc"
	expect_eq "lines of the error" 1 "$(wc -l <"$FT_DIR/err")"
}

test_cbt_markdirtyblock_file_form() {
	ft_begin
	ft_loop 64M
	local dev=$REPLY out mnt=$FT_DIR/mnt
	mkfs.ext4 -q -b 4096 "$dev"
	mkdir "$mnt"
	mount "$dev" "$mnt"
	FT_MOUNTS+=("$mnt")
	dd if=/dev/urandom of="$mnt/f" bs=64k count=3 status=none
	sync
	ft_attach "$dev"
	# As the upstream tool prints it: the device, then each extent.
	out=$("$BLKSNAP" markdirtyblock -f "$mnt/f")
	expect_eq "the device markdirtyblock -f names" "device path: '/dev/block/$(cat "/sys/class/block/${dev##*/}/dev")'" \
		"$(head -n 1 <<<"$out")"
	out=$(sed -n 's/^allocate range: ofs=\([0-9]*\) cnt=\([0-9]*\)$/\1:\2/p' <<<"$out")
	[ -n "$out" ] || fail "markdirtyblock -f printed no ranges"
	# The printed ranges are the file's extents: compare with filefrag.
	local want="" start len
	while read -r start len; do
		want+="$((start * 8)):$((len * 8)) "
	done < <(filefrag -e -b4096 "$mnt/f" | awk -F'[ :.]+' '$2 ~ /^[0-9]+$/ && NF > 6 { print $5, $7 }')
	expect_eq "ranges marked for the file" "$want" "$(echo $out) "
	# Every block of those ranges is marked in the read copy, nothing else.
	local blocks="" s c b
	for r in $out; do
		s=${r%:*} c=${r#*:}
		for ((b = s / 128; b <= (s + c - 1) / 128; b++)); do blocks+="$b=1 "; done
	done
	blocks=$(tr ' ' '\n' <<<"$blocks" | sort -t= -k1,1n -u | xargs)
	expect_eq "blocks marked for the file" "$blocks " "$(cbt_read_map "$dev" 1024)"
}
