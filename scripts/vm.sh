#!/usr/bin/env bash
# Boots the kernel BLKSNAP_KERNEL names (default: the 6.12 test kernel) with
# virtme-ng over the host's root filesystem. A Debian stock kernel boots
# unmodified, with its own modules beside it (scripts/debian-kernel.sh).
#
#   scripts/vm.sh run LOG CMD...  run CMD in the guest, console to LOG; the
#                                 status is CMD's, or 124 on a timeout
#   scripts/vm.sh shell           interactive shell with blksnap.ko loaded
#
# QEMU uses KVM only when a probe boot under KVM worked on this machine (the
# verdict is cached); otherwise single-threaded TCG with a qemu64 CPU, the
# combination that boots reliably here. VM_TIMEOUT (seconds) bounds a run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ "$BLKSNAP_KERNEL" = 6.12 ]; then
	kdir=$(kernel_dir)
	[ -f "$kdir/.complete" ] || die "no test kernel in $kdir: run make setup"
	kernel=$kdir
else
	kdir=$DK_DIR
	[ -f "$kdir/.complete" ] || die "no $BLKSNAP_KERNEL kernel in $kdir: run scripts/debian-kernel.sh $BLKSNAP_KERNEL"
	kernel=$DK_VMLINUZ
fi
# The debug kernel (DEBUG=1) runs the whole suite about twice as slowly.
if [ -n "${DEBUG:-}" ]; then
	VM_TIMEOUT=${VM_TIMEOUT:-3600}
else
	VM_TIMEOUT=${VM_TIMEOUT:-2700}
fi
tcg_qemu="-cpu qemu64 -accel tcg,thread=single"
# VM_ICOUNT=N (TCG only): the guest clock counts instructions, 2^N ns each,
# instead of following the host's: timings in the guest then measure the
# work done, whatever else the host is busy with (see bench/run.sh).
[ -z "${VM_ICOUNT:-}" ] || tcg_qemu+=" -icount shift=$VM_ICOUNT,sleep=off"
tcg_opts=(--disable-kvm --qemu-opts="$tcg_qemu")
# build/ is the one place of the tree the guest may write (test results).
mkdir -p "$BLKSNAP_ROOT/build"
base_opts=(--run "$kernel" --verbose --cpus 2 --memory 2G --user root
	--cwd "$BLKSNAP_ROOT" --rwdir "$BLKSNAP_ROOT/build")

# Prints the accelerator options to use, probing KVM once per kernel build.
accel_opts() {
	local verdict=$kdir/.kvm-probe
	if [ ! -f "$verdict" ]; then
		local ok=no
		if [ -w /dev/kvm ] && timeout 60 vng "${base_opts[@]}" --exec 'echo blksnap-kvm-probe-ok' \
			</dev/null 2>&1 | grep -q '^blksnap-kvm-probe-ok'; then
			ok=yes
		fi
		echo "$ok" >"$verdict"
	fi
	if [ "$(cat "$verdict")" = yes ]; then
		printf '%s\n' --qemu-opts="-cpu host"
	else
		printf '%s\n' "${tcg_opts[@]}"
	fi
}

mapfile -t accel < <(accel_opts)
case "${1:-}" in
run)
	log=$2
	shift 2
	# virtme-ng's own process does not always survive a hung guest; the
	# timeout kills the whole group.
	rc=0
	timeout --kill-after=10 "$VM_TIMEOUT" vng "${base_opts[@]}" "${accel[@]}" \
		--exec "$*" </dev/null >"$log" 2>&1 || rc=$?
	exit "$rc"
	;;
shell)
	exec vng "${base_opts[@]}" "${accel[@]}" --exec \
		"insmod $BLKSNAP_ROOT/blksnap.ko && echo 'blksnap loaded; exit to power off' && exec bash -i"
	;;
*)
	die "usage: $0 run LOG CMD... | shell"
	;;
esac
