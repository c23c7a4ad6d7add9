# Focused races of issue 11, driven by tools/racer with fixed seeds and
# bounded loops (see 50-stress.sh for the FAIL kinds):
# - defect 1: a destroy racing image reads must never let a read return
#   data written after the take (from the moment copy-on-write stops,
#   image reads fail with EIO);
# - defect 3: SNAPSHOTADD racing BLKFILTER_DETACH on one device must not
#   both succeed (a tracker detached meanwhile must not join a snapshot).
# shellcheck shell=bash

# Defect 1. Forty rounds on a 64 MiB member filled with generation 1:
# take, two readers of the image (every other read of the block written
# last) and a writer writing a new generation into one block of each
# chunk not yet copied in the round, then destroy after 8 reads and 8
# writes while they go on. Any read that returns a block written after
# the take fails the test: FAIL post-take-destroy (a write issued after
# the destroy began: defect 1), post-take-destroying (read during the
# destroy) or post-take (before any destroy: seen on today's main too).
test_race_destroy_vs_image_reads() {
	st_begin
	ft_loop 64M
	local dev=$REPLY store
	sn_tmpfs 160M
	store=$REPLY
	ft_attach "$dev"
	st_racer "$FT_DIR/racer.log" "destroy racing image reads let reads return data written after the take (defect 1)" \
		rounds --member "$dev" --storage "$store" --limit 64M \
		--rounds 40 --seed 51 --writers 1 --readers 2 --pattern fresh --follow \
		--reads-before-destroy 8 --writes-before-destroy 8
	sm_log_clean
}

# Defect 3. A hundred rounds: attach, create a snapshot, then
# SNAPSHOTADD and BLKFILTER_DETACH of the device at once (one of them
# delayed by a seeded spin); one must fail (EBUSY for the detach of a
# device in a snapshot, ENOENT for the add to a detached device). A
# contender takes and destroys snapshots of a second device meanwhile, as
# a second backup would: SNAPSHOTADD then waits for the snapshots' lock
# after it found the filter, and the detach can come in between.
test_race_detach_vs_snapshotadd() {
	st_begin
	ft_loop 16M
	local dev=$REPLY other store
	ft_loop 16M
	other=$REPLY
	sn_tmpfs 48M
	store=$REPLY
	FT_ATTACHED+=("$dev" "$other")
	st_racer "$FT_DIR/racer.log" "SNAPSHOTADD and BLKFILTER_DETACH both succeeded in some round (defect 3)" \
		add-detach "$dev" --storage "$store" --rounds 100 --seed 52 --contend "$other"
	sm_log_clean
}
