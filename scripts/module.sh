#!/usr/bin/env bash
# Builds blksnap.ko against $KDIR (default: the kernel BLKSNAP_KERNEL names,
# the cached test kernel unless set), then checks that the kernel exports
# every symbol the module needs. With --check, the build must also be free
# of compiler warnings and pass the kernel's clippy (CLIPPY=1); the log goes
# to stderr on failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Objects built against another kernel (the other flavor, or another KDIR)
# look up to date to kbuild: clean them first.
stamp=$BLKSNAP_ROOT/.module-kdir
kdir=$(module_target)
if [ "$(cat "$stamp" 2>/dev/null)" != "$kdir" ]; then
	module_make clean >/dev/null 2>&1 || true
	echo "$kdir" >"$stamp"
fi

if [ "${1:-}" = --check ]; then
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	# A clean build, so every file is compiled and every warning shows.
	module_make clean >/dev/null
	if ! module_make CLIPPY=1 >"$log" 2>&1; then
		cat "$log" >&2
		die "module build failed"
	fi
	if grep -iE 'warning|error' "$log" >&2; then
		die "module build printed warnings"
	fi
	module_check_symbols "$(module_symvers)"
	exit 0
fi
module_make
module_check_symbols "$(module_symvers)"
