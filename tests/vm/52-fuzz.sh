# Random ioctls from fixed seeds (tests/vm/ioctl_fuzz.py): right and wrong
# arguments, bad user pointers, structs that run into an unmapped page, real
# snapshots made, taken and destroyed in random orders, writes to the
# members and reads of their images in between. Whatever the arguments, the
# module answers with an errno of the contract, never an oops, a warning or
# a hang; images hold the data of the take; the members hold what was
# written; nothing stays behind; and a snapshot works afterwards.
# shellcheck shell=bash

FZ_PARAMS=()

# fz_begin: the storage the fuzzers share: a directory on an ext4 of its
# own (-> $FZ_DIR) and a block device (-> $FZ_STORE).
fz_begin() {
	local f
	sm_begin
	# The fuzzers set the parameters at random: all are put back.
	for f in /sys/module/blksnap/parameters/*; do
		sm_param "${f##*/}" "$(cat "$f")"
	done
	# Small growth steps: storage for many snapshots at once fits the file
	# system.
	sm_param diff_storage_minimum 32768
	# What every fuzzer's prologue starts from (fz_params).
	FZ_PARAMS=()
	for f in /sys/module/blksnap/parameters/*; do
		FZ_PARAMS+=("${f##*/}=$(cat "$f")")
	done
	ft_loop 512M
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$REPLY"
	FZ_DIR=$FT_DIR/store
	mkdir -p "$FZ_DIR"
	ft_mount ext4 "$REPLY" "$FZ_DIR"
	ft_loop 64M
	FZ_STORE=$REPLY
}

# fz_params: the module parameters as fz_begin left them, whatever the last
# fuzzer set.
fz_params() {
	local p
	for p in "${FZ_PARAMS[@]}"; do
		echo "${p#*=}" >"/sys/module/blksnap/parameters/${p%%=*}"
	done
}

# fz_end: after the fuzzing, a clean kernel log and, with the parameters
# put back, an exact snapshot. The storage file the snapshots grew goes
# first: it may fill the file system.
fz_end() {
	sm_log_clean
	sm_restore_params
	rm -f "$FZ_DIR/file"
	sn_taken 32M "$FZ_DIR" 64M
	"$TAGBLK" write "$SN_DEV" --gen 2 --order random --jobs 4 >/dev/null
	sn_image "$SN_DEV"
	sn_verify "$REPLY" 1 "the image after the fuzzing"
}

test_fuzz_random_ioctls_leave_the_module_sound() {
	fz_begin
	local dir=$FZ_DIR store=$FZ_STORE a b seed rc what out=$FT_DIR/fuzz.out
	ft_loop 32M
	a=$REPLY
	ft_loop 32M
	b=$REPLY
	for seed in 1 2 3 4; do
		fz_params
		rc=0
		timeout 900 python3 "$BLKSNAP_ROOT/tests/vm/ioctl_fuzz.py" "$seed" 2000 "$dir" "$store" "$a" "$b" \
			>"$out" 2>&1 || rc=$?
		[ "$rc" -eq 0 ] || { tail -20 "$out"; fail "seed $seed: the fuzzer failed (status $rc)"; }
		grep -q "^ops=2000$" "$out" || { cat "$out"; fail "seed $seed: the fuzzer did not finish"; }
		# The run reached the module's real paths, not only its refusals:
		# the prologue did each once (and failed the run if one did not
		# work), whatever the random part then reached.
		for what in "create OK" "take OK" "ctl3 OK" "image_read OK" "ctl1 OK" "ctl2 OK"; do
			grep -q "^$what " "$out" || { cat "$out"; fail "seed $seed: no '$what' in the run"; }
		done
		expect_eq "snapshots left after seed $seed" "" "$("$BLKSNAP" snapshot_collect | tr -d ' \n')"
	done
	fz_end
}

# Three fuzzers at once, each with two members of its own and the same
# storage, each using the others' snapshots too: every ioctl races the
# others' takes, destroys, additions, detaches, writes and image reads.
# The random parts start together once every fuzzer's prologue is done, so
# that no prologue races them.
test_fuzz_concurrent_ioctls_race_without_harm() {
	fz_begin
	local dir=$FZ_DIR store=$FZ_STORE seed rc i pids=() devs=() d what
	for i in 1 2 3 4 5 6; do
		ft_loop 16M
		devs+=("$REPLY")
	done
	for seed in 1 2 3; do
		i=$(((seed - 1) * 2))
		timeout 900 python3 "$BLKSNAP_ROOT/tests/vm/ioctl_fuzz.py" --shared --go "$FT_DIR/go" \
			"$((seed + 20))" 1500 "$dir" "$store" "${devs[i]}" "${devs[i + 1]}" \
			>"$FT_DIR/fuzz$seed.out" 2>&1 &
		pids+=("$!")
		SN_PIDS+=("$!")
	done
	for seed in 1 2 3; do
		until grep -qx ready "$FT_DIR/fuzz$seed.out"; do
			if sn_exited "${pids[seed - 1]}"; then
				tail -20 "$FT_DIR/fuzz$seed.out"
				fail "fuzzer $seed ended before its prologue was done"
			fi
			sleep 0.1
		done
	done
	touch "$FT_DIR/go"
	for seed in 1 2 3; do
		rc=0
		wait "${pids[seed - 1]}" || rc=$?
		[ "$rc" -eq 0 ] || { tail -20 "$FT_DIR/fuzz$seed.out"; fail "fuzzer $seed failed (status $rc)"; }
		grep -q "^ops=1500$" "$FT_DIR/fuzz$seed.out" || { cat "$FT_DIR/fuzz$seed.out"; fail "fuzzer $seed did not finish"; }
	done
	# The runs reached the real paths (each prologue did; the random
	# parts may have too).
	for what in "create OK" "take OK" "ctl3 OK" "image_read OK" "destroy OK"; do
		grep -qh "^$what " "$FT_DIR"/fuzz[123].out || fail "no '$what' in the runs"
	done
	# What is left is destroyed and detached as any user would.
	for i in $("$BLKSNAP" snapshot_collect); do
		"$BLKSNAP" snapshot_destroy -i "$i" || fail "destroy of $i after the runs failed"
	done
	for d in "${devs[@]}" "$store"; do
		"$BLKSNAP" detach -d "$d" >/dev/null 2>&1 || true
		filter_probe "$d" ctl >"$FT_DIR/ctl" 2>&1
		expect_eq "a CTL on $d after its detach" ENOENT "$(cat "$FT_DIR/ctl")"
	done
	expect_eq "snapshots left" "" "$("$BLKSNAP" snapshot_collect | tr -d ' \n')"
	fz_end
}
